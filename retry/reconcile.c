/* reconcile.c - see reconcile.h. */
#include "retry/reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "metrics/metrics.h"
#include "proxy/app.h"
#include "base/json.h"
#include "io/listener.h"
#include "base/loop.h"
#include "proxy/request.h"
#include "base/util.h"
#include "proxy/worker.h"
#include "retry/policy.h"
#include "routing/cluster.h"

bool reconcile_available(const struct request *rq)
{
    return classify_is_mfa_write(rq->cls.call);
}

bool reconcile_after_answer(const struct request *rq)
{
    if (rq->up.result != UPSTREAM_OK)
        return false;
    switch (rq->cls.call) {
    case CALL_MFA_CREATE:
        return rq->up.status == 409;
    case CALL_MFA_VERIFY:
    case CALL_MFA_DELETE:
        return rq->up.status == 404;
    default:
        return false;
    }
}

uint64_t reconcile_parse_time(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s)
        return 0;
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return 0;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        while (digits < 3) {
            ms *= 10;
            digits++;
        }
    }
    time_t t = timegm(&tm);
    long off = 0;
    if (*p == '+' || *p == '-') {
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2)
            off = (hh * 3600 + mm * 60) * (*p == '+' ? 1 : -1);
    }
    return (uint64_t)(t - off) * 1000u + (uint64_t)ms;
}

enum reconcile_state reconcile_parse(int status, const char *body,
                                     size_t len, char *id, size_t id_cap,
                                     uint64_t *created_ms)
{
    if (status == 404)
        return RECONCILE_ABSENT;
    if (status != 200)
        return RECONCILE_UNREADABLE;
    struct json *j = json_parse(body, len);
    struct json *data = json_get(j, "data");
    enum reconcile_state st = RECONCILE_UNREADABLE;
    bool verified;
    if (json_is_object(data) && json_bool(json_get(data, "isVerified"),
                                          &verified)) {
        st = verified ? RECONCILE_VERIFIED : RECONCILE_UNVERIFIED;
        const char *i = json_string(json_get(data, "id"));
        if (id && id_cap)
            snprintf(id, id_cap, "%s", i ? i : "");
        if (created_ms)
            *created_ms = reconcile_parse_time(
                json_string(json_get(data, "createdAt")));
    }
    json_free(j);
    return st;
}

static enum metrics_mfa_call reconcile_call(const struct request *rq)
{
    switch (rq->cls.call) {
    case CALL_MFA_CREATE:
        return M_CALL_CREATE;
    case CALL_MFA_VERIFY:
        return M_CALL_VERIFY;
    default:
        return M_CALL_DELETE;
    }
}

static void reconcile_count(struct request *rq,
                            enum metrics_reconcile_result res)
{
    metrics_inc(rq->w->app->metrics, M_RECONCILED_TOTAL, reconcile_call(rq),
                res);
}

/* Replace r's response headers with the JSON Content-Type the controller
 * gives its envelopes (responder.go). */
/* The state says the call happened: answer as it would have. */
static void reconcile_applied(struct request *rq, const char *id)
{
    struct metrics *m = rq->w->app->metrics;
    reconcile_count(rq, M_RECONCILE_APPLIED);
    if (rq->cls.call == CALL_MFA_CREATE) {
        rq->reconciled = "create";
        metrics_inc(m, M_RETRY_OUTCOMES_TOTAL, rq->cls.cls,
                    M_RETRY_RECONCILED_CREATE);
        rq->up.status = 201;
        rq->up.result = UPSTREAM_OK;
        /* the create envelope (controller/response/responder.go) */
        buf_reset(&rq->up.resp_body);
        buf_puts(&rq->up.resp_body, "{\"data\":{\"id\":\"");
        buf_json_escape(&rq->up.resp_body, id, strlen(id));
        buf_puts(&rq->up.resp_body, "\",\"_links\":{\"self\":{\"href\":"
                                    "\"./current-identity/mfa\"}}},"
                                    "\"meta\":{}}");
    } else {
        bool verify = rq->cls.call == CALL_MFA_VERIFY;
        rq->reconciled = verify ? "verify" : "delete";
        metrics_inc(m, M_RETRY_OUTCOMES_TOTAL, rq->cls.cls,
                    verify ? M_RETRY_RECONCILED_VERIFY
                           : M_RETRY_RECONCILED_DELETE);
        rq->up.status = 200;
        rq->up.result = UPSTREAM_OK;
        buf_reset(&rq->up.resp_body);
        buf_puts(&rq->up.resp_body, "{\"data\":{},\"meta\":{}}");
    }
    /* the answer is now ours: keep only what describes the body */
    rq->up.n_resp_hdrs = 0;
    buf_reset(&rq->up.resp_hdr_data);
    upstream_resp_header_add(&rq->up, "Content-Type", "application/json");
    request_reconciled_success(rq);
}

static void reconcile_wait_leader(void *arg);

/* Read the state again after the policy's backoff, on whoever leads then,
 * while the deadline lasts and the budget gives the request a retry slot
 * (a sick cluster is not stormed with reads either). */
static bool reconcile_read_later(struct request *rq)
{
    uint64_t now = loop_now_ms(rq->w->loop);
    uint64_t delay = policy_backoff(rq->policy->backoff_base_ms,
                                    rq->policy->backoff_cap_ms,
                                    (uint32_t)rq->n_reads - 1, &rq->w->rng);
    if (now + delay >= rq->deadline_ms)
        return false;
    if (!request_retry_slot(rq))
        return false;
    request_after(rq, delay, reconcile_wait_leader);
    return true;
}

/* A read that failed for a reason that may pass (no answer, 429, 5xx): the
 * leader may be dying or just elected. */
