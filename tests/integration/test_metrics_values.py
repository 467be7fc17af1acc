"""The numbers quorumgate exports are the numbers of what happened (issue 5):
exact request and retry counts after a known workload with simulator
injections, histogram buckets/_sum/_count against known delays (a 1 ms
pass-through, an injected 300 ms upstream delay, a replication wait held by
a lagging controller, a replication timeout), the retry budget, affinity
read from Redis by a second quorumgate -- and a real Prometheus server that
scrapes quorumgate (with basic auth) and answers queries with those values.
"""
import json
import os
import threading

import pytest

from tests.conftest import REPO_ROOT
from tests.ctrlsim.client import ZitiClient, totp_now
from tests.support.procs import wait_until
from tests.support.prom import (admin_get, admin_json, bucket,
                                histogram_problems, parse_exposition)

RULES = os.path.join(REPO_ROOT, "metrics", "prometheus", "alerts.yml")


def expo_of(qg):
    status, _h, body = admin_get(qg.admin_url, "/metrics")
    assert status == 200
    return parse_exposition(body)


def wait_value(qg, series, expected, timeout=10.0, **labels):
    """Waits until the scraped value equals expected (requests are counted
    when their answer has been handed to the socket, a moment after the
    client may have read it); returns the exposition."""
    seen = []

    def ok():
        e = expo_of(qg)
        seen.append(e.value(series, **labels))
        return e if seen[-1] == expected else None

    try:
        return wait_until(ok, timeout=timeout, what="%s%s == %s" % (series, labels, expected))
    except TimeoutError:
        raise AssertionError("%s%s: expected %s, last %s" % (series, labels, expected,
                                                             seen[-1] if seen else None)) from None


READ = {"class": "read"}


def retried_reads(qg, plan):
    """plan: [(injection mode, retry reason)].  One read per entry whose first
    attempt meets the injection; every one must succeed on its second
    attempt.  Returns the number of reads."""
    ctl = qg.sim.control
    c = ZitiClient(qg.url, ca_file=qg.ca)
    for mode, _reason in plan:
        ctl.inject(mode, "/version", method="GET", count=1)
        r = c.version().expect(200)
        assert r.header("quorumgate-attempts") == "2", (mode, r.headers)
    assert not [i for i in ctl.injections() if i["count"] > 0], ctl.injections()
    return len(plan)


PLAN = [("503", "no_leader"), ("503", "no_leader"), ("503", "no_leader"),
        ("429", "too_many"), ("429", "too_many"),
        ("500", "sent_failed"), ("500", "sent_failed")]


def test_requests_and_retries_are_counted_exactly(quorumgate):
    qg = quorumgate()
    ctl = qg.sim.control
    before = expo_of(qg)
    assert before.value("quorumgate_requests_total") == 0
    ctl.reset_requests()

    c = ZitiClient(qg.url, ca_file=qg.ca, keep_alive=True)
    n_plain = 12
    for _ in range(n_plain):
        assert c.version().expect(200).header("quorumgate-attempts") == "1"
    n_retried = retried_reads(qg, PLAN)
    n = n_plain + n_retried

    e = wait_value(qg, "quorumgate_requests_total", n)
    assert e.value("quorumgate_requests_total", **READ, method="GET", code="2xx") == n
    assert e.value("quorumgate_request_duration_seconds_count") == n
    assert e.value("quorumgate_request_duration_seconds_count", **READ) == n
    # retries: by class and reason, and how they ended
    assert e.value("quorumgate_retries_total") == len(PLAN)
    for reason in {r for _m, r in PLAN}:
        want = sum(1 for _m, r in PLAN if r == reason)
        assert e.value("quorumgate_retries_total", **READ, reason=reason) == want, reason
    assert e.value("quorumgate_retry_outcomes_total") == len(PLAN)
    assert e.value("quorumgate_retry_outcomes_total", **READ, outcome="retried_success") == len(PLAN)
    assert e.value("quorumgate_retry_budget_exhausted_total") == 0
    # upstream attempts: one per request plus one per retry, each outcome
    attempts = n + len(PLAN)
    assert e.value("quorumgate_upstream_attempts_total") == attempts
    assert e.value("quorumgate_upstream_duration_seconds_count") == attempts
    assert e.value("quorumgate_upstream_attempts_total", outcome="no_leader") == 3
    assert e.value("quorumgate_upstream_attempts_total", outcome="too_many_requests") == 2
    assert e.value("quorumgate_upstream_attempts_total", outcome="server_error") == 2
    assert e.value("quorumgate_upstream_attempts_total", outcome="ok") == n
    # and per controller, what the simulator saw
    seen = {nid: len([x for x in reqs if x["path"] == "/version"])
            for nid, reqs in ctl.requests().items()}
    for nid, count in seen.items():
        assert e.value("quorumgate_upstream_attempts_total", controller=nid) == count, (nid, seen)
        assert e.value("quorumgate_upstream_duration_seconds_count", controller=nid) == count
    # the routing decisions of the first attempts
    assert e.value("quorumgate_routing_decisions_total", **READ) >= n
    # nothing else was counted as a request
    assert e.value("quorumgate_requests_total", code="5xx") == 0


