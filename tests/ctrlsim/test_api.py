"""Paths, status codes, headers and envelopes of the node APIs."""
import http.client
import json

import pytest

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient


def cli(sim, nid):
    return ZitiClient(sim.url(nid), ca_file=sim.ca)


def test_raft_health_leader_200_follower_429(sim):
    assert sim.control.leader() == "ctrl1"
    r = cli(sim, "ctrl1").raft_health()
    assert r.status == 200
    body = r.json()
    assert body["raft"] == {"isRaftEnabled": True, "isLeader": True}
    assert body["data"]["healthy"] is True and body["meta"] == {}
    assert r.header("content-type") == "application/json"
    for nid in ("ctrl2", "ctrl3"):
        r = cli(sim, nid).raft_health()
        assert r.status == 429
        assert r.json()["raft"] == {"isRaftEnabled": True, "isLeader": False}
    # plain /health-checks is always 200 and has no raft key
    r = cli(sim, "ctrl2").request("GET", "/health-checks", auth=False)
    assert r.status == 200 and "raft" not in r.json()
    r = cli(sim, "ctrl2").request("GET", "/health-checks/controller/raft?type=short", auth=False)
    assert r.status == 429 and set(r.json()["data"]["checks"][0]) == {"id", "healthy"}


def test_version_and_headers(sim):
    for path in ("/version", "/edge/client/v1/version", "/edge/management/v1/version", "/"):
        r = cli(sim, "ctrl2").request("GET", path, auth=False)
        assert r.status == 200, path
        d = r.json()["data"]
        assert d["version"] == "v1.5.4"
        assert set(d["capabilities"]) == {"HA_CONTROLLER", "OIDC_AUTH"}
        assert d["apiVersions"]["edge-client"]["v1"]["apiBaseUrls"] == [sim.url("ctrl2") + "/edge/client/v1"]
        assert d["apiVersions"]["edge-management"]["v1"]["path"] == "/edge/management/v1"
        assert r.header("server") == "ziti-controller/v1.5.4"
        assert r.header("ziti-instance-id")
        assert r.header("content-type") == "application/json"
        assert int(r.header("content-length")) == len(r.body)
    # instance ids differ per node (they are per process)
    ids = {cli(sim, n).version().header("ziti-instance-id") for n in sim.node_ids}
    assert len(ids) == 3


def test_keep_alive_many_requests_one_connection(sim):
    conn = http.client.HTTPConnection("127.0.0.1", sim.port("ctrl3"), timeout=5)
    conn.connect()
    sock = conn.sock
    for i in range(50):
        conn.request("GET", "/version")
        r = conn.getresponse()
        assert r.status == 200 and r.getheader("content-length")
        json.loads(r.read())
        assert not r.will_close
        assert conn.sock is sock
    conn.close()


def test_error_envelope_and_unauthorized(sim):
    r = cli(sim, "ctrl1").request("GET", "/edge/client/v1/current-identity/mfa")
    assert r.status == 401
    body = r.json()
    assert set(body) == {"error", "meta"}
    assert body["error"]["code"] == "UNAUTHORIZED"
    assert body["error"]["message"].startswith("The request could not be completed")
    assert body["error"]["requestId"]
    assert body["meta"] == {"apiEnrollmentVersion": "0.0.1", "apiVersion": "0.0.1"}
    assert r.header("content-type") == "application/json"


def test_legacy_login_bad_password_and_method(sim):
    c = cli(sim, "ctrl1")
    r = c.legacy_login("alice", "wrong")
    assert r.status == 401 and r.error_code == "INVALID_AUTH"
    r = c.request("POST", "/edge/client/v1/authenticate?method=cert", body={}, auth=False)
    assert r.status == 400 and r.error_code == "INVALID_AUTH_METHOD"
    r = c.request("POST", "/edge/client/v1/authenticate?method=password", body={"username": "alice"}, auth=False)
    assert r.status == 400 and r.error_code == "COULD_NOT_VALIDATE"


