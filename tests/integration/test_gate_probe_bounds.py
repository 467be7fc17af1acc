"""The gate's probes, bounded (issue 13, item 4): held calls of one identity waiting on the same
controller share one probe in flight (coalesced), and gate.probe.budget caps the probes per
second per controller (beyond it they are put off, not dropped, and counted)."""
import time

from tests.ctrlsim.client import ZitiClient
from tests.integration.gate_support import (Background, enrolled_then_lagging, metric, mfa_states,
                                            replication, totp_now, wait_leader_known)

LAG_MS = 1500


def _follower(qg, leader):
    return [n for n in qg.sim.node_ids if n != leader][0]


def test_a_repeated_verify_shares_the_probes_of_the_held_one(quorumgate):
    qg = quorumgate({"gate": {"timeout": "8s", "probe": {"initial": "5ms", "max": "50ms"}}})
    sim = qg.sim
    leader = wait_leader_known(qg)
    lagging = _follower(qg, leader)
    c, mfa_id, secret = enrolled_then_lagging(qg, lagging, LAG_MS)
    code = totp_now(secret)
    again = ZitiClient(qg.url, ca_file=qg.ca, timeout=30.0)
    again.access_token = c.access_token          # the same login: the client retries
    coalesced0 = metric(qg, "quorumgate_replication_probes_coalesced_total", controller=lagging)
    first = Background(c.mfa_verify, code)
    time.sleep(0.3)                              # the first verify is held (the follower lags)
    second = Background(again.mfa_verify, code)  # a repeat: held with the first (its record)
    r1, r2 = first.result(20), second.result(20)
    states = mfa_states(sim, c.identity_id)
    r1.expect(200)
    r2.expect(200)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    for r in (r1, r2):
        assert sorted(replication(r)["acked"]) == sorted(sim.node_ids), r.header("quorumgate-replication")
    assert metric(qg, "quorumgate_replication_probes_coalesced_total", controller=lagging) > coalesced0


def test_the_probe_budget_puts_probes_off(quorumgate):
    qg = quorumgate({"gate": {"timeout": "8s", "probe": {"initial": "2ms", "max": "20ms", "budget": 2}}})
    sim = qg.sim
    leader = wait_leader_known(qg)
    lagging = _follower(qg, leader)
    c, mfa_id, secret = enrolled_then_lagging(qg, lagging, LAG_MS)
    sent0 = metric(qg, "quorumgate_replication_probes_total", controller=lagging)
    deferred0 = metric(qg, "quorumgate_replication_probes_deferred_total", controller=lagging)
    t0 = time.monotonic()
    r = c.mfa_verify(totp_now(secret))
    took = time.monotonic() - t0
    states = mfa_states(sim, c.identity_id)
    r.expect(200)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    assert sorted(replication(r)["acked"]) == sorted(sim.node_ids), r.header("quorumgate-replication")
    sent = metric(qg, "quorumgate_replication_probes_total", controller=lagging) - sent0
    assert metric(qg, "quorumgate_replication_probes_deferred_total", controller=lagging) > deferred0
    # 2 per second (one second's worth at once): never more than the budget allows
    assert sent <= 2 + 2 * took + 1, (sent, took)
