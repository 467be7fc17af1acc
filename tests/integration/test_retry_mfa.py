"""Issue 4: every failure mode the simulator can inject, on each MFA call
(create, verify, delete), ends in the right client answer and the right
cluster state -- no enrollment is ever created twice, a verify that committed
is never reported as failed, nothing is invented when the state is unknown.

Run: python3 -m pytest tests/integration/test_retry_mfa.py -q
"""

import pytest

from tests.ctrlsim.client import totp_now
from tests.integration.retry_support import (MFA, VERIFY, Background, Env, MetricDelta, attempts_header,
                                             enroll_started, enroll_verified, retry_config, shared_env)
from tests.support.procs import wait_until

# mode -> (the write commits on the injected attempt, attempts the client
# should be told about).  Committed ambiguous writes are reconciled from the
# state (1 attempt); uncommitted ones are reconciled, found absent and sent
# again (2 attempts); 503 CLUSTER_NO_LEADER is resent as is; delay is a slow
# success.
MODES = {
    "reset": (False, 2),
    "hang": (False, 2),
    "429": (False, 2),
    "500": (False, 2),                 # the simulator's alias of 500_before_commit
    "500_before_commit": (False, 2),
    "503": (False, 2),
    "500_after_commit": (True, 1),
    "429_after_commit": (True, 1),
    "reset_after_commit": (True, 1),
    "delay": (True, 1),
}
AMBIGUOUS = {"reset", "hang", "429", "500", "500_before_commit", "500_after_commit", "429_after_commit",
             "reset_after_commit"}
CALLS = ["create", "verify", "delete"]


def started(quorumgate, overrides, sim=None):
    e = Env(quorumgate(overrides, sim=sim))
    e.ctl.wait_leader()
    e.wait_qg_leader(e.leader())
    return e


@pytest.fixture(scope="module")
def shared(tmp_path_factory, certs):
    with shared_env(str(tmp_path_factory.mktemp("retry-mfa")), certs, retry_config()) as e:
        yield e


@pytest.fixture
def env(shared):
    """The module's quorumgate + simulator, with no injection left over and
    an empty request log (each test uses its own identity)."""
    shared.ctl.clear_injections()
    shared.ctl.reset_requests()
    return shared


def _request_id(r):
    return r.header("x-request-id")


@pytest.mark.parametrize("mode", sorted(MODES))
@pytest.mark.parametrize("call", CALLS)
def test_injected_failure_on_mfa_call(env, call, mode):
    committed, want_attempts = MODES[mode]
    c, d = env.login()
    ident = c.identity_id
    leader = env.leader()
    secret = None
    if call == "verify":
        secret = enroll_started(env, c, d)
    elif call == "delete":
        secret = enroll_verified(env, c, d)
    before = env.mfa_on_leader(ident)
    env.ctl.reset_requests()
    method, path = {"create": ("POST", MFA), "verify": ("POST", VERIFY), "delete": ("DELETE", MFA)}[call]
    env.ctl.inject(mode, path, method=method, node=leader, count=1, delay_ms=300 if mode == "delay" else 0)

    if call == "create":
        r = c.mfa_create()
    elif call == "verify":
        r = c.mfa_verify(totp_now(secret))
    else:
        r = c.mfa_delete(totp_now(secret))

    # --- the client's answer -------------------------------------------------
    want_status = 201 if call == "create" else 200
    assert r.status == want_status, (mode, call, r.status, r.body[:400])
    assert r.header("content-type", "").startswith("application/json"), r.header_list
    body = r.json()
    assert body["meta"] == {}, body                 # the success envelope, real or reconciled
    assert attempts_header(r) == want_attempts, (mode, call, r.header_list)

    # --- the cluster's state, read on the leader -------------------------------
    assert env.leader() == leader
    st = env.mfa_on_leader(ident)
    if call == "create":
        assert st is not None and st["isVerified"] is False, st
        assert body["data"]["id"] == st["id"], (body, st)
        assert body["data"]["_links"] == {"self": {"href": "./current-identity/mfa"}}, body
        # created exactly once, whatever happened on the way
        assert env.create_events(ident) == [st["id"]]
    elif call == "verify":
        assert body == {"data": {}, "meta": {}}, body
        assert st is not None and st["isVerified"] is True and st["id"] == before["id"], st
    else:
        assert body == {"data": {}, "meta": {}}, body
        assert st is None, st
        assert env.create_events(ident) == [before["id"]]

    # --- what the controllers saw ---------------------------------------------
    seen = env.seen(method, path)
    assert len(seen) == want_attempts, seen
    assert all(nid == leader for nid, _, _ in seen), seen       # pinned to the leader
    # the first one was the injected one (a delay is logged as a normal answer)
    assert seen[0][2] == (None if mode == "delay" else mode), seen
    reads = env.seen("GET", MFA)
    if mode in AMBIGUOUS:
        assert reads and all(nid == leader for nid, _, _ in reads), reads
    else:
        assert reads == [], reads                                # nothing ambiguous: no state read

    # --- every attempt visible -------------------------------------------------
    entry = env.access_entry(_request_id(r))
    assert entry["attempts"] == want_attempts, entry
    tries = [a for a in entry["upstream"] if not a.get("read")]
    assert len(tries) == want_attempts, entry
    assert all(a["controller"] == leader and a["ms"] >= 0 for a in entry["upstream"]), entry
    if mode in AMBIGUOUS:
        assert any(a.get("read") for a in entry["upstream"]), entry
    if committed and mode in AMBIGUOUS:
        assert entry.get("reconciled") == call, entry


