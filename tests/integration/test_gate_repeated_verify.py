"""A verify repeated after its first try was lost gets the first try's outcome (README: "A verify
repeated after a timeout or a dropped connection gets the original outcome, not a 404").
Found by bench/soak.py (issue 18) on a real v1.7.2 cluster: a verify went through a quorumgate
that was SIGKILLed before the answer; the leader applied it a moment later; the client repeated
the verify through the other quorumgate, whose first attempt met the already verified
enrollment and got the controller's 404 -- a verify that committed, answered as a failure.

Here the lost first try is sent straight to the leader (as the dead quorumgate had forwarded it);
the repeat goes through quorumgate."""
from tests.ctrlsim.client import ZitiClient
from tests.integration.gate_support import (MFA_PATH, STEADY_HEALTH, Background, client, replication, roles, settled,
                                            start_enrollment, totp_now, wait_all_have, wait_fenced,
                                            wait_leader_known, wait_until)
from tests.integration.test_gate_legacy import legacy_gate


def test_a_verify_repeated_after_a_lost_first_try_is_answered_200_and_held(quorumgate):
    qg = quorumgate({"gate": {"timeout": "5s"}})
    sim = qg.sim
    leader = wait_leader_known(qg)
    c = client(qg, "alice")
    mfa_id, secret = start_enrollment(c)
    lost = ZitiClient(sim.url(leader), ca_file=qg.ca)
    lost.access_token = c.access_token
    lost.mfa_verify(totp_now(secret)).expect(200)

    r = c.mfa_verify(totp_now(secret))
    assert r.status == 200, (r.status, r.body[:300])
    rep = replication(r)
    assert rep is not None and sorted(rep["acked"]) == sorted(sim.node_ids), r.header("quorumgate-replication")
    wait_until(lambda: any(e.get("reconciled") == "verify" for e in qg.access_log()
                           if e.get("path", "").endswith("/mfa/verify")), timeout=5,
               what="the access log to say the verify was answered by reconciliation")


def test_a_legacy_verify_repeated_after_a_lost_first_try_is_answered_200(quorumgate, tmp_path):
    qg = quorumgate(legacy_gate(tmp_path))
    c = ZitiClient(qg.url, ca_file=qg.ca)
    home = c.legacy_login("bob", "bob-pw").expect(200).header("quorumgate-controller")
    mfa_id, secret = start_enrollment(c)
    lost = ZitiClient(qg.sim.url(home), ca_file=qg.ca)
    lost.zt_session = c.zt_session
    lost.mfa_verify(totp_now(secret)).expect(200)
    r = c.mfa_verify(totp_now(secret))
    assert r.status == 200 and replication(r) is not None, (r.status, r.headers, r.body[:300])


def test_a_verify_without_an_enrollment_still_gets_the_controllers_404(quorumgate):
    qg = quorumgate({"gate": {"timeout": "5s"}})
    c = client(qg, "carol")
    r = c.mfa_verify("123456")
    assert r.status == 404 and r.error_code == "NOT_FOUND", (r.status, r.body[:300])
    verifies = wait_until(lambda: [e for e in qg.access_log() if e.get("path", "").endswith("/mfa/verify")],
                          timeout=5, what="the verify's access-log line")
    # one attempt at the call itself (a state read, no resend)
    assert verifies[-1].get("status") == 404
    assert len([a for a in verifies[-1].get("upstream", []) if not a.get("read")]) == 1, verifies[-1]


def lagging_leader(quorumgate, leader_wait):
    """alice's verified enrollment deleted and a new one created while a follower lagged (named
    pending for both, so fenced); that follower is then made leader, still showing the deleted
    enrollment verified.  (qg, that leader, alice, the new enrollment's id, its secret)"""
    qg = quorumgate({"gate": {"mode": "majority", "timeout": "1000ms",
                              "probe": {"initial": "20ms", "max": "100ms"}},
                     "health": STEADY_HEALTH, "routing": {"leader_wait": leader_wait}})
    sim = qg.sim
    _, (lagging, _) = roles(sim)
    c = client(qg, "alice")
    old_id, old_secret = start_enrollment(c)
    settled(qg, sim, c.identity_id, old_id, verified=False)
    c.mfa_verify(totp_now(old_secret)).expect(200)
    settled(qg, sim, c.identity_id, old_id, verified=True)
    sim.control.set_lag(lagging, 60000)
    r = c.mfa_delete(totp_now(old_secret)).expect(200)
    assert replication(r)["pending"] == [lagging], r.header("quorumgate-replication")
    new_id, new_secret = start_enrollment(c)
    wait_fenced(qg, c.identity_id, [lagging])
    sim.control.transfer(lagging)
    wait_leader_known(qg)
    assert sim.control.leader() == lagging
    return qg, lagging, c, new_id, new_secret


def test_a_verify_read_on_a_new_leader_that_lacks_the_identitys_changes_is_not_taken_for_a_repeat(quorumgate):
    """bench/soak.py, 30-minute v1.5.4 run (op 81382): a follower that lagged (named pending for
    the identity's delete and then its create, so fenced) was made leader; quorumgate read the
    enrollment there before the verify of the new enrollment, saw the deleted one still verified,
    took the call for a repeat and answered 200 from the old one's record -- the verify was
    never sent, and logins went on without TOTP.  A leader fenced for the identity is read again
    until it has the identity's changes."""
    qg, lagging, c, new_id, new_secret = lagging_leader(quorumgate, "5s")
    sim = qg.sim
    sent = sim.control.count("POST", "/edge/client/v1/current-identity/mfa/verify")
    reads = sim.control.count("GET", MFA_PATH, node=lagging)
    verify = Background(c.mfa_verify, totp_now(new_secret))
    # the leader still shows the deleted enrollment, verified: quorumgate reads it more than once
    wait_until(lambda: verify.done() or sim.control.count("GET", MFA_PATH, node=lagging) >= reads + 2,
               timeout=5, what="quorumgate to read the lagging leader's enrollment")
    sim.control.set_lag(lagging, 0)
    r = verify.result(15)
    assert r.status == 200, (r.status, r.body[:300])
    assert sim.control.count("POST", "/edge/client/v1/current-identity/mfa/verify") == sent + 1
    wait_all_have(sim, c.identity_id, new_id, verified=True)
    assert "acked=" in (r.header("quorumgate-replication") or ""), r.header("quorumgate-replication")


def test_a_verify_while_the_leader_stays_behind_is_refused_with_nothing_sent(quorumgate):
    """The same lagging leader does not catch up within routing.leader_wait: the call is not sent
    (its state there says nothing, and the leader lacks the identity's changes) and the client
    gets a retryable 503; nothing changed anywhere."""
    qg, lagging, c, new_id, new_secret = lagging_leader(quorumgate, "1s")
    sim = qg.sim
    sent = sim.control.count("POST", "/edge/client/v1/current-identity/mfa/verify")
    r = c.mfa_verify(totp_now(new_secret))
    assert r.status == 503, (r.status, r.body[:300])
    assert r.json()["error"]["code"] == "CLUSTER_NO_LEADER", r.body[:300]
    assert sim.control.count("POST", "/edge/client/v1/current-identity/mfa/verify") == sent
    sim.control.set_lag(lagging, 0)
    wait_all_have(sim, c.identity_id, new_id, verified=False)