def test_client_status_classes_and_methods(quorumgate):
    qg = quorumgate({"limits": {"max_body_bytes": "1KiB", "max_header_bytes": "2KiB"}})
    ctl = qg.sim.control
    c = ZitiClient(qg.url, ca_file=qg.ca)
    # answered by quorumgate itself, before any controller: counted too
    c.request("POST", "/edge/client/v1/authenticate?method=password", body=b"x" * 4096).expect(413)
    c.request("GET", "/version", headers={"x-big": "y" * 4096}).expect(431)
    e = wait_value(qg, "quorumgate_requests_total", 2, code="4xx")
    assert e.value("quorumgate_requests_total", method="POST", code="4xx") == 1
    assert e.value("quorumgate_requests_total", method="GET", code="4xx") == 1
    assert e.value("quorumgate_upstream_attempts_total") == 0
    c.version().expect(200)
    c.current_identity().expect(401)                      # controller's 4xx
    c.request("HEAD", "/version")
    c.request("OPTIONS", "/version")
    c.request("FOO", "/version")                          # an unknown method -> OTHER
    ctl.inject("503", "/version", method="GET", count=10)  # never a leader-less answer left
    r = c.version()                                       # retried until attempts run out
    assert r.status == 503, r
    ctl.clear_injections()
    e = wait_value(qg, "quorumgate_requests_total", 8)
    assert e.value("quorumgate_requests_total", method="GET", code="2xx") == 1
    assert e.value("quorumgate_requests_total", method="GET", code="4xx") == 2
    assert e.value("quorumgate_requests_total", method="GET", code="5xx") == 1
    assert e.value("quorumgate_requests_total", method="HEAD") == 1
    assert e.value("quorumgate_requests_total", method="OPTIONS") == 1
    assert e.value("quorumgate_requests_total", method="OTHER") == 1
    assert e.value("quorumgate_retry_outcomes_total", **READ, outcome="retried_failure") == 1


def test_histograms_agree_with_known_delays(quorumgate):
    """Fast reads fall in the low buckets, reads held 300 ms by the simulator
    between 0.25 and 0.5 s, in both the client-facing and the upstream
    histogram; _sum is within the delays' bounds; +Inf == _count."""
    qg = quorumgate()
    ctl = qg.sim.control
    c = ZitiClient(qg.url, ca_file=qg.ca, keep_alive=True)
    fast, slow, delay = 20, 3, 0.300
    for _ in range(fast):
        c.version().expect(200)
    for _ in range(slow):
        ctl.inject("delay", "/version", method="GET", count=1, delay_ms=int(delay * 1000))
        c.version().expect(200)
    e = wait_value(qg, "quorumgate_request_duration_seconds_count", fast + slow, **READ)
    for fam in ("quorumgate_request_duration_seconds", "quorumgate_upstream_duration_seconds"):
        assert histogram_problems(e, fam) == [], fam
        total = e.value(fam + "_count")
        assert total == fast + slow, fam
        assert bucket(e, fam, "+Inf") == total
        # the slow ones, and only they, are above 250 ms; all are below 500 ms
        assert bucket(e, fam, "0.25") == fast, (fam, bucket(e, fam, "0.25"))
        assert bucket(e, fam, "0.5") == fast + slow, fam
        s = e.value(fam + "_sum")
        assert slow * delay <= s <= slow * 0.5 + fast * 0.25, (fam, s)
    # a pass-through on loopback is a few milliseconds: most reads are in
    # the buckets below 25 ms, which exist to resolve it
    assert bucket(e, "quorumgate_request_duration_seconds", "0.025", **READ) >= fast // 2
    assert bucket(e, "quorumgate_request_duration_seconds", "0.0005", **READ) <= fast


