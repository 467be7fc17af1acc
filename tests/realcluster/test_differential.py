"""The differential (issue 12, item 4): the calls the simulator claims to reproduce, sent to the
simulator and to the real cluster, compared on status, error code, envelope shape, content type
and the headers that matter.  Every difference found was fixed in tests/ctrlsim and written in
tests/realcluster/OBSERVATIONS.md; a new one fails here.

The simulator models v1.5.4; where v1.7.2 answers differently the expected difference is listed
in VERSION_DIFFERENCES (and in OBSERVATIONS.md), never silently skipped."""
import urllib.parse

import pytest

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient
from tests.realcluster.support import verify_code

# (probe name, version) -> the observation the real controller gives instead of the simulator's
VERSION_DIFFERENCES = {}


def shape(r):
    """What is compared of one answer."""
    ctype = (r.header("content-type") or "").split(";")[0].strip()
    out = {"status": r.status, "ctype": ctype}
    if ctype == "application/json":
        try:
            j = r.json()
        except ValueError:
            j = None
        if isinstance(j, dict):
            out["keys"] = sorted(j)
            if isinstance(j.get("error"), dict):
                out["code"] = j["error"].get("code")
                out["error_keys"] = sorted(k for k in j["error"] if k != "cause") + (
                    ["cause"] if "cause" in j["error"] else [])
            elif isinstance(j.get("code"), str):
                out["code"] = j["code"]
    return out


class Target:
    def __init__(self, kind, urls, ca, new_identity):
        self.kind = kind
        self.urls = urls              # {node id: url}
        self.ca = ca
        self.new_identity = new_identity

    def client(self, node=None):
        return ZitiClient(self.urls[node or sorted(self.urls)[0]], ca_file=self.ca)


