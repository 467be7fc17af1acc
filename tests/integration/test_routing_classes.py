"""Route classes land where they must (issue 9), checked against the
simulator's per-node request log while the simulator moves the leader:
MFA enrollment (client and management API) on the leader, writes on the
leader, legacy /authenticate on the leader, reads balanced, legacy sessions
on their issuer (a hard constraint that beats leader pinning), and a
classification table taken from the configuration.
"""
import threading
import time

from tests.ctrlsim.client import totp_now
from tests.support.procs import wait_until
from tests.integration.routing_support import (
    ZitiClient, assert_envelope, client_with_token, decisions, delta, nodes_that_saw, oidc_login, wait_view)

MFA = "/edge/client/v1/current-identity/mfa"
MGMT_MFA = "/edge/management/v1/current-identity/mfa"


def _oidc_client(qg, user, pw):
    c = ZitiClient(qg.url)
    lg = oidc_login(c, c, user, pw)
    assert lg.ok, lg.failed_step
    return client_with_token(qg.url, None, lg.tokens["access_token"])


def _path_is(*paths):
    return lambda r: r["path"] in paths


def test_each_class_lands_where_it_must_while_the_leader_moves(quorumgate, sim):
    # the replication gate probes the other controllers with GET
    # current-identity/mfa; off here so that every MFA request in the log is
    # the client's own
    qg = quorumgate({"gate": {"enabled": False}}, sim=sim)
    admin = _oidc_client(qg, "admin", "admin-pw")
    # a legacy session issued on the first leader
    wait_view(qg, leader="ctrl1")
    legacy = ZitiClient(qg.url)
    sim.control.reset_requests()
    legacy.legacy_login("bob", "bob-pw").expect(200)
    assert nodes_that_saw(sim, _path_is("/edge/client/v1/authenticate")) == ["ctrl1"]
    home = "ctrl1"
    before = decisions(qg)
    rounds = 0
    for leader in ("ctrl1", "ctrl2", "ctrl3", "ctrl1"):
        if sim.control.leader() != leader:
            sim.control.transfer(leader)
        sim.control.wait_leader()
        assert sim.control.leader() == leader
        wait_view(qg, leader=leader)
        rounds += 1
        name = "user%d" % rounds
        sim.control.create_identity(name, name + "-pw")
        user = _oidc_client(qg, name, name + "-pw")
        sim.control.reset_requests()

        # MFA enrollment, client API: every call on the leader
        user.mfa_create().expect(201)
        secret = user.mfa_secret()
        user.mfa_qr().expect(200)
        user.mfa_verify(totp_now(secret)).expect(200)
        user.recovery_codes(totp_now(secret)).expect(200)
        # ... and the management API's current-identity/mfa
        user.request("GET", MGMT_MFA).expect(200)
        mfa_nodes = nodes_that_saw(sim, lambda r: r["path"].startswith((MFA, MGMT_MFA)))
        assert mfa_nodes == [leader], "MFA enrollment reached %s, leader %s" % (mfa_nodes, leader)

        # writes elsewhere: on the leader
        for _ in range(5):
            admin.request("DELETE", "/edge/management/v1/identities/%s/mfa" % user.claims()["sub"]).expect(200, 404)
            admin.request("POST", "/edge/management/v1/services", body={"name": "s"})
        w = nodes_that_saw(sim, lambda r: r["path"].startswith(("/edge/management/v1/identities/",
                                                                  "/edge/management/v1/services")))
        assert w == [leader], "writes reached %s, leader %s" % (w, leader)

        # legacy /authenticate: on the leader
        for _ in range(3):
            ZitiClient(qg.url).legacy_login("carol", "carol-pw").expect(200)
        a = nodes_that_saw(sim, _path_is("/edge/client/v1/authenticate"))
        assert a == [leader], "authenticate reached %s, leader %s" % (a, leader)

        # reads: balanced over every controller
        sim.control.reset_requests()
        for _ in range(30):
            user.current_identity().expect(200)
        r = nodes_that_saw(sim, _path_is("/edge/client/v1/current-identity"))
        assert r == ["ctrl1", "ctrl2", "ctrl3"], "reads reached only %s" % r

        # the legacy session stays home, wherever the leader is
        sim.control.reset_requests()
        for _ in range(10):
            legacy.current_identity().expect(200)
        legacy.request("GET", MFA).expect(404)          # MFA class, but a session lives at home
        s = nodes_that_saw(sim, lambda r: r["path"].startswith("/edge/client/v1/current-identity"))
        assert s == [home], "the legacy session reached %s, home %s" % (s, home)

    d = delta(decisions(qg), before)
    assert d.get(("mfa", "pinned"), 0) >= 6 * rounds, d
    assert d.get(("write", "pinned"), 0) >= 13 * rounds, d       # 10 writes + 3 authenticate
    assert d.get(("read", "balanced"), 0) >= 30 * rounds, d
    assert d.get(("session", "sticky_hit"), 0) >= 10 * rounds, d
    assert d.get(("mfa", "sticky_hit"), 0) >= rounds, d


