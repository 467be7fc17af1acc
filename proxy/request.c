/* request.c - see request.h.  The request path, stage by stage:
 *   request_on_request -> request_route -> request_attempt -> attempt_done
 *     -> (retry: backoff -> request_route) | (reconcile) | request_success
 *     -> (gate) -> request_answer_* -> listener -> request_on_complete. */
#include "proxy/request.h"
#include "proxy/request_reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/pipeline.h"
#include "metrics/metrics.h"
#include "proxy/accesslog.h"
#include "proxy/app.h"
#include "proxy/certfront.h"
#include "base/envelope.h"
#include "io/listener.h"
#include "base/loop.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "config/config_addr.h"
#include "proxy/worker.h"
#include "retry/budget.h"
#include "retry/policy.h"
#include "retry/reconcile.h"
#include "routing/cluster.h"
#include "routing/identity.h"
#include "routing/rewrite.h"

/* routing_decisions_total{decision} is counted by casting the route
 * decision: both lists must keep the same order. */
_Static_assert((int)DECISION_PINNED == (int)M_DECISION_PINNED &&
                   (int)DECISION_STICKY_HIT == (int)M_DECISION_STICKY_HIT &&
                   (int)DECISION_STICKY_MISS == (int)M_DECISION_STICKY_MISS &&
                   (int)DECISION_FENCED_SKIP == (int)M_DECISION_FENCED_SKIP &&
                   (int)DECISION_NO_LEADER_WAIT ==
                       (int)M_DECISION_NO_LEADER_WAIT &&
                   (int)DECISION_BALANCED == (int)M_DECISION_BALANCED &&
                   (int)DECISION__COUNT == (int)M_DECISION__COUNT,
               "enum route_decision and METRICS_VALUES_DECISION differ");

static void request_route(struct request *rq);
static void request_maybe_free(struct request *rq);
static void request_wait_timeout(void *arg);
static void request_retry(struct request *rq, uint64_t delay_ms);

static struct app *request_app(struct request *rq)
{
    return rq->w->app;
}

/* ---- lists ------------------------------------------------------------ */

static void request_wait(struct request *rq)
{
    struct worker *w = rq->w;
    if (rq->on_wait_list)
        return;
    rq->on_wait_list = true;
    rq->wprev = NULL;
    rq->wnext = w->waiting;
    if (w->waiting)
        w->waiting->wprev = rq;
    w->waiting = rq;
}

static void request_unwait(struct request *rq)
{
    struct worker *w = rq->w;
    if (!rq->on_wait_list)
        return;
    if (rq->wprev)
        rq->wprev->wnext = rq->wnext;
    else
        w->waiting = rq->wnext;
    if (rq->wnext)
        rq->wnext->wprev = rq->wprev;
    rq->on_wait_list = false;
    rq->wprev = rq->wnext = NULL;
}

static void request_unlink(struct request *rq)
{
    struct worker *w = rq->w;
    request_unwait(rq);
    if (rq->prev)
        rq->prev->next = rq->next;
    else
        w->requests = rq->next;
    if (rq->next)
        rq->next->prev = rq->prev;
}

/* ---- answers ---------------------------------------------------------- */

static void request_add_own_headers(struct request *rq, struct headers *h)
{
    const struct config *cfg = rq->cfg;
    struct app *a = request_app(rq);
    char n[16];
    headers_remove(h, cfg->headers.request_id);
    headers_adds(h, cfg->headers.request_id, rq->ex->request_id);
    snprintf(n, sizeof(n), "%d", rq->n_attempts);
    headers_adds(h, "Quorumgate-Attempts", n);
    /* the controller that answered, or for our own errors the one the
     * request was last sent to (the one the error is about) */
    if (cfg->headers.expose_controller && rq->node >= 0)
        headers_adds(h, "Quorumgate-Controller", a->cluster->nodes[rq->node].id);
    if (rq->replication[0])
        headers_adds(h, "Quorumgate-Replication", rq->replication);
}

