/* worker.c - see worker.h. */
#include "proxy/worker.h"

#include <stdio.h>
#include <stdlib.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "base/crypto.h"
#include "base/loop.h"
#include "base/util.h"
#include "consistency/ackstore.h"
#include "consistency/gate.h"
#include "io/listener.h"
#include "io/redis.h"
#include "io/upstream.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/passthrough.h"
#include "proxy/request.h"
#include "routing/cluster.h"
#include "routing/jwks.h"

static struct worker_cfg_hold *worker_cfg_hold_new(struct config *cfg)
{
    struct worker_cfg_hold *h = xcalloc(1, sizeof(*h));
    h->cfg = cfg;
    return h;
}

static void worker_cfg_hold_free(struct worker_cfg_hold *h)
{
    if (!h)
        return;
    config_unref(h->cfg);
    free(h);
}

struct config *worker_cfg_take(struct worker *w,
                               struct worker_cfg_hold **hold)
{
    w->hold->users++;
    *hold = w->hold;
    return w->hold->cfg;
}

void worker_cfg_drop(struct worker *w, struct worker_cfg_hold *hold)
{
    if (--hold->users == 0 && hold != w->hold)
        worker_cfg_hold_free(hold); /* replaced by a reload, now unused */
}

/* The listeners' own limits, counted. */
static void worker_listener_event(void *ctx, enum listener_event ev,
                                  const char *detail)
{
    struct worker *w = ctx;
    if (ev == LISTENER_SEND_TIMEOUT)
        metrics_inc(w->app->metrics, M_CLIENT_SEND_TIMEOUTS_TOTAL);
    else if (ev == LISTENER_BUDGET_SPENT)
        metrics_inc(w->app->metrics, M_BUFFER_BUDGET_REFUSED_TOTAL);
    else if (ev == LISTENER_REFUSED_MAX_CONNECTIONS)
        metrics_inc(w->app->metrics, M_CLIENT_CONNECTIONS_REFUSED_TOTAL,
                    M_CONN_REFUSE_MAX_CONNECTIONS);
    else if (ev == LISTENER_REFUSED_PER_CLIENT)
        metrics_inc(w->app->metrics, M_CLIENT_CONNECTIONS_REFUSED_TOTAL,
                    M_CONN_REFUSE_MAX_CONNECTIONS_PER_CLIENT);
    else if (ev == LISTENER_TLS_FAILED) {
        metrics_inc(w->app->metrics, M_CLIENT_TLS_HANDSHAKE_FAILURES_TOTAL);
        log_debug(w->app->log, "client TLS handshake failed: %s",
                  detail ? detail : "");
    }
    else if (ev == LISTENER_ACCEPT_FAILED) {
        uint64_t now = loop_now_ms(w->loop);
        metrics_inc(w->app->metrics, M_CLIENT_ACCEPT_ERRORS_TOTAL);
        if (!w->accept_warned_ms || now - w->accept_warned_ms >= 10000) {
            w->accept_warned_ms = now; /* one line every 10 s per worker */
            log_printf(w->app->log, LOG_LEVEL_WARN,
                       "cannot accept client connections (%s): pausing "
                       "accept for %d ms (raise LimitNOFILE / ulimit -n?)",
                       strerror(errno), LISTENER_ACCEPT_PAUSE_MS);
        }
    }
}

static const struct listener_ops worker_listener_ops = {
    .on_request = request_on_request,
    .on_complete = request_on_complete,
    .admit = request_admit,
    .on_connection = request_on_connection,
    .accept = NULL,
    .on_event = worker_listener_event,
};

