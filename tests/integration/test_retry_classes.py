"""Issue 4: retry policy by route class and method, outside the MFA calls.
Idempotent requests are resent (on another controller when balanced) after
sent failures; non-idempotent ones only when nothing was sent or the cluster
said nothing was committed; a write that may have committed is answered as
it is.  Every attempt is visible (header, access log, metrics).

Run: python3 -m pytest tests/integration/test_retry_classes.py -q
"""
import pytest

from tests.integration.retry_support import Env, MetricDelta, attempts_header, retry_config, shared_env

READ = "/edge/client/v1/current-identity"
WRITE = "/edge/management/v1/services"          # the simulator answers 404 NOT_FOUND: a plain answer

FAST = {"per_try_timeout": "700ms", "deadline": "5s", "backoff_base": "10ms", "backoff_cap": "50ms"}
POLICIES = {
    "read": dict(FAST, on=["never_sent", "sent_failed", "no_leader", "too_many"], max_attempts=3),
    "write": dict(FAST, on=["never_sent", "sent_failed", "no_leader", "too_many"], max_attempts=3),
}


def started(quorumgate, extra=None):
    cfg = retry_config(read=POLICIES["read"], write=POLICIES["write"], extra=extra)
    e = Env(quorumgate(cfg))
    e.ctl.wait_leader()
    e.wait_qg_leader(e.leader())
    return e


@pytest.fixture(scope="module")
def shared(tmp_path_factory, certs):
    cfg = retry_config(read=POLICIES["read"], write=POLICIES["write"])
    with shared_env(str(tmp_path_factory.mktemp("retry-classes")), certs, cfg) as e:
        yield e


@pytest.fixture
def env(shared):
    shared.ctl.clear_injections()
    shared.ctl.reset_requests()
    return shared


def client(env):
    c, _ = env.login()
    return c


@pytest.mark.parametrize("mode", ["reset", "hang", "429", "503", "500_after_commit"])
def test_read_resent_on_another_controller(env, mode):
    c = client(env)
    reason = {"reset": "sent_failed", "hang": "sent_failed", "429": "too_many", "503": "no_leader",
              "500_after_commit": "sent_failed"}[mode]
    retries = MetricDelta(env, "quorumgate_retries_total", **{"class": "read", "reason": reason})
    success = MetricDelta(env, "quorumgate_retry_outcomes_total", **{"class": "read", "outcome": "retried_success"})
    env.ctl.reset_requests()
    env.ctl.inject(mode, READ, method="GET", count=1)
    r = c.current_identity()
    assert r.status == 200, r.body
    assert r.json()["data"]["id"] == c.identity_id
    assert attempts_header(r) == 2
    seen = env.seen("GET", READ)
    assert len(seen) == 2, seen
    assert seen[0][2] == mode and seen[1] == (seen[1][0], 200, None), seen
    first = seen[0][0]
    assert seen[1][0] != first, seen                  # another controller
    entry = env.access_entry(r.header("x-request-id"))
    assert [a["controller"] for a in entry["upstream"]][0] == first, entry
    assert entry["upstream"][0]["controller"] != entry["upstream"][1]["controller"], entry
    assert retries.get() == 1
    assert success.get() == 1


@pytest.mark.parametrize("mode,status,code", [
    ("reset", 502, "PROXY_UPSTREAM_ERROR"),
    ("hang", 504, "PROXY_UPSTREAM_TIMEOUT"),
    ("429", 429, "SERVER_TOO_MANY_REQUESTS"),          # may hide a commit
    ("500_after_commit", 500, "UNHANDLED"),            # "timed out": may have committed
    ("reset_after_commit", 502, "PROXY_UPSTREAM_ERROR"),
])
def test_post_that_may_have_committed_is_not_resent(env, mode, status, code):
    c = client(env)
    not_retryable = MetricDelta(env, "quorumgate_retry_outcomes_total",
                                **{"class": "write", "outcome": "not_retryable"})
    retries = MetricDelta(env, "quorumgate_retries_total", **{"class": "write"})
    # a first POST leaves a keep-alive connection to the leader in the pool:
    # a write must not be resent on a fresh one behind our back either
    c.request("POST", WRITE, body={"name": "warm"}).expect(404)
    env.ctl.reset_requests()
    env.ctl.inject(mode, WRITE, method="POST", count=1)
    r = c.request("POST", WRITE, body={"name": "svc"})
    assert r.status == status and r.error_code == code, (r.status, r.body)
    assert r.header("content-type", "").startswith("application/json")
    assert attempts_header(r) == 1
    assert len(env.seen("POST", WRITE)) == 1
    assert not_retryable.get() == 1
    assert retries.get() == 0


