/* request_reconcile.c - see request_reconcile.h. */
#include "proxy/request_reconcile.h"

#include <stdio.h>
#include <stdlib.h>

#include "base/loop.h"
#include "base/util.h"
#include "io/listener.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/request.h"
#include "proxy/worker.h"
#include "retry/policy.h"
#include "retry/reconcile.h"
#include "routing/cluster.h"

static enum reconcile_call request_reconcile_call(const struct request *rq)
{
    switch (rq->cls.call) {
    case CALL_MFA_CREATE:
        return RECONCILE_CREATE;
    case CALL_MFA_VERIFY:
        return RECONCILE_VERIFY;
    default:
        return RECONCILE_DELETE;
    }
}

bool request_reconcile_available(const struct request *rq)
{
    return classify_is_mfa_write(rq->cls.call);
}

/* A verify answered 404 at its first attempt: the enrollment may have been
 * verified by this same call sent before through a quorumgate that died or
 * a connection that dropped before the answer, and the client repeats it
 * (found by bench/soak.py, issue 18): its state says. */
static bool request_reconcile_repeated_verify(const struct request *rq)
{
    return !rq->had_ambiguous && rq->cls.call == CALL_MFA_VERIFY &&
           rq->up.result == UPSTREAM_OK && rq->up.status == 404;
}

bool request_reconcile_after_answer(const struct request *rq)
{
    return rq->up.result == UPSTREAM_OK &&
           request_reconcile_available(rq) &&
           reconcile_needs_read(request_reconcile_call(rq), rq->up.status) &&
           (rq->had_ambiguous || request_reconcile_repeated_verify(rq));
}

static void request_reconcile_count(struct request *rq,
                                    enum metrics_reconcile_result res)
{
    static const enum metrics_mfa_call calls[] = {
        [RECONCILE_CREATE] = M_CALL_CREATE,
        [RECONCILE_VERIFY] = M_CALL_VERIFY,
        [RECONCILE_DELETE] = M_CALL_DELETE,
    };
    metrics_inc(rq->w->app->metrics, M_RECONCILED_TOTAL,
                calls[request_reconcile_call(rq)], res);
}

/* The state says the call happened: answer as it would have. */
static void request_reconcile_applied(struct request *rq, const char *id)
{
    static const char *const labels[] = {
        [RECONCILE_CREATE] = "create",
        [RECONCILE_VERIFY] = "verify",
        [RECONCILE_DELETE] = "delete",
    };
    static const enum metrics_retry_outcome outcomes[] = {
        [RECONCILE_CREATE] = M_RETRY_RECONCILED_CREATE,
        [RECONCILE_VERIFY] = M_RETRY_RECONCILED_VERIFY,
        [RECONCILE_DELETE] = M_RETRY_RECONCILED_DELETE,
    };
    enum reconcile_call c = request_reconcile_call(rq);
    request_reconcile_count(rq, M_RECONCILE_APPLIED);
    rq->reconciled = labels[c];
    metrics_inc(rq->w->app->metrics, M_RETRY_OUTCOMES_TOTAL, rq->cls.cls,
                outcomes[c]);
    rq->up.status = reconcile_applied_body(c, id, &rq->up.resp_body);
    rq->up.result = UPSTREAM_OK;
    /* the answer is now ours: keep only what describes the body */
    rq->up.n_resp_hdrs = 0;
    buf_reset(&rq->up.resp_hdr_data);
    upstream_resp_header_add(&rq->up, "Content-Type", "application/json");
    request_reconciled_success(rq);
}

static void request_reconcile_wait_leader(void *arg);

/* The state could not be read in time (every read failed, or no leader to
 * read it on): whether the call was applied is unknown.  An attempt sent
 * without getting an answer (reset, timeout: "written, no answer") says
 * nothing about that, so the client is told so -- 504, outcome unknown --
 * never a 502 that reads as "it failed" (bench/soak.py, issue 18: a legacy
 * verify reset by its home's kill had committed, and the reads on that home
 * were refused until the deadline).  So is a controller's 5xx, and any
 * answer to a resend after such an attempt; a first attempt's 4xx goes
 * back as it was. */
