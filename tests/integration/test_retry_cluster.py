"""Issue 4: retries across cluster events -- a leader killed between create
and verify and during a call, an isolated leader, elections shorter and
longer than the deadline.  Answers and state are read on the leader.

Run: python3 -m pytest tests/integration/test_retry_cluster.py -q
"""
import concurrent.futures
import json
import time
import urllib.request

import pytest

from tests.ctrlsim.client import ZitiClient, totp_now
from tests.integration.retry_support import (MFA, VERIFY, Background, Env, MetricDelta, attempts_header,
                                             enroll_started, enroll_verified, retry_config)
from tests.support.procs import wait_until


def started(quorumgate, overrides):
    e = Env(quorumgate(overrides))
    e.ctl.wait_leader()
    e.wait_qg_leader(e.leader())
    return e


@pytest.fixture
def env(quorumgate):
    return started(quorumgate, retry_config())


def injection_hit(env, mode, path, method):
    """The injection (mode, path, method) has been taken by a request."""
    return any(i["mode"] == mode and i["path"] == path and i["method"] == method and i["hits"] > 0
               for i in env.ctl.injections())


def test_leader_killed_between_create_and_verify(env):
    c, _ = env.login()
    ident = c.identity_id
    old = env.leader()
    r = c.mfa_create().expect(201)
    mfa_id = r.json()["data"]["id"]
    secret = c.mfa_secret()                           # leader-pinned read through quorumgate
    env.ctl.kill(old)
    t0 = time.monotonic()
    r = c.mfa_verify(totp_now(secret))
    took = time.monotonic() - t0
    assert r.status == 200 and r.json() == {"data": {}, "meta": {}}, r.body
    new = env.ctl.wait_leader(not_in=(old,))
    assert r.header("quorumgate-controller") == new
    assert took < 6.0, took                            # within the MFA deadline
    st = env.ctl.mfa_on(new, ident)
    assert st == {"id": mfa_id, "isVerified": True}, st
    assert env.create_events(ident, nid=new) == [mfa_id]
    # every verify the cluster saw went to a leader: none to the dead one succeeded
    verifies = env.seen("POST", VERIFY)
    assert [v for v in verifies if v[1] == 200] == [(new, 200, None)], verifies


@pytest.mark.parametrize("call", ["create", "verify"])
def test_leader_killed_during_call_before_commit(env, call):
    """The call is held (delay) on the leader, which dies before it commits:
    the connection breaks, quorumgate cannot know, reads the state on the new
    leader, finds nothing done and sends the call there."""
    c, d = env.login()
    ident = c.identity_id
    old = env.leader()
    secret = enroll_started(env, c, d) if call == "verify" else None
    path = MFA if call == "create" else VERIFY
    env.ctl.inject("delay", path, method="POST", node=old, delay_ms=3000)
    bg = Background(c.mfa_create if call == "create" else (lambda: c.mfa_verify(totp_now(secret))))
    wait_until(lambda: injection_hit(env, "delay", path, "POST"), timeout=5, what="the call on the leader")
    env.ctl.kill(old)
    r = bg.result(timeout=20)
    new = env.ctl.wait_leader(not_in=(old,))
    st = env.ctl.mfa_on(new, ident)
    if call == "create":
        assert r.status == 201, r.body
        assert st is not None and r.json()["data"]["id"] == st["id"] and st["isVerified"] is False
        assert env.create_events(ident, nid=new) == [st["id"]]
    else:
        assert r.status == 200 and r.json() == {"data": {}, "meta": {}}, r.body
        assert st is not None and st["isVerified"] is True
    assert attempts_header(r) == 2
    assert r.header("quorumgate-controller") == new
    entry = env.access_entry(r.header("x-request-id"))
    assert entry["upstream"][0]["controller"] == old, entry
    assert any(a.get("read") and a["controller"] == new and a["status"] in (200, 404)
               for a in entry["upstream"]), entry