def test_mfa_waits_for_a_leader_within_the_deadline(quorumgate, sim):
    qg = quorumgate({"routing": {"leader_wait": "8s"}}, sim=sim)
    alice = _oidc_client(qg, "alice", "alice-pw")
    wait_view(qg, leader="ctrl1")
    # no majority anywhere: no leader until healed
    sim.control.partition(["ctrl1"], ["ctrl2"], ["ctrl3"])
    sim.control.wait_for(lambda s: s["leader"] is None, what="no leader")
    wait_view(qg, leader="none")
    sim.control.reset_requests()
    before = decisions(qg)
    out = {}

    def call():
        out["resp"] = alice.request("GET", MFA)
        out["done"] = time.monotonic()

    t = threading.Thread(target=call)
    t.start()
    try:
        # it waits (counted), and no controller sees it meanwhile
        wait_until(lambda: delta(decisions(qg), before).get(("mfa", "no_leader_wait"), 0) >= 1,
                   timeout=5, what="the MFA call waiting for a leader")
        assert nodes_that_saw(sim, lambda r: r["path"] == MFA) == []
        # the cluster view changes while it waits (a controller goes down):
        # still no leader, it keeps waiting
        sim.control.kill("ctrl3")
        wait_view(qg, up={"ctrl3": False})
        assert "resp" not in out
        healed_at = time.monotonic()
        sim.control.heal()
        leader = sim.control.wait_leader()
    finally:
        t.join(timeout=15)
        sim.control.restart("ctrl3")
    assert not t.is_alive()
    assert out["resp"].status == 404, out["resp"].body      # the controller's own answer: no enrollment
    assert out["resp"].header("quorumgate-controller") == leader
    assert nodes_that_saw(sim, lambda r: r["path"] == MFA) == [leader]
    assert out["done"] > healed_at
    d = delta(decisions(qg), before)
    assert d.get(("mfa", "pinned"), 0) == 1, d
    # counted once per request, not once per cluster-view change
    assert d.get(("mfa", "no_leader_wait"), 0) == 1, d


def test_mfa_without_a_leader_answers_503_after_the_wait(quorumgate, sim):
    qg = quorumgate({"routing": {"leader_wait": "1500ms"}}, sim=sim)
    alice = _oidc_client(qg, "alice", "alice-pw")
    sim.control.partition(["ctrl1"], ["ctrl2"], ["ctrl3"])
    sim.control.wait_for(lambda s: s["leader"] is None, what="no leader")
    wait_view(qg, leader="none")
    sim.control.reset_requests()
    t0 = time.monotonic()
    r = alice.mfa_create()
    elapsed = time.monotonic() - t0
    assert_envelope(r, 503, "CLUSTER_NO_LEADER")
    assert 1.4 <= elapsed < 5, elapsed
    assert nodes_that_saw(sim, lambda x: x["path"] == MFA) == []
    sim.control.heal()


def test_leader_found_after_a_wait_gets_exactly_one_attempt(quorumgate, sim):
    """A request that waited for a leader and then sent its attempt must not
    be routed again when the wait's deadline passes during that attempt."""
    qg = quorumgate({"routing": {"leader_wait": "2s"}, "gate": {"enabled": False}}, sim=sim)
    alice = _oidc_client(qg, "alice", "alice-pw")
    sim.control.partition(["ctrl1"], ["ctrl2"], ["ctrl3"])
    sim.control.wait_for(lambda s: s["leader"] is None, what="no leader")
    wait_view(qg, leader="none")
    sim.control.reset_requests()
    # the next MFA create is slow: it outlives the leader wait
    sim.control.inject("delay", MFA, method="POST", delay_ms=3000)
    out = {}
    before = decisions(qg)
    t = threading.Thread(target=lambda: out.setdefault("r", alice.mfa_create()))
    t.start()
    try:
        wait_until(lambda: delta(decisions(qg), before).get(("mfa", "no_leader_wait"), 0) >= 1,
                   timeout=5, what="the MFA create waiting for a leader")
        sim.control.heal()
        sim.control.wait_leader()
    finally:
        t.join(timeout=20)
    assert not t.is_alive()
    assert out["r"].status == 201, out["r"].body
    creates = [r for reqs in sim.control.requests().values() for r in reqs
               if r["path"] == MFA and r["method"] == "POST"]
    assert len(creates) == 1, creates
    assert out["r"].header("quorumgate-attempts") == "1"


def test_classification_table_comes_from_the_configuration(quorumgate, sim):
    """routing.classes replaces the built-in table: a row that puts the
    services list in the MFA class pins it to the leader; a header row too."""
    classes = [
        {"path": "/edge/client/v1/services", "class": "mfa"},
        {"header": "x-pin-to-leader", "class": "mfa"},
        {"path": "/edge/client/v1/current-identity/mfa", "class": "mfa"},
        {"path": "/oidc/", "class": "oidc"},
        {"header": "zt-session", "class": "session"},
        {"methods": ["POST", "PUT", "PATCH", "DELETE"], "class": "write"},
        {"class": "read"},
    ]
    qg = quorumgate({"routing": {"classes": classes}}, sim=sim)
    alice = _oidc_client(qg, "alice", "alice-pw")
    wait_view(qg, leader="ctrl1")
    sim.control.transfer("ctrl2")
    wait_view(qg, leader="ctrl2")
    sim.control.reset_requests()
    before = decisions(qg)
    for _ in range(20):
        alice.request("GET", "/edge/client/v1/services")
        alice.request("GET", "/edge/client/v1/current-identity", headers={"x-pin-to-leader": "1"}).expect(200)
    assert nodes_that_saw(sim, lambda r: r["path"] == "/edge/client/v1/services") == ["ctrl2"]
    assert nodes_that_saw(sim, lambda r: r["path"] == "/edge/client/v1/current-identity") == ["ctrl2"]
    # without the header the same read is balanced
    sim.control.reset_requests()
    for _ in range(30):
        alice.current_identity().expect(200)
    assert nodes_that_saw(sim, lambda r: r["path"] == "/edge/client/v1/current-identity") == \
        ["ctrl1", "ctrl2", "ctrl3"]
    d = delta(decisions(qg), before)
    assert d.get(("mfa", "pinned"), 0) == 40, d
    assert d.get(("read", "balanced"), 0) == 30, d