static void worker_limits(struct app *app, const struct config *cfg,
                          struct listener_limits *lim)
{
    int n_workers = app->n_workers;
    lim->max_header_bytes = cfg->limits.max_header_bytes;
    lim->max_headers = cfg->limits.max_headers;
    lim->max_body_bytes = cfg->limits.max_body_bytes;
    lim->header_timeout_ms = cfg->timeouts.client_header_ms;
    lim->body_timeout_ms = cfg->timeouts.client_body_ms;
    lim->idle_timeout_ms = cfg->timeouts.client_idle_ms;
    lim->send_timeout_ms = cfg->timeouts.client_send_ms;
    /* one budget for the process: its limit follows the configuration */
    atomic_store(&app->buffers.limit, cfg->limits.max_buffered_bytes);
    lim->budget = &app->buffers;
    lim->max_connections = cfg->limits.max_connections / (uint32_t)n_workers;
    if (lim->max_connections == 0)
        lim->max_connections = 1;
    /* counted across every worker and listener, however SO_REUSEPORT
     * spreads a client's connections */
    lim->max_per_client = cfg->limits.max_connections_per_client;
    lim->clients = app->clients;
}

void worker_upstream_settings(const struct config *cfg,
                              struct upstream_settings *s)
{
    s->ca_file = cfg->upstream.ca_file;
    s->cert_file = cfg->upstream.cert_file;
    s->key_file = cfg->upstream.key_file;
    s->verify = cfg->upstream.verify;
    s->connect_timeout_ms = cfg->upstream.connect_timeout_ms;
    s->idle_timeout_ms = cfg->upstream.idle_timeout_ms;
    s->max_host_connections = cfg->upstream.max_connections;
    s->batch_sends = cfg->upstream.batch_sends;
    s->log = NULL; /* the caller's, if it wants one */
}

