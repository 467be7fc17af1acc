/* test_retry.c - failure classes, retry policy, backoff, budget and the
 * parsing half of reconciliation (retry/).  The envelopes below are the
 * ones openziti/ziti v1.5.4 sends (and v1.8+ for the forward 429), as the
 * simulator (tests/ctrlsim/cluster.py) reproduces them. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "base/buf.h"
#include "config/config.h"
#include "io/upstream.h"
#include "retry/budget.h"
#include "retry/failure.h"
#include "retry/policy.h"
#include "retry/reconcile.h"
#include "routing/cluster.h"
#include "routing/route.h"

/* ---- envelopes --------------------------------------------------------- */

#define META                                                                 \
    "\"meta\":{\"apiEnrollmentVersion\":\"0.0.1\",\"apiVersion\":\"0.0.1\"}"

static char test_body[1024];

/* {"error":{"code":C,"message":M,"requestId":..,
 *  "cause":{"code":"UNHANDLED","message":CAUSE}},meta} */
static const char *test_env(const char *code, const char *msg,
                            const char *cause)
{
    if (cause)
        snprintf(test_body, sizeof(test_body),
                 "{\"error\":{\"code\":\"%s\",\"message\":\"%s\","
                 "\"requestId\":\"r-1\",\"cause\":{\"code\":\"UNHANDLED\","
                 "\"message\":\"%s\"}}," META "}",
                 code, msg, cause);
    else
        snprintf(test_body, sizeof(test_body),
                 "{\"error\":{\"code\":\"%s\",\"message\":\"%s\","
                 "\"requestId\":\"r-1\"}," META "}",
                 code, msg);
    return test_body;
}

static const char *test_unhandled(const char *cause)
{
    return test_env("UNHANDLED", "An unhandled error occurred", cause);
}

static const char *test_no_leader(void)
{
    return test_env("CLUSTER_NO_LEADER",
                    "Cluster has no leader, unable to make model updates.",
                    NULL);
}

static const char *test_too_many(const char *cause)
{
    return test_env("SERVER_TOO_MANY_REQUESTS",
                    "Too many requests to alter state have been issued. "
                    "Please slow your request rate or try again later.",
                    cause);
}

/* Classify an HTTP answer. */
static struct failure test_answer(int status, const char *body,
                                  enum http_method m, bool mfa_write)
{
    struct failure f;
    failure_classify_parts(UPSTREAM_OK, true, status, body,
                           body ? strlen(body) : 0, m, mfa_write, &f);
    return f;
}

/* Classify a transport failure. */
static struct failure test_transport(enum upstream_result res, bool sent,
                                     enum http_method m, bool mfa_write)
{
    struct failure f;
    failure_classify_parts(res, sent, 0, NULL, 0, m, mfa_write, &f);
    return f;
}

#define assert_kind(f, k, r)                                                 \
    do {                                                                     \
        struct failure f_ = (f);                                             \
        if (f_.kind != (k) || ((k) != FAILURE_NONE && f_.reason != (r)))     \
            fail_msg("kind %s reason %d, wanted %s reason %d",               \
                     failure_kind_name(f_.kind), (int)f_.reason,             \
                     failure_kind_name(k), (int)(r));                        \
    } while (0)

/* ---- failure classification --------------------------------------------- */

static void test_never_sent_is_never_sent_for_every_method(void **state)
{
    (void)state;
    const enum upstream_result never[] = {
        UPSTREAM_CONNECT_ERROR, UPSTREAM_TLS_ERROR, UPSTREAM_CONNECT_TIMEOUT};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++) {
        assert_kind(test_transport(never[i], false, HTTP_POST, true),
                    FAILURE_NEVER_SENT, RETRY_NEVER_SENT);
        assert_kind(test_transport(never[i], false, HTTP_POST, false),
                    FAILURE_NEVER_SENT, RETRY_NEVER_SENT);
        assert_kind(test_transport(never[i], false, HTTP_GET, false),
                    FAILURE_NEVER_SENT, RETRY_NEVER_SENT);
    }
    /* a reset before any request byte left is "never sent" too */
    assert_kind(test_transport(UPSTREAM_RESET, false, HTTP_POST, false),
                FAILURE_NEVER_SENT, RETRY_NEVER_SENT);
}

