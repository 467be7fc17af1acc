"""Replication gate (issue 7): an identity fenced away from a controller that
has not acknowledged its change.

While the fence lasts, its bearer-token requests are not routed there, and
it never logs in there (that controller would let it in without TOTP): an
OIDC login from where its calls came starts elsewhere, and a token that
controller mints for it anyway is refused -- the simulator's request log is
the witness.  The fence clears once that controller acknowledges, also when that
happens long after the gate's own timeout."""
import time

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient
from tests.integration.routing_support import oidc_login

from tests.integration.gate_support import (STEADY_HEALTH, Background, client, fence_of, fenced_verify, last_seq,
                                            replication, requests_on, roles, settled, start_enrollment, timed,
                                            totp_now, wait_all_have, wait_controller_up, wait_fenced, wait_until)

READS = 24
GATE_TIMEOUT_S = 1.0


def let_the_gate_time_out(answered_at, timeout_s):
    """Nothing to wait for but time: the fence must outlive the gate's own
    timeout, so let that pass (plus a margin) before the controller catches up."""
    left = answered_at + timeout_s + 0.5 - time.monotonic()
    if left > 0:
        time.sleep(left)


def reads_landing_on(qg, c, node, n=READS):
    """n balanced reads with c's bearer token; how many reached node."""
    seq = last_seq(qg.sim, node)
    for _ in range(n):
        c.current_identity().expect(200)
    return len(requests_on(qg.sim, node, "GET", "/edge/client/v1/current-identity", since_seq=seq))


def test_fenced_identity_is_kept_away_from_the_controller_until_it_acknowledges(quorumgate):
    qg = quorumgate({"gate": {"mode": "majority", "timeout": "%dms" % (GATE_TIMEOUT_S * 1000),
                              "probe": {"initial": "20ms", "max": "100ms"}},
                     "health": STEADY_HEALTH})
    sim = qg.sim
    leader, (lagging, other) = roles(sim)
    alice, mfa_id, secret, answered_at = fenced_verify(qg, lagging)
    bob = client(qg, "bob")

    # bearer-token requests: alice never on the fenced controller, bob (not
    # fenced, the control) is balanced over all three
    assert reads_landing_on(qg, alice, lagging) == 0
    assert reads_landing_on(qg, bob, lagging) > 0

    # new logins from where her calls came (127.0.0.1): the auth request
    # starts elsewhere, every time
    seq = last_seq(sim, lagging)
    for _ in range(6):
        again = client(qg, "alice", totp_secret=secret)
        assert again.access_token
    assert requests_on(sim, lagging, path="/oidc/*", since_seq=seq) == []
    # from addresses she never used: the lagging controller, which would
    # let her in without TOTP, never hands her a token (refused with 503;
    # the retry from that address starts elsewhere)
    refusals = 0
    for i in range(12):
        c = ZitiClient(qg.url)
        c.source_address = "127.0.2.%d" % (i + 1)
        lg = oidc_login(c, c, "alice", IDENTITIES["alice"], totp_secret=secret)
        if not lg.ok:
            name, r = lg.steps[-1]
            assert name == "token" and r.status == 503, lg.failed_step
            assert r.json()["error"]["code"] == "REPLICATION_LOGIN_FENCED"
            refusals += 1
            lg = oidc_login(c, c, "alice", IDENTITIES["alice"], totp_secret=secret)
            assert lg.ok, lg.failed_step
        assert lagging not in lg.controllers() and any(n == "totp" for n, _ in lg.steps), lg.controllers()
    assert (qg.metrics().value("quorumgate_login_tokens_refused_total", controller=lagging) or 0) == refusals

    # the gate's own timeout passes; the controller then catches up: the
    # fence goes (here and in Redis) and alice may use it again
    let_the_gate_time_out(answered_at, GATE_TIMEOUT_S)
    sim.control.set_lag(lagging, 0)
    wait_all_have(sim, alice.identity_id, mfa_id, verified=True)
    wait_until(lambda: fence_of(qg, alice.identity_id) == {}, timeout=5,
               what="the fence on %s to clear in Redis after it acknowledged" % lagging)
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 0, timeout=5,
               what="fenced_identities to drop to 0")
    assert reads_landing_on(qg, alice, lagging) > 0