uint64_t worker_rand(struct worker *w)
{
    uint64_t x = w->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    w->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* ---- replication: Redis connections and the gate ----------------------- */

static void worker_ack_message(void *arg, const char *ch, size_t chlen,
                               const char *msg, size_t len)
{
    struct worker *w = arg;
    gate_on_message(w->gate, msg, len);
}

static void worker_acks_sub_state(void *arg, bool up)
{
    struct worker *w = arg;
    if (up) /* publishes may have been missed: read again */
        gate_resync(w->gate);
}

/* A worker fetches the controllers' token keys at most this often (a
 * token with an unknown kid asks for a fetch), and gives a fetch this long;
 * client addresses tracked for routing.affinity_learn_rate. */
#define WORKER_JWKS_INTERVAL_MS 10000
#define WORKER_JWKS_TIMEOUT_MS 3000
#define WORKER_LEARN_SLOTS 4096

/* ---- waiting for the Redis connection -------------------------------- */

/* Every waiter goes on (the connection is up, or the wait is over).  A
 * callback may wait again (the list is swapped first) or end another
 * waiter (unlinked from the local list). */
static void worker_redis_wake(struct worker *w, bool up)
{
    struct list woken, *l;
    list_init(&woken);
    if (list_empty(&w->redis_waiting))
        return;
    /* move every waiter to the local list */
    list_insert_after(&w->redis_waiting, &woken);
    list_remove(&w->redis_waiting);
    loop_timer_stop(w->redis_wait_timer);
    while ((l = list_pop_head(&woken))) {
        struct worker_redis_waiter *wt =
            list_entry(l, struct worker_redis_waiter, link);
        metrics_inc(w->app->metrics, M_REDIS_CONNECTION_WAITS_TOTAL,
                    up ? M_RESULT_OK : M_RESULT_ERROR);
        wt->cb(wt->arg);
    }
}

static void worker_redis_wait_over(void *arg)
{
    struct worker *w = arg;
    worker_redis_wake(w, redis_up(w->redis));
}

static void worker_redis_state(void *arg, bool up)
{
    struct worker *w = arg;
    if (!up) /* being made again from now on */
        w->redis_wait_until =
            loop_now_ms(w->loop) + w->cfg->redis.connect_timeout_ms;
    else
        worker_redis_wake(w, true);
}

bool worker_redis_await(struct worker *w, struct worker_redis_waiter *wt,
                        void (*cb)(void *arg), void *arg)
{
    uint64_t now = loop_now_ms(w->loop);
    if (!w->redis || redis_up(w->redis) || now >= w->redis_wait_until)
        return false;
    wt->cb = cb;
    wt->arg = arg;
    if (!list_linked(&wt->link))
        list_insert_tail(&w->redis_waiting, &wt->link);
    if (!loop_timer_active(w->redis_wait_timer))
        loop_timer_start(w->redis_wait_timer, w->redis_wait_until - now, 0);
    return true;
}

void worker_redis_unawait(struct worker_redis_waiter *wt)
{
    list_remove(&wt->link);
}

static void worker_replication_init(struct worker *w)
{
    char name[32], chan[96];
    snprintf(name, sizeof(name), "worker-%d", w->id);
    struct redis_sentinel *sentinel = w->app->sentinel;
    w->redis_wait_timer = loop_timer_new(w->loop, worker_redis_wait_over, w);
    /* requests wait for the first connection as for a reconnection */
    w->redis_wait_until =
        loop_now_ms(w->loop) + w->cfg->redis.connect_timeout_ms;
    w->redis = redis_new(w->loop, &w->cfg->redis,
                         &(struct redis_options){.name = name,
                                                 .log = w->app->log,
                                                 .on_state = worker_redis_state,
                                                 .state_arg = w,
                                                 .sentinel = sentinel});
    snprintf(name, sizeof(name), "worker-%d-sub", w->id);
    w->acks_sub = redis_new(
        w->loop, &w->cfg->redis,
        &(struct redis_options){.name = name,
                                .subscriber = true,
                                .log = w->app->log,
                                .on_state = worker_acks_sub_state,
                                .state_arg = w,
                                .sentinel = sentinel});
    ackstore_channel(w->cfg, ACKSTORE_CHANNEL_ACKS, chan, sizeof(chan));
    redis_subscribe(w->acks_sub, chan, worker_ack_message, w);
    struct gate_env env = {
        .loop = w->loop,
        .up = w->up,
        .redis = w->redis,
        .cluster = w->app->cluster,
        .metrics = w->app->metrics,
        .log = w->app->log,
        .fence = &w->app->fence,
        .cfg = &w->cfg,
        .waiting = &w->gate_waiting,
        .count_cb = app_redis_count_cb,
    };
    for (int op = 0; op < M_REDIS_OP__COUNT; op++)
        env.count_ctx[op] = &w->app->redis_counts[op];
    w->gate = gate_new(&env);
    ratelimit_init(&w->learn, WORKER_LEARN_SLOTS);
    w->jwks = jwks_fetch_new(w->app->jwks, w->up, w->app->cluster,
                             WORKER_JWKS_INTERVAL_MS, WORKER_JWKS_TIMEOUT_MS);
}

/* The worker loop is stopping (or the worker is freed): Redis connections
 * first, whose callbacks never run after this, so that the gate can then
 * free every wait.  Redis settings are restart-only: a reload keeps them. */
static void worker_replication_stop(struct worker *w)
{
    /* waiters left are requests being aborted: they never go on */
    while (list_pop_head(&w->redis_waiting))
        ;
    loop_timer_free(w->redis_wait_timer);
    w->redis_wait_timer = NULL;
    redis_free(w->redis);
    redis_free(w->acks_sub);
    w->redis = w->acks_sub = NULL;
    gate_free(w->gate);
    w->gate = NULL;
    jwks_fetch_free(w->jwks);
    w->jwks = NULL;
    ratelimit_free(&w->learn);
}

void worker_redis_stats(struct worker *w, struct redis_stats *out)
{
    redis_stats(w->redis, &out[0]);
    redis_stats(w->acks_sub, &out[1]);
}

int worker_gate_waiting(struct worker *w)
{
    return atomic_load(&w->gate_waiting);
}

static void worker_apply_config(struct worker *w, struct config *cfg)
{
    struct listener_limits lim;
    struct upstream_settings us;
    worker_limits(w->app, cfg, &lim);
    for (int i = 0; i < w->n_listeners; i++)
        listener_set_limits(w->listeners[i], &lim);
    worker_upstream_settings(cfg, &us);
    upstream_set_settings(w->up, &us);
    struct worker_cfg_hold *old = w->hold;
    w->hold = worker_cfg_hold_new(cfg); /* the reference handed over by
                                           worker_set_config */
    w->cfg = cfg;
    if (old->users == 0)
        worker_cfg_hold_free(old); /* else its last request frees it */
    if (w->pt)
        passthrough_config(w->pt);
}

static void worker_finish(struct worker *w)
{
    for (int i = 0; i < w->n_listeners; i++) {
        listener_free(w->listeners[i]);
        w->listeners[i] = NULL;
    }
    w->n_listeners = 0;
    passthrough_free(w->pt); /* closes what is left: logged and counted */
    w->pt = NULL;
    log_batch_flush(&w->access);
    worker_replication_stop(w);
    loop_stop(w->loop);
}

/* The answers given by request_abort_all are written by the listeners on
 * the next loop iterations: keep running until every request is complete
 * (or a short bound passes), then close everything. */
static void worker_stop_tick(void *arg)
{
    struct worker *w = arg;
    if (atomic_load(&w->live) == 0 ||
        loop_now_ms(w->loop) >= w->stop_deadline_ms)
        worker_finish(w);
    else
        loop_timer_start(w->stop_timer, 5, 0);
}

static void worker_shutdown(struct worker *w)
{
    if (w->stopping)
        return;
    w->stopping = true;
    request_abort_all(w);
    w->stop_deadline_ms = loop_now_ms(w->loop) + 1000;
    loop_timer_start(w->stop_timer, 0, 0);
}

static void worker_wake(void *arg)
{
    struct worker *w = arg;
    struct config *cfg = atomic_exchange(&w->next_cfg, NULL);
    if (cfg)
        worker_apply_config(w, cfg);
    if (atomic_load(&w->drain) && !w->draining) {
        w->draining = true;
        for (int i = 0; i < w->n_listeners; i++)
            listener_quiesce(w->listeners[i]);
        if (w->pt)
            passthrough_drain(w->pt, w->cfg->timeouts.drain_ms);
    }
    uint64_t gen = atomic_load(&w->cluster_gen);
    if (gen != w->seen_gen) {
        w->seen_gen = gen;
        request_cluster_changed(w);
        if (w->pt)
            passthrough_cluster_changed(w->pt);
    }
    if (atomic_load(&w->stop))
        worker_shutdown(w);
}

static void worker_flush(void *arg)
{
    struct worker *w = arg;
    log_batch_flush(&w->access);
}

void worker_report_failure(struct worker *w, int node, bool connect_failed)
{
    if (w->events.controller_failed)
        w->events.controller_failed(w->events.ctx, node, connect_failed);
}

struct worker *worker_new(struct app *app, const struct worker_events *ev,
                          int id, const int *fds, int n_fds, int pt_fd,
                          char **err)
{
    struct worker *w = xcalloc(1, sizeof(*w));
    w->events = *ev;
    struct config *cfg = app_config(app);
    list_init(&w->requests);
    list_init(&w->waiting);
    list_init(&w->redis_waiting);
    list_init(&w->spare_requests);
    struct listener_limits lim;
    struct upstream_settings us;
    w->app = app;
    w->id = id;
    w->cfg = cfg;
    w->hold = worker_cfg_hold_new(cfg); /* app_config's reference */
    w->loop = loop_new();
    crypto_random(&w->rng, sizeof(w->rng));
    w->rng |= 1;
    w->outstanding = xcalloc((size_t)cfg->n_controllers, sizeof(int));
    worker_upstream_settings(cfg, &us);
    us.log = app->log;
    w->up = upstream_new(w->loop, &us);
    w->wake = loop_async_new(w->loop, worker_wake, w);
    log_batch_init(&w->access, app->log);
    w->flush = loop_prepare_new(w->loop, worker_flush, w);
    w->stop_timer = loop_timer_new(w->loop, worker_stop_tick, w);
    worker_replication_init(w); /* before a listener takes a request */
    worker_limits(app, cfg, &lim);
    int sni_fd = -1; /* the listener whose port the passthrough splits */
    for (int i = 0; i < n_fds; i++) {
        const struct config_listener *cl = &cfg->listeners[i];
        int lfd = fds[i];
        if (cfg->passthrough.n_sni > 0 &&
            (uint32_t)i == cfg->passthrough.sni_listener) {
            sni_fd = fds[i];
            lfd = -1; /* its connections come through the passthrough */
        }
        struct listener_tls tls = {0};
        char *cert = NULL, *key = NULL, *ca = NULL;
        if (cl->tls) {
            cert = worker_read_file(cl->tls_cert, err);
            key = cert ? worker_read_file(cl->tls_key, err) : NULL;
            ca = key && cl->tls_client_ca
                     ? worker_read_file(cl->tls_client_ca, err)
                     : NULL;
            if (!key || (cl->tls_client_ca && !ca)) {
                free(cert);
                free(key);
                worker_free(w);
                return NULL;
            }
            tls = (struct listener_tls){cert, key, ca, app->ticket_keys};
        }
        w->listeners[i] = listener_new(w->loop, lfd, i,
                                       cl->tls ? &tls : NULL, &lim,
                                       cfg->headers.request_id,
                                       &worker_listener_ops, w, err);
        free(cert);
        free(key);
        free(ca);
        if (!w->listeners[i]) {
            worker_free(w);
            return NULL;
        }
        w->n_listeners++;
    }
    if (pt_fd >= 0 || sni_fd >= 0) {
        w->pt = passthrough_new(w, pt_fd, sni_fd,
                                sni_fd >= 0
                                    ? w->listeners[cfg->passthrough.sni_listener]
                                    : NULL,
                                err);
        if (!w->pt) {
            worker_free(w);
            return NULL;
        }
    }
    return w;
}

char *worker_read_file(const char *path, char **err)
{
    FILE *f = fopen(path, "rb");
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    if (!f) {
        *err = xasprintf("cannot read '%s'", path);
        return NULL;
    }
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    return buf_steal(&b, NULL);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "qg-worker-%d", w->id);
    pthread_setname_np(pthread_self(), name);
    loop_run(w->loop);
    return NULL;
}