def test_post_refused_by_a_leaderless_controller_is_resent(env):
    c = client(env)
    env.ctl.reset_requests()
    env.ctl.inject("503", WRITE, method="POST", count=1)
    r = c.request("POST", WRITE, body={"name": "svc"})
    assert r.status == 404 and r.error_code == "NOT_FOUND", r.body      # the simulator's real answer
    assert attempts_header(r) == 2
    assert [s for _, s, _ in env.seen("POST", WRITE)] == [503, 404]


@pytest.mark.parametrize("method", ["PUT", "DELETE"])
def test_idempotent_write_resent_after_a_sent_failure(env, method):
    c = client(env)
    c.request(method, WRITE + "/x", body={"name": "warm"} if method == "PUT" else None).expect(404)
    env.ctl.reset_requests()
    env.ctl.inject("reset", WRITE + "/x", method=method, count=1)
    r = c.request(method, WRITE + "/x", body={"name": "svc"} if method == "PUT" else None)
    assert r.status == 404, r.body
    assert attempts_header(r) == 2
    assert [s for _, s, _ in env.seen(method, WRITE + "/x")] == [0, 404]     # both visible


def test_post_never_sent_is_resent(quorumgate):
    """quorumgate still believes in a leader that just died (slow probes,
    a high fall count): the connection is refused, nothing was sent, so even
    a POST is resent -- to another controller, not to the refusing one."""
    cfg = retry_config(read=POLICIES["read"], write=dict(POLICIES["write"], backoff_base="0ms", backoff_cap="0ms"),
                       extra={"health": {"interval": "30s", "fast_interval": "30s", "rise": 1, "fall": 10}})
    env = Env(quorumgate(cfg))
    env.ctl.wait_leader()
    env.wait_qg_leader(env.leader())
    # (no backoff: the resend races the re-probe of the dead leader)
    c = client(env)
    leader = env.leader()
    env.ctl.kill(leader)
    env.ctl.reset_requests()
    r = c.request("POST", WRITE, body={"name": "svc"})
    assert r.status == 404 and r.error_code == "NOT_FOUND", r.body
    assert attempts_header(r) == 2
    entry = env.access_entry(r.header("x-request-id"))
    assert entry["upstream"][0]["controller"] == leader, entry
    assert entry["upstream"][0]["outcome"] == "connect_error", entry
    assert entry["upstream"][1]["controller"] != leader, entry
    assert len(env.seen("POST", WRITE)) == 1
    assert env.metric("quorumgate_retries_total", **{"class": "write", "reason": "never_sent"}) == 1


def test_class_that_does_not_retry(quorumgate):
    """retry.policies.<class>.on is data: a read class that lists nothing
    answers the first failure as it is."""
    cfg = retry_config(read={"on": [], "max_attempts": 3})
    env = Env(quorumgate(cfg))
    env.ctl.wait_leader()
    env.wait_qg_leader(env.leader())
    c = client(env)
    env.ctl.reset_requests()
    env.ctl.inject("503", READ, method="GET", count=1)
    r = c.current_identity()
    assert r.status == 503 and r.error_code == "CLUSTER_NO_LEADER"
    assert attempts_header(r) == 1
    assert len(env.seen("GET", READ)) == 1


def test_attempts_header_and_log_on_plain_success(env):
    c = client(env)
    r = c.current_identity().expect(200)
    assert attempts_header(r) == 1
    entry = env.access_entry(r.header("x-request-id"))
    assert entry["attempts"] == 1 and len(entry["upstream"]) == 1, entry
    a = entry["upstream"][0]
    assert a["outcome"] == "ok" and a["status"] == 200 and a["ms"] > 0, a
    assert "retried" not in entry, entry


def test_retry_metrics_are_well_formed(env):
    """The retry series are exposed with the documented names and labels."""
    c = client(env)
    env.ctl.inject("503", READ, method="GET", count=1)
    c.current_identity().expect(200)
    text = env.qg.metrics_text()
    for name in ("quorumgate_retries_total", "quorumgate_retry_outcomes_total",
                 "quorumgate_retry_budget_exhausted_total", "quorumgate_reconciled_total"):
        assert "# TYPE %s counter" % name in text, name
    m = env.qg.metrics()
    labels = {tuple(sorted(lab)) for lab, _ in m["quorumgate_retries_total"]}
    assert labels == {("class", "reason")}, labels
    labels = {tuple(sorted(lab)) for lab, _ in m["quorumgate_reconciled_total"]}
    assert labels == {("call", "result")}, labels
    outcomes = {lab["outcome"] for lab, _ in m["quorumgate_retry_outcomes_total"]}
    assert {"retried_success", "retried_failure", "budget_exhausted", "reconciled_create",
            "reconciled_verify", "reconciled_delete", "not_retryable"} <= outcomes, outcomes