def test_dead_controller_fenced_at_once_then_cleared_when_it_comes_back(quorumgate):
    qg = quorumgate({"gate": {"mode": "healthy", "timeout": "%dms" % (GATE_TIMEOUT_S * 1000),
                              "probe": {"initial": "20ms", "max": "100ms"}}})
    sim = qg.sim
    leader, (dead, other) = roles(sim)
    alice = client(qg)
    mfa_id, secret = start_enrollment(alice)
    settled(qg, sim, alice.identity_id, mfa_id, verified=False)
    sim.control.kill(dead)
    wait_controller_up(qg, dead, False)

    r, took = timed(alice.mfa_verify, totp_now(secret))
    answered_at = time.monotonic()
    r.expect(200)
    assert took < 1.0 and replication(r)["pending"] == [dead]
    wait_fenced(qg, alice.identity_id, [dead])

    # back, well after the gate's timeout: it catches up and acknowledges
    let_the_gate_time_out(answered_at, GATE_TIMEOUT_S)
    seq = last_seq(sim, dead)
    sim.control.restart(dead)
    wait_controller_up(qg, dead, True)
    wait_all_have(sim, alice.identity_id, mfa_id, verified=True)
    wait_until(lambda: fence_of(qg, alice.identity_id) == {}, timeout=5,
               what="the fence on %s to clear after it came back" % dead)
    wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 0, timeout=5,
               what="fenced_identities to drop to 0")
    assert reads_landing_on(qg, alice, dead) > 0
    assert requests_on(sim, dead, "GET", "/edge/client/v1/current-identity/mfa", since_seq=seq), \
        "nobody asked the returning controller whether it has the change"


def test_an_older_change_acknowledged_does_not_lift_the_fence_of_a_newer_one(quorumgate):
    """A lagging controller applies the create before the verify.  Its
    acknowledgement of the create must not lift the fence the verify set:
    until it has the verify, alice stays away from it."""
    qg = quorumgate({"gate": {"mode": "majority", "timeout": "6s",
                              "probe": {"initial": "20ms", "max": "100ms"}}})
    sim = qg.sim
    leader, (lagging, other) = roles(sim)
    alice = client(qg)
    sim.control.set_lag(lagging, 3000)
    r = alice.mfa_create().expect(201)                 # majority: not waiting for it
    mfa_id = r.json()["data"]["id"]
    assert replication(r)["pending"] == [lagging]
    secret = alice.mfa_secret()
    # the user takes a moment to type the code: the create reaches the
    # lagging controller while the verify has not yet
    time.sleep(1.5)
    r = alice.mfa_verify(totp_now(secret)).expect(200)
    assert replication(r)["pending"] == [lagging]

    wait_until(lambda: sim.control.mfa_on(lagging, alice.identity_id), timeout=5,
               what="the create on %s" % lagging)
    # its create acknowledgement is in ...
    wait_until(lambda: any(lagging in x for x in _acks_of(qg, alice.identity_id, mfa_id, "create")), timeout=3,
               what="%s's acknowledgement of the create" % lagging)
    assert sim.control.mfa_on(lagging, alice.identity_id)["isVerified"] is False
    # ... but the verify is not: still fenced, still avoided
    wait_fenced(qg, alice.identity_id, [lagging])
    assert reads_landing_on(qg, alice, lagging) == 0
    assert sim.control.mfa_on(lagging, alice.identity_id)["isVerified"] is False, "test too slow"

    wait_all_have(sim, alice.identity_id, mfa_id, verified=True)
    wait_until(lambda: fence_of(qg, alice.identity_id) == {}, timeout=5, what="the fence to clear")


