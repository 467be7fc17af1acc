/* request_attempt.c - see request.h: the attempts at a request on a
 * controller, what each outcome means (retry with backoff within the
 * budget, reconcile, give up, succeed), and the auxiliary state reads. */
#include "proxy/request.h"
#include "proxy/request_impl.h"
#include "proxy/request_reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/loop.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "io/listener.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/worker.h"
#include "retry/budget.h"
#include "retry/policy.h"
#include "routing/cluster.h"

/* ---- outcome bookkeeping ------------------------------------------------ */

void request_attempt_log(struct request *rq, int node, const char *outcome,
                         int status, uint64_t duration_ns, bool reconcile)
{
    if (rq->n_log >= REQUEST_MAX_ATTEMPTS)
        return;
    rq->attempts[rq->n_log++] = (struct request_attempt){
        node, outcome, status, duration_ns, reconcile};
}

static enum metrics_upstream_outcome request_attempt_outcome(
    const struct request *rq, const struct failure *f)
{
    switch (rq->up.result) {
    case UPSTREAM_OK:
        break;
    case UPSTREAM_CONNECT_ERROR:
        return M_UPSTREAM_CONNECT_ERROR;
    case UPSTREAM_TLS_ERROR:
        return M_UPSTREAM_TLS_ERROR;
    case UPSTREAM_CONNECT_TIMEOUT:
    case UPSTREAM_TIMEOUT:
        return M_UPSTREAM_TIMEOUT;
    case UPSTREAM_TOO_LARGE:
        return M_UPSTREAM_RESPONSE_TOO_LARGE;
    default:
        return M_UPSTREAM_RESET;
    }
    if (f->kind == FAILURE_NO_LEADER)
        return M_UPSTREAM_NO_LEADER;
    if (rq->up.status == 429)
        return M_UPSTREAM_TOO_MANY_REQUESTS;
    if (rq->up.status >= 500 && rq->up.status <= 599)
        return M_UPSTREAM_SERVER_ERROR;
    return M_UPSTREAM_OK;
}

static const char *const request_attempt_outcome_names[] = {
    "ok",        "connect_error", "timeout",     "reset",     "no_leader",
    "too_many_requests", "server_error", "response_too_large", "tls_error",
};

void request_attempt_retry_outcome(struct request *rq,
                                   enum metrics_retry_outcome o)
{
    metrics_inc(request_app(rq)->metrics, M_RETRY_OUTCOMES_TOTAL,
                rq->cls.cls, o);
}

/* ---- success ------------------------------------------------------------ */

static void request_attempt_success(struct request *rq)
{
    if (rq->retried)
        request_attempt_retry_outcome(rq, rq->up.status < 500 ||
                                                  rq->up.status > 599
                                              ? M_RETRY_RETRIED_SUCCESS
                                              : M_RETRY_RETRIED_FAILURE);
    request_reconciled_success(rq);
}
/* ---- attempts ------------------------------------------------------------ */

static void request_attempt_url(struct request *rq, int node,
                                const char *target, char **dst, size_t *cap)
{
    struct cluster *c = request_app(rq)->cluster;
    const char *base = c->nodes[node].base_url;
    size_t nb = strlen(base), nt = strlen(target);
    /* the URL buffer of a recycled request is reused as it is when it is
     * big enough */
    if (nb + nt + 1 > *cap) {
        *dst = xrealloc(*dst, nb + nt + 1);
        *cap = nb + nt + 1;
    }
    memcpy(*dst, base, nb);
    memcpy(*dst + nb, target, nt + 1);
}

static void request_attempt_done(struct upstream_req *r, void *arg);

