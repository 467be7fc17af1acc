"""The control API: failure injection, request logs, identities, config."""
import http.client
import json
import socket
import time
import urllib.request

import pytest

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient, totp_now

MFA = "/edge/client/v1/current-identity/mfa"


def login(sim, nid, name="alice", timeout=15.0):
    c = ZitiClient(sim.url(nid), ca_file=sim.ca, timeout=timeout)
    c.oidc_login(name, IDENTITIES[name]).expect(200)
    return c


def test_reset_before_commit(sim):
    ctl = sim.control
    c = login(sim, "ctrl1")
    ctl.inject("reset", MFA, method="POST")
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, OSError)):
        c.mfa_create()
    assert ctl.mfa_on("ctrl1", c.identity_id) is None and ctl.state()["commitIndex"] == 0
    log = [r for r in ctl.requests("ctrl1")["ctrl1"] if r["path"] == MFA]
    assert [(r["method"], r["status"], r["injected"]) for r in log] == [("POST", 0, "reset")]
    c.mfa_create().expect(201)                           # count 1: only the first was hit
    assert ctl.injections()[0]["count"] == 0 and ctl.injections()[0]["hits"] == 1


def test_reset_after_commit(sim):
    ctl = sim.control
    c = login(sim, "ctrl2")
    ctl.inject("reset_after_commit", MFA, method="POST", node="ctrl2")
    with pytest.raises((ConnectionError, http.client.RemoteDisconnected, OSError)):
        c.mfa_create()
    assert ctl.mfa_on("ctrl1", c.identity_id) is not None
    assert c.mfa_create().status == 409


def test_hang(sim):
    ctl = sim.control
    c = ZitiClient(sim.url("ctrl3"), timeout=0.5)
    ctl.inject("hang", "/version")
    t0 = time.monotonic()
    with pytest.raises((socket.timeout, TimeoutError)):
        c.version()
    assert time.monotonic() - t0 >= 0.45
    assert ctl.count(path="/version", node="ctrl3") == 1
    assert c.version().status == 200


@pytest.mark.parametrize("mode,status,code,committed", [
    ("429", 429, "SERVER_TOO_MANY_REQUESTS", False),
    ("429_after_commit", 429, "SERVER_TOO_MANY_REQUESTS", True),
    ("500", 500, "UNHANDLED", False),
    ("500_before_commit", 500, "UNHANDLED", False),
    ("500_after_commit", 500, "UNHANDLED", True),
    ("503", 503, "CLUSTER_NO_LEADER", False),
])
def test_error_injection_on_create(sim, mode, status, code, committed):
    ctl = sim.control
    c = login(sim, "ctrl2")
    ctl.inject(mode, MFA, method="POST")
    r = c.mfa_create()
    assert r.status == status and r.error_code == code
    assert set(r.json()) == {"error", "meta"}
    assert r.header("server") == "ziti-controller/v1.5.4"
    # the serving follower waited for its own apply, not for the leader's
    # (its apply thread may run later on a loaded machine)
    ctl.wait_applied(nodes=["ctrl1"])
    assert (ctl.mfa_on("ctrl1", c.identity_id) is not None) == committed
    assert ctl.count(method="POST", path=MFA, status=status) == 1
    r = c.mfa_create()
    assert r.status == (409 if committed else 201)


@pytest.mark.parametrize("mode,verified", [("500_before_commit", False), ("500_after_commit", True)])
def test_verify_500_could_not_update(sim, mode, verified):
    ctl = sim.control
    c = login(sim, "ctrl1")
    c.mfa_create().expect(201)
    secret = c.mfa_secret()
    ctl.inject(mode, MFA + "/verify")
    r = c.mfa_verify(totp_now(secret))
    assert r.status == 500
    assert r.json()["error"]["cause"] == {"code": "UNHANDLED", "message": "could not update MFA status"}
    assert ctl.mfa_on("ctrl1", c.identity_id)["isVerified"] is verified
    assert c.mfa_verify(totp_now(secret)).status == (404 if verified else 200)


def test_injection_filters_and_count(sim):
    ctl = sim.control
    ctl.inject("503", "/edge/client/v1/*", node="ctrl2", method="GET", count=2)
    c1, c2 = ZitiClient(sim.url("ctrl1")), ZitiClient(sim.url("ctrl2"))
    assert c1.request("GET", "/edge/client/v1/version", auth=False).status == 200   # other node
    assert c2.request("POST", "/edge/client/v1/authenticate?method=password", auth=False,
                      body={"username": "alice", "password": IDENTITIES["alice"]}).status == 200  # other method
    assert c2.request("GET", "/edge/client/v1/version", auth=False).status == 503
    assert c2.request("GET", "/edge/client/v1/version", auth=False).status == 503
    assert c2.request("GET", "/edge/client/v1/version", auth=False).status == 200   # count used up
    assert c2.version().status == 200                                               # path not matched
    ctl.inject("503", "/version", count=100)
    ctl.clear_injections()
    assert c2.version().status == 200


def test_delay(sim):
    ctl = sim.control
    ctl.inject("delay", "/version", delay_ms=400)
    t0 = time.monotonic()
    assert ZitiClient(sim.url("ctrl1")).version().status == 200
    assert time.monotonic() - t0 >= 0.39


def test_request_log_and_reset(sim):
    ctl = sim.control
    ctl.reset_requests()
    c = ZitiClient(sim.url("ctrl2"))
    for _ in range(3):
        c.version()
    c.raft_health()
    reqs = ctl.requests()
    assert [r["path"] for r in reqs["ctrl2"]] == ["/version"] * 3 + ["/health-checks/controller/raft"]
    assert reqs["ctrl2"][-1]["status"] == 429 and reqs["ctrl1"] == [] and reqs["ctrl3"] == []
    assert ctl.count(method="GET", path="/version") == 3
    ctl.reset_requests("ctrl2")
    assert ctl.count() == 0


def test_create_identity_works_everywhere(sim):
    ctl = sim.control
    ident = ctl.create_identity("dave", "dave-pw")
    assert "password" not in ident
    for nid in sim.node_ids:
        r = ZitiClient(sim.url(nid)).legacy_login("dave", "dave-pw").expect(200)
        assert r.json()["data"]["identityId"] == ident["id"]
    with pytest.raises(RuntimeError):
        ctl.create_identity("dave", "x")


def test_state_and_config(sim):
    ctl = sim.control
    st = ctl.state()
    assert [n["id"] for n in st["nodes"]] == ["ctrl1", "ctrl2", "ctrl3"]
    n = st["nodes"][0]
    for k in ("alive", "paused", "role", "appliedIndex", "mfas", "lagMs", "url", "instanceId"):
        assert k in n
    cfg = ctl.config(electionTimeoutMs=700, forwardErrors="head")
    assert cfg["electionTimeoutMs"] == 700 and cfg["forwardErrors"] == "head"
    with pytest.raises(RuntimeError):
        ctl.config(forwardErrors="bogus")
    with pytest.raises(RuntimeError):
        ctl.call("POST", "/nodes/ctrl9/kill")
    with pytest.raises(RuntimeError):
        ctl.inject("explode", "/version")


def test_control_api_by_curl_shape(sim):
    # plain JSON over HTTP, as documented in tests/README.md
    req = urllib.request.Request(sim.info["control"] + "/nodes/ctrl2/lag", data=b'{"ms": 250}', method="POST")
    with urllib.request.urlopen(req, timeout=5) as r:
        assert json.loads(r.read())["lagMs"] == 250
