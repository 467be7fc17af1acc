"""Replication gate for legacy zt-session clients (issue 7): a legacy session
exists only on the controller that issued it, so the gate must confirm the
change on the others with the management credential from gate.management
(GET /edge/management/v1/identities/{id}: isMfaEnabled)."""
import os

import pytest

from tests.integration.gate_support import mfa_states, timed, totp_now, wait_all_have, wait_leader_known
from tests.ctrlsim.client import ZitiClient
from tests.integration.routing_support import nodes_that_saw
from tests.support.procs import wait_until

LAG_MS = 1500


def legacy_gate(tmp_path):
    pw = tmp_path / "mgmt.password"
    pw.write_text("admin-pw\n")
    os.chmod(pw, 0o600)
    return {"gate": {"timeout": "5s", "probe": {"initial": "20ms", "max": "100ms"},
                     "management": {"username": "admin", "password_file": str(pw)}}}


def test_legacy_session_verify_is_held_until_every_controller_has_it(quorumgate, tmp_path):
    qg = quorumgate(legacy_gate(tmp_path))
    sim = qg.sim
    leader = wait_leader_known(qg)
    c = ZitiClient(qg.url, ca_file=qg.ca)
    home = c.legacy_login("bob", "bob-pw").expect(200).header("quorumgate-controller")
    # a follower that neither serves the session nor leads: only the gate
    # can make the answer wait for it
    lagging = [n for n in sim.node_ids if n not in (leader, home)][0]
    mfa_id = c.mfa_create().expect(201).json()["data"]["id"]
    secret = c.mfa_secret()
    wait_all_have(sim, c.identity_id, mfa_id, verified=False)
    sim.control.set_lag(lagging, LAG_MS)

    r, took = timed(c.mfa_verify, totp_now(secret))
    states = mfa_states(sim, c.identity_id)

    r.expect(200)
    assert states == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}, states
    assert took >= LAG_MS / 1000.0
    assert r.header("quorumgate-replication") is not None


def test_legacy_session_create_with_probes_is_confirmed_by_its_home(quorumgate, tmp_path):
    """An unverified enrollment is not visible through the management API
    (identities/{id} only says isMfaEnabled once verified), so with probes
    a legacy create is confirmed by the controller that answered it, which
    is the session's home, where every later call of that session goes; it
    is not held for the lagging followers (README, "Legacy sessions")."""
    qg = quorumgate(legacy_gate(tmp_path))
    sim = qg.sim
    leader = wait_leader_known(qg)
    for n in sim.node_ids:
        if n != leader:
            sim.control.set_lag(n, LAG_MS)
    c = ZitiClient(qg.url, ca_file=qg.ca)
    c.legacy_login("carol", "carol-pw").expect(200)

    r, took = timed(c.mfa_create)
    r.expect(201)
    home = r.header("quorumgate-controller")
    assert home == leader, r.headers
    assert r.header("quorumgate-replication") == "acked=%s" % home, r.headers
    assert took < LAG_MS / 1000.0, took
    # the session's next calls land on its home, which has the enrollment
    c.mfa_get().expect(200)


def test_legacy_session_create_with_the_relay_is_held_until_every_controller_has_it(
        quorumgate, tmp_path):
    """With acknowledgements from the event relay, a legacy create is held
    like any other until every controller wrote its event."""
    import copy
    from tests.integration.gate_support import Relay
    from tests.conftest import quorumgate_binary
    over = legacy_gate(tmp_path)
    over["gate"]["source"] = "events"
    qg = quorumgate(over)
    sim = qg.sim
    cfg = copy.deepcopy(qg.config)
    cfg["relay"] = {"poll": "50ms", "metrics_address": "127.0.0.1:0",
                    "sources": [{"controller": n, "path": sim.events_path(n)} for n in sim.node_ids]}
    rl = Relay(quorumgate_binary(), str(tmp_path), cfg, name="relay-legacy").start()
    try:
        leader = wait_leader_known(qg)
        for n in sim.node_ids:
            if n != leader:
                sim.control.set_lag(n, LAG_MS)
        c = ZitiClient(qg.url, ca_file=qg.ca)
        c.legacy_login("carol", "carol-pw").expect(200)
        r, took = timed(c.mfa_create)
        states = mfa_states(sim, c.identity_id)
        r.expect(201)
        assert all(st is not None for st in states.values()), states
        assert took >= LAG_MS / 1000.0 * 0.9, took
        assert sorted(r.header("quorumgate-replication")[len("acked="):].split(",")) == sorted(sim.node_ids)
    finally:
        rl.stop()
        assert rl.problems() == []


def test_legacy_session_verify_on_a_home_failing_its_probes_is_answered_by_the_home(quorumgate, tmp_path):
    """Issue 18: the session's home marked down by its health probes still
    answers; the gate reads the enrollment there (the session exists nowhere
    else) and the verify is answered 200 by the home, held until every
    controller has it -- not 503 after routing.leader_wait."""
    # the example's probe timeout and fall count: a stall of the loaded
    # machine must not drop a lagging controller from the held verify
    qg = quorumgate(dict(legacy_gate(tmp_path), health={"timeout": "1s", "fall": 2}))
    sim = qg.sim
    leader = wait_leader_known(qg)
    c = ZitiClient(qg.url, ca_file=qg.ca)
    home = c.legacy_login("alice", "alice-pw").expect(200).header("quorumgate-controller")
    assert home == leader
    mfa_id = c.mfa_create().expect(201).json()["data"]["id"]
    secret = c.mfa_secret()
    wait_all_have(sim, c.identity_id, mfa_id, verified=False)
    sim.control.inject("500", "/health-checks/controller/raft", node=home, count=1000000)
    wait_until(lambda: qg.metrics().value("quorumgate_controller_up", controller=home) == 0, timeout=10,
               what="the home marked down")
    try:
        r = c.mfa_verify(totp_now(secret))
        r.expect(200)
        assert r.header("quorumgate-controller") == home
        assert mfa_states(sim, c.identity_id) == {n: {"id": mfa_id, "isVerified": True} for n in sim.node_ids}
        assert r.header("quorumgate-replication") is not None, r.headers
        assert (qg.metrics().value("quorumgate_affinity_home_down_total", controller=home) or 0) >= 1
    finally:
        sim.control.clear_injections()


@pytest.mark.parametrize("marked_down", [False, True])
def test_legacy_session_verify_on_a_killed_home_gets_the_401_envelope(quorumgate, tmp_path, marked_down):
    """The session's home killed (before or after its probes noticed): the
    gate's reads at the home cannot reach it, so the session is gone: 401
    UNAUTHORIZED naming the home, nothing sent anywhere else (not a 503 that
    invites the client to retry a session that no longer exists)."""
    qg = quorumgate(legacy_gate(tmp_path))
    sim = qg.sim
    wait_leader_known(qg)
    c = ZitiClient(qg.url, ca_file=qg.ca)
    home = c.legacy_login("alice", "alice-pw").expect(200).header("quorumgate-controller")
    c.mfa_create().expect(201)
    secret = c.mfa_secret()
    sim.control.kill(home)
    if marked_down:
        wait_until(lambda: qg.metrics().value("quorumgate_controller_up", controller=home) == 0, timeout=10,
                   what="the home marked down")
    sim.control.reset_requests()
    r = c.mfa_verify(totp_now(secret))
    assert r.status == 401, (r.status, r.body[:300])
    j = r.json()
    assert j["error"]["code"] == "UNAUTHORIZED" and home in j["error"]["message"], j
    assert nodes_that_saw(sim, lambda x: "/mfa" in x["path"]) == [], sim.control.requests()