@pytest.mark.parametrize("call", ["create", "verify"])
def test_leader_killed_after_commit_before_the_state_read(env, call):
    """The call commits but its answer is lost (reset), and the leader dies
    while quorumgate reads the state: the read is done again on the new
    leader, which has the change -- a committed verify is not reported as
    failed, a committed create is not repeated."""
    c, d = env.login()
    ident = c.identity_id
    old = env.leader()
    secret = enroll_started(env, c, d) if call == "verify" else None
    before = env.ctl.mfa_on(old, ident)
    path = MFA if call == "create" else VERIFY
    env.ctl.inject("reset_after_commit", path, method="POST", node=old)
    env.ctl.inject("hang", MFA, method="GET", node=old)
    bg = Background(c.mfa_create if call == "create" else (lambda: c.mfa_verify(totp_now(secret))))
    wait_until(lambda: injection_hit(env, "hang", MFA, "GET"), timeout=5, what="the state read on the leader")
    env.ctl.kill(old)
    r = bg.result(timeout=20)
    new = env.ctl.wait_leader(not_in=(old,))
    st = env.ctl.mfa_on(new, ident)
    assert attempts_header(r) == 1, r.header_list       # never resent
    if call == "create":
        assert r.status == 201, r.body
        assert r.json()["data"]["id"] == st["id"]
        assert env.create_events(ident, nid=new) == [st["id"]]
    else:
        assert r.status == 200, r.body
        assert st == {"id": before["id"], "isVerified": True}
    assert len(env.seen("POST", path)) == 1
    entry = env.access_entry(r.header("x-request-id"))
    assert entry.get("reconciled") == call, entry


@pytest.mark.parametrize("cause", ["leadership_lost", "enqueue_timeout"])
def test_isolated_leader_create(quorumgate, sim_factory, cause):
    """The leader is cut off from the others: its raft write cannot commit.
    It answers 500 UNHANDLED "leadership lost while committing log" when it
    steps down first, or "timed out enqueuing operation" when the apply
    timeout comes first (raft.ErrEnqueueTimeout, unmapped in v1.5.4) --
    perhaps again and again until it steps down.  quorumgate reads the
    state, finds nothing, and creates on the new leader -- once."""
    args = [] if cause == "leadership_lost" else ["--election-timeout-ms", "1500", "--apply-timeout-ms", "300"]
    sim = sim_factory(tls=True, args=args)
    e = Env(quorumgate(retry_config(mfa={"max_attempts": 10, "deadline": "8s"}), sim=sim))
    old = e.ctl.wait_leader()
    e.wait_qg_leader(old)
    c, _ = e.login()
    ident = c.identity_id
    e.ctl.isolate(old)
    r = c.mfa_create()
    new = e.ctl.wait_leader(not_in=(old,))
    assert r.status == 201, r.body
    st = e.ctl.mfa_on(new, ident)
    assert st is not None and r.json()["data"]["id"] == st["id"]
    assert e.create_events(ident, nid=new) == [st["id"]]
    assert r.header("quorumgate-controller") == new
    posts = e.seen("POST", MFA)
    assert posts[0][:2] == (old, 500), posts
    # then: the same again, or 503 once it stepped down; then the new leader
    assert all(p[0] == old and p[1] in (500, 503) for p in posts[:-1]), posts
    assert posts[-1] == (new, 201, None), posts
    assert attempts_header(r) == len(posts)
    if cause == "enqueue_timeout":
        assert len([p for p in posts if p[0] == old]) >= 2, posts     # it kept timing out
    # the old leader, healed, catches up to the same single enrollment
    e.ctl.heal()
    e.ctl.wait_applied()
    assert e.ctl.mfa_on(old, ident) == {"id": st["id"], "isVerified": False}