def _acks_of(qg, identity_id, mfa_id, call):
    from tests.integration.gate_support import change_id, redis_client
    rc = redis_client(qg.redis)
    try:
        return [x.decode() for x in rc("SMEMBERS", "qg:gate:%s:acks" % change_id(qg, identity_id, mfa_id, call))]
    finally:
        rc.close()


def test_a_newer_change_acknowledged_lifts_an_older_changes_fence(quorumgate):
    """qg1 (majority) answers a verify while a follower is frozen, fencing
    alice away from it.  Her delete then goes through qg2 (mode all), which
    waits for that follower.  Unfrozen, it applies both at once: the verify
    can no longer be seen there (the enrollment is gone), but the follower
    acknowledged a newer change -- it has the verify too, so the verify's
    fence must go, on both quorumgates."""
    qg1 = quorumgate({"gate": {"mode": "majority", "timeout": "1s", "probe": {"initial": "20ms", "max": "100ms"}}})
    qg2 = quorumgate({"gate": {"mode": "all", "timeout": "20s", "probe": {"initial": "20ms", "max": "100ms"}}},
                     sim=qg1.sim)
    sim = qg1.sim
    leader, (frozen, other) = roles(sim)
    alice = client(qg1)
    mfa_id, secret = start_enrollment(alice)
    settled(qg1, sim, alice.identity_id, mfa_id, verified=False)
    sim.control.pause(frozen)
    r = alice.mfa_verify(totp_now(secret)).expect(200)
    assert replication(r)["pending"] == [frozen]
    wait_fenced(qg1, alice.identity_id, [frozen])
    wait_until(lambda: qg2.metrics().value("quorumgate_fenced_identities") == 1, timeout=3,
               what="qg2 to apply the fence")

    via2 = client(qg2, login=False)
    via2.access_token = alice.access_token
    bg = Background(via2.mfa_delete, totp_now(secret))
    wait_until(lambda: all(sim.control.mfa_on(n, alice.identity_id) is None for n in (leader, other)),
               timeout=5, what="the delete on the leader and the other follower")
    sim.control.resume(frozen)
    r = bg.result(timeout=20)
    assert r.status == 200 and replication(r)["pending"] == [], (r.status, r.header("quorumgate-replication"))
    assert sim.control.mfa_on(frozen, alice.identity_id) is None

    wait_fenced(qg1, alice.identity_id, [], timeout=5)
    for qg in (qg1, qg2):
        wait_until(lambda: qg.metrics().value("quorumgate_fenced_identities") == 0, timeout=5,
                   what="%s to lift the verify's fence" % qg.name)


def test_a_wait_stops_asking_once_its_fence_is_gone(quorumgate):
    """The verify's wait cannot see its change on the frozen follower any
    more once the delete is there too; the delete's acknowledgement lifts the
    fence.  The verify's wait must then stop probing that follower instead
    of doing so until gate.fence_ttl."""
    qg = quorumgate({"gate": {"mode": "majority", "timeout": "1s", "poll": "100ms",
                              "probe": {"initial": "20ms", "max": "100ms"}}})
    sim = qg.sim
    leader, (frozen, other) = roles(sim)
    alice = client(qg)
    mfa_id, secret = start_enrollment(alice)
    settled(qg, sim, alice.identity_id, mfa_id, verified=False)
    sim.control.pause(frozen)
    alice.mfa_verify(totp_now(secret)).expect(200)
    alice.mfa_delete(totp_now(secret)).expect(200)
    wait_fenced(qg, alice.identity_id, [frozen])
    sim.control.resume(frozen)
    wait_until(lambda: sim.control.mfa_on(frozen, alice.identity_id) is None, timeout=5,
               what="the frozen follower to catch up")
    wait_fenced(qg, alice.identity_id, [], timeout=5)

    # a moment for the polls to notice, then nobody asks any more
    time.sleep(1.0)
    seq = last_seq(sim, frozen)
    time.sleep(1.0)
    assert requests_on(sim, frozen, "GET", "/edge/client/v1/current-identity/mfa", since_seq=seq) == []
