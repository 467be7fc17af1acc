"""Bounds on the replication gate (issue 13, item 4): caps on held calls
(global and per identity: 503 PROXY_GATE_BUSY before anything is sent),
probing stopped at a controller that refuses the client's credential (the
wait does not sit out its timeout for it), and the probes counted."""
import time

from tests.integration.gate_support import Background, client, metric, replication, wait_leader_known, wait_log
from tests.integration.routing_support import assert_envelope

LAG_MS = 1500


def _posts(sim, path="/edge/client/v1/current-identity/mfa"):
    return sum(1 for reqs in sim.control.requests().values() for r in reqs
               if r["method"] == "POST" and r["path"] == path)


def test_per_identity_cap(quorumgate):
    qg = quorumgate({"gate": {"max_held_per_identity": 1}})
    sim = qg.sim
    leader = wait_leader_known(qg)
    c1 = client(qg)
    c2 = client(qg)   # the same identity, another login
    lagging = [n for n in sim.node_ids if n != leader][0]
    sim.control.set_lag(lagging, LAG_MS)
    sim.control.reset_requests()
    held = Background(c1.mfa_create)
    time.sleep(0.3)   # the first create is held by the gate
    refused0 = metric(qg, "quorumgate_replication_held_refused_total")
    r = c2.mfa_create()
    assert_envelope(r, 503, "PROXY_GATE_BUSY")
    assert metric(qg, "quorumgate_replication_held_refused_total") == refused0 + 1
    held.result().expect(201)
    assert _posts(sim) == 1, "the refused create must not reach a controller"
    # the slot came back: the next gated write of that identity passes
    sim.control.set_lag(lagging, 0)
    c2.mfa_delete(code="").expect(200)


def test_global_cap(quorumgate):
    qg = quorumgate({"gate": {"max_held": 1}})
    sim = qg.sim
    leader = wait_leader_known(qg)
    alice, bob = client(qg, "alice"), client(qg, "bob")
    lagging = [n for n in sim.node_ids if n != leader][0]
    sim.control.set_lag(lagging, LAG_MS)
    held = Background(alice.mfa_create)
    time.sleep(0.3)
    assert_envelope(bob.mfa_create(), 503, "PROXY_GATE_BUSY")
    held.result().expect(201)
    sim.control.set_lag(lagging, 0)
    bob.mfa_create().expect(201)


def test_probing_stops_at_a_controller_refusing_the_credential(quorumgate):
    qg = quorumgate({"gate": {"timeout": "8s"}})
    sim = qg.sim
    leader = wait_leader_known(qg)
    c = client(qg)
    refusing = [n for n in sim.node_ids if n != leader][0]
    sim.control.set_lag(refusing, 3000)   # it would hold the answer 3 s
    sim.control.inject("401", "/edge/client/v1/current-identity/mfa", method="GET", node=refusing, count=1000)
    probes0 = metric(qg, "quorumgate_replication_probes_total", controller=refusing)
    t0 = time.monotonic()
    r = c.mfa_create().expect(201)
    took = time.monotonic() - t0
    rep = replication(r)
    assert rep["pending"] == [refusing], rep
    # left unfenced (the client's own token refused says nothing about replication), and said so
    wait_log(qg, lambda e: "pending on %s, not fenced" % refusing in e.get("msg", ""), timeout=5,
             what="the log naming the refusing member left unfenced")
    assert took < 2.5, "the wait sat out the lag of a controller it cannot ask (%.2fs)" % took
    # it stopped asking: a refusal right after a login may pass (3, over >= 1 s), not more
    sent = metric(qg, "quorumgate_replication_probes_total", controller=refusing) - probes0
    assert sent >= 3
    time.sleep(0.5)
    assert metric(qg, "quorumgate_replication_probes_total", controller=refusing) - probes0 == sent