void request_attempt_start(struct request *rq, int node)
{
    struct worker *w = rq->w;
    struct listener_exchange *ex = rq->ex;
    uint64_t now = loop_now_ms(w->loop);
    uint64_t left = rq->deadline_ms > now ? rq->deadline_ms - now : 1;
    uint64_t per_try = rq->policy->per_try_timeout_ms;
    /* A wait for a leader that a cluster change ended still has its timer
     * armed: it must not route (and send) the request a second time while
     * this attempt is in flight. */
    request_timer_stop(rq);
    rq->timer_cb = NULL;
    rq->stage = STAGE_ATTEMPT;
    rq->node = node;
    rq->n_attempts++;
    rq->route.tried |= nodeset_of(node);
    request_attempt_url(rq, node, ex->url, &rq->url, &rq->url_cap);
    rq->up.method = ex->method;
    rq->up.method_name = ex->method_name;
    rq->up.url = rq->url;
    rq->up.connect_to = request_app(rq)->cluster->nodes[node].connect_to;
    /* the pairs: the own client writes them as they are, libcurl gets
     * "Name: value" lines made by upstream_start */
    rq->up.headers = NULL;
    rq->up.n_headers = 0;
    rq->up.fields = &rq->up_headers;
    rq->up.body = ex->body;
    rq->up.body_len = ex->body_len;
    rq->up.timeout_ms = per_try && per_try < left ? per_try : left;
    rq->up.max_response = rq->cfg->limits.max_response_bytes;
    /* libcurl silently resends a request whose reused connection dies
     * before any answer (Curl_retry_request): for a write that may have
     * been processed that is a hidden duplicate, and for any method an
     * attempt nobody sees.  A fresh connection is never resent that way. */
    rq->up.fresh_connection = rq->policy->fresh_connection &&
                              ex->method != HTTP_GET &&
                              ex->method != HTTP_HEAD &&
                              ex->method != HTTP_OPTIONS;
    /* forwarding runs on quorumgate's own client (io/h1client.h), which
     * never resends by itself either */
    rq->up.own_client = true;
    rq->up.done = request_attempt_done;
    rq->up.arg = rq;
    w->outstanding[node]++;
    upstream_start(w->up, &rq->up);
}

static void request_attempt_backoff_done(void *arg)
{
    struct request *rq = arg;
    request_reroute(rq);
}

bool request_attempt_retry_slot(struct request *rq)
{
    struct app *a = request_app(rq);
    if (rq->holds_retry_slot)
        return true;
    if (!budget_acquire(&a->budget)) {
        rq->budget_exhausted = true;
        metrics_inc(a->metrics, M_RETRY_BUDGET_EXHAUSTED_TOTAL, rq->cls.cls);
        request_attempt_retry_outcome(rq, M_RETRY_BUDGET_EXHAUSTED);
        return false;
    }
    rq->holds_retry_slot = true;
    return true;
}

static void request_attempt_retry(struct request *rq, uint64_t delay_ms)
{
    struct app *a = request_app(rq);
    if (!request_attempt_retry_slot(rq)) {
        request_answer_give_up(rq);
        return;
    }
    rq->retried = true;
    metrics_inc(a->metrics, M_RETRIES_TOTAL, rq->cls.cls,
                rq->last_failure.reason);
    rq->stage = STAGE_BACKOFF;
    request_after(rq, delay_ms, request_attempt_backoff_done);
}

void request_attempt_retry_if_allowed(struct request *rq)
{
    uint64_t now = loop_now_ms(rq->w->loop);
    uint64_t delay = policy_backoff(rq->policy->backoff_base_ms,
                                    rq->policy->backoff_cap_ms,
                                    (uint32_t)rq->n_attempts - 1, &rq->w->rng);
    if ((uint32_t)rq->n_attempts >= rq->policy->max_attempts ||
        now + delay >= rq->deadline_ms) {
        request_attempt_retry_outcome(rq, rq->retried
                                              ? M_RETRY_RETRIED_FAILURE
                                              : M_RETRY_NOT_RETRYABLE);
        request_answer_give_up(rq);
        return;
    }
    request_attempt_retry(rq, delay);
}
void request_attempt_aux_get(struct request *rq, int node, const char *path,
                             uint64_t timeout_ms,
                             void (*done)(struct upstream_req *r, void *arg))
{
    request_attempt_aux_get_as(rq, node, path, headers_lines(&rq->up_headers),
                               rq->up_headers.n, timeout_ms, done);
}