@pytest.mark.parametrize("call", CALLS)
def test_reconciliation_metrics(env, call):
    """reconciled_total{call,result} and retry_outcomes_total{class,outcome}
    count what happened; retries_total{class,reason} counts resends."""
    c, d = env.login()
    leader = env.leader()
    secret = None
    if call == "verify":
        secret = enroll_started(env, c, d)
    elif call == "delete":
        secret = enroll_verified(env, c, d)
    method, path = {"create": ("POST", MFA), "verify": ("POST", VERIFY), "delete": ("DELETE", MFA)}[call]
    applied = MetricDelta(env, "quorumgate_reconciled_total", call=call, result="applied")
    outcome = MetricDelta(env, "quorumgate_retry_outcomes_total", **{"class": "mfa", "outcome": "reconciled_" + call})
    retries = MetricDelta(env, "quorumgate_retries_total", **{"class": "mfa"})
    # committed, answer lost -> reconciled as applied
    env.ctl.inject("500_after_commit", path, method=method, node=leader)
    r = {"create": lambda: c.mfa_create(), "verify": lambda: c.mfa_verify(totp_now(secret)),
         "delete": lambda: c.mfa_delete(totp_now(secret))}[call]()
    assert r.status in (200, 201), r.body
    assert applied.get() == 1
    assert outcome.get() == 1
    assert retries.get() == 0


def test_not_committed_create_is_resent_and_counted(env):
    c, _ = env.login()
    leader = env.leader()
    not_applied = MetricDelta(env, "quorumgate_reconciled_total", call="create", result="not_applied")
    retries = MetricDelta(env, "quorumgate_retries_total", **{"class": "mfa", "reason": "ambiguous"})
    success = MetricDelta(env, "quorumgate_retry_outcomes_total", **{"class": "mfa", "outcome": "retried_success"})
    env.ctl.inject("500_before_commit", MFA, method="POST", node=leader)
    r = c.mfa_create().expect(201)
    assert attempts_header(r) == 2
    assert not_applied.get() == 1
    assert retries.get() == 1
    assert success.get() == 1


def test_no_leader_503_is_resent_as_is(env):
    c, _ = env.login()
    leader = env.leader()
    retries = MetricDelta(env, "quorumgate_retries_total", **{"class": "mfa", "reason": "no_leader"})
    env.ctl.inject("503", MFA, method="POST", node=leader)
    r = c.mfa_create().expect(201)
    assert attempts_header(r) == 2
    assert retries.get() == 1
    assert env.seen("GET", MFA) == []      # nothing committed: no state read needed