def leaderless(env, delay_ms):
    """Start an election that takes delay_ms and wait until quorumgate knows
    there is no leader."""
    env.ctl.config(electionDelayMs=delay_ms)
    env.ctl.reset_requests()
    env.ctl.force_election()
    env.wait_qg_leader("")


def test_election_within_the_deadline_is_ridden_out(env):
    """No leader for about a second: the MFA call waits for the new leader
    (it is not failed, and nothing is sent to a leaderless cluster)."""
    c, _ = env.login()
    leaderless(env, 1000)
    t0 = time.monotonic()
    r = c.mfa_create()
    took = time.monotonic() - t0
    assert r.status == 201, r.body
    new = env.ctl.wait_leader()
    assert r.header("quorumgate-controller") == new
    assert 0.3 < took < 6.0, took
    st = env.ctl.mfa_on(new, c.identity_id)
    assert r.json()["data"]["id"] == st["id"]
    posts = env.seen("POST", MFA)
    assert posts == [(new, 201, None)], posts


def test_election_longer_than_the_deadline_ends_in_a_clean_503(quorumgate):
    """No leader for longer than the MFA deadline (2 s): a 503
    CLUSTER_NO_LEADER envelope at the deadline -- not a hang, not a write
    sent to a leaderless cluster."""
    e = started(quorumgate, retry_config(mfa={"deadline": "2s", "per_try_timeout": "1s"}))
    c, _ = e.login()
    leaderless(e, 5000)
    t0 = time.monotonic()
    r = c.mfa_create()
    took = time.monotonic() - t0
    assert r.status == 503, r.body
    assert r.header("content-type", "").startswith("application/json"), r.header_list
    err = r.json()["error"]
    assert err["code"] == "CLUSTER_NO_LEADER", err
    assert err["requestId"] == r.header("x-request-id"), (err, r.header_list)
    assert 1.5 <= took < 3.5, took
    assert e.seen("POST", MFA) == []                  # nothing was sent
    # when the election ends there is still no enrollment
    e.ctl.config(electionDelayMs=100)
    new = e.ctl.wait_leader(timeout=10)
    assert e.ctl.mfa_on(new, c.identity_id) is None


def test_leaderless_followers_503_until_the_deadline(quorumgate):
    """quorumgate believes in a leader that answers 503 CLUSTER_NO_LEADER on
    every call (it lost leadership and nobody else won): the retries stop at
    the deadline with the controller's own 503, within the attempt limit."""
    e = started(quorumgate, retry_config(mfa={"deadline": "2s", "max_attempts": 4}))
    c, _ = e.login()
    leader = e.leader()
    e.ctl.reset_requests()
    e.ctl.inject("503", MFA, method="POST", node=leader, count=100)
    t0 = time.monotonic()
    r = c.mfa_create()
    took = time.monotonic() - t0
    e.ctl.clear_injections()
    assert r.status == 503 and r.error_code == "CLUSTER_NO_LEADER", r.body
    n = len(e.seen("POST", MFA))
    assert attempts_header(r) == n
    assert 2 <= n <= 4, n
    assert took < 3.0, took
    assert e.ctl.mfa_on(leader, c.identity_id) is None