static void test_sent_failures_depend_on_idempotency(void **state)
{
    (void)state;
    const enum upstream_result sent[] = {UPSTREAM_RESET, UPSTREAM_TIMEOUT,
                                         UPSTREAM_ERROR};
    for (size_t i = 0; i < sizeof(sent) / sizeof(sent[0]); i++) {
        assert_kind(test_transport(sent[i], true, HTTP_GET, false),
                    FAILURE_SENT, RETRY_SENT_FAILED);
        assert_kind(test_transport(sent[i], true, HTTP_PUT, false),
                    FAILURE_SENT, RETRY_SENT_FAILED);
        assert_kind(test_transport(sent[i], true, HTTP_DELETE, false),
                    FAILURE_SENT, RETRY_SENT_FAILED);
        assert_kind(test_transport(sent[i], true, HTTP_POST, false),
                    FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
        assert_kind(test_transport(sent[i], true, HTTP_PATCH, false),
                    FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
        /* the MFA calls, DELETE included: a resent one answers 404/409 */
        assert_kind(test_transport(sent[i], true, HTTP_POST, true),
                    FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
        assert_kind(test_transport(sent[i], true, HTTP_DELETE, true),
                    FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
    }
    assert_kind(test_transport(UPSTREAM_TOO_LARGE, true, HTTP_GET, false),
                FAILURE_FATAL, RETRY_SENT_FAILED);
}

static void test_no_leader_is_safe_whatever_the_method(void **state)
{
    (void)state;
    assert_kind(test_answer(503, test_no_leader(), HTTP_POST, false),
                FAILURE_NO_LEADER, RETRY_NO_LEADER);
    assert_kind(test_answer(503, test_no_leader(), HTTP_POST, true),
                FAILURE_NO_LEADER, RETRY_NO_LEADER);
    assert_kind(test_answer(503, test_no_leader(), HTTP_GET, false),
                FAILURE_NO_LEADER, RETRY_NO_LEADER);
    /* raft.ErrNotLeader from Apply carries a cause: the same class */
    const char *b = test_env("CLUSTER_NO_LEADER",
                             "Cluster has no leader, unable to make model "
                             "updates.",
                             "node is not the leader");
    struct failure f = test_answer(503, b, HTTP_DELETE, true);
    assert_kind(f, FAILURE_NO_LEADER, RETRY_NO_LEADER);
    assert_string_equal(f.code, "CLUSTER_NO_LEADER");
}

static void test_status_alone_decides_nothing(void **state)
{
    (void)state;
    /* a 503 / 429 / 500 that is not the controller's envelope (an HTML page
     * from something in between, another code) is passed on, not retried */
    assert_kind(test_answer(503, "<html>busy</html>", HTTP_GET, false),
                FAILURE_NONE, 0);
    assert_kind(test_answer(503, test_env("SOMETHING", "x", NULL), HTTP_POST,
                            true),
                FAILURE_NONE, 0);
    assert_kind(test_answer(429, "", HTTP_GET, false), FAILURE_NONE, 0);
    assert_kind(test_answer(429, test_env("MFA_INVALID_TOKEN", "x", NULL),
                            HTTP_POST, true),
                FAILURE_NONE, 0);
    assert_kind(test_answer(500, "not json", HTTP_POST, true),
                FAILURE_NONE, 0);
    assert_kind(test_answer(500, test_env("INVALID_AUTH", "x", NULL),
                            HTTP_POST, true),
                FAILURE_NONE, 0);
    /* answers */
    assert_kind(test_answer(200, "{\"data\":{},\"meta\":{}}", HTTP_POST, true),
                FAILURE_NONE, 0);
    assert_kind(test_answer(404, test_env("NOT_FOUND", "x", NULL), HTTP_POST,
                            true),
                FAILURE_NONE, 0);
    assert_kind(test_answer(409, test_env("MFA_EXISTS", "x", NULL), HTTP_POST,
                            true),
                FAILURE_NONE, 0);
    assert_kind(test_answer(400, test_env("MFA_INVALID_TOKEN", "x", NULL),
                            HTTP_POST, true),
                FAILURE_NONE, 0);
}

static void test_429_both_versions(void **state)
{
    (void)state;
    /* v1.8+: a forward whose reply timed out (may have committed) */
    const char *fwd = test_too_many(
        "timeout waiting for message reply: context deadline exceeded");
    assert_kind(test_answer(429, fwd, HTTP_GET, false), FAILURE_TOO_MANY,
                RETRY_TOO_MANY);
    assert_kind(test_answer(429, fwd, HTTP_PUT, false), FAILURE_TOO_MANY,
                RETRY_TOO_MANY);
    assert_kind(test_answer(429, fwd, HTTP_POST, false), FAILURE_AMBIGUOUS,
                RETRY_AMBIGUOUS);
    assert_kind(test_answer(429, fwd, HTTP_POST, true), FAILURE_AMBIGUOUS,
                RETRY_AMBIGUOUS);
    assert_kind(test_answer(429, fwd, HTTP_DELETE, true), FAILURE_AMBIGUOUS,
                RETRY_AMBIGUOUS);
    /* the command rate limiter: no cause */
    assert_kind(test_answer(429, test_too_many(NULL), HTTP_GET, false),
                FAILURE_TOO_MANY, RETRY_TOO_MANY);
    /* RATE_LIMITED comes before any change */
    struct failure f = test_answer(
        429, test_env("RATE_LIMITED", "rate limited", NULL), HTTP_POST, false);
    assert_kind(f, FAILURE_TOO_MANY, RETRY_TOO_MANY);
    assert_string_equal(f.code, "RATE_LIMITED");
}

static void test_500_unhandled_reads_the_cause(void **state)
{
    (void)state;
    static const char *const raft[] = {
        "could not update MFA status",              /* mfa_manager.go */
        "timed out",                                /* index_tracker.go */
        "timed out enqueuing operation",            /* raft.ErrEnqueueTimeout */
        "leadership lost while committing log",     /* raft.ErrLeadershipLost */
        "unable to execute command. In a readonly state: different versions "
        "detected in cluster",                      /* raft.go Dispatch */
        "timeout waiting for message reply: context deadline exceeded",
    };
    for (size_t i = 0; i < sizeof(raft) / sizeof(raft[0]); i++) {
        const char *b = test_unhandled(raft[i]);
        assert_kind(test_answer(500, b, HTTP_POST, false), FAILURE_AMBIGUOUS,
                    RETRY_AMBIGUOUS);
        assert_kind(test_answer(500, b, HTTP_POST, true), FAILURE_AMBIGUOUS,
                    RETRY_AMBIGUOUS);
        assert_kind(test_answer(500, b, HTTP_DELETE, true), FAILURE_AMBIGUOUS,
                    RETRY_AMBIGUOUS);
        assert_kind(test_answer(500, b, HTTP_PUT, false), FAILURE_SENT,
                    RETRY_SENT_FAILED);
        assert_kind(test_answer(500, b, HTTP_GET, false), FAILURE_SENT,
                    RETRY_SENT_FAILED);
    }
    /* an unrelated Go error on some other write: a real answer */
    const char *other = test_unhandled("invalid character 'x' looking for "
                                       "beginning of value");
    assert_kind(test_answer(500, other, HTTP_POST, false), FAILURE_NONE, 0);
    assert_kind(test_answer(500, other, HTTP_GET, false), FAILURE_NONE, 0);
    /* the MFA writes' only UNHANDLED errors come from the raft dispatch */
    assert_kind(test_answer(500, other, HTTP_POST, true), FAILURE_AMBIGUOUS,
                RETRY_AMBIGUOUS);
    /* an UNHANDLED without any cause, on an MFA write */
    assert_kind(test_answer(500, test_unhandled(NULL), HTTP_POST, true),
                FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
}

static void test_gateway_errors(void **state)
{
    (void)state;
    assert_kind(test_answer(502, "bad gateway", HTTP_GET, false),
                FAILURE_SENT, RETRY_SENT_FAILED);
    assert_kind(test_answer(504, "", HTTP_DELETE, false), FAILURE_SENT,
                RETRY_SENT_FAILED);
    assert_kind(test_answer(502, "", HTTP_POST, false), FAILURE_AMBIGUOUS,
                RETRY_AMBIGUOUS);
    assert_kind(test_answer(504, "", HTTP_POST, true), FAILURE_AMBIGUOUS,
                RETRY_AMBIGUOUS);
    /* 503 TIMEOUT (apierror) */
    assert_kind(test_answer(503, test_env("TIMEOUT", "timeout", NULL),
                            HTTP_GET, false),
                FAILURE_SENT, RETRY_SENT_FAILED);
}

static void test_code_is_copied_and_bounded(void **state)
{
    (void)state;
    char longcode[200];
    memset(longcode, 'A', sizeof(longcode) - 1);
    longcode[sizeof(longcode) - 1] = '\0';
    struct failure f = test_answer(503, test_env(longcode, "x", NULL),
                                   HTTP_GET, false);
    assert_int_equal(f.kind, FAILURE_NONE);
    assert_int_equal(strlen(f.code), sizeof(f.code) - 1);
    f = test_answer(200, NULL, HTTP_GET, false);
    assert_int_equal(f.kind, FAILURE_NONE);
    assert_string_equal(f.code, "");
}

/* ---- policy ------------------------------------------------------------- */

static const struct config_retry_policy test_mfa_policy = {
    .on = (1u << RETRY_NEVER_SENT) | (1u << RETRY_SENT_FAILED) |
          (1u << RETRY_NO_LEADER) | (1u << RETRY_TOO_MANY) |
          (1u << RETRY_AMBIGUOUS),
    .max_attempts = 4,
    .per_try_timeout_ms = 1000,
    .deadline_ms = 10000,
    .backoff_base_ms = 50,
    .backoff_cap_ms = 1000,
};

static struct policy_decision test_decide(const struct config_retry_policy *p,
                                          enum failure_kind k,
                                          enum retry_reason r,
                                          enum http_method m, bool reconciler,
                                          uint32_t attempts, uint64_t now,
                                          uint64_t deadline)
{
    struct failure f = {.kind = k, .reason = r};
    struct policy_input in = {.p = p, .f = &f, .method = m,
                              .reconciler = reconciler, .attempts = attempts,
                              .now_ms = now, .deadline_ms = deadline};
    struct policy_decision d;
    uint64_t rng = 12345;
    policy_decide(&in, &rng, &d);
    return d;
}

static void test_policy_answers_and_not_retryable(void **state)
{
    (void)state;
    const struct config_retry_policy *p = &test_mfa_policy;
    struct policy_decision d;
    d = test_decide(p, FAILURE_NONE, RETRY_NEVER_SENT, HTTP_POST, true, 1, 0,
                    10000);
    assert_int_equal(d.action, POLICY_ANSWER);
    d = test_decide(p, FAILURE_FATAL, RETRY_SENT_FAILED, HTTP_GET, false, 1, 0,
                    10000);
    assert_int_equal(d.action, POLICY_ANSWER);
    /* the class does not list the reason */
    struct config_retry_policy only_never = *p;
    only_never.on = 1u << RETRY_NEVER_SENT;
    d = test_decide(&only_never, FAILURE_NO_LEADER, RETRY_NO_LEADER, HTTP_GET,
                    false, 1, 0, 10000);
    assert_int_equal(d.action, POLICY_ANSWER);
    assert_string_equal(d.why, "not_retryable");
    d = test_decide(&only_never, FAILURE_NEVER_SENT, RETRY_NEVER_SENT,
                    HTTP_POST, false, 1, 0, 10000);
    assert_int_equal(d.action, POLICY_RETRY);
    /* ambiguous without "ambiguous" listed: answered even with a reconciler */
    struct config_retry_policy no_amb = *p;
    no_amb.on &= ~(1u << RETRY_AMBIGUOUS);
    d = test_decide(&no_amb, FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS, HTTP_POST,
                    true, 1, 0, 10000);
    assert_int_equal(d.action, POLICY_ANSWER);
}

static void test_policy_non_idempotent(void **state)
{
    (void)state;
    const struct config_retry_policy *p = &test_mfa_policy;
    struct policy_decision d;
    /* never sent / no leader: resent whatever the method */
    d = test_decide(p, FAILURE_NEVER_SENT, RETRY_NEVER_SENT, HTTP_POST, false,
                    1, 0, 10000);
    assert_int_equal(d.action, POLICY_RETRY);
    d = test_decide(p, FAILURE_NO_LEADER, RETRY_NO_LEADER, HTTP_POST, false, 1,
                    0, 10000);
    assert_int_equal(d.action, POLICY_RETRY);
    /* ambiguous: reconciled where a reconciler exists, else answered */
    d = test_decide(p, FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS, HTTP_POST, true, 1,
                    0, 10000);
    assert_int_equal(d.action, POLICY_RECONCILE);
    d = test_decide(p, FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS, HTTP_POST, false, 1,
                    0, 10000);
    assert_int_equal(d.action, POLICY_ANSWER);
    /* reconciliation happens even on the last attempt (it sends nothing) */
    d = test_decide(p, FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS, HTTP_POST, true,
                    p->max_attempts, 0, 10000);
    assert_int_equal(d.action, POLICY_RECONCILE);
    /* a 429 on a plain POST may hide a commit: not resent */
    d = test_decide(p, FAILURE_TOO_MANY, RETRY_TOO_MANY, HTTP_POST, false, 1,
                    0, 10000);
    assert_int_equal(d.action, POLICY_ANSWER);
    /* idempotent methods: sent failures and 429 are resent */
    d = test_decide(p, FAILURE_SENT, RETRY_SENT_FAILED, HTTP_PUT, false, 1, 0,
                    10000);
    assert_int_equal(d.action, POLICY_RETRY);
    d = test_decide(p, FAILURE_TOO_MANY, RETRY_TOO_MANY, HTTP_GET, false, 1, 0,
                    10000);
    assert_int_equal(d.action, POLICY_RETRY);
    d = test_decide(p, FAILURE_SENT, RETRY_SENT_FAILED, HTTP_POST, false, 1, 0,
                    10000);
    assert_int_equal(d.action, POLICY_ANSWER);
}

static void test_policy_limits(void **state)
{
    (void)state;
    const struct config_retry_policy *p = &test_mfa_policy;
    struct policy_decision d;
    d = test_decide(p, FAILURE_NEVER_SENT, RETRY_NEVER_SENT, HTTP_GET, false,
                    p->max_attempts - 1, 0, 10000);
    assert_int_equal(d.action, POLICY_RETRY);
    d = test_decide(p, FAILURE_NEVER_SENT, RETRY_NEVER_SENT, HTTP_GET, false,
                    p->max_attempts, 0, 10000);
    assert_int_equal(d.action, POLICY_ANSWER);
    assert_string_equal(d.why, "attempts");
    /* no time left for even the shortest wait */
    d = test_decide(p, FAILURE_NEVER_SENT, RETRY_NEVER_SENT, HTTP_GET, false,
                    1, 10000, 10000);
    assert_int_equal(d.action, POLICY_ANSWER);
    assert_string_equal(d.why, "deadline");
    /* the delay never carries the retry past the deadline */
    for (uint64_t now = 9000; now < 10000; now += 7) {
        d = test_decide(p, FAILURE_NO_LEADER, RETRY_NO_LEADER, HTTP_POST,
                        false, 3, now, 10000);
        if (d.action == POLICY_RETRY)
            assert_true(now + d.delay_ms < 10000);
        else
            assert_string_equal(d.why, "deadline");
    }
}

static void test_backoff_full_jitter(void **state)
{
    (void)state;
    uint64_t rng = 42;
    for (uint32_t n = 0; n < 12; n++) {
        uint64_t ceiling = 50ull << n;
        if (ceiling > 1000)
            ceiling = 1000;
        uint64_t lo = UINT64_MAX, hi = 0;
        for (int i = 0; i < 4000; i++) {
            uint64_t v = policy_backoff(50, 1000, n, &rng);
            assert_true(v <= ceiling);
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
        /* full jitter: the whole range [0, ceiling] is used */
        assert_true(lo <= ceiling / 20);
        assert_true(hi >= ceiling - ceiling / 20);
    }
    assert_int_equal(policy_backoff(0, 1000, 5, &rng), 0);
    assert_int_equal(policy_backoff(0, 0, 0, &rng), 0);
    /* huge retry numbers stop at the cap (no overflow) */
    for (int i = 0; i < 100; i++)
        assert_true(policy_backoff(3600000, 3600000, 4000000000u, &rng) <=
                    3600000);
    /* a zero seed is not stuck at zero */
    uint64_t z = 0;
    assert_true(policy_rand(&z) != 0 && z != 0);
}

/* ---- budget -------------------------------------------------------------- */

static void test_budget_floor_and_ratio(void **state)
{
    (void)state;
    struct budget b = {0};
    budget_configure(&b, 0.2, 3);
    /* one request in flight: the floor allows 3 */
    budget_request_begin(&b);
    assert_true(budget_acquire(&b));
    assert_true(budget_acquire(&b));
    assert_true(budget_acquire(&b));
    assert_false(budget_acquire(&b));
    budget_release(&b);
    assert_true(budget_acquire(&b));
    assert_false(budget_acquire(&b));
    for (int i = 0; i < 3; i++)
        budget_release(&b);
    /* 50 in flight: 20 % = 10 */
    for (int i = 1; i < 50; i++)
        budget_request_begin(&b);
    int got = 0;
    while (budget_acquire(&b))
        got++;
    assert_int_equal(got, 10);
    for (int i = 0; i < got; i++)
        budget_release(&b);
    /* a reload changes the ratio at once */
    budget_configure(&b, 0.5, 1);
    got = 0;
    while (budget_acquire(&b))
        got++;
    assert_int_equal(got, 25);
    for (int i = 0; i < got; i++)
        budget_release(&b);
    /* 0 ratio, 0 floor: retries off */
    budget_configure(&b, 0.0, 0);
    assert_false(budget_acquire(&b));
    for (int i = 0; i < 50; i++)
        budget_request_end(&b);
    assert_int_equal(atomic_load(&b.requests), 0);
    assert_int_equal(atomic_load(&b.retries), 0);
}

struct test_budget_thread {
    struct budget *b;
    atomic_int *held, *max_held;
    int granted;
};

static void *test_budget_worker(void *arg)
{
    struct test_budget_thread *t = arg;
    for (int i = 0; i < 20000; i++) {
        if (!budget_acquire(t->b))
            continue;
        t->granted++;
        int h = atomic_fetch_add(t->held, 1) + 1;
        int m = atomic_load(t->max_held);
        while (h > m && !atomic_compare_exchange_weak(t->max_held, &m, h))
            ;
        atomic_fetch_sub(t->held, 1);
        budget_release(t->b);
    }
    return NULL;
}

static void test_budget_never_exceeded_under_contention(void **state)
{
    (void)state;
    struct budget b = {0};
    atomic_int held = 0, max_held = 0;
    budget_configure(&b, 0.2, 2);
    for (int i = 0; i < 10; i++)
        budget_request_begin(&b); /* allowed = max(2, 2) = 2 */
    pthread_t th[4];
    struct test_budget_thread t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct test_budget_thread){&b, &held, &max_held, 0};
        assert_int_equal(pthread_create(&th[i], NULL, test_budget_worker,
                                        &t[i]),
                         0);
    }
    int granted = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        granted += t[i].granted;
    }
    assert_true(granted > 0);
    assert_true(atomic_load(&max_held) <= 2);
    assert_int_equal(atomic_load(&b.retries), 0);
}

/* ---- reconciliation: what a readable state says ------------------------- */

static void test_reconcile_needs_read_after_a_resend(void **state)
{
    (void)state;
    assert_true(reconcile_needs_read(RECONCILE_CREATE, 409));
    assert_false(reconcile_needs_read(RECONCILE_CREATE, 404));
    assert_true(reconcile_needs_read(RECONCILE_VERIFY, 404));
    assert_true(reconcile_needs_read(RECONCILE_DELETE, 404));
    assert_false(reconcile_needs_read(RECONCILE_DELETE, 409));
    assert_false(reconcile_needs_read(RECONCILE_VERIFY, 200));
}

static void test_reconcile_judge(void **state)
{
    (void)state;
    const uint64_t since = 1000000;
    /* create: there and made since the request began -> applied */
    assert_int_equal(reconcile_judge(RECONCILE_CREATE, 0, RECONCILE_UNVERIFIED,
                                     since + 5, since),
                     RECONCILE_APPLIED);
    /* create: older than the request -> its own 409 */
    assert_int_equal(reconcile_judge(RECONCILE_CREATE, 0, RECONCILE_UNVERIFIED,
                                     since - 1, since),
                     RECONCILE_PREEXISTING);
    /* an unknown createdAt is not taken as older */
    assert_int_equal(reconcile_judge(RECONCILE_CREATE, 0, RECONCILE_VERIFIED,
                                     0, since),
                     RECONCILE_APPLIED);
    assert_int_equal(reconcile_judge(RECONCILE_CREATE, 0, RECONCILE_ABSENT, 0,
                                     since),
                     RECONCILE_NOT_APPLIED);
    /* a resent create met 409 from the raft apply, the state shows nothing:
     * the state is behind, never resend */
    assert_int_equal(reconcile_judge(RECONCILE_CREATE, 409, RECONCILE_ABSENT,
                                     0, since),
                     RECONCILE_BEHIND);
    /* verify: only isVerified counts */
    assert_int_equal(reconcile_judge(RECONCILE_VERIFY, 0, RECONCILE_VERIFIED,
                                     0, since),
                     RECONCILE_APPLIED);
    assert_int_equal(reconcile_judge(RECONCILE_VERIFY, 404,
                                     RECONCILE_UNVERIFIED, 0, since),
                     RECONCILE_NOT_APPLIED);
    /* delete: gone -> applied; a 404 from the apply with the record still
     * there -> behind */
    assert_int_equal(reconcile_judge(RECONCILE_DELETE, 0, RECONCILE_ABSENT, 0,
                                     since),
                     RECONCILE_APPLIED);
    assert_int_equal(reconcile_judge(RECONCILE_DELETE, 0, RECONCILE_VERIFIED,
                                     0, since),
                     RECONCILE_NOT_APPLIED);
    assert_int_equal(reconcile_judge(RECONCILE_DELETE, 404,
                                     RECONCILE_VERIFIED, 0, since),
                     RECONCILE_BEHIND);
}

static void test_reconcile_applied_body(void **state)
{
    (void)state;
    struct buf b = {0};
    buf_puts(&b, "stale");
    assert_int_equal(reconcile_applied_body(RECONCILE_CREATE, "m\"1", &b),
                     201);
    assert_string_equal(b.data,
                        "{\"data\":{\"id\":\"m\\\"1\",\"_links\":{\"self\":"
                        "{\"href\":\"./current-identity/mfa\"}}},\"meta\":{}}");
    assert_int_equal(reconcile_applied_body(RECONCILE_VERIFY, "", &b), 200);
    assert_string_equal(b.data, "{\"data\":{},\"meta\":{}}");
    assert_int_equal(reconcile_applied_body(RECONCILE_DELETE, "", &b), 200);
    assert_string_equal(b.data, "{\"data\":{},\"meta\":{}}");
    buf_free(&b);
}

/* ---- reconciliation: parsing the state ----------------------------------- */

static void test_reconcile_parse_states(void **state)
{
    (void)state;
    char id[64];
    uint64_t created = 1;
    const char *unverified =
        "{\"data\":{\"_links\":{\"self\":"
        "{\"href\":\"./current-identity/mfa\"}},"
        "\"createdAt\":\"2026-11-26T11:21:37.123456Z\",\"id\":\"mFa1\","
        "\"isVerified\":false,\"provisioningUrl\":\"otpauth://totp/x\","
        "\"recoveryCodes\":[\"AAAAAA\"],\"tags\":{},"
        "\"updatedAt\":\"2026-11-26T11:21:37.123456Z\"},\"meta\":{}}";
    assert_int_equal(reconcile_parse(200, unverified, strlen(unverified), id,
                                     sizeof(id), &created),
                     RECONCILE_UNVERIFIED);
    assert_string_equal(id, "mFa1");
    assert_int_equal(created, 1795692097123ull);
    const char *verified =
        "{\"data\":{\"createdAt\":\"2026-11-26T11:21:37Z\",\"id\":\"m2\","
        "\"isVerified\":true},\"meta\":{}}";
    assert_int_equal(reconcile_parse(200, verified, strlen(verified), id,
                                     sizeof(id), &created),
                     RECONCILE_VERIFIED);
    assert_string_equal(id, "m2");
    assert_int_equal(created, 1795692097000ull);
    const char *nf = "{\"error\":{\"code\":\"NOT_FOUND\"},\"meta\":{}}";
    assert_int_equal(reconcile_parse(404, nf, strlen(nf), id, sizeof(id),
                                     &created),
                     RECONCILE_ABSENT);
    /* an id too long for the buffer is not read at all: a cut one could be
     * another enrollment's */
    char small[4];
    assert_int_equal(reconcile_parse(200, unverified, strlen(unverified),
                                     small, sizeof(small), &created),
                     RECONCILE_UNVERIFIED);
    assert_string_equal(small, "");
    assert_int_equal(reconcile_parse(200, verified, strlen(verified), small,
                                     sizeof(small), &created),
                     RECONCILE_VERIFIED);
    assert_string_equal(small, "m2");
    /* anything else: unknown, never guessed */
    assert_int_equal(reconcile_parse(200, "oops", 4, id, sizeof(id), &created),
                     RECONCILE_UNREADABLE);
    const char *noflag = "{\"data\":{\"id\":\"m3\"},\"meta\":{}}";
    assert_int_equal(reconcile_parse(200, noflag, strlen(noflag), id,
                                     sizeof(id), &created),
                     RECONCILE_UNREADABLE);
    const char *strflag = "{\"data\":{\"id\":\"m3\",\"isVerified\":\"true\"}}";
    assert_int_equal(reconcile_parse(200, strflag, strlen(strflag), id,
                                     sizeof(id), &created),
                     RECONCILE_UNREADABLE);
    assert_int_equal(reconcile_parse(401, nf, strlen(nf), id, sizeof(id),
                                     &created),
                     RECONCILE_UNREADABLE);
    assert_int_equal(reconcile_parse(500, nf, strlen(nf), id, sizeof(id),
                                     &created),
                     RECONCILE_UNREADABLE);
    assert_int_equal(reconcile_parse(503, NULL, 0, id, sizeof(id), &created),
                     RECONCILE_UNREADABLE);
    /* an id that fits, without created_ms */
    assert_int_equal(reconcile_parse(200, verified, strlen(verified), small,
                                     sizeof(small), NULL),
                     RECONCILE_VERIFIED);
    assert_string_equal(small, "m2");
}

static void test_reconcile_parse_time(void **state)
{
    (void)state;
    assert_int_equal(reconcile_parse_time("1970-01-01T00:00:00Z"), 0);
    assert_int_equal(reconcile_parse_time("1970-01-01T00:00:01.5Z"), 1500);
    assert_int_equal(reconcile_parse_time("2026-11-26T11:21:37.123456789Z"),
                     1795692097123ull);
    /* offsets (Go's time.RFC3339Nano with a zone) */
    assert_int_equal(reconcile_parse_time("2026-11-26T12:21:37.123+01:00"),
                     1795692097123ull);
    assert_int_equal(reconcile_parse_time("2026-11-26T06:21:37.123-05:00"),
                     1795692097123ull);
    assert_int_equal(reconcile_parse_time(NULL), 0);
    assert_int_equal(reconcile_parse_time(""), 0);
    assert_int_equal(reconcile_parse_time("yesterday"), 0);
}

/* ---- where a retry goes (routing/route.c) ------------------------------- */

/* Three controllers, all up, ctrl1 (index 0) leading. */
static void test_cluster3(struct cluster *c, struct cluster_node *nodes)
{
    memset(c, 0, sizeof(*c));
    memset(nodes, 0, 3 * sizeof(*nodes));
    c->n = 3;
    c->nodes = nodes;
    for (int i = 0; i < 3; i++) {
        nodes[i].index = i;
        snprintf(nodes[i].id, sizeof(nodes[i].id), "ctrl%d", i + 1);
        atomic_store(&nodes[i].up, 1);
        atomic_store(&nodes[i].last_probe_wall_ms, 1000);
    }
    atomic_store(&nodes[0].claims_leader, 1);
    atomic_store(&c->leader, 0);
    atomic_store(&c->generation, 7);
}

static struct route_out test_route(const struct cluster *c,
                                   const struct route_in *in)
{
    int outstanding[3] = {0};
    uint64_t rng = 99;
    struct route_out out;
    route_pick(c, in, outstanding, &rng, &out);
    return out;
}

static void test_retry_of_a_preferred_leader_goes_elsewhere(void **state)
{
    (void)state;
    struct cluster c;
    struct cluster_node nodes[3];
    test_cluster3(&c, nodes);
    struct route_in in = {.pin = PIN_PREFER_LEADER, .home = -1,
                          .not_leader = -1};
    struct route_out o = test_route(&c, &in);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 0);
    assert_int_equal(o.decision, DECISION_PINNED);
    /* the leader refused the first attempt: a write is resent to another */
    in.tried = 1u << 0;
    for (int i = 0; i < 20; i++) {
        o = test_route(&c, &in);
        assert_int_equal(o.kind, ROUTE_TO);
        assert_true(o.node == 1 || o.node == 2);
    }
    /* everyone tried: anyone, the leader included */
    in.tried = 7;
    o = test_route(&c, &in);
    assert_int_equal(o.kind, ROUTE_TO);
    /* a required leader stays required */
    in.pin = PIN_REQUIRE_LEADER;
    in.tried = 1u << 0;
    o = test_route(&c, &in);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 0);
}

static void test_no_leader_answer_until_a_later_probe(void **state)
{
    (void)state;
    struct cluster c;
    struct cluster_node nodes[3];
    test_cluster3(&c, nodes);
    /* ctrl1 answered CLUSTER_NO_LEADER at wall time 2000, view unchanged */
    struct route_in in = {.pin = PIN_REQUIRE_LEADER, .home = -1,
                          .not_leader = 0, .not_leader_gen = 7,
                          .not_leader_wall_ms = 2000};
    struct route_out o = test_route(&c, &in);
    assert_int_equal(o.kind, ROUTE_WAIT_LEADER);
    /* a probe answered at 2000 or before says nothing new */
    atomic_store(&nodes[0].last_probe_wall_ms, 2000);
    assert_int_equal(test_route(&c, &in).kind, ROUTE_WAIT_LEADER);
    /* a later probe still finds it leading: it is the leader again */
    atomic_store(&nodes[0].last_probe_wall_ms, 2001);
    o = test_route(&c, &in);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 0);
    /* or the view changed (another leader): that one */
    atomic_store(&nodes[0].last_probe_wall_ms, 1500);
    atomic_store(&nodes[0].claims_leader, 0);
    atomic_store(&nodes[1].claims_leader, 1);
    atomic_store(&c.leader, 1);
    atomic_store(&c.generation, 8);
    o = test_route(&c, &in);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_sent_is_never_sent_for_every_method),
        cmocka_unit_test(test_sent_failures_depend_on_idempotency),
        cmocka_unit_test(test_no_leader_is_safe_whatever_the_method),
        cmocka_unit_test(test_status_alone_decides_nothing),
        cmocka_unit_test(test_429_both_versions),
        cmocka_unit_test(test_500_unhandled_reads_the_cause),
        cmocka_unit_test(test_gateway_errors),
        cmocka_unit_test(test_code_is_copied_and_bounded),
        cmocka_unit_test(test_policy_answers_and_not_retryable),
        cmocka_unit_test(test_policy_non_idempotent),
        cmocka_unit_test(test_policy_limits),
        cmocka_unit_test(test_backoff_full_jitter),
        cmocka_unit_test(test_budget_floor_and_ratio),
        cmocka_unit_test(test_budget_never_exceeded_under_contention),
        cmocka_unit_test(test_reconcile_needs_read_after_a_resend),
        cmocka_unit_test(test_reconcile_judge),
        cmocka_unit_test(test_reconcile_applied_body),
        cmocka_unit_test(test_reconcile_parse_states),
        cmocka_unit_test(test_reconcile_parse_time),
        cmocka_unit_test(test_retry_of_a_preferred_leader_goes_elsewhere),
        cmocka_unit_test(test_no_leader_answer_until_a_later_probe),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