def test_create_that_meets_409_after_an_ambiguous_first_attempt(env):
    """A resent create that meets 409 MFA_EXISTS after an ambiguous first
    attempt is reconciled like the first one: the state decides.  Here the
    first attempt gets a 429 (nothing committed), the state read finds no
    enrollment, and while the resend is on its way (held by a delay) the
    same identity's enrollment appears (0.6 s) -- the resend meets 409, quorumgate
    reads the state again and answers 201 with that enrollment's id (it
    cannot tell that enrollment from its own; both are the identity's only
    one)."""
    c, d = env.login()
    ident = c.identity_id
    leader = env.leader()
    env.ctl.inject("429", MFA, method="POST", node=leader, count=1)
    env.ctl.inject("delay", MFA, method="POST", node=leader, count=1, delay_ms=600)
    bg = Background(c.mfa_create)
    wait_until(lambda: [x for x in env.seen("GET", MFA) if x[1] == 404], timeout=5,
               what="the state read after the 429")
    other = env.direct(next(n for n in env.sim.node_ids if n != leader))
    other.access_token = d.access_token
    other.mfa_create().expect(201)               # the concurrent create (via a follower) wins
    r = bg.result(timeout=15)
    st = env.mfa_on_leader(ident)
    assert r.status == 201, r.body
    assert r.json()["data"]["id"] == st["id"]
    assert env.create_events(ident) == [st["id"]]
    posts = env.seen("POST", MFA)
    assert [p[1] for p in posts if p[0] == leader] == [429, 409], posts
    entry = env.access_entry(r.header("x-request-id"))
    assert entry["attempts"] == 2 and entry.get("reconciled") == "create", entry
    assert [a["status"] for a in entry["upstream"]] == [429, 404, 409, 200], entry


def test_existing_enrollment_is_not_reported_as_created(quorumgate):
    """An enrollment made before this request began is not this create's:
    after an ambiguous failure the answer is the 409 the create would get
    (retry.clock_skew 0 here, so 'before' is exact)."""
    env = started(quorumgate, retry_config(extra={"retry": {"clock_skew": "0s"}}))
    c, d = env.login()
    ident = c.identity_id
    d.mfa_create().expect(201)
    old = env.mfa_on_leader(ident)
    env.ctl.inject("reset", MFA, method="POST", node=env.leader())
    r = c.mfa_create()
    assert r.status == 409 and r.error_code == "MFA_EXISTS", r.body
    assert env.mfa_on_leader(ident)["id"] == old["id"]
    assert env.create_events(ident) == [old["id"]]


def test_state_unreadable_after_a_500_is_outcome_unknown(env):
    """The write's outcome cannot be learned after the controller's own 500
    (the raft dispatch's: it may have committed): the client gets 504 saying
    the outcome is unknown, naming the controller and its status -- never an
    invented success, never the 500 that reads as "it failed" (bench/soak.py,
    30-minute v1.7.2 run: three legacy verifies answered 500 UNHANDLED had
    committed)."""
    c, d = env.login()
    secret = enroll_started(env, c, d)
    leader = env.leader()
    failed = MetricDelta(env, "quorumgate_reconciled_total", call="verify", result="failed")
    env.ctl.inject("500_after_commit", VERIFY, method="POST", node=leader)
    env.ctl.inject("500", MFA, method="GET", node=leader, count=100)   # every state read fails
    r = c.mfa_verify(totp_now(secret))
    env.ctl.clear_injections()
    assert r.status == 504 and r.error_code == "PROXY_UPSTREAM_TIMEOUT", r.body
    msg = r.json()["error"]["message"]
    assert leader in msg and "500" in msg and "unknown" in msg, msg
    assert attempts_header(r) == 1
    assert failed.get() == 1
    # it did commit (the client will find out by reading): nothing else was sent
    assert env.mfa_on_leader(c.identity_id)["isVerified"] is True
    assert len(env.seen("POST", VERIFY)) == 1


