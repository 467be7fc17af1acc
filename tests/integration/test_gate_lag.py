"""Replication gate (issue 7): with a lagging follower, the answers to an MFA
create, verify and delete are held until every controller has the change.

The proof is what the simulator holds at the moment the answer arrives: its
state is read right after the response returns, and the answer must have
taken at least the follower's lag."""
import pytest

from tests.integration.gate_support import (client, direct, metric, mfa_states, replication, start_enrollment,
                                            timed, totp_now, wait_all_have)

LAG_MS = 2000

GATE = {"gate": {"timeout": "6s", "probe": {"initial": "20ms", "max": "100ms"}}}


def followers(sim):
    leader = sim.control.leader()
    return leader, [n for n in sim.node_ids if n != leader]


def test_verify_is_held_until_every_controller_shows_it_verified(quorumgate):
    qg = quorumgate(GATE)
    sim = qg.sim
    leader, (f1, f2) = followers(sim)
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    wait_all_have(sim, c.identity_id, mfa_id, verified=False)
    sim.control.set_lag(f2, LAG_MS)
    waits_before = metric(qg, "quorumgate_replication_wait_seconds_count", call="verify")
    acks_before = metric(qg, "quorumgate_replication_acks_total", controller=f2)

    r, took = timed(c.mfa_verify, totp_now(secret))
    states = mfa_states(sim, c.identity_id)          # at the moment the answer arrived

    r.expect(200)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    assert took >= LAG_MS / 1000.0, "answered after %.2fs, before the %d ms lag" % (took, LAG_MS)
    assert took < 5.0, "the gate waited for its timeout (%.2fs) instead of the acknowledgement" % took
    rep = replication(r)
    assert sorted(rep["acked"]) == sorted(sim.node_ids) and rep["pending"] == [], r.header(
        "quorumgate-replication")
    assert r.header("quorumgate-controller") == leader
    m = qg.metrics()
    assert m.value("quorumgate_replication_wait_seconds_count", call="verify") == waits_before + 1
    # the wait starts once the leader applied, the lag once the follower
    # received the entry (a little earlier): the wait is the lag minus that
    waited = m.value("quorumgate_replication_wait_seconds_sum", call="verify")
    assert LAG_MS / 1000.0 - 0.25 <= waited <= took, (waited, took)
    assert m.value("quorumgate_replication_acks_total", controller=f2) == acks_before + 1
    assert m.value("quorumgate_replication_timeouts_total", call="verify") == 0
    assert m.value("quorumgate_fenced_identities") == 0
    assert m.value("quorumgate_redis_operations_total", op="gate_write", result="ok") >= 1


def test_create_is_held_until_every_controller_has_the_enrollment(quorumgate):
    qg = quorumgate(GATE)
    sim = qg.sim
    leader, (f1, f2) = followers(sim)
    sim.control.set_lag(f1, 1000)
    sim.control.set_lag(f2, 1500)
    c = client(qg)

    r, took = timed(c.mfa_create)
    states = mfa_states(sim, c.identity_id)

    r.expect(201)
    mfa_id = r.json()["data"]["id"]
    assert all(s is not None and s["id"] == mfa_id and s["isVerified"] is False for s in states.values()), states
    assert took >= 1.5, took
    assert sorted(replication(r)["acked"]) == sorted(sim.node_ids)
    # so the follow-up read cannot 404 on whichever controller serves it
    for n in sim.node_ids:
        assert direct(qg, c, n).mfa_get().status == 200, n


def test_delete_is_held_until_every_controller_dropped_the_enrollment(quorumgate):
    qg = quorumgate(GATE)
    sim = qg.sim
    leader, (f1, f2) = followers(sim)
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    c.mfa_verify(totp_now(secret)).expect(200)
    wait_all_have(sim, c.identity_id, mfa_id, verified=True)
    sim.control.set_lag(f1, 1200)

    r, took = timed(c.mfa_delete, totp_now(secret))
    states = mfa_states(sim, c.identity_id)

    r.expect(200)
    assert states == {n: None for n in sim.node_ids}, states
    assert took >= 1.2, took
    assert sorted(replication(r)["acked"]) == sorted(sim.node_ids)
    m = qg.metrics()
    assert m.value("quorumgate_replication_wait_seconds_count", call="delete") == 1


@pytest.mark.parametrize("mode", ["healthy", "all"])
def test_a_verify_with_no_lag_is_not_slowed_down(quorumgate, mode):
    qg = quorumgate({"gate": {"mode": mode, "timeout": "5s"}})
    c = client(qg)
    mfa_id, secret = start_enrollment(c)
    r, took = timed(c.mfa_verify, totp_now(secret))
    r.expect(200)
    assert took < 1.0, took
    assert replication(r)["pending"] == []