static void request_reconcile_unknown(struct request *rq)
{
    struct app *a = rq->w->app;
    char msg[256];
    const char *ctrl = rq->node >= 0 ? a->cluster->nodes[rq->node].id : "?";
    request_reconcile_count(rq, M_RECONCILE_FAILED);
    /* the raft dispatch's 5xx (a forwarded write committed on the leader
     * while the serving controller's own apply timed out, a leadership
     * lost while committing): not "it failed" either (bench/soak.py,
     * 30-minute run: three legacy verifies answered 500 UNHANDLED by their
     * home had committed).  Nor is the answer to a resend after an
     * unanswered attempt (a verify's 404: nothing left to verify), which
     * may be that attempt's doing, committed after the state read that let
     * the resend go (30-minute v1.7.2 run: a verify answered 404 that had
     * committed 6 s into its first try). */
    if (rq->up.result == UPSTREAM_OK &&
        ((rq->up.status >= 500 && rq->up.status <= 599) ||
         rq->had_ambiguous)) {
        request_answer_unknown(rq, rq->had_ambiguous, true);
        return;
    }
    if (rq->up.result == UPSTREAM_OK || !rq->up.sent) {
        request_answer_give_up(rq);
        return;
    }
    snprintf(msg, sizeof(msg),
             "controller %s took the call but gave no answer (%s); whether "
             "it was applied is unknown: its state could not be read in "
             "time",
             ctrl, upstream_result_name(rq->up.result));
    request_answer_error(rq, ERR_PROXY_UPSTREAM_TIMEOUT, msg);
}

/* The call was answered 5xx by a controller that is not the leader, whose
 * own state is what was read (a legacy session's home): a forwarded write
 * commits on the leader first, and the 500 is often that controller's own
 * apply timing out -- its "not there" is then behind, not a proof that the
 * call failed, so it is read again rather than the call resent. */
static bool request_reconcile_maybe_behind(const struct request *rq)
{
    return rq->up.result == UPSTREAM_OK && rq->up.status >= 500 &&
           rq->up.status <= 599 &&
           rq->aux_node != cluster_leader(rq->w->app->cluster);
}

/* Read the state again after the policy's backoff, on whoever leads then,
 * while the deadline lasts and the budget gives the request a retry slot
 * (a sick cluster is not stormed with reads either). */
static bool request_reconcile_read_later(struct request *rq)
{
    uint64_t now = loop_now_ms(rq->w->loop);
    uint64_t delay = policy_backoff(rq->policy->backoff_base_ms,
                                    rq->policy->backoff_cap_ms,
                                    (uint32_t)rq->n_reads - 1, &rq->w->rng);
    if (now + delay >= rq->deadline_ms)
        return false;
    if (!request_attempt_retry_slot(rq))
        return false;
    request_after(rq, delay, request_reconcile_wait_leader);
    return true;
}

/* A read that failed for a reason that may pass (no answer, 429, 5xx): the
 * leader may be dying or just elected.  At most 2 x max_attempts reads that
 * reached a controller; one that reached none (refused: a member killed
 * and restarting, a legacy session's home) costs the cluster nothing and is
 * bounded by the deadline and the backoff only -- else refused reads, a
 * fraction of a millisecond each, spend them all in a few seconds and a
 * home back within the deadline is never read again (bench/soak.py op
 * 2166: 12 refused reads in 2.9 s of a 10 s deadline; the home answered
 * again 3 s before it). */
static bool request_reconcile_read_again(struct request *rq,
                                         const struct upstream_req *r)
{
    if (r->result == UPSTREAM_OK && r->status != 429 &&
        (r->status < 500 || r->status > 599))
        return false; /* an answer (401, 400, 606...): reading again won't help */
    if (r->result == UPSTREAM_CONNECT_ERROR)
        worker_report_failure(rq->w, rq->aux_node, true);
    else if (r->result == UPSTREAM_OK && r->status == 503)
        worker_report_failure(rq->w, rq->aux_node, false);
    if (!upstream_result_never_sent(r) &&
        (uint32_t)++rq->n_read_failures >= 2 * rq->policy->max_attempts)
        return false;
    return request_reconcile_read_later(rq);
}