def test_state_unreadable_after_a_lost_answer_is_outcome_unknown(env):
    """The verify commits but its connection breaks before the answer
    (written, no answer) and no state read gets through: whether it was
    applied is unknown, so the answer is 504 saying so -- never a 502 that
    tells the client it failed (bench/soak.py, issue 18: op 2166 of a CI
    soak, a committed verify answered 502 PROXY_UPSTREAM_ERROR)."""
    c, d = env.login()
    secret = enroll_started(env, c, d)
    leader = env.leader()
    failed = MetricDelta(env, "quorumgate_reconciled_total", call="verify", result="failed")
    env.ctl.inject("reset_after_commit", VERIFY, method="POST", node=leader)
    env.ctl.inject("500", MFA, method="GET", node=leader, count=100)   # every state read fails
    r = c.mfa_verify(totp_now(secret))
    env.ctl.clear_injections()
    assert r.status == 504 and r.error_code == "PROXY_UPSTREAM_TIMEOUT", r.body
    msg = r.json()["error"]["message"]
    assert leader in msg and "unknown" in msg, msg
    assert r.header("quorumgate-controller") == leader, r.header_list
    assert attempts_header(r) == 1
    assert failed.get() == 1
    entry = env.access_entry(_request_id(r))
    reads = [a for a in entry["upstream"] if a.get("read")]
    assert reads and all(a["outcome"] == "state_unreadable" for a in reads), entry
    # it did commit, and nothing was sent twice
    assert env.mfa_on_leader(c.identity_id)["isVerified"] is True
    assert len(env.seen("POST", VERIFY)) == 1


def test_wrong_code_is_not_retried(env):
    """A plain 400 MFA_INVALID_TOKEN is an answer, not a failure."""
    c, d = env.login()
    secret = enroll_started(env, c, d)
    env.ctl.reset_requests()
    bad = "000000" if totp_now(secret) != "000000" else "111111"
    r = c.mfa_verify(bad)
    assert r.status == 400 and r.error_code == "MFA_INVALID_TOKEN"
    assert attempts_header(r) == 1
    assert len(env.seen("POST", VERIFY)) == 1
    assert env.seen("GET", MFA) == []


def test_state_read_failing_once_is_read_again(env):
    """A state read that fails transiently is read again within the
    deadline: a verify that committed is not reported as failed because the
    first read hit a hiccup."""
    c, d = env.login()
    secret = enroll_started(env, c, d)
    leader = env.leader()
    env.ctl.reset_requests()
    env.ctl.inject("500_after_commit", VERIFY, method="POST", node=leader)
    env.ctl.inject("500", MFA, method="GET", node=leader, count=1)
    r = c.mfa_verify(totp_now(secret))
    assert r.status == 200 and r.json() == {"data": {}, "meta": {}}, r.body
    assert attempts_header(r) == 1
    assert [s for _, s, _ in env.seen("GET", MFA)] == [500, 200]
    assert len(env.seen("POST", VERIFY)) == 1
    entry = env.access_entry(r.header("x-request-id"))
    assert [(a["status"], a.get("read", False)) for a in entry["upstream"]] == \
        [(500, False), (500, True), (200, True)], entry
    assert entry.get("reconciled") == "verify", entry


@pytest.mark.parametrize("stage", ["attempt", "state_read"])
def test_client_leaving_mid_retry(env, stage):
    """The client gives up while quorumgate waits on an attempt or a state
    read.  quorumgate (which reads nothing more from a connection while its
    request is handled, so does not see the close) finishes the call; whatever it concluded, the enrollment exists at
    most once, the client's own retry gets the cluster's consistent answer,
    and nothing touches the freed request (the sanitizer build checks)."""
    c, d = env.login()
    ident = c.identity_id
    leader = env.leader()
    if stage == "attempt":
        env.ctl.inject("hang", MFA, method="POST", node=leader)
    else:
        env.ctl.inject("500_before_commit", MFA, method="POST", node=leader)
        env.ctl.inject("hang", MFA, method="GET", node=leader)
    rid = "leaver-%s-%s" % (stage, ident[:8])
    c.timeout = 0.4
    with pytest.raises(OSError):
        c.request("POST", MFA, headers={"x-request-id": rid})
    c.timeout = 30
    entry = env.access_entry(rid, timeout=10)     # logged when quorumgate is done with it
    st = env.mfa_on_leader(ident)
    r = c.mfa_create()                             # the client tries again itself
    if st is None:
        assert r.status == 201, (entry, r.body)
    else:
        assert entry["status"] == 201, entry       # it did create: that answer was just lost
        assert r.status == 409 and r.error_code == "MFA_EXISTS", r.body
    st = env.mfa_on_leader(ident)
    assert env.create_events(ident) == [st["id"]]


