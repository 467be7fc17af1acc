"""Address rewriting on the real controllers' answers, and the `events` acknowledgement source
(`quorumgate relay`) fed by the controllers' own entity-change event files."""
import copy

import pytest

from tests.conftest import quorumgate_binary
from tests.integration.gate_support import Relay
from tests.realcluster.support import all_members, enroll, login, qg_client, replication, verify_code, \
    wait_leader_known


def _urls_in(obj):
    out = []
    if isinstance(obj, dict):
        for v in obj.values():
            out += _urls_in(v)
    elif isinstance(obj, list):
        for v in obj:
            out += _urls_in(v)
    elif isinstance(obj, str) and obj.startswith(("https://", "http://")):
        out.append(obj)
    return out


def test_controllers_and_version_point_at_quorumgate(cluster, identity, rc_qg):
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    login(c, "oidc", name, pw)
    member_urls = [cluster.url(m) for m in cluster.node_ids]

    # straight to a controller: v1.5.4 lists the members without apiAddresses (OBSERVATIONS.md),
    # later versions with them; either way, through quorumgate no URL names a controller
    d = cluster.client(cluster.node_ids[0])
    d.oidc_login(name, pw).expect(200)
    direct = d.controllers().expect(200).json()["data"]
    assert sorted(x["id"] for x in direct) == sorted(cluster.node_ids), direct
    r = c.controllers().expect(200)
    data = r.json()["data"]
    assert sorted(x["id"] for x in data) == sorted(cluster.node_ids), data
    assert len(_urls_in(data)) == len(_urls_in(direct)), (data, direct)
    assert all(u.startswith(qg.url) for u in _urls_in(data)), _urls_in(data)
    assert not any(u.startswith(tuple(member_urls)) for u in _urls_in(data))
    v = c.version().expect(200).json()["data"]
    vurls = _urls_in(v["apiVersions"])
    assert vurls and all(u.startswith(qg.url) for u in vurls), vurls
    assert v["version"] == cluster.version


def test_oidc_location_headers_stay_on_quorumgate(cluster, identity, rc_qg):
    """The real /oidc/authorize redirect and the login callbacks are relative or rewritten, so a
    browser-style client following Location never leaves quorumgate."""
    import urllib.parse
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    c.oidc_login(name, pw).expect(200)
    # the client recorded no absolute Location pointing at a controller: repeat the first step
    q = urllib.parse.urlencode({"client_id": "openziti", "response_type": "code", "scope": "openid",
                                "redirect_uri": "http://127.0.0.1:20202/auth/callback",
                                "code_challenge": "x" * 43, "code_challenge_method": "S256", "state": "s"})
    r = c.request("GET", "/oidc/authorize?" + q, auth=False).expect(302)
    loc = r.header("location")
    u = urllib.parse.urlsplit(loc)
    assert not u.netloc or loc.startswith(qg.url), loc


def test_ziti_ctrl_address_header_is_rewritten(cluster, identity, rc_qg):
    """Controllers announce their address in `ziti-ctrl-address` on some answers; through
    quorumgate it names quorumgate (or is absent), never a controller."""
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    name, pw, iid = identity()
    c = qg_client(qg)
    login(c, "legacy", name, pw)
    seen = []
    for r in (c.current_identity(), c.controllers(), c.version()):
        for v in r.header_all("ziti-ctrl-address"):
            seen.append(v)
    for v in seen:
        assert str(cluster.port("ctrl1")) not in v and str(cluster.port("ctrl2")) not in v \
            and str(cluster.port("ctrl3")) not in v, seen


@pytest.mark.parametrize("kind", ["oidc", "legacy"])
def test_events_source_from_the_controllers_event_files(cluster, identity, rc_qg, tmp_path, kind):
    qg = rc_qg({"gate": {"source": "events", "timeout": "8s"}})
    cfg = copy.deepcopy(qg.config)
    cfg["relay"] = {"poll": "50ms", "metrics_address": "127.0.0.1:0",
                    "sources": [{"controller": m, "path": cluster.events_path(m)} for m in cluster.node_ids]}
    relay = Relay(quorumgate_binary(), str(tmp_path), cfg).start()
    try:
        wait_leader_known(qg, cluster)
        name, pw, iid = identity()
        c = qg_client(qg)
        login(c, kind, name, pw)
        r = c.mfa_create().expect(201)
        rep = replication(r)
        assert rep and sorted(rep["acked"]) == sorted(cluster.node_ids), r.header("quorumgate-replication")
        secret = c.mfa_secret()
        r = c.mfa_verify(verify_code(secret))
        states = cluster.mfa_enabled(iid)
        r.expect(200)
        assert states == {m: True for m in cluster.node_ids}, states
        rep = replication(r)
        assert rep and sorted(rep["acked"]) == sorted(cluster.node_ids) and not rep["pending"], rep
    finally:
        relay.stop()
    assert relay.problems() == []


def test_validation_statuses_602_and_606_pass_through(cluster, rc_qg):
    """The controllers answer go-openapi validation failures with HTTP 602/606 and an error
    envelope (OBSERVATIONS.md); quorumgate passes them on (it used to answer 502)."""
    qg = rc_qg()
    wait_leader_known(qg, cluster)
    c = qg_client(qg)
    for query, status in (("?method=nope", 606), ("", 602)):
        r = c.request("POST", "/edge/client/v1/authenticate" + query, auth=False,
                      body={"username": "nobody", "password": "long-enough"})
        assert r.status == status, (r.status, r.body[:300])
        assert r.error_code == "COULD_NOT_VALIDATE" and r.json()["error"]["cause"]["field"] == "method", r.body
    m = qg.metrics()
    assert m.value("quorumgate_requests_total", **{"class": "write", "method": "POST", "code": "4xx"}) == 2
