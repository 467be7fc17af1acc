/* request.c - see request.h.  The request path, stage by stage:
 *   request_on_request -> request_route -> request_attempt_start
 *     -> request_attempt_done (request_attempt.c)
 *     -> (retry: backoff -> request_route) | (reconcile) | success
 *     -> (gate) -> request_answer_* (request_answer.c) -> listener
 *     -> request_on_complete.
 * This file: the request's lifetime (lists, timer, routing, the listener's
 * callbacks). */
#include "proxy/request.h"
#include "proxy/request_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proxy/pipeline.h"
#include "metrics/metrics.h"
#include "proxy/accesslog.h"
#include "proxy/app.h"
#include "proxy/certfront.h"
#include "io/listener.h"
#include "base/list.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"
#include "config/config_addr.h"
#include "proxy/worker.h"
#include "retry/budget.h"
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

/* ---- lists ------------------------------------------------------------ */

static void request_wait(struct request *rq)
{
    if (!list_linked(&rq->wait_link))
        list_insert_head(&rq->w->waiting, &rq->wait_link);
}

void request_unwait(struct request *rq)
{
    list_remove(&rq->wait_link);
}

static void request_unlink(struct request *rq)
{
    request_unwait(rq);
    list_remove(&rq->link);
}

/* ---- after a usable answer ------------------------------------------- */

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

/* ---- helpers for the stages ------------------------------------------- */

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

/* A hard home that health probes mark down still gets its requests (its
 * state exists nowhere else; slow is not gone): counted, logged once per
 * episode. */