static void request_send(struct request *rq, int status, struct headers *h,
                         char *body, size_t len)
{
    if (!rq->ex || rq->stage == STAGE_ANSWERED) {
        free(body);
        return;
    }
    request_unwait(rq);
    request_timer_stop(rq);
    rq->stage = STAGE_ANSWERED;
    rq->status = status;
    request_add_own_headers(rq, h);
    listener_respond(rq->ex, status, headers_pairs(h), h->n, body, len,
                     rq->w->draining);
}

/* The answer's header list: the request's own, kept (with its storage)
 * from one request to the next on this worker. */
static struct headers *request_answer_headers(struct request *rq)
{
    headers_reset(&rq->answer_headers);
    return &rq->answer_headers;
}

void request_answer_error(struct request *rq, int status, const char *code,
                          const char *message)
{
    struct headers *h = request_answer_headers(rq);
    size_t len;
    char *body = envelope_error(code, message,
                                rq->ex ? rq->ex->request_id : "", NULL, &len);
    rq->error_code = code;
    headers_adds(h, "Content-Type", ENVELOPE_CONTENT_TYPE);
    request_send(rq, status, h, body, len);
}

void request_answer_json(struct request *rq, int status, const char *json)
{
    struct headers *h = request_answer_headers(rq);
    headers_adds(h, "Content-Type", "application/json");
    char *body = xstrdup(json);
    request_send(rq, status, h, body, strlen(body));
}

void request_answer_upstream(struct request *rq)
{
    struct headers *h = request_answer_headers(rq);
    size_t len;
    headers_for_client(h, &rq->up);
    rewrite_response(rq->cfg, rq->cls.call, rq->up.status, &rq->up.resp_body,
                     h);
    char *body = buf_steal(&rq->up.resp_body, &len);
    request_send(rq, rq->up.status, h, body, len);
}

/* No usable answer from any attempt: say why, in the envelope. */
void request_answer_as_upstream_or(struct request *rq, int status,
                                   const char *code, const char *message)
{
    if (rq->up.result == UPSTREAM_OK && rq->up.status == status)
        request_answer_upstream(rq);
    else
        request_answer_error(rq, status, code, message);
}

void request_give_up_original(struct request *rq)
{
    struct app *a = request_app(rq);
    const char *ctrl = rq->node >= 0 ? a->cluster->nodes[rq->node].id : "?";
    char msg[256];
    if (rq->up.result == UPSTREAM_OK && rq->up.status) {
        request_answer_upstream(rq); /* the original error goes back */
        return;
    }
    switch (rq->up.result) {
    case UPSTREAM_TIMEOUT:
    case UPSTREAM_CONNECT_TIMEOUT:
        snprintf(msg, sizeof(msg), "controller %s did not answer in time",
                 ctrl);
        request_answer_error(rq, 504, "PROXY_UPSTREAM_TIMEOUT", msg);
        return;
    case UPSTREAM_TOO_LARGE:
        snprintf(msg, sizeof(msg),
                 "the answer of controller %s is larger than "
                 "limits.max_response_bytes",
                 ctrl);
        break;
    default:
        snprintf(msg, sizeof(msg), "controller %s: %s (%s)", ctrl,
                 upstream_result_name(rq->up.result),
                 rq->up.error[0] ? rq->up.error : "no answer");
        break;
    }
    request_answer_error(rq, 502, "PROXY_UPSTREAM_ERROR", msg);
}

/* ---- outcome bookkeeping ------------------------------------------------ */

void request_log_attempt(struct request *rq, int node, const char *outcome,
                         int status, uint64_t duration_ns, bool reconcile)
{
    if (rq->n_log >= REQUEST_MAX_ATTEMPTS)
        return;
    rq->attempts[rq->n_log++] = (struct request_attempt){
        node, outcome, status, duration_ns, reconcile};
}

