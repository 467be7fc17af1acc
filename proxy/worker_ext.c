/* worker_ext.c - see worker_ext.h. */
#include "proxy/worker_ext.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "base/loop.h"
#include "base/util.h"
#include "consistency/gate.h"
#include "io/redis.h"
#include "proxy/app.h"
#include "proxy/app_ext.h"
#include "proxy/worker.h"
#include "routing/jwks.h"
#include "routing/ratelimit.h"

/* A worker fetches the controllers' keys at most this often (a token with
 * an unknown kid asks for a fetch), and gives a fetch this long. */
#define WORKER_EXT_JWKS_INTERVAL_MS 10000
#define WORKER_EXT_JWKS_TIMEOUT_MS 3000
/* Client addresses tracked for the affinity learn rate (per worker). */
#define WORKER_EXT_LEARN_SLOTS 4096

/* Owned by the worker, on its loop. */
struct worker_ext {
    struct redis *redis;        /* owned: commands */
    struct redis *sub;          /* owned: <prefix>acks */
    struct gate *gate;          /* owned */
    struct jwks_fetch *jwks;    /* owned: fetches the controllers' keys */
    struct ratelimit learn;     /* owned: affinity learned per client */
    atomic_int waiting;         /* mirror of gate_waiting for other threads */
};

static void worker_ext_ack_message(void *arg, const char *ch, size_t chlen,
                                   const char *msg, size_t len)
{
    struct worker *w = arg;
    gate_on_message(w->ext->gate, msg, len);
}

static void worker_ext_sub_state(void *arg, bool up)
{
    struct worker *w = arg;
    if (up) /* publishes may have been missed: read again */
        gate_resync(w->ext->gate);
}

void worker_ext_init(struct worker *w)
{
    struct worker_ext *x = xcalloc(1, sizeof(*x));
    char name[32], chan[96];
    w->ext = x;
    snprintf(name, sizeof(name), "worker-%d", w->id);
    x->redis = redis_new(w->loop, &w->cfg->redis,
                         &(struct redis_options){.name = name,
                                                 .log = w->app->log});
    snprintf(name, sizeof(name), "worker-%d-sub", w->id);
    x->sub = redis_new(w->loop, &w->cfg->redis,
                       &(struct redis_options){.name = name,
                                               .subscriber = true,
                                               .log = w->app->log,
                                               .on_state = worker_ext_sub_state,
                                               .state_arg = w});
    snprintf(chan, sizeof(chan), "%sacks", w->cfg->redis.key_prefix);
    redis_subscribe(x->sub, chan, worker_ext_ack_message, w);
    struct gate_env env = {
        .loop = w->loop,
        .up = w->up,
        .redis = x->redis,
        .cluster = w->app->cluster,
        .metrics = w->app->metrics,
        .log = w->app->log,
        .fence = app_ext_fence(w->app),
        .cfg = &w->cfg,
        .waiting = &x->waiting,
        .count_cb = app_ext_count_cb,
    };
    for (int op = 0; op < M_REDIS_OP__COUNT; op++)
        env.count_ctx[op] = app_ext_count_ctx(w->app, op);
    x->gate = gate_new(&env);
    ratelimit_init(&x->learn, WORKER_EXT_LEARN_SLOTS);
    x->jwks = jwks_fetch_new(w->app->jwks, w->up, w->app->cluster,
                             WORKER_EXT_JWKS_INTERVAL_MS,
                             WORKER_EXT_JWKS_TIMEOUT_MS);
    jwks_refresh(x->jwks, loop_now_ms(w->loop), NULL, NULL);
}

void worker_ext_config(struct worker *w)
{
    (void)w; /* Redis settings are restart-only */
}

void worker_ext_stop(struct worker *w)
{
    struct worker_ext *x = w->ext;
    if (!x)
        return;
    /* connections first: their callbacks never run after this, so the gate
     * can then free every wait */
    redis_free(x->redis);
    redis_free(x->sub);
    x->redis = x->sub = NULL;
    gate_free(x->gate);
    x->gate = NULL;
    jwks_fetch_free(x->jwks);
    x->jwks = NULL;
    ratelimit_free(&x->learn);
}

void worker_ext_free(struct worker *w)
{
    worker_ext_stop(w);
    free(w->ext);
    w->ext = NULL;
}

struct redis *worker_ext_redis(struct worker *w)
{
    return w->ext->redis;
}

void worker_ext_redis_stats(struct worker *w, struct redis_stats *out)
{
    redis_stats(w->ext->redis, &out[0]);
    redis_stats(w->ext->sub, &out[1]);
}

struct ratelimit *worker_ext_learn_limit(struct worker *w)
{
    return &w->ext->learn;
}

struct jwks_fetch *worker_ext_jwks(struct worker *w)
{
    return w->ext->jwks;
}

struct gate *worker_ext_gate(struct worker *w)
{
    return w->ext->gate;
}

struct mgmt *worker_ext_mgmt(struct worker *w)
{
    return gate_mgmt(w->ext->gate);
}

int worker_ext_gate_waiting(struct worker *w)
{
    return w->ext ? atomic_load(&w->ext->waiting) : 0;
}

atomic_int *worker_ext_waiting_counter(struct worker *w)
{
    return &w->ext->waiting;
}
