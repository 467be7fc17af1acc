"""Fences are per identity (issue 17): one identity's fences never take a
controller away from other identities' logins, and a fenced identity's own
login is never served by a controller it is fenced on.

A fence is written to Redis the way consistency/ackstore.c writes it (the
gate's own fences are covered by test_gate_fence.py).  The simulator's
request log and each answer's Quorumgate-Controller header are the
witnesses.  Legacy logins prefer the leader, so their fence is put there.
Clients connect from distinct loopback addresses (127.0.0.x): an OIDC
login's first step avoids only what is fenced for identities whose calls
came from the same address."""
from tests.integration.routing_support import (ZitiClient, client_with_token, nodes_that_saw, oidc_login,
                                               write_fence as fence)
from tests.support.procs import wait_until

READ = "/edge/client/v1/current-identity"
AUTH = "/edge/client/v1/authenticate"
N = 12


def identity_id(qg, name, pw):
    c = ZitiClient(qg.url)
    r = c.legacy_login(name, pw).expect(200)
    return r.json()["data"]["identity"]["id"]


def fenced_on_leader(qg, sim):
    leader = sim.control.leader()
    alice = identity_id(qg, "alice", "alice-pw")
    fence(qg, alice, [leader])
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 1, timeout=5,
               what="the fence reaching quorumgate")
    return leader, alice


def steered(qg, node):
    return qg.metrics().value("quorumgate_logins_steered_total", controller=node) or 0


def test_another_identitys_legacy_logins_still_reach_the_fenced_controller(quorumgate, sim):
    qg = quorumgate(sim=sim)
    leader, _ = fenced_on_leader(qg, sim)
    served = []
    for _ in range(N):
        c = ZitiClient(qg.url)
        r = c.legacy_login("bob", "bob-pw").expect(200)
        served.append(r.header("quorumgate-controller"))
    # bob is not fenced: his logins go where they would without alice's
    # fence (the leader, preferred for logins)
    assert served.count(leader) == N, served
    assert steered(qg, leader) == 0


def test_fenced_identitys_legacy_login_is_never_served_by_the_fenced_controller(quorumgate, sim):
    qg = quorumgate(sim=sim)
    leader, alice = fenced_on_leader(qg, sim)
    before = steered(qg, leader)
    sim.control.reset_requests()
    for _ in range(N):
        c = ZitiClient(qg.url)
        r = c.legacy_login("alice", "alice-pw").expect(200)
        assert r.header("quorumgate-controller") != leader
        assert r.json()["data"]["identity"]["id"] == alice
        # the session it got works, on the controller that made it
        c.current_identity().expect(200)
    # each login reached the leader first (preferred): its answer was
    # discarded and the login sent once to a controller not fenced for her
    assert steered(qg, leader) - before == N
    assert leader not in nodes_that_saw(sim, lambda x: x["path"] == READ)
    assert leader in nodes_that_saw(sim, lambda x: x["path"] == AUTH)


def test_fenced_everywhere_a_legacy_login_is_refused_with_a_retryable_503(quorumgate, sim):
    qg = quorumgate(sim=sim)
    alice = identity_id(qg, "alice", "alice-pw")
    fence(qg, alice, list(sim.node_ids))
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 1, timeout=5,
               what="the fence reaching quorumgate")
    c = ZitiClient(qg.url)
    r = c.legacy_login("alice", "alice-pw")
    assert r.status == 503, (r.status, r.body[:300])
    assert r.json()["error"]["code"] == "REPLICATION_LOGIN_FENCED"
    assert b"token" not in r.body
    # bob is unaffected
    ZitiClient(qg.url).legacy_login("bob", "bob-pw").expect(200)


def at(qg, addr):
    c = ZitiClient(qg.url)
    c.source_address = addr
    return c


def oidc_fenced(qg, sim, node):
    """alice logs in, then is fenced on node; her id."""
    c = at(qg, "127.0.0.2")
    lg = oidc_login(c, c, "alice", "alice-pw")
    assert lg.ok, lg.failed_step
    alice = client_with_token(qg.url, None, lg.tokens["access_token"])
    sub = alice.claims()["sub"]
    fence(qg, sub, [node])
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 1, timeout=5,
               what="the fence reaching quorumgate")
    return alice, sub


def authorize_nodes(sim):
    return nodes_that_saw(sim, lambda x: x["path"] == "/oidc/authorize")


def refused(qg, node):
    return qg.metrics().value("quorumgate_login_tokens_refused_total", controller=node) or 0


def test_another_identitys_oidc_logins_still_reach_the_fenced_controller(quorumgate, sim):
    qg = quorumgate(sim=sim)
    alice, _ = oidc_fenced(qg, sim, "ctrl2")
    # alice's calls come from 127.0.0.2: logins from there avoid ctrl2
    alice.source_address = "127.0.0.2"
    alice.current_identity().expect(200)
    sim.control.reset_requests()
    for _ in range(6):
        c = at(qg, "127.0.0.2")
        assert oidc_login(c, c, "carol", "carol-pw").ok
    assert "ctrl2" not in authorize_nodes(sim)
    # bob logs in from elsewhere: balanced over all three, ctrl2 included
    sim.control.reset_requests()
    for _ in range(30):
        c = at(qg, "127.0.0.1")
        lg = oidc_login(c, c, "bob", "bob-pw")
        assert lg.ok, lg.failed_step
    assert authorize_nodes(sim) == ["ctrl1", "ctrl2", "ctrl3"]
    assert refused(qg, "ctrl2") == 0


def test_fenced_identitys_oidc_login_never_yields_a_token_minted_by_the_fenced_controller(quorumgate, sim):
    qg = quorumgate(sim=sim)
    _, sub = oidc_fenced(qg, sim, "ctrl2")
    refusals = 0
    # from addresses alice never used: nothing steers her first step; a
    # token ctrl2 mints is refused, and the retry from the same address
    # starts elsewhere
    for i in range(20):
        c = at(qg, "127.0.1.%d" % (i + 1))
        lg = oidc_login(c, c, "alice", "alice-pw")
        if not lg.ok:
            name, r = lg.steps[-1]
            assert name == "token" and r.status == 503, lg.failed_step
            assert r.json()["error"]["code"] == "REPLICATION_LOGIN_FENCED"
            assert b"access_token" not in r.body and b"eyJ" not in r.body
            assert r.header("quorumgate-controller") in (None, "ctrl2")
            refusals += 1
            lg = oidc_login(c, c, "alice", "alice-pw")
            assert lg.ok, lg.failed_step
        # a login that started on ctrl2 would end there: none did
        assert "ctrl2" not in lg.controllers(), lg.controllers()
        assert client_with_token(qg.url, None, lg.tokens["access_token"]).claims()["sub"] == sub
    # (2/3)^20: some of the 20 first steps went to ctrl2
    assert refusals > 0
    assert refused(qg, "ctrl2") == refusals