static enum metrics_upstream_outcome request_outcome(
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

static const char *const request_outcome_names[] = {
    "ok",        "connect_error", "timeout",     "reset",     "no_leader",
    "too_many_requests", "server_error", "response_too_large", "tls_error",
};

static void request_retry_outcome(struct request *rq,
                                  enum metrics_retry_outcome o)
{
    metrics_inc(request_app(rq)->metrics, M_RETRY_OUTCOMES_TOTAL,
                rq->cls.cls, o);
}

/* ---- success ------------------------------------------------------------ */

static void request_success(struct request *rq)
{
    if (rq->retried)
        request_retry_outcome(rq, rq->up.status < 500 || rq->up.status > 599
                                      ? M_RETRY_RETRIED_SUCCESS
                                      : M_RETRY_RETRIED_FAILURE);
    request_reconciled_success(rq);
}

void request_reconciled_success(struct request *rq)
{
    if (pipeline_learn(rq))
        return; /* request_learned once Redis has the affinity entries */
    request_learned(rq);
}

void request_learned(struct request *rq)
{
    if (pipeline_gate(rq))
        return; /* the gate answers when the acknowledgements are in */
    request_answer_upstream(rq);
}

/* ---- attempts ------------------------------------------------------------ */

void request_node_url(struct request *rq, int node, const char *target,
                      char **dst)
{
    struct cluster *c = request_app(rq)->cluster;
    const char *base = c->nodes[node].base_url;
    size_t nb = strlen(base), nt = strlen(target);
    /* realloc keeps the block when it is big enough: the URL buffer of a
     * recycled request is reused */
    *dst = xrealloc(*dst, nb + nt + 1);
    memcpy(*dst, base, nb);
    memcpy(*dst + nb, target, nt + 1);
}

static void request_attempt_done(struct upstream_req *r, void *arg);

static void request_attempt(struct request *rq, int node)
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
    request_node_url(rq, node, ex->url, &rq->url);
    rq->up.method = ex->method;
    rq->up.method_name = ex->method_name;
    rq->up.url = rq->url;
    rq->up.connect_to = request_app(rq)->cluster->nodes[node].connect_to;
    rq->up.headers = headers_lines(&rq->up_headers);
    rq->up.n_headers = rq->up_headers.n;
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

static void request_backoff_done(void *arg)
{
    struct request *rq = arg;
    request_route(rq);
}

bool request_retry_slot(struct request *rq)
{
    struct app *a = request_app(rq);
    if (rq->holds_retry_slot)
        return true;
    if (!budget_acquire(&a->budget)) {
        rq->budget_exhausted = true;
        metrics_inc(a->metrics, M_RETRY_BUDGET_EXHAUSTED_TOTAL, rq->cls.cls);
        request_retry_outcome(rq, M_RETRY_BUDGET_EXHAUSTED);
        return false;
    }
    rq->holds_retry_slot = true;
    return true;
}

static void request_retry(struct request *rq, uint64_t delay_ms)
{
    struct app *a = request_app(rq);
    if (!request_retry_slot(rq)) {
        request_give_up_original(rq);
        return;
    }
    rq->retried = true;
    metrics_inc(a->metrics, M_RETRIES_TOTAL, rq->cls.cls,
                rq->last_failure.reason);
    rq->stage = STAGE_BACKOFF;
    request_after(rq, delay_ms, request_backoff_done);
}

void request_retry_if_allowed(struct request *rq)
{
    uint64_t now = loop_now_ms(rq->w->loop);
    uint64_t delay = policy_backoff(rq->policy->backoff_base_ms,
                                    rq->policy->backoff_cap_ms,
                                    (uint32_t)rq->n_attempts - 1, &rq->w->rng);
    if ((uint32_t)rq->n_attempts >= rq->policy->max_attempts ||
        now + delay >= rq->deadline_ms) {
        request_retry_outcome(rq, rq->retried ? M_RETRY_RETRIED_FAILURE
                                              : M_RETRY_NOT_RETRYABLE);
        request_give_up_original(rq);
        return;
    }
    request_retry(rq, delay);
}

const char *request_header(const struct request *rq, const char *name)
{
    return rq && rq->ex ? listener_header(rq->ex, name) : NULL;
}

char *request_mfa_state_path(const struct request *rq)
{
    if (!rq || !rq->ex)
        return xstrdup("/edge/client/v1/current-identity/mfa");
    /* the path as the controller routes it (dot segments of any length,
     * repeated slashes), so that the state read names the enrollment */
    size_t n = strcspn(rq->ex->url, "?");
    char *clean = xmalloc(n + 2);
    classify_normalise(rq->ex->url, n, clean, n + 2);
    char *path = reconcile_state_path(clean);
    free(clean);
    return path;
}

void request_aux_get(struct request *rq, int node, const char *path,
                     uint64_t timeout_ms,
                     void (*done)(struct upstream_req *r, void *arg))
{
    request_node_url(rq, node, path, &rq->aux_url);
    rq->aux_node = node;
    rq->aux.method = HTTP_GET;
    rq->aux.url = rq->aux_url;
    rq->aux.connect_to = request_app(rq)->cluster->nodes[node].connect_to;
    rq->aux.headers = headers_lines(&rq->up_headers);
    rq->aux.n_headers = rq->up_headers.n;
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

void request_timer_stop(struct request *rq)
{
    if (rq->timer) /* created on first use */
        loop_timer_stop(rq->timer);
}

void request_after(struct request *rq, uint64_t ms, void (*cb)(void *))
{
    rq->timer_cb = cb;
    if (!rq->timer) /* most requests never wait: created on first use */
        rq->timer = loop_timer_new(rq->w->loop, request_wait_timeout, rq);
    loop_timer_start(rq->timer, ms, 0);
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

    enum metrics_upstream_outcome o = request_outcome(rq, f);
    request_log_attempt(rq, node, request_outcome_names[o], r->status,
                        r->duration_ns, false);
    metrics_inc(a->metrics, M_UPSTREAM_ATTEMPTS_TOTAL, node, o);
    metrics_observe_ns(a->metrics, M_UPSTREAM_DURATION_SECONDS, node,
                       r->duration_ns);

    if (r->result == UPSTREAM_CONNECT_ERROR)
        app_report_failure(a, node, true);
    else if (f->kind == FAILURE_NO_LEADER) {
        app_report_failure(a, node, false);
        rq->route.not_leader = node;
        rq->route.not_leader_gen = atomic_load(&a->cluster->generation);
        rq->route.not_leader_wall_ms = util_wall_ms();
    }

    if (f->kind == FAILURE_NONE) {
        if (rq->had_ambiguous && request_reconcile_after_answer(rq)) {
            request_reconcile_start(rq);
            return;
        }
        request_success(rq);
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
        request_retry(rq, d.delay_ms);
        return;
    case POLICY_ANSWER:
    default:
        if (rq->retried)
            request_retry_outcome(rq, M_RETRY_RETRIED_FAILURE);
        else
            request_retry_outcome(rq, M_RETRY_NOT_RETRYABLE);
        request_give_up_original(rq);
        return;
    }
}

/* ---- routing ------------------------------------------------------------ */

static void request_wait_timeout(void *arg)
{
    struct request *rq = arg;
    void (*cb)(void *) = rq->timer_cb;
    rq->timer_cb = NULL;
    if (cb)
        cb(rq);
    else
        request_route(rq);
}

/* A write of the model (refused by a read-only cluster). */
static bool request_is_write(const struct request *rq)
{
    enum http_method m = rq->ex->method;
    return (rq->cls.cls == ROUTE_WRITE || rq->cls.cls == ROUTE_MFA) &&
           m != HTTP_GET && m != HTTP_HEAD && m != HTTP_OPTIONS;
}

static void request_route(struct request *rq)
{
    struct worker *w = rq->w;
    struct app *a = request_app(rq);
    struct route_out out;
    uint64_t now = loop_now_ms(w->loop);
    rq->stage = STAGE_ROUTING;
    route_pick(a->cluster, &rq->route, w->outstanding, &w->rng, &out);
    /* the request named login state that nobody knew: balanced for that */
    if (out.decision == DECISION_BALANCED && rq->pipe.has_aff && rq->home < 0)
        out.decision = DECISION_STICKY_MISS;
    /* one decision per attempt sent; a wait for a leader counts once,
     * when it starts, not at every cluster-view change that finds none */
    bool count = out.kind == ROUTE_TO ||
                 (out.kind == ROUTE_WAIT_LEADER ? !rq->on_wait_list
                                                : rq->n_attempts == 0);
    if (count)
        metrics_inc(a->metrics, M_ROUTING_DECISIONS_TOTAL, rq->cls.cls,
                    (enum metrics_decision)out.decision);
    rq->decision = out.decision;
    switch (out.kind) {
    case ROUTE_TO:
        /* a leader wait may have armed the timer: it must not route this
         * request again while the attempt is in flight */
        request_unwait(rq);
        request_timer_stop(rq);
        rq->timer_cb = NULL;
        if (request_is_write(rq) && cluster_read_only(a->cluster, out.node)) {
            /* every write fails there (500 from the controller): say why
             * once instead of retrying it around the cluster */
            request_answer_error(rq, 503, "CLUSTER_READ_ONLY",
                                 "the cluster is read-only: its members "
                                 "run different versions (rolling "
                                 "upgrade); writes fail until they all run "
                                 "the same one");
            return;
        }
        request_attempt(rq, out.node);
        return;
    case ROUTE_WAIT_LEADER: {
        uint64_t until = rq->start_ms + rq->cfg->routing.leader_wait_ms;
        if (until > rq->deadline_ms)
            until = rq->deadline_ms;
        if (now >= until) {
            if (rq->retried)
                request_retry_outcome(rq, M_RETRY_RETRIED_FAILURE);
            request_answer_as_upstream_or(rq, 503, "CLUSTER_NO_LEADER",
                                          "Cluster has no leader, unable to "
                                          "make model updates.");
            return;
        }
        request_wait(rq);
        /* A change of view wakes us; a probe that only confirms the leader
         * that answered CLUSTER_NO_LEADER changes nothing: look again. */
        uint64_t wait = until - now;
        uint64_t fast = rq->cfg->health.fast_interval_ms;
        if (rq->route.not_leader >= 0 && wait > fast)
            wait = fast;
        request_after(rq, wait, NULL);
        return;
    }
    case ROUTE_HOME_GONE:
        request_answer_error(rq, 401, "UNAUTHORIZED",
                             "The session's controller is unavailable; "
                             "authenticate again.");
        return;
    case ROUTE_NO_HEALTHY:
    default:
        if (rq->n_attempts > 0) {
            if (rq->retried)
                request_retry_outcome(rq, M_RETRY_RETRIED_FAILURE);
            request_give_up_original(rq);
            return;
        }
        request_answer_error(rq, 503, "PROXY_NO_HEALTHY_CONTROLLER",
                             "no healthy controller is available");
        return;
    }
}

void request_reroute(struct request *rq)
{
    request_route(rq);
}

void request_cluster_changed(struct worker *w)
{
    struct request *rq = w->waiting;
    while (rq) {
        struct request *next = rq->wnext;
        if (rq->stage == STAGE_ROUTING)
            request_route(rq);
        rq = next;
    }
}

/* ---- listener callbacks -------------------------------------------------- */

bool request_admit(void *ctx)
{
    struct worker *w = ctx;
    struct app *a = w->app;
    int in_flight = atomic_load_explicit(&a->budget.requests,
                                         memory_order_relaxed);
    if ((uint32_t)in_flight >= w->cfg->limits.max_concurrent_requests)
        return false;
    budget_request_begin(&a->budget);
    metrics_add(a->metrics, M_REQUESTS_IN_FLIGHT, 1);
    return true;
}

void request_on_connection(void *ctx, int delta)
{
    struct worker *w = ctx;
    atomic_fetch_add(&w->app->connections, delta);
    metrics_add(w->app->metrics, M_CLIENT_CONNECTIONS, delta);
}

static enum route_pin request_pin(const struct request *rq)
{
    if (rq->cls.cls == ROUTE_MFA)
        return PIN_REQUIRE_LEADER;
    if (rq->cls.cls == ROUTE_WRITE || rq->cls.call == CALL_AUTHENTICATE)
        return PIN_PREFER_LEADER;
    return PIN_NONE;
}

/* Spare request structs per worker: a finished request keeps its buffers
 * (upstream header list, answer header list, response header storage,
 * URL, timer) for the next one, so the steady state allocates none of
 * them.  At most REQUEST_SPARES are kept. */
#define REQUEST_SPARES 256

static struct request *request_alloc(struct worker *w)
{
    struct request *rq = w->spare_requests;
    if (!rq)
        return xcalloc(1, sizeof(*rq));
    w->spare_requests = rq->next;
    w->n_spare_requests--;
    struct request keep = *rq;
    memset(rq, 0, sizeof(*rq));
    rq->up_headers = keep.up_headers;
    rq->answer_headers = keep.answer_headers;
    rq->up.resp_hdr_data = keep.up.resp_hdr_data;
    rq->up.resp_hdrs = keep.up.resp_hdrs;
    rq->up.cap_resp_hdrs = keep.up.cap_resp_hdrs;
    rq->up.resp_body = keep.up.resp_body;
    rq->url = keep.url;
    rq->timer = keep.timer;
    return rq;
}

static void request_release(struct request *rq)
{
    struct worker *w = rq->w;
    upstream_req_free(&rq->aux);
    free(rq->aux_url);
    rq->aux_url = NULL;
    if (w->n_spare_requests < REQUEST_SPARES && !w->draining) {
        /* keep ordinary amounts of storage, not what a huge one grew */
        if (rq->up_headers.data.cap + rq->up_headers.lines.cap > 32768)
            headers_free(&rq->up_headers);
        if (rq->answer_headers.data.cap > 32768)
            headers_free(&rq->answer_headers);
        if (rq->up.resp_hdr_data.cap > 32768)
            upstream_req_free(&rq->up);
        /* a spare keeps its storage: not the client's credentials */
        headers_wipe(&rq->up_headers);
        headers_reset(&rq->answer_headers);
        upstream_req_reset(&rq->up);
        rq->next = w->spare_requests;
        w->spare_requests = rq;
        w->n_spare_requests++;
        return;
    }
    request_destroy(rq);
}

void request_destroy(struct request *rq)
{
    loop_timer_free(rq->timer);
    headers_free(&rq->up_headers);
    headers_free(&rq->answer_headers);
    upstream_req_free(&rq->up);
    upstream_req_free(&rq->aux);
    free(rq->url);
    free(rq->aux_url);
    free(rq);
}

void request_free_spares(struct worker *w)
{
    while (w->spare_requests) {
        struct request *rq = w->spare_requests;
        w->spare_requests = rq->next;
        request_destroy(rq);
    }
    w->n_spare_requests = 0;
}

void request_on_request(void *ctx, struct listener_exchange *ex)
{
    struct worker *w = ctx;
    struct request *rq = request_alloc(w);
    rq->w = w;
    rq->ex = ex;
    ex->user = rq;
    rq->cfg = config_ref(w->cfg);
    rq->node = -1;
    rq->home = -1;
    rq->next = w->requests;
    if (w->requests)
        w->requests->prev = rq;
    w->requests = rq;
    atomic_fetch_add(&w->live, 1);
    rq->start_ms = loop_now_ms(w->loop);
    rq->start_wall_ms = util_wall_ms();

    size_t path_len = strcspn(ex->url, "?");
    classify_request(&rq->cfg->routing, ex->method, ex->url, path_len,
                     ex->headers, ex->n_headers, &rq->cls);
    rq->policy = &rq->cfg->retry.policy[rq->cls.cls];
    rq->deadline_ms = rq->start_ms + rq->policy->deadline_ms;
    rq->route.pin = request_pin(rq);
    rq->route.home = -1;
    rq->route.not_leader = -1;

    /* one credential at most: a controller would read one, quorumgate
     * could read another */
    const char *bad = identity_credentials_check(ex->headers, ex->n_headers);
    if (bad) {
        request_answer_error(rq, 400, "BAD_REQUEST", bad);
        return;
    }

    struct headers_up_ctx hc = {
        .client_addr = ex->client_addr,
        .tls = ex->tls,
        .request_id = ex->request_id,
        .request_id_header = rq->cfg->headers.request_id,
        .trust_forwarded = config_addr_cidr_match_text(
            rq->cfg->headers.trust_forwarded,
            rq->cfg->headers.n_trust_forwarded, ex->client_addr),
    };
    headers_for_upstream(&rq->up_headers, ex->headers, ex->n_headers, &hc);
    rewrite_request(rq->cls.call, &rq->up_headers);
    if (certfront_refuse(rq))
        return;
    if (pipeline_before_route(rq))
        return; /* affinity/gate preparation continues asynchronously */
    request_route(rq);
}

/* Stops whatever asynchronous work the request still has. */
static void request_cancel_work(struct request *rq)
{
    struct worker *w = rq->w;
    if (rq->up.priv) {
        upstream_cancel(w->up, &rq->up);
        if (rq->node >= 0)
            w->outstanding[rq->node]--;
    }
    if (rq->aux.priv)
        upstream_cancel(w->up, &rq->aux);
    request_timer_stop(rq);
    request_unwait(rq);
    pipeline_cancel(rq);
}

static void request_maybe_free(struct request *rq)
{
    struct app *a = request_app(rq);
    request_cancel_work(rq);
    if (rq->holds_retry_slot)
        budget_release(&a->budget);
    request_unlink(rq);
    atomic_fetch_sub(&rq->w->live, 1);
    config_unref(rq->cfg);
    rq->cfg = NULL;
    request_release(rq);
}

void request_on_complete(void *ctx, struct listener_exchange *ex)
{
    struct worker *w = ctx;
    struct app *a = w->app;
    struct request *rq = ex->user;
    enum route_class cls = rq ? rq->cls.cls : ROUTE_READ;
    if (rq && rq->stage != STAGE_ANSWERED && ex->status == 0)
        rq->status = 0;
    accesslog_write(w, ex, rq);
    if (ex->status) {
        metrics_inc(a->metrics, M_REQUESTS_TOTAL, cls, ex->method,
                    metrics_code_of(ex->status));
        metrics_observe_ns(a->metrics, M_REQUEST_DURATION_SECONDS, cls,
                           util_mono_ns() - ex->start_ns);
    }
    if (ex->admitted) {
        budget_request_end(&a->budget);
        metrics_add(a->metrics, M_REQUESTS_IN_FLIGHT, -1);
    }
    if (rq) {
        rq->ex = NULL;
        rq->complete = true;
        ex->user = NULL;
        request_maybe_free(rq);
    }
}

void request_abort_all(struct worker *w)
{
    /* Answer what is still open so its connection is resumed; the
     * listener's on_complete frees each one as its daemon stops. */
    for (struct request *rq = w->requests; rq; rq = rq->next) {
        request_cancel_work(rq);
        if (rq->ex && rq->stage != STAGE_ANSWERED)
            request_answer_error(rq, 503, "PROXY_SHUTTING_DOWN",
                                 "quorumgate is shutting down");
    }
}