def test_replication_wait_histogram_and_pending_acknowledgements(quorumgate):
    """An MFA verify held while a follower applies 800 ms late: the wait is
    observed between 0.8 s and the next buckets, /status shows it pending
    meanwhile, every controller's acknowledgement is counted."""
    qg = quorumgate()
    sim, ctl = qg.sim, qg.sim.control
    alice = ZitiClient(qg.url, ca_file=qg.ca)
    alice.oidc_login("alice", "alice-pw").expect(200)
    alice.mfa_create().expect(201)
    secret = alice.mfa_secret()
    e0 = wait_value(qg, "quorumgate_replication_wait_seconds_count", 1, call="create")
    acks0 = e0.value("quorumgate_replication_acks_total")
    leader = ctl.leader()
    laggard = [n for n in sim.node_ids if n != leader][0]
    ctl.set_lag(laggard, 800)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", alice.mfa_verify(totp_now(secret))))
    t.start()
    try:
        wait_until(lambda: admin_json(qg.admin_url, "/status")[1]["pending_acknowledgements"] == 1,
                   timeout=5, what="/status pending_acknowledgements == 1")
    finally:
        t.join(15)
    ctl.set_lag(laggard, 0)
    r = out["r"]
    assert r.status == 200, r
    assert "pending" not in (r.header("quorumgate-replication") or ""), r.headers
    e = wait_value(qg, "quorumgate_replication_wait_seconds_count", 1, call="verify")
    assert histogram_problems(e, "quorumgate_replication_wait_seconds") == []
    fam = "quorumgate_replication_wait_seconds"
    assert bucket(e, fam, "0.5", call="verify") == 0
    assert bucket(e, fam, "2.5", call="verify") == 1
    s = e.value(fam + "_sum", call="verify")
    # the laggard got the entry a few ms before the leader answered
    assert 0.7 <= s < 2.5, s
    assert e.value("quorumgate_replication_timeouts_total") == 0
    # every controller acknowledged the verify
    assert e.value("quorumgate_replication_acks_total") == acks0 + len(sim.node_ids)
    assert e.value("quorumgate_replication_acks_total", controller=laggard) == 2
    # the waits polled Redis for acknowledgements and wrote the gate records
    assert e.value("quorumgate_redis_operations_total", op="ack_read", result="ok") >= 1
    assert e.value("quorumgate_redis_operations_total", op="gate_write", result="ok") >= 4
    assert e.value("quorumgate_redis_operations_total", result="error", op="gate_write") == 0
    assert admin_json(qg.admin_url, "/status")[1]["pending_acknowledgements"] == 0


