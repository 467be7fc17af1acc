"""Issue 4: the retry budget.  A flood of failures is retried by at most
max(retry.budget.min, ratio x requests in flight) requests at a time; the
rest get the original error at once.  Counted from what the simulator saw.

Run: python3 -m pytest tests/integration/test_retry_budget.py -q
"""
import concurrent.futures

from tests.ctrlsim.client import ZitiClient
from tests.integration.retry_support import MFA, Env, MetricDelta, attempts_header, retry_config
from tests.support.procs import wait_until

READ = "/edge/client/v1/current-identity"


def started(quorumgate, overrides):
    e = Env(quorumgate(overrides))
    e.ctl.wait_leader()
    e.wait_qg_leader(e.leader())
    return e


def flood(n, fn):
    """Run fn(i) for i in range(n) at the same time; results in order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=n) as ex:
        return list(ex.map(fn, range(n)))


def test_read_flood_stays_within_the_budget(quorumgate):
    """20 reads at once, every attempt hangs until the per-try timeout: all
    first attempts fail together, with 20 requests in flight -- 20 % allows
    4 of them a retry slot; the 16 others answer their own 504 at once."""
    n, ratio, floor, max_attempts = 20, 0.2, 3, 3
    env = started(quorumgate, retry_config(
        read={"on": ["never_sent", "sent_failed", "no_leader", "too_many"], "max_attempts": max_attempts,
              "per_try_timeout": "600ms", "deadline": "10s", "backoff_base": "10ms", "backoff_cap": "20ms"},
        budget={"ratio": ratio, "min": floor}))
    c, _ = env.login()
    exhausted = MetricDelta(env, "quorumgate_retry_budget_exhausted_total", **{"class": "read"})
    outcome = MetricDelta(env, "quorumgate_retry_outcomes_total", **{"class": "read", "outcome": "budget_exhausted"})
    env.ctl.reset_requests()
    env.ctl.inject("hang", READ, method="GET", count=1000)

    def one(i):
        cl = ZitiClient(env.qg.url, timeout=30)
        cl.access_token = c.access_token
        return cl.current_identity()

    rs = flood(n, one)
    env.ctl.clear_injections()
    assert all(r.status == 504 and r.error_code == "PROXY_UPSTREAM_TIMEOUT" for r in rs), \
        [(r.status, r.body[:100]) for r in rs]
    attempts = sorted(attempts_header(r) for r in rs)
    retried = [a for a in attempts if a > 1]
    allowed = max(floor, int(n * ratio))
    # at most `allowed` requests retried; the floor always lets `floor` retry
    assert floor <= len(retried) <= allowed, attempts
    assert all(a == max_attempts for a in retried), attempts   # a slot holder keeps it
    assert exhausted.get() == n - len(retried) == outcome.get()
    # what the controllers saw is exactly what the clients were told
    assert len(env.seen("GET", READ)) == sum(attempts)
    assert sum(attempts) <= n + allowed * (max_attempts - 1)
    # the access log says which ones met the exhausted budget
    # (each line is written after its answer was sent)
    lines = wait_until(lambda: (lambda ls: ls if len(ls) >= n else None)(
        [e for e in env.qg.access_log() if e.get("path") == READ and e.get("status") == 504]),
        timeout=5, what="the %d access-log lines" % n)
    assert sum(1 for e in lines if e.get("budget_exhausted")) == n - len(retried), lines[:3]


def test_mfa_flood_stays_within_the_budget(quorumgate):
    """8 identities create their MFA at once while every create hangs: each
    one's outcome is unknown, so each reads the state (not a retry) and finds
    nothing; only max(min, ratio x in flight) = 2 may send again.  The others
    get their original error, and no enrollment exists anywhere."""
    n, floor, max_attempts = 8, 2, 3
    env = started(quorumgate, retry_config(
        mfa={"max_attempts": max_attempts, "per_try_timeout": "700ms", "deadline": "10s",
             "backoff_base": "10ms", "backoff_cap": "20ms"},
        budget={"ratio": 0.2, "min": floor}))
    clients = []
    for i in range(n):
        c, _ = env.login()
        clients.append(c)
    exhausted = MetricDelta(env, "quorumgate_retry_budget_exhausted_total", **{"class": "mfa"})
    leader = env.leader()
    env.ctl.reset_requests()
    env.ctl.inject("hang", MFA, method="POST", count=1000)
    rs = flood(n, lambda i: clients[i].mfa_create())
    env.ctl.clear_injections()
    assert all(r.status == 504 and r.error_code == "PROXY_UPSTREAM_TIMEOUT" for r in rs), \
        [(r.status, r.body[:100]) for r in rs]
    attempts = sorted(attempts_header(r) for r in rs)
    retried = [a for a in attempts if a > 1]
    assert len(retried) == floor, attempts
    assert all(a == max_attempts for a in retried), attempts
    assert exhausted.get() == n - floor
    posts = env.seen("POST", MFA)
    assert len(posts) == sum(attempts) == n + floor * (max_attempts - 1), posts
    assert all(p[0] == leader for p in posts), posts
    # one state read per unknown outcome, none more
    assert len(env.seen("GET", MFA)) == sum(attempts), env.seen("GET", MFA)
    for c in clients:
        assert env.ctl.mfa_on(leader, c.identity_id) is None


def test_budget_exhausted_answers_the_original_error(quorumgate):
    """With no budget at all (ratio 0, min 0) nothing is retried: the
    controller's own 503 goes back, after one attempt."""
    env = started(quorumgate, retry_config(budget={"ratio": 0.0, "min": 0}))
    c, _ = env.login()
    exhausted = MetricDelta(env, "quorumgate_retry_budget_exhausted_total", **{"class": "mfa"})
    env.ctl.reset_requests()
    env.ctl.inject("503", MFA, method="POST", node=env.leader(), count=1)
    r = c.mfa_create()
    assert r.status == 503 and r.error_code == "CLUSTER_NO_LEADER", r.body
    assert "requestId" in r.json()["error"] and r.json()["meta"], r.body   # the controller's envelope
    assert attempts_header(r) == 1
    assert exhausted.get() == 1
    assert len(env.seen("POST", MFA)) == 1
    entry = env.access_entry(r.header("x-request-id"))
    assert entry.get("budget_exhausted") is True, entry
    assert entry.get("retried") is False, entry                # it was not retried