int worker_start(struct worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w);
}

void worker_drain(struct worker *w)
{
    atomic_store(&w->drain, 1);
    loop_async_send(w->wake);
}

void worker_stop(struct worker *w)
{
    atomic_store(&w->stop, 1);
    loop_async_send(w->wake);
    pthread_join(w->thread, NULL);
}

void worker_set_config(struct worker *w, struct config *cfg)
{
    struct config *old = atomic_exchange(&w->next_cfg, config_ref(cfg));
    if (old)
        config_unref(old);
    loop_async_send(w->wake);
}

void worker_kick(struct worker *w)
{
    atomic_fetch_add(&w->cluster_gen, 1);
    loop_async_send(w->wake);
}

int worker_in_flight(const struct worker *w)
{
    return atomic_load(&w->live) + atomic_load(&w->pt_open);
}

void worker_free(struct worker *w)
{
    if (!w)
        return;
    for (int i = 0; i < w->n_listeners; i++)
        listener_free(w->listeners[i]);
    passthrough_free(w->pt);
    worker_replication_stop(w);
    request_free_spares(w);
    upstream_free(w->up);
    loop_async_free(w->wake);
    loop_prepare_free(w->flush);
    loop_timer_free(w->stop_timer);
    log_batch_free(&w->access);
    loop_free(w->loop);
    struct config *next = atomic_exchange(&w->next_cfg, NULL);
    if (next)
        config_unref(next);
    worker_cfg_hold_free(w->hold); /* requests are gone with the loop */
    free(w->outstanding);
    free(w);
}
