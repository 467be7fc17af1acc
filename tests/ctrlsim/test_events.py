"""Entity-change event files (propagateAlways: every node, at its own apply)."""
import json

from tests.conftest import IDENTITIES
from tests.ctrlsim.client import ZitiClient, totp_now


def read_events(sim, nid):
    with open(sim.events_path(nid)) as f:
        return [json.loads(line) for line in f if line.strip()]


def test_every_node_emits_at_its_own_apply(sim):
    ctl = sim.control
    ctl.set_lag("ctrl3", 2000)
    c = ZitiClient(sim.url("ctrl1"))
    c.oidc_login("alice", IDENTITIES["alice"]).expect(200)
    c.mfa_create().expect(201)
    d = c.mfa_get().json()["data"]
    secret = c.mfa_secret()
    assert read_events(sim, "ctrl3") == []               # not applied there yet
    c.mfa_verify(totp_now(secret)).expect(200)
    ctl.wait_applied(timeout=5)
    for nid in sim.node_ids:
        evs = read_events(sim, nid)
        assert [e["eventType"] for e in evs] == ["created", "committed", "updated", "committed"], nid
        created, c1, updated, c2 = evs
        for e in evs:
            assert e["namespace"] == "entityChange" and e["event_src_id"] == nid
        assert created["eventId"] == c1["eventId"] and updated["eventId"] == c2["eventId"]
        assert created["entityType"] == "mfas" and created["metadata"]["raft_index"] == 1
        assert updated["metadata"]["raft_index"] == 2
        assert "metadata" not in c1 and "entityType" not in c1
        fs = created["finalState"]
        # the real events carry the secrets: the relay must not copy them
        assert fs["secret"] == secret and fs["recoveryCodes"] == d["recoveryCodes"] and fs["salt"]
        assert fs["id"] == d["id"] and fs["identityId"] == c.identity_id and fs["isVerified"] is False
        assert "initialState" not in created
        assert updated["initialState"]["isVerified"] is False and updated["finalState"]["isVerified"] is True
    t1 = read_events(sim, "ctrl1")[2]["timestamp"]
    t3 = read_events(sim, "ctrl3")[2]["timestamp"]
    assert t3 > t1


def test_failed_apply_emits_nothing_delete_emits_deleted(sim):
    ctl = sim.control
    c = ZitiClient(sim.url("ctrl2"))
    c.oidc_login("bob", IDENTITIES["bob"]).expect(200)
    c.mfa_create().expect(201)
    assert c.mfa_create().status == 409                 # index 2 committed, FSM error
    c.mfa_delete("").expect(200)                        # index 3
    ctl.wait_applied(timeout=5)
    evs = read_events(sim, "ctrl1")
    assert [(e["eventType"], e.get("metadata", {}).get("raft_index")) for e in evs] == \
        [("created", 1), ("committed", None), ("deleted", 3), ("committed", None)]
    assert "finalState" not in evs[2] and evs[2]["initialState"]["identityId"] == c.identity_id
