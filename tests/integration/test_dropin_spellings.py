"""Every spelling of an MFA write is held like the canonical one (issue 13,
item 3): the controller serves its client API also without the
/edge/client/v1 prefix and under /edge/v1 (webapis/client-api.go), and
decodes percent-escapes and dot segments of any length."""
import pytest

from tests.integration.gate_support import client, mfa_states, timed, wait_leader_known

LAG_MS = 800

SPELLINGS = [
    "/current-identity/mfa",
    "/edge/v1/current-identity/mfa",
    "/x/../current-identity/./mfa",
    "/edge/client/v1/" + "a/../" * 400 + "current-identity/mfa",
]


@pytest.mark.parametrize("path", SPELLINGS, ids=range(len(SPELLINGS)))
def test_create_held_whatever_the_spelling(quorumgate, path):
    qg = quorumgate()
    sim = qg.sim
    leader = wait_leader_known(qg)
    c = client(qg)
    ident = c.current_identity().expect(200).json()["data"]["id"]
    lagging = [n for n in sim.node_ids if n != leader][0]
    sim.control.set_lag(lagging, LAG_MS)
    r, took = timed(c.request, "POST", path)
    r.expect(201)
    states = mfa_states(sim, ident)
    mfa_id = r.json()["data"]["id"]
    assert all(s and s["id"] == mfa_id for s in states.values()), states
    assert took >= LAG_MS / 1000.0 * 0.9
    assert r.header("quorumgate-controller") == leader
    assert r.header("quorumgate-replication").startswith("acked="), r.headers


def test_escaped_spelling_is_not_routed_by_the_controller(quorumgate):
    """The real controller routes the path as sent (escapes not decoded): 404, nothing
    changes.  quorumgate classifies it as MFA all the same (pinned, gated if it succeeded)."""
    qg = quorumgate()
    sim = qg.sim
    leader = wait_leader_known(qg)
    c = client(qg)
    ident = c.current_identity().expect(200).json()["data"]["id"]
    r = c.request("POST", "/edge/client/v1/current-identity/%6D%66%61")
    assert r.status == 404, r
    assert r.header("quorumgate-controller") == leader
    assert set(mfa_states(sim, ident).values()) == {None}