def test_management_api_mfa_is_reconciled_on_its_own_api(env):
    """The same routes under /edge/management/v1: the state is read there."""
    c, _ = env.login()
    ident = c.identity_id
    leader = env.leader()
    path = "/edge/management/v1/current-identity/mfa"
    env.ctl.inject("reset_after_commit", path, method="POST", node=leader)
    r = c.mfa_create(api="management")
    assert r.status == 201, r.body
    st = env.mfa_on_leader(ident)
    assert r.json()["data"]["id"] == st["id"]
    assert [(n, s) for n, s, _ in env.seen("GET", path)] == [(leader, 200)]
    assert env.seen("GET", MFA) == []
    assert env.create_events(ident) == [st["id"]]


def test_a_write_whose_first_attempt_was_lost_is_not_answered_no_leader(env):
    """bench/soak.py, 30-minute v1.7.2 run: a verify sent to the leader during a leadership
    transfer was not answered; the state read on the next leader did not show it yet, so it was
    to be sent again, but no leader came before the deadline, and the client got 503
    CLUSTER_NO_LEADER ("nothing happened, retry") -- the verify committed 8 s later.  An earlier
    attempt with an unknown outcome makes the answer 504, outcome unknown.  Here the first try
    hangs, and every resend meets a controller without a leader (503 CLUSTER_NO_LEADER)."""
    c, d = env.login()
    secret = enroll_started(env, c, d)
    leader = env.leader()
    env.ctl.inject("hang", VERIFY, method="POST", node=leader)
    env.ctl.inject("503", VERIFY, method="POST", count=1000)
    try:
        r = c.mfa_verify(totp_now(secret))
    finally:
        env.ctl.clear_injections()
    assert r.status == 504 and r.error_code == "PROXY_UPSTREAM_TIMEOUT", (r.status, r.body)
    assert "unknown" in r.json()["error"]["message"], r.body


def test_a_resend_answered_404_after_a_lost_first_try_is_outcome_unknown(env):
    """bench/soak.py, 30-minute v1.7.2 run (op 61896): a verify's first try was not answered; the
    state read did not show it applied, so it was sent again; meanwhile the first try committed,
    the resend was answered 404 (nothing left to verify), and the state read after that failed.
    The client got the 404 -- a verify that committed, answered as a failure.  With an earlier
    attempt whose outcome is unknown, an answer that cannot be checked is 504, outcome unknown.
    Here the first try hangs, the resend is held 800 ms while the same verify commits straight on
    the leader, and every state read after that fails."""
    c, d = env.login()
    secret = enroll_started(env, c, d)
    leader = env.leader()
    env.ctl.reset_requests()
    env.ctl.inject("hang", VERIFY, method="POST", node=leader)
    env.ctl.inject("delay", VERIFY, method="POST", node=leader, delay_ms=800)
    bg = Background(c.mfa_verify, totp_now(secret))
    try:
        wait_until(lambda: len(env.seen("POST", VERIFY, node=leader)) >= 1 and
                   env.ctl.injections()[1]["hits"] == 1, timeout=10, what="the resend, held")
        env.ctl.inject("500", MFA, method="GET", node=leader, count=1000)
        d.mfa_verify(totp_now(secret)).expect(200)        # the first try's entry commits
        r = bg.result(timeout=30)
    finally:
        env.ctl.clear_injections()
    assert r.status == 504 and r.error_code == "PROXY_UPSTREAM_TIMEOUT", (r.status, r.body)
    assert "unknown" in r.json()["error"]["message"], r.body
    assert env.mfa_on_leader(c.identity_id)["isVerified"] is True
