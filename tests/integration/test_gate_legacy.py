"""Replication gate for legacy zt-session clients (issue 7): a legacy session
exists only on the controller that issued it, so the gate must confirm the
change on the others with the management credential from gate.management
(GET /edge/management/v1/identities/{id}: isMfaEnabled)."""
import os

import pytest

from tests.integration.gate_support import mfa_states, timed, totp_now, wait_all_have, wait_leader_known
from tests.ctrlsim.client import ZitiClient

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