static bool reconcile_read_again(struct request *rq,
                                 const struct upstream_req *r)
{
    struct app *a = rq->w->app;
    if (r->result == UPSTREAM_OK && r->status != 429 && r->status < 500)
        return false; /* an answer (401, 400...): reading again won't help */
    if (r->result == UPSTREAM_CONNECT_ERROR)
        app_report_failure(a, rq->aux_node, true);
    else if (r->result == UPSTREAM_OK && r->status == 503)
        app_report_failure(a, rq->aux_node, false);
    if ((uint32_t)++rq->n_read_failures >= 2 * rq->policy->max_attempts)
        return false;
    return reconcile_read_later(rq);
}

/* The answer that sent us reading was a resend meeting what its committed
 * first attempt would cause, decided in the raft apply -- 409 MFA_EXISTS
 * for a create (MfaManager.ApplyCreate), 404 for a delete whose record the
 * apply no longer found -- yet the state read says otherwise: that state is
 * behind (a new leader still applying).  Read again; resending cannot help. */
static bool reconcile_state_behind(const struct request *rq,
                                   enum reconcile_state st)
{
    if (rq->up.result != UPSTREAM_OK)
        return false;
    if (rq->cls.call == CALL_MFA_CREATE)
        return rq->up.status == 409 && st == RECONCILE_ABSENT;
    if (rq->cls.call == CALL_MFA_DELETE)
        return rq->up.status == 404 && st != RECONCILE_ABSENT;
    return false;
}

static void reconcile_done(struct upstream_req *r, void *arg)
{
    struct request *rq = arg;
    char id[128] = "";
    uint64_t created = 0;
    enum reconcile_state st = RECONCILE_UNREADABLE;
    if (r->result == UPSTREAM_OK)
        st = reconcile_parse(r->status, r->resp_body.data, r->resp_body.len,
                             id, sizeof(id), &created);
    request_log_attempt(rq, rq->aux_node, st == RECONCILE_UNREADABLE
                                          ? "state_unreadable" : "state",
                        r->status, r->duration_ns, true);
    if (st == RECONCILE_UNREADABLE) {
        if (reconcile_read_again(rq, r))
            return;
        reconcile_count(rq, M_RECONCILE_FAILED);
        request_give_up_original(rq);
        return;
    }
    if (reconcile_state_behind(rq, st)) {
        if (reconcile_read_later(rq))
            return;
        reconcile_count(rq, M_RECONCILE_FAILED);
        request_give_up_original(rq);
        return;
    }
    bool applied = false;
    switch (rq->cls.call) {
    case CALL_MFA_CREATE: {
        uint64_t since = rq->start_wall_ms > rq->cfg->retry.clock_skew_ms
                             ? rq->start_wall_ms - rq->cfg->retry.clock_skew_ms
                             : 0;
        if (st != RECONCILE_ABSENT && created && created < since) {
            /* it existed before this request: the create's own answer */
            reconcile_count(rq, M_RECONCILE_NOT_APPLIED);
            request_answer_as_upstream_or(rq, 409, "MFA_EXISTS",
                                          "An MFA record already exists, "
                                          "try removing it");
            return;
        }
        applied = st != RECONCILE_ABSENT;
        break;
    }
    case CALL_MFA_VERIFY:
        applied = st == RECONCILE_VERIFIED;
        break;
    case CALL_MFA_DELETE:
        applied = st == RECONCILE_ABSENT;
        break;
    default:
        break;
    }
    if (applied) {
        rq->node = rq->aux_node; /* its state is the answer */
        reconcile_applied(rq, id);
        return;
    }
    reconcile_count(rq, M_RECONCILE_NOT_APPLIED);
    request_retry_if_allowed(rq);
}

/* "/edge/client/v1/current-identity/mfa/verify?x" -> ".../mfa" */
char *reconcile_state_path(const char *target)
{
    size_t n = strcspn(target, "?");
    const char *mfa = NULL;
    for (const char *p = target; (p = strstr(p, "/current-identity/mfa"));
         p++) {
        if ((size_t)(p - target) < n)
            mfa = p;
        else
            break;
    }
    if (!mfa)
        return xstrndup(target, n);
    return xstrndup(target, (size_t)(mfa - target) +
                                strlen("/current-identity/mfa"));
}

/* An attempt that used up the deadline may still have committed: its
 * state is read even then, for at most this long past the deadline, so
 * that a committed call is not reported as failed. */
#define RECONCILE_GRACE_MS 2000

void reconcile_start(struct request *rq)
{
    struct app *a = rq->w->app;
    struct worker *w = rq->w;
    uint64_t now = loop_now_ms(w->loop);
    uint64_t hard = rq->deadline_ms + RECONCILE_GRACE_MS;
    /* a legacy session can only be read where it lives */
    int leader = rq->home >= 0 ? rq->home : cluster_leader(a->cluster);
    rq->stage = STAGE_RECONCILE;
    if (leader < 0 || !cluster_up(a->cluster, leader)) {
        if (now >= hard) {
            reconcile_count(rq, M_RECONCILE_FAILED);
            request_give_up_original(rq);
            return;
        }
        request_after(rq, 50, reconcile_wait_leader);
        return;
    }
    rq->n_reads++;
    uint64_t left = hard > now ? hard - now : 1;
    uint64_t per_try = rq->policy->per_try_timeout_ms;
    request_timer_stop(rq); /* nothing else may run meanwhile */
    rq->timer_cb = NULL;
    char *path = reconcile_state_path(rq->ex->url);
    /* rq->node stays the controller that had the call */
    request_aux_get(rq, leader, path, per_try && per_try < left ? per_try : left,
                    reconcile_done);
    free(path);
}

static void reconcile_wait_leader(void *arg)
{
    reconcile_start(arg);
}