def test_election_noticed_late_ends_in_the_controllers_503(quorumgate):
    """The same long election, but the call reaches the old leader before
    quorumgate's probes notice: that controller's own 503 envelope goes back
    at the deadline (it committed nothing), not a hang."""
    e = started(quorumgate, retry_config(mfa={"deadline": "2s", "per_try_timeout": "1s"},
                                         extra={"health": {"interval": "5s"}}))    # slow to notice
    c, _ = e.login()
    old = e.leader()
    failed = MetricDelta(e, "quorumgate_retry_outcomes_total", **{"class": "mfa", "outcome": "retried_failure"})
    retries = MetricDelta(e, "quorumgate_retries_total", **{"class": "mfa", "reason": "no_leader"})
    e.ctl.config(electionDelayMs=5000)
    e.ctl.reset_requests()
    e.ctl.force_election()
    t0 = time.monotonic()
    r = c.mfa_create()                                 # quorumgate still names the old leader
    took = time.monotonic() - t0
    assert r.status == 503 and r.error_code == "CLUSTER_NO_LEADER", r.body
    assert r.header("content-type", "").startswith("application/json"), r.header_list
    assert r.json()["error"]["requestId"], r.body
    assert took < 3.5, took
    posts = e.seen("POST", MFA)
    assert posts and all(p == (old, 503, None) for p in posts), posts
    assert len(posts) == attempts_header(r)
    assert retries.get() == 1                          # resent once: then no leader to send it to
    assert failed.get() == 1                           # and counted as a retry that failed
    e.ctl.config(electionDelayMs=100)
    new = e.ctl.wait_leader(timeout=10)
    assert e.ctl.mfa_on(new, c.identity_id) is None
    assert e.ctl.mfa_on(old, c.identity_id) is None


def test_leader_wait_timer_does_not_send_the_call_twice(quorumgate):
    """A call that waited for a leader is sent when the new leader appears;
    the timer bounding that wait (routing.leader_wait) must not send it a
    second time while the first is still in flight (a second create, or a
    use-after-free when the client leaves)."""
    e = started(quorumgate, retry_config(mfa={"per_try_timeout": "3s"}, leader_wait="1s"))
    c, _ = e.login()
    leaderless(e, 300)
    e.ctl.inject("delay", MFA, method="POST", count=1, delay_ms=1500)   # in flight across leader_wait
    r = c.mfa_create()
    assert r.status == 201, r.body
    new = e.ctl.wait_leader()
    st = e.ctl.mfa_on(new, c.identity_id)
    assert r.json()["data"]["id"] == st["id"]
    assert e.seen("POST", MFA) == [(new, 201, None)], e.seen("POST", MFA)
    assert attempts_header(r) == 1
    assert e.create_events(c.identity_id, nid=new) == [st["id"]]


@pytest.mark.parametrize("forward_errors,status", [("v1.5.4", 500), ("head", 429)])
def test_forward_to_a_frozen_leader(quorumgate, sim_factory, forward_errors, status):
    """The MFA create reaches a follower whose leader is frozen: the forward
    times out -- 500 UNHANDLED in v1.5.4, 429 SERVER_TOO_MANY_REQUESTS from
    v1.8 -- and either may hide a commit.  quorumgate reads the state, finds
    nothing, and creates once the cluster has a leader again.  (health.path
    /version answers 200 on every controller, so quorumgate's view keeps
    naming one fixed controller: the test makes another one the raft leader,
    so the call is forwarded for sure.)"""
    sim = sim_factory(tls=True, args=["--forward-errors", forward_errors])
    e = Env(quorumgate(retry_config(mfa={"per_try_timeout": "3s", "deadline": "8s"},
                                    extra={"health": {"path": "/version"}}), sim=sim))

    def view():
        with urllib.request.urlopen(e.qg.admin_url + "/status", timeout=2) as r:
            st = json.loads(r.read())
        return st["leader"] if all(n["last_status"] == 200 for n in st["controllers"]) else None
    pinned = wait_until(view, timeout=10, what="quorumgate's view of the cluster")
    frozen = next(n for n in sim.node_ids if n != pinned)
    e.ctl.transfer(frozen)
    c, _ = e.login()
    ident = c.identity_id
    # Nobody may notice the frozen leader before the create is on its way to
    # it: with the suite's 300 ms election timeout, a create that took longer
    # than 400 ms to reach the follower (ASan, load 12) found a new leader
    # already and was answered 201 at once.  Elections resume as soon as the
    # follower's forward waits on the frozen leader.
    et = e.ctl.state()["config"]["electionTimeoutMs"]
    e.ctl.config(electionTimeoutMs=600000)
    e.ctl.pause(frozen)
    e.ctl.reset_requests()
    with concurrent.futures.ThreadPoolExecutor(1) as ex:
        fut = ex.submit(c.mfa_create)
        e.ctl.wait_for(lambda s: s["forwardsWaiting"] > 0 or fut.done(), timeout=20,
                       what="the create forwarded to the frozen leader")
        e.ctl.config(electionTimeoutMs=et)
        r = fut.result(timeout=30)
    e.ctl.resume(frozen)
    assert r.status == 201, r.body
    new = e.ctl.wait_leader()
    st = e.ctl.mfa_on(new, ident)
    assert st is not None and r.json()["data"]["id"] == st["id"], (r.body, st)
    assert e.create_events(ident, nid=new) == [st["id"]]
    posts = e.seen("POST", MFA)
    assert [(n, s) for n, s, _ in posts] == [(pinned, status), (pinned, 201)], posts
    assert [(n, s) for n, s, _ in e.seen("GET", MFA)] == [(pinned, 404)]
    entry = e.access_entry(r.header("x-request-id"))
    assert entry["attempts"] == 2 and entry.get("reconciled") is None, entry