static void request_home_down(struct request *rq, int node)
{
    struct app *a = request_app(rq);
    metrics_inc(a->metrics, M_AFFINITY_HOME_DOWN_TOTAL, node);
    if (cluster_note_once(a->cluster, node, CLUSTER_NOTE_HOME_DOWN))
        log_printf(a->log, LOG_LEVEL_WARN,
                   "controller %s is marked down by its health probes; the "
                   "sessions and logins it holds exist nowhere else, so "
                   "their requests are still sent to it (answered 401 by "
                   "quorumgate only when it cannot be reached); logged once "
                   "until it is up again",
                   a->cluster->nodes[node].id);
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
                 (out.kind == ROUTE_WAIT_LEADER ? !list_linked(&rq->wait_link)
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
        if (out.home_down)
            request_home_down(rq, out.node);
        if (request_is_write(rq) && cluster_read_only(a->cluster, out.node)) {
            /* every write fails there (500 from the controller): say why
             * once instead of retrying it around the cluster */
            request_answer_error(rq, ERR_CLUSTER_READ_ONLY, NULL);
            return;
        }
        request_attempt_start(rq, out.node);
        return;
    case ROUTE_WAIT_LEADER: {
        uint64_t until = rq->start_ms + rq->cfg->routing.leader_wait_ms;
        if (until > rq->deadline_ms)
            until = rq->deadline_ms;
        if (now >= until) {
            if (rq->retried)
                request_attempt_retry_outcome(rq, M_RETRY_RETRIED_FAILURE);
            if (rq->had_ambiguous && request_is_write(rq)) {
                /* an earlier attempt was written and not answered; the
                 * state read after it saw nothing yet, but an entry the
                 * old leader appended can still commit under the next one
                 * (bench/soak.py, 30-minute v1.7.2 run: three verifies
                 * answered 503 CLUSTER_NO_LEADER that committed 8 s
                 * later): not a failure, an unknown outcome */
                request_answer_error(
                    rq, ERR_PROXY_UPSTREAM_TIMEOUT,
                    "an earlier attempt was sent and not answered, and no "
                    "leader came to send it again: its outcome is unknown; "
                    "read the state before repeating it");
                return;
            }
            request_answer_as_upstream_or(rq, ERR_CLUSTER_NO_LEADER, NULL);
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
        request_answer_error(rq, ERR_UNAUTHORIZED,
                             "The controller holding this session or login "
                             "is not configured any more; authenticate "
                             "again.");
        return;
    case ROUTE_NO_HEALTHY:
    default:
        if (rq->n_attempts > 0) {
            if (rq->retried)
                request_attempt_retry_outcome(rq, M_RETRY_RETRIED_FAILURE);
            request_answer_give_up(rq);
            return;
        }
        request_answer_error(rq, ERR_PROXY_NO_HEALTHY_CONTROLLER, NULL);
        return;
    }
}

void request_reroute(struct request *rq)
{
    request_route(rq);
}

void request_cluster_changed(struct worker *w)
{
    struct list *l, *tmp;
    list_foreach_safe(l, tmp, &w->waiting) {
        struct request *rq = list_entry(l, struct request, wait_link);
        if (rq->stage == STAGE_ROUTING)
            request_route(rq);
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
    struct list *l = list_pop_head(&w->spare_requests);
    struct request *rq;
    if (!l) {
        rq = xcalloc(1, sizeof(*rq));
        list_init(&rq->link);
        list_init(&rq->wait_link);
        list_init(&rq->pipe.redis_wait.link);
        return rq;
    }
    rq = list_entry(l, struct request, link);
    w->n_spare_requests--;
    /* the storage kept from one request to the next, field by field (a
     * copy of the whole 3.5 KB struct was ~440 instructions per request) */
    struct headers up_headers = rq->up_headers;
    struct http_fields answer_fields = rq->answer_fields;
    struct buf resp_hdr_data = rq->up.resp_hdr_data;
    struct upstream_header *resp_hdrs = rq->up.resp_hdrs;
    int cap_resp_hdrs = rq->up.cap_resp_hdrs;
    struct buf resp_body = rq->up.resp_body;
    char *url = rq->url;
    size_t url_cap = rq->url_cap;
    struct loop_timer *timer = rq->timer;
    /* all but the tail of replication, a string set by snprintf: 1 KB
     * less to clear per request */
    memset(rq, 0, offsetof(struct request, replication) + 1);
    rq->up_headers = up_headers;
    rq->answer_fields = answer_fields;
    rq->up.resp_hdr_data = resp_hdr_data;
    rq->up.resp_hdrs = resp_hdrs;
    rq->up.cap_resp_hdrs = cap_resp_hdrs;
    rq->up.resp_body = resp_body;
    rq->url = url;
    rq->url_cap = url_cap;
    rq->timer = timer;
    list_init(&rq->link);
    list_init(&rq->wait_link);
    list_init(&rq->pipe.redis_wait.link);
    return rq;
}

void request_aux_auth_free(struct request *rq)
{
    if (rq->aux_auth)
        explicit_bzero(rq->aux_auth, strlen(rq->aux_auth));
    free(rq->aux_auth);
    rq->aux_auth = NULL;
}

static void request_release(struct request *rq)
{
    struct worker *w = rq->w;
    upstream_req_free(&rq->aux);
    free(rq->aux_url);
    rq->aux_url = NULL;
    rq->aux_url_cap = 0;
    request_aux_auth_free(rq);
    if (w->n_spare_requests < REQUEST_SPARES && !w->draining) {
        /* keep ordinary amounts of storage, not what a huge one grew */
        if (rq->up_headers.data.cap + rq->up_headers.lines.cap > 32768)
            headers_free(&rq->up_headers);
        if (rq->answer_fields.cap > 256)
            http_fields_free(&rq->answer_fields);
        if (rq->up.resp_hdr_data.cap > 32768)
            upstream_req_free(&rq->up);
        /* a spare keeps its storage: not the client's credentials */
        headers_wipe(&rq->up_headers);
        http_fields_reset(&rq->answer_fields);
        upstream_req_reset(&rq->up);
        list_insert_head(&w->spare_requests, &rq->link);
        w->n_spare_requests++;
        return;
    }
    request_destroy(rq);
}

void request_destroy(struct request *rq)
{
    loop_timer_free(rq->timer);
    headers_free(&rq->up_headers);
    http_fields_free(&rq->answer_fields);
    upstream_req_free(&rq->up);
    upstream_req_free(&rq->aux);
    free(rq->url);
    free(rq->aux_url);
    request_aux_auth_free(rq);
    free(rq);
}

void request_free_spares(struct worker *w)
{
    struct list *l;
    while ((l = list_pop_head(&w->spare_requests)))
        request_destroy(list_entry(l, struct request, link));
    w->n_spare_requests = 0;
}

void request_on_request(void *ctx, struct listener_exchange *ex)
{
    struct worker *w = ctx;
    struct request *rq = request_alloc(w);
    rq->w = w;
    rq->ex = ex;
    ex->user = rq;
    rq->cfg = worker_cfg_take(w, &rq->cfg_hold);
    rq->node = -1;
    rq->home = -1;
    list_insert_head(&w->requests, &rq->link);
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
        request_answer_error(rq, ERR_BAD_REQUEST, bad);
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
    request_key_home(rq);
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
    worker_cfg_drop(rq->w, rq->cfg_hold);
    rq->cfg = NULL;
    rq->cfg_hold = NULL;
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
    struct list *l, *tmp;
    list_foreach_safe(l, tmp, &w->requests) {
        struct request *rq = list_entry(l, struct request, link);
        request_cancel_work(rq);
        if (rq->ex && rq->stage != STAGE_ANSWERED)
            request_answer_error(rq, ERR_PROXY_SHUTTING_DOWN, NULL);
    }
}