def test_replication_timeout_fences_and_counts(quorumgate):
    qg = quorumgate({"gate": {"timeout": "1s"}})
    sim, ctl = qg.sim, qg.sim.control
    alice = ZitiClient(qg.url, ca_file=qg.ca)
    alice.oidc_login("alice", "alice-pw").expect(200)
    alice.mfa_create().expect(201)
    secret = alice.mfa_secret()
    laggard = [n for n in sim.node_ids if n != ctl.leader()][0]
    # the laggard holds the verify until the lag is released below: the fence
    # set at the deadline must last through every observation (releasing the
    # lag early let the background probe lift it before /status was read)
    ctl.set_lag(laggard, 120000)
    try:
        r = alice.mfa_verify(totp_now(secret))
        assert r.status == 200, r                            # on_timeout: succeed
        assert "pending=%s" % laggard in r.header("quorumgate-replication"), r.headers
        e = wait_value(qg, "quorumgate_replication_timeouts_total", 1, call="verify")
        assert e.value("quorumgate_replication_timeouts_total") == 1
        assert e.value("quorumgate_fenced_identities") == 1
        # the fence's Redis write is counted when Redis answers, which may be
        # a moment after the timeout was counted
        wait_until(lambda: expo_of(qg).value("quorumgate_redis_operations_total", op="fence_write",
                                             result="ok") >= 1, timeout=5, what="fence_write counted")
        fam = "quorumgate_replication_wait_seconds"
        assert bucket(e, fam, "0.5", call="verify") == 0
        assert bucket(e, fam, "2.5", call="verify") == 1
        # the deadline timer runs on the loop's millisecond clock, which lags the
        # monotonic clock the wait is measured with by up to a few ms
        assert 0.99 <= e.value(fam + "_sum", call="verify") < 2.5
        st = admin_json(qg.admin_url, "/status")[1]
        assert st["fenced_identities"] == 1
    finally:
        ctl.set_lag(laggard, 0)
    # once the laggard applies the verify, the probe that kept asking it
    # acknowledges and the fence is lifted
    wait_value(qg, "quorumgate_fenced_identities", 0)
    wait_until(lambda: admin_json(qg.admin_url, "/status")[1]["fenced_identities"] == 0,
               timeout=10.0, what="fence lifted in /status")


def test_ambiguous_mfa_writes_are_reconciled_and_counted(quorumgate):
    """A verify that commits but answers 500, and a create that commits but
    is reset: quorumgate reads the enrollment on the leader instead of
    resending; reconciled_total and retry_outcomes_total say so."""
    qg = quorumgate()
    ctl = qg.sim.control
    alice = ZitiClient(qg.url, ca_file=qg.ca)
    alice.oidc_login("alice", "alice-pw").expect(200)
    mfa = "/edge/client/v1/current-identity/mfa"
    ctl.inject("reset_after_commit", mfa, method="POST", count=1)
    alice.mfa_create().expect(201)
    secret = alice.mfa_secret()
    ctl.inject("500_after_commit", mfa + "/verify", method="POST", count=1)
    alice.mfa_verify(totp_now(secret)).expect(200)
    e = wait_value(qg, "quorumgate_reconciled_total", 2)
    mfa_cls = {"class": "mfa"}
    assert e.value("quorumgate_reconciled_total", call="create", result="applied") == 1
    assert e.value("quorumgate_reconciled_total", call="verify", result="applied") == 1
    assert e.value("quorumgate_retry_outcomes_total", **mfa_cls, outcome="reconciled_create") == 1
    assert e.value("quorumgate_retry_outcomes_total", **mfa_cls, outcome="reconciled_verify") == 1
    assert e.value("quorumgate_upstream_attempts_total", outcome="reset") == 1
    assert e.value("quorumgate_upstream_attempts_total", outcome="server_error") == 1
    assert e.value("quorumgate_requests_total", **mfa_cls, method="POST", code="2xx") == 2
    # neither call was sent twice
    posts = [x for reqs in ctl.requests().values() for x in reqs
             if x["method"] == "POST" and x["path"].startswith(mfa)]
    assert len(posts) == 2, posts


def test_retry_budget_exhaustion_is_counted(quorumgate):
    qg = quorumgate({"retry": {"budget": {"ratio": 0, "min": 0}}})
    ctl = qg.sim.control
    c = ZitiClient(qg.url, ca_file=qg.ca)
    for _ in range(2):
        ctl.inject("503", "/version", method="GET", count=1)
        r = c.version()
        assert r.status == 503 and r.header("quorumgate-attempts") == "1", r
    e = wait_value(qg, "quorumgate_retry_budget_exhausted_total", 2, **READ)
    assert e.value("quorumgate_retry_budget_exhausted_total") == 2
    assert e.value("quorumgate_retry_outcomes_total", **READ, outcome="budget_exhausted") == 2
    assert e.value("quorumgate_retries_total") == 0
    assert e.value("quorumgate_requests_total", code="5xx") == 2