def test_unreadable_state_after_a_leader_change_is_outcome_unknown(env):
    """The create's connection breaks on the old leader (nothing committed,
    but quorumgate cannot know), the old leader dies while its state is
    read, and the new leader cannot show its state either: the client is
    told the outcome is unknown (504 naming the controller that had the
    call), not an invented answer, not a 502 that says it failed, and not a
    failure attributed to the controller that was only read."""
    c, _ = env.login()
    old = env.leader()
    env.ctl.inject("reset", MFA, method="POST", node=old)
    env.ctl.inject("hang", MFA, method="GET", node=old)
    bg = Background(c.mfa_create)
    wait_until(lambda: injection_hit(env, "hang", MFA, "GET"), timeout=5, what="the state read on the leader")
    env.ctl.inject("500", MFA, method="GET", count=1000)        # no state readable anywhere
    env.ctl.kill(old)
    r = bg.result(timeout=20)
    env.ctl.clear_injections()
    assert r.status == 504 and r.error_code == "PROXY_UPSTREAM_TIMEOUT", r.body
    assert old in r.json()["error"]["message"], r.body
    assert r.header("quorumgate-controller") == old, r.header_list
    assert attempts_header(r) == 1
    entry = env.access_entry(r.header("x-request-id"))
    assert entry["controller"] == old, entry
    reads = [a for a in entry["upstream"] if a.get("read")]
    new = env.ctl.wait_leader(not_in=(old,))
    assert any(a["controller"] == new and a["status"] == 500 for a in reads), entry
    assert env.ctl.mfa_on(new, c.identity_id) is None


def test_legacy_verify_committed_then_home_killed_is_outcome_unknown(env):
    """bench/soak.py (issue 18), op 2166: a legacy session's verify commits
    on its home (the leader), the home is killed before the answer leaves,
    and the session's state can be read nowhere else -- every read at the
    dead home fails until the reads are spent.  The verify was applied (the
    other controllers have it), so the answer must not say it failed: 504,
    outcome unknown, naming the home (it was 502 PROXY_UPSTREAM_ERROR)."""
    name, pw = env.new_identity("legacy")
    c = ZitiClient(env.qg.url, timeout=30)
    home = c.legacy_login(name, pw).expect(200).header("quorumgate-controller")
    assert home == env.leader()
    c.mfa_create().expect(201)
    secret = c.mfa_secret()
    env.ctl.inject("reset_after_commit", VERIFY, method="POST", node=home)
    env.ctl.inject("hang", MFA, method="GET", node=home)
    bg = Background(c.mfa_verify, totp_now(secret))
    wait_until(lambda: injection_hit(env, "hang", MFA, "GET"), timeout=5, what="the state read on the home")
    env.ctl.kill(home)
    r = bg.result(timeout=20)
    env.ctl.clear_injections()
    assert r.status == 504 and r.error_code == "PROXY_UPSTREAM_TIMEOUT", r.body
    assert home in r.json()["error"]["message"], r.body
    assert r.header("quorumgate-controller") == home, r.header_list
    assert attempts_header(r) == 1
    entry = env.access_entry(r.header("x-request-id"))
    reads = [a for a in entry["upstream"] if a.get("read")]
    assert reads and all(a["controller"] == home and a["outcome"] == "state_unreadable" for a in reads), entry
    new = env.ctl.wait_leader(not_in=(home,))
    assert env.ctl.mfa_on(new, c.identity_id)["isVerified"] is True
    assert [(n, s) for n, s, _ in env.seen("POST", VERIFY)] == [(home, 0)]