void request_attempt_aux_get_as(struct request *rq, int node,
                                const char *path, const char *const *headers,
                                int n_headers, uint64_t timeout_ms,
                                void (*done)(struct upstream_req *r,
                                             void *arg))
{
    request_attempt_url(rq, node, path, &rq->aux_url, &rq->aux_url_cap);
    rq->aux_node = node;
    rq->aux.method = HTTP_GET;
    rq->aux.url = rq->aux_url;
    rq->aux.connect_to = request_app(rq)->cluster->nodes[node].connect_to;
    rq->aux.headers = headers;
    rq->aux.n_headers = n_headers;
    rq->aux.body = NULL;
    rq->aux.body_len = 0;
    rq->aux.timeout_ms = timeout_ms;
    rq->aux.max_response = 1024 * 1024;
    rq->aux.fresh_connection = rq->aux_fresh;
    rq->aux_fresh = false;
    rq->aux.done = done;
    rq->aux.arg = rq;
    upstream_start(rq->w->up, &rq->aux);
}
void request_attempt_answered(struct request *rq)
{
    if (request_reconcile_after_answer(rq)) {
        request_reconcile_start(rq);
        return;
    }
    request_attempt_success(rq);
}

static void request_attempt_done(struct upstream_req *r, void *arg)
{
    struct request *rq = arg;
    struct worker *w = rq->w;
    struct app *a = request_app(rq);
    struct failure *f = &rq->last_failure;
    int node = rq->node;
    w->outstanding[node]--;
    failure_classify(r, rq->ex->method,
                     classify_is_mfa_write(rq->cls.call) ||
                         rq->cls.totp_write != CALL_OTHER,
                     f);

    enum metrics_upstream_outcome o = request_attempt_outcome(rq, f);
    request_attempt_log(rq, node, request_attempt_outcome_names[o], r->status,
                        r->duration_ns, false);
    metrics_inc(a->metrics, M_UPSTREAM_ATTEMPTS_TOTAL, node, o);
    metrics_observe_ns(a->metrics, M_UPSTREAM_DURATION_SECONDS, node,
                       r->duration_ns);
    metrics_inc(a->metrics, M_UPSTREAM_CLIENT_ATTEMPTS_TOTAL,
                r->via_own_client ? M_CLIENT_OWN : M_CLIENT_LIBCURL);
    if (r->batched)
        metrics_inc(a->metrics, M_UPSTREAM_BATCHED_SENDS_TOTAL);

    if (r->result == UPSTREAM_CONNECT_ERROR)
        worker_report_failure(w, node, true);
    else if (f->kind == FAILURE_NO_LEADER) {
        worker_report_failure(w, node, false);
        rq->route.not_leader = node;
        rq->route.not_leader_gen = atomic_load(&a->cluster->generation);
        rq->route.not_leader_wall_ms = util_wall_ms();
    }

    /* refused by the auth layer, before any handler ran (keyrefusal.h):
     * sent to the token's minter, once */
    if (request_key_refusal(rq, node, r)) {
        request_attempt_start(rq, rq->home);
        return;
    }
    if (request_key_fetch(rq, r))
        return; /* decided once the controllers' keys are in */
    if (f->kind == FAILURE_NONE) {
        if (request_login_fenced(rq, node, r))
            return; /* a login the controller must not serve (fenced) */
        request_attempt_answered(rq);
        return;
    }

    struct policy_input in = {
        .p = rq->policy,
        .f = f,
        .method = rq->ex->method,
        .reconciler = request_reconcile_available(rq),
        .attempts = (uint32_t)rq->n_attempts,
        .now_ms = loop_now_ms(w->loop),
        .deadline_ms = rq->deadline_ms,
    };
    struct policy_decision d;
    policy_decide(&in, &w->rng, &d);
    switch (d.action) {
    case POLICY_RECONCILE:
        rq->had_ambiguous = true;
        request_reconcile_start(rq);
        return;
    case POLICY_RETRY:
        request_attempt_retry(rq, d.delay_ms);
        return;
    case POLICY_ANSWER:
    default:
        if (rq->retried)
            request_attempt_retry_outcome(rq, M_RETRY_RETRIED_FAILURE);
        else
            request_attempt_retry_outcome(rq, M_RETRY_NOT_RETRYABLE);
        request_answer_give_up(rq);
        return;
    }
}