def test_affinity_read_from_redis_by_a_second_quorumgate(quorumgate):
    """A legacy session learnt by qg1 is found in Redis by qg2: qg1 counts
    the affinity write, qg2 the read and a sticky routing decision."""
    qg1 = quorumgate()
    qg2 = quorumgate(sim=qg1.sim)
    c1 = ZitiClient(qg1.url, ca_file=qg1.ca)
    c1.legacy_login("bob", "bob-pw").expect(200)
    home = c1.current_identity().expect(200).header("quorumgate-controller")
    wait_value(qg1, "quorumgate_redis_operations_total", 1, op="affinity_set", result="ok")
    c2 = ZitiClient(qg2.url, ca_file=qg2.ca)
    c2.zt_session = c1.zt_session
    r = c2.current_identity().expect(200)
    assert r.header("quorumgate-controller") == home
    e = wait_value(qg2, "quorumgate_redis_operations_total", 1, op="affinity_get", result="ok")
    assert e.value("quorumgate_routing_decisions_total", **{"class": "session"},
                   decision="sticky_hit") == 1
    assert e.value("quorumgate_affinity_entries", kind="sess") == 1


# ---------------------------------------------------------------------------
# a real Prometheus server

def test_prometheus_scrapes_quorumgate_and_queries_match(quorumgate, prometheus, tmp_path):
    pw = tmp_path / "admin.password"
    pw.write_text("s3cret-scrape\n")
    qg = quorumgate({"admin": {"basic_auth": {"username": "prometheus",
                                              "password_file": str(pw)}}})
    prom = prometheus([qg.admin_address], interval="1s", basic_auth=("prometheus", "s3cret-scrape"),
                      rule_files=[RULES])
    targets = prom.wait_up()
    assert targets[0]["lastError"] == "", targets
    assert targets[0]["labels"]["job"] == "quorumgate"
    prom.wait_value('up{job="quorumgate"}', 1)
    prom.wait_value("sum(quorumgate_requests_total)", 0)

    c = ZitiClient(qg.url, ca_file=qg.ca, keep_alive=True)
    n_plain = 9
    for _ in range(n_plain):
        c.version().expect(200)
    n = n_plain + retried_reads(qg, PLAN)

    prom.wait_value("sum(quorumgate_requests_total)", n)
    prom.wait_value('sum(quorumgate_requests_total{class="read",method="GET",code="2xx"})', n)
    prom.wait_value('sum(quorumgate_retries_total{reason="no_leader"})', 3)
    prom.wait_value('sum(quorumgate_retries_total{reason="too_many"})', 2)
    prom.wait_value('sum(quorumgate_retries_total{reason="sent_failed"})', 2)
    prom.wait_value('sum(quorumgate_retries_total)', len(PLAN))
    prom.wait_value('sum(quorumgate_upstream_attempts_total)', n + len(PLAN))
    prom.wait_value('sum(quorumgate_request_duration_seconds_count)', n)
    prom.wait_value('sum(quorumgate_request_duration_seconds_bucket{le="+Inf"})', n)
    prom.wait_value('sum(quorumgate_controller_up)', 3)
    prom.wait_value('sum(quorumgate_controller_leader)', 1)
    prom.wait_value('count(quorumgate_build_info == 1)', 1)
    # a quantile over the buckets is computable and sane (reads are fast)
    q = prom.scalar('histogram_quantile(0.5, sum by (le) '
                    '(quorumgate_request_duration_seconds_bucket{class="read"}))')
    assert q is not None and 0 < q <= 0.25, q
    # the sample alerting rules evaluate against the real series without error
    groups = prom.api("rules")["groups"]
    rules = [r for g in groups for r in g["rules"]]
    assert len(rules) >= 10, rules
    wait_until(lambda: all(r.get("lastEvaluation", "").startswith("20") and
                           not r["lastEvaluation"].startswith("0001")
                           for r in prom.api("rules")["groups"][0]["rules"]),
               timeout=15, what="every rule evaluated")
    bad = [(r["name"], r.get("lastError")) for g in prom.api("rules")["groups"]
           for r in g["rules"] if r["health"] != "ok"]
    assert not bad, bad
    # with everything healthy, nothing fires or is pending
    alerts = prom.api("alerts")["alerts"]
    assert alerts == [], json.dumps(alerts)[:2000]