def test_new_leader_still_applying_does_not_turn_a_create_into_409(quorumgate):
    """The create commits on the old leader, its answer is lost and the old
    leader dies; the new leader has the entry (raft) but applies it 1.5 s
    late, so its state still shows no enrollment while a resent create meets
    409 MFA_EXISTS from the raft apply.  That 409 proves the enrollment
    exists: quorumgate keeps reading instead of resending, and answers 201
    with the id once the state shows it.  (Resends back off from 50 ms up to
    500 ms: the attempts would all be spent in under 1.5 s.)"""
    env = started(quorumgate, retry_config(mfa={"backoff_base": "50ms", "backoff_cap": "500ms"}))
    c, _ = env.login()
    ident = c.identity_id
    old = env.leader()
    env.ctl.call("POST", "/lag", {n: 1500 for n in env.sim.node_ids if n != old})
    env.ctl.inject("reset_after_commit", MFA, method="POST", node=old)
    env.ctl.inject("hang", MFA, method="GET", node=old)
    bg = Background(c.mfa_create)
    wait_until(lambda: injection_hit(env, "hang", MFA, "GET"), timeout=5, what="the state read on the leader")
    env.ctl.kill(old)
    r = bg.result(timeout=20)
    new = env.ctl.wait_leader(not_in=(old,))
    env.ctl.wait_applied(nodes=[new])
    st = env.ctl.mfa_on(new, ident)
    assert r.status == 201, r.body
    assert r.json()["data"]["id"] == st["id"]
    assert env.create_events(ident, nid=new) == [st["id"]]
    # no resend storm: at most one create met the 409
    assert len([p for p in env.seen("POST", MFA) if p[1] == 409]) <= 1, env.seen("POST", MFA)


def test_new_leader_still_applying_a_committed_delete(quorumgate):
    """The delete commits on the old leader, its answer is lost and the old
    leader dies; the new leader applies 1.5 s late: a resent delete meets
    404 from the raft apply while its state still shows the enrollment.  The
    client is told the delete happened (200), not 404."""
    env = started(quorumgate, retry_config(mfa={"backoff_base": "50ms", "backoff_cap": "500ms"}))
    c, d = env.login()
    ident = c.identity_id
    secret = enroll_verified(env, c, d)
    old = env.leader()
    env.ctl.wait_applied()
    env.ctl.call("POST", "/lag", {n: 1500 for n in env.sim.node_ids if n != old})
    env.ctl.inject("reset_after_commit", MFA, method="DELETE", node=old)
    env.ctl.inject("hang", MFA, method="GET", node=old)
    bg = Background(lambda: c.mfa_delete(totp_now(secret)))
    wait_until(lambda: injection_hit(env, "hang", MFA, "GET"), timeout=5, what="the state read on the leader")
    env.ctl.kill(old)
    r = bg.result(timeout=20)
    new = env.ctl.wait_leader(not_in=(old,))
    env.ctl.wait_applied(nodes=[new])
    assert r.status == 200 and r.json() == {"data": {}, "meta": {}}, r.body
    assert env.ctl.mfa_on(new, ident) is None