static void request_reconcile_done(struct upstream_req *r, void *arg)
{
    struct request *rq = arg;
    char id[128] = "";
    uint64_t created = 0;
    enum reconcile_state st = RECONCILE_UNREADABLE;
    if (r->result == UPSTREAM_OK)
        st = reconcile_parse(r->status, r->resp_body.data, r->resp_body.len,
                             id, sizeof(id), &created);
    request_attempt_log(rq, rq->aux_node,
                        st == RECONCILE_UNREADABLE ? "state_unreadable"
                                                   : "state",
                        r->status, r->duration_ns, true);
    if (st == RECONCILE_UNREADABLE) {
        if (request_reconcile_read_again(rq, r))
            return;
        request_reconcile_unknown(rq);
        return;
    }
    uint64_t skew = rq->cfg->retry.clock_skew_ms;
    uint64_t since = rq->start_wall_ms > skew ? rq->start_wall_ms - skew : 0;
    int answered = rq->up.result == UPSTREAM_OK ? rq->up.status : 0;
    switch (reconcile_judge(request_reconcile_call(rq), answered, st, created,
                            since)) {
    case RECONCILE_BEHIND:
        if (request_reconcile_read_later(rq))
            return;
        request_reconcile_count(rq, M_RECONCILE_FAILED);
        request_answer_give_up(rq);
        return;
    case RECONCILE_PREEXISTING:
        request_reconcile_count(rq, M_RECONCILE_NOT_APPLIED);
        request_answer_as_upstream_or(rq, ERR_MFA_EXISTS, NULL);
        return;
    case RECONCILE_APPLIED:
        rq->node = rq->aux_node; /* its state is the answer */
        request_reconcile_applied(rq, id);
        return;
    case RECONCILE_NOT_APPLIED:
        if (request_reconcile_maybe_behind(rq)) {
            if (request_reconcile_read_later(rq))
                return;
            request_reconcile_unknown(rq);
            return;
        }
        break;
    }
    request_reconcile_count(rq, M_RECONCILE_NOT_APPLIED);
    if (request_reconcile_repeated_verify(rq)) {
        /* nothing of ours was sent before: the controller's 404 stands */
        request_answer_give_up(rq); /* its answer as it was */
        return;
    }
    request_attempt_retry_if_allowed(rq);
}

/* An attempt that used up the deadline may still have committed: its
 * state is read even then, for at most this long past the deadline, so
 * that a committed call is not reported as failed. */
#define RECONCILE_GRACE_MS 2000

void request_reconcile_start(struct request *rq)
{
    struct app *a = rq->w->app;
    struct worker *w = rq->w;
    uint64_t now = loop_now_ms(w->loop);
    uint64_t hard = rq->deadline_ms + RECONCILE_GRACE_MS;
    /* a legacy session can only be read where it lives: there even while
     * its probes mark it down (slow is not gone, routing/route.h) */
    int leader = rq->home >= 0 ? rq->home : cluster_leader(a->cluster);
    rq->stage = STAGE_RECONCILE;
    if (leader < 0 || (rq->home < 0 && !cluster_up(a->cluster, leader))) {
        if (now >= hard) {
            request_reconcile_unknown(rq);
            return;
        }
        request_after(rq, 50, request_reconcile_wait_leader);
        return;
    }
    rq->n_reads++;
    uint64_t left = hard > now ? hard - now : 1;
    uint64_t per_try = rq->policy->per_try_timeout_ms;
    request_timer_stop(rq); /* nothing else may run meanwhile */
    rq->timer_cb = NULL;
    char *path = request_mfa_state_path(rq);
    /* rq->node stays the controller that had the call */
    request_attempt_aux_get(rq, leader, path,
                            per_try && per_try < left ? per_try : left,
                            request_reconcile_done);
    free(path);
}

static void request_reconcile_wait_leader(void *arg)
{
    request_reconcile_start(arg);
}