def observe(t, leader):
    """Every probe on one target -> {name: shape}."""
    obs = {}
    c = t.client(leader)
    obs["version_root"] = shape(c.request("GET", "/version", auth=False))
    obs["version_client"] = shape(c.request("GET", "/edge/client/v1/version", auth=False))
    obs["version_legacy_prefix"] = shape(c.request("GET", "/edge/v1/version", auth=False))
    obs["unknown_path"] = shape(c.request("GET", "/no/such/path", auth=False))
    obs["current_identity_no_auth"] = shape(c.request("GET", "/edge/client/v1/current-identity", auth=False))
    obs["auth_bad_method"] = shape(c.request("POST", "/edge/client/v1/authenticate?method=nope",
                                             body={"username": "xxxxx", "password": "yyyyyy"}, auth=False))
    obs["auth_no_method"] = shape(c.request("POST", "/edge/client/v1/authenticate", body={"username": "xxxxx", "password": "yyyyyy"}, auth=False))
    obs["unknown_path_no_prefix"] = shape(c.request("GET", "/current-identity", auth=False))
    obs["bearer_garbage"] = shape(c.request("GET", "/edge/client/v1/current-identity", auth=False, headers={"authorization": "Bearer garbage"}))
    obs["well_known_root"] = shape(c.request("GET", "/.well-known/openid-configuration", auth=False))
    obs["auth_missing_fields"] = shape(c.request("POST", "/edge/client/v1/authenticate?method=password",
                                                 body={}, auth=False))
    name, pw = t.new_identity()
    obs["auth_wrong_password"] = shape(c.request("POST", "/edge/client/v1/authenticate?method=password",
                                                 body={"username": name, "password": pw + "x"}, auth=False))
    # legacy session
    lg = t.client(leader)
    r = lg.legacy_login(name, pw)
    obs["legacy_login"] = shape(r)
    obs["legacy_login_has_zt_session_header"] = {"present": r.header("zt-session") is not None}
    obs["legacy_current_identity"] = shape(lg.current_identity())
    obs["legacy_authenticate_mfa_not_enrolled"] = shape(lg.authenticate_mfa("123456"))
    # OIDC session, MFA enrollment step by step
    name, pw = t.new_identity()
    o = t.client(leader)
    o.oidc_login(name, pw).expect(200)
    obs["mfa_detail_none"] = shape(o.mfa_get())
    obs["mfa_qr_none"] = shape(o.mfa_qr())
    obs["mfa_verify_none"] = shape(o.mfa_verify("123456"))
    r = o.mfa_create()
    obs["mfa_create"] = shape(r)
    obs["mfa_create_body"] = {"data_keys": sorted(r.json()["data"]), "links": r.json()["data"].get("_links")}
    obs["mfa_create_again"] = shape(o.mfa_create())
    d = o.mfa_get()
    obs["mfa_detail"] = shape(d)
    obs["mfa_detail_keys"] = {"data_keys": sorted(d.json()["data"])}
    obs["mfa_qr"] = shape(o.mfa_qr())
    obs["mfa_verify_wrong"] = shape(o.mfa_verify("000000" if verify_code(o.mfa_secret()) != "000000" else "111111"))
    obs["mfa_verify_no_code"] = shape(o.request("POST", "/edge/client/v1/current-identity/mfa/verify", body={}))
    obs["mfa_recovery_unverified"] = shape(o.recovery_codes(verify_code(o.mfa_secret())))
    secret = o.mfa_secret()
    obs["authenticate_mfa_with_jwt"] = shape(o.authenticate_mfa(verify_code(secret)))
    obs["mfa_verify"] = shape(o.mfa_verify(verify_code(secret)))
    obs["mfa_verify_again"] = shape(o.mfa_verify(verify_code(secret)))
    obs["mfa_qr_verified"] = shape(o.mfa_qr())
    d = o.mfa_get()
    obs["mfa_detail_verified_keys"] = {"data_keys": sorted(d.json()["data"])}
    obs["mfa_delete_wrong"] = shape(o.mfa_delete("000000" if verify_code(secret) != "000000" else "111111"))
    # OIDC password step with a wrong password: status and content type
    q = urllib.parse.urlencode({"client_id": "openziti", "response_type": "code", "scope": "openid",
                                "redirect_uri": "http://127.0.0.1:20202/auth/callback",
                                "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
                                "code_challenge_method": "S256", "state": "st"})
    w = t.client(leader)
    r = w.request("GET", "/oidc/authorize?" + q, auth=False)
    obs["oidc_authorize"] = shape(r)
    rid = urllib.parse.parse_qs(urllib.parse.urlsplit(r.header("location") or "").query).get("authRequestID", [""])[0]
    obs["oidc_password_wrong"] = shape(w.request("POST", "/oidc/login/password", auth=False,
                                                 body={"username": name, "password": "wrong", "id": rid}))
    obs["oidc_password_unknown_request"] = shape(w.request("POST", "/oidc/login/password", auth=False,
                                                           body={"username": name, "password": pw, "id": "nope"}))
    # the issuer is the Host the request names
    obs["oidc_authorize_other_host"] = shape(w.request("GET", "/oidc/authorize?" + q, auth=False,
                                                       headers={"host": "other.example:1"}))
    obs["oidc_discovery"] = shape(w.request("GET", "/oidc/.well-known/openid-configuration", auth=False))
    obs["health_raft_leader"] = shape(w.request("GET", "/health-checks/controller/raft", auth=False))
    return obs


@pytest.fixture
def sim_target(sim_factory, certs):
    sim = sim_factory(tls=True)
    pool = [n for n in IDENTITIES if n != "admin"]

    def new_identity():
        n = pool.pop(0)
        return n, IDENTITIES[n]
    return Target("sim", {n: sim.url(n) for n in sim.node_ids}, certs["ca"], new_identity), sim.control.leader()


def test_simulator_answers_like_the_real_controller(cluster, identity, sim_target):
    real = Target("real", {m: cluster.url(m) for m in cluster.node_ids}, cluster.ca,
                  lambda: identity("diff")[:2])
    sim, sim_leader = sim_target
    got_real = observe(real, cluster.wait_leader())
    got_sim = observe(sim, sim_leader)
    diffs = []
    for k in sorted(set(got_real) | set(got_sim)):
        want = VERSION_DIFFERENCES.get((k, cluster.version), got_real.get(k))
        if got_sim.get(k) != want:
            diffs.append("%-40s real %s: %s\n%-40s sim: %s" % (k, cluster.version, got_real.get(k), "", got_sim.get(k)))
    assert not diffs, "simulator differs from the real controller:\n" + "\n".join(diffs)