def test_legacy_session_only_on_issuing_node(sim):
    c = cli(sim, "ctrl2")
    r = c.legacy_login("alice", IDENTITIES["alice"]).expect(200)
    d = r.json()["data"]
    assert r.header("zt-session") == d["token"]
    assert d["identity"]["name"] == "alice" and d["identityId"] == d["identity"]["id"]
    assert d["authQueries"] == [] and d["isMfaRequired"] is False
    assert c.current_identity().expect(200).json()["data"]["name"] == "alice"
    for other in ("ctrl1", "ctrl3"):
        o = cli(sim, other)
        o.zt_session = c.zt_session
        assert o.current_identity().status == 401
    # the session lives in ctrl2's local DB only
    st = {n["id"]: n["sessions"] for n in sim.control.state()["nodes"]}
    assert st == {"ctrl1": 0, "ctrl2": 1, "ctrl3": 0}


def test_controllers_lists_each_nodes_own_urls(sim):
    c = cli(sim, "ctrl3")
    c.legacy_login("alice", IDENTITIES["alice"]).expect(200)
    items = c.controllers().expect(200).json()["data"]
    assert [i["id"] for i in items] == ["ctrl1", "ctrl2", "ctrl3"]
    for i in items:
        assert set(i["apiAddresses"]) == {"edge-client", "edge-oidc"}
        assert i["apiAddresses"]["edge-client"][0] == {"url": sim.url(i["id"]) + "/edge/client/v1", "version": "v1"}
        assert "ctrlAddress" not in i and "isLeader" not in i and i["isOnline"] is True
    a = cli(sim, "ctrl3")
    a.legacy_login("admin", IDENTITIES["admin"], api="management").expect(200)
    items = a.controllers(api="management").expect(200).json()["data"]
    assert "edge-management" in items[0]["apiAddresses"] and items[0]["ctrlAddress"].startswith("tls:")
    # unauthenticated: 401
    assert cli(sim, "ctrl3").controllers().status == 401


def test_management_identity_detail_is_admin_only(sim):
    a = cli(sim, "ctrl1")
    a.legacy_login("admin", IDENTITIES["admin"], api="management").expect(200)
    alice_id = [i for i in sim.control.state()["identities"] if i["name"] == "alice"][0]["id"]
    d = a.request("GET", "/edge/management/v1/identities/" + alice_id).expect(200).json()["data"]
    assert d["name"] == "alice" and d["isMfaEnabled"] is False
    assert a.request("GET", "/edge/management/v1/identities/nope").status == 404
    u = cli(sim, "ctrl1")
    u.legacy_login("alice", IDENTITIES["alice"]).expect(200)
    assert u.request("GET", "/edge/management/v1/identities/" + alice_id).status == 401


def test_unknown_paths(sim):
    c = cli(sim, "ctrl1")
    assert c.request("GET", "/edge/client/v1/nope", auth=False).status in (401, 404)
    r = c.request("GET", "/nope", auth=False)
    assert r.status == 404 and int(r.header("content-length")) == len(r.body)


def test_ziti_ctrl_address_header_when_configured(sim_factory):
    s = sim_factory(args=["--new-address", "ctrl-new.example:{port}"])
    for nid in s.node_ids:
        r = cli(s, nid).version()
        assert r.header("ziti-ctrl-address") == "ctrl-new.example:%d" % s.port(nid)
    s.control.config(newAddress=None)
    assert cli(s, "ctrl1").version().header("ziti-ctrl-address") is None


def test_https_nodes(sim_factory):
    s = sim_factory(tls=True)
    assert s.info["scheme"] == "https"
    c = cli(s, "ctrl2")
    r = c.version().expect(200)
    assert r.json()["data"]["apiVersions"]["edge-client"]["v1"]["apiBaseUrls"][0].startswith("https://127.0.0.1:")
    c.oidc_login("alice", IDENTITIES["alice"]).expect(200)
    assert c.mfa_create().status == 201
    # a client that does not trust the CA fails the handshake
    bad = ZitiClient(s.url("ctrl2"))
    with pytest.raises(Exception):
        bad.version()
