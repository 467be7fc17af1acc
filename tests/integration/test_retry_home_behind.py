"""A legacy session's home is a follower: a write made with it is forwarded to the leader, commits
there, and the home answers only after its own apply -- or 500 UNHANDLED when that apply takes
longer than its wait (controller/raft/raft.go: the follower waits for its own index; the
simulator's --apply-wait-timeout-ms).  quorumgate can read the session's state only at that home,
which is then behind: its "not verified" is no proof that the verify failed.  Found by
bench/soak.py (30-minute v1.7.2 run, a loaded machine): three such verifies were answered 500 and
had committed.  quorumgate reads the home again until it shows the change (then answers as the
call would have), never resends the write, and when the deadline passes first answers 504
"outcome unknown"."""
from tests.ctrlsim.client import ZitiClient
from tests.integration.gate_support import (mfa_states, replication, requests_on, start_enrollment, totp_now,
                                            wait_all_have, wait_leader_known)
from tests.integration.test_gate_legacy import legacy_gate

VERIFY = "/edge/client/v1/current-identity/mfa/verify"


def follower_home_session(qg, sim):
    """A legacy login (made on the leader), then leadership moved away: the session's home is a
    follower."""
    c = ZitiClient(qg.url, ca_file=qg.ca, timeout=30)
    home = c.legacy_login("bob", "bob-pw").expect(200).header("quorumgate-controller")
    other = [n for n in sim.node_ids if n != home][0]
    sim.control.transfer(other)
    sim.control.wait_leader(not_in=(home,))
    wait_leader_known(qg)
    return c, home


def test_a_verify_its_home_timed_out_applying_is_answered_as_applied_and_sent_once(quorumgate, tmp_path):
    qg = quorumgate(legacy_gate(tmp_path))
    sim = qg.sim
    wait_leader_known(qg)
    c, home = follower_home_session(qg, sim)
    mfa_id, secret = start_enrollment(c)
    wait_all_have(sim, c.identity_id, mfa_id, verified=False)
    # the home applies 3.5 s after it got the entry; it waits 2 s (FAST_SIM_ARGS), then says 500
    sim.control.set_lag(home, 3500)
    r = c.mfa_verify(totp_now(secret))
    assert r.status == 200, (r.status, r.body)
    assert mfa_states(sim, c.identity_id)[home] == {"id": mfa_id, "isVerified": True}
    rep = replication(r)
    assert rep is not None and home in rep["acked"], r.header("quorumgate-replication")
    # the verify was sent once: the 500 was not taken for "not applied"
    assert len(requests_on(sim, home, "POST", VERIFY)) == 1
