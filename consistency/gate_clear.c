/* gate_clear.c - fence clears Redis did not take, sent again (see
 * gate_clear.h). */
#include "consistency/gate_clear.h"

#include <string.h>

#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"
#include "consistency/ackstore.h"
#include "consistency/gate_impl.h"
#include "io/redis.h"
#include "metrics/metrics.h"

/* Owned by g->clears (one list entry each); freed when Redis took it, when
 * kept too long, or with the gate. */
struct gate_clear {
    struct list link;             /* in g->clears */
    struct gate *g;               /* borrowed */
    char idhex[CRYPTO_HMAC_HEX_LEN + 1];
    char cid[CRYPTO_HMAC_HEX_LEN + 1];
    uint64_t held_wall_ms;
    uint64_t mask;
    uint64_t first_ms;            /* loop time it was first kept */
    bool in_flight;               /* a clear command is out */
};

static void gate_clear_arm(struct gate *g)
{
    loop_timer_start(g->clear_timer, GATE_CLEAR_RETRY_MS, 0);
}

static void gate_clear_on_reply(void *arg, enum redis_status st,
                                const struct redis_reply *rep)
{
    struct gate_clear *gc = arg;
    struct gate *g = gc->g;
    bool ok = redis_reply_ok(st, rep);
    metrics_inc(g->env.metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_FENCE_WRITE,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    gc->in_flight = false;
    if (ok) {
        list_remove(&gc->link);
        g->n_clears--;
        free(gc);
        return;
    }
    gate_clear_arm(g);
}

void gate_clear_retry(struct gate *g)
{
    struct list *pos, *tmp;
    uint64_t now = loop_now_ms(g->env.loop);
    bool left = false;
    list_foreach_safe(pos, tmp, &g->clears) {
        struct gate_clear *gc = list_entry(pos, struct gate_clear, link);
        if (gc->in_flight)
            continue;
        if (now - gc->first_ms >= GATE_CLEAR_KEEP_MS) {
            log_printf(g->env.log, LOG_LEVEL_WARN,
                       "replication gate: Redis did not take a fence's "
                       "lifting for %d s; it stays there until it expires",
                       GATE_CLEAR_KEEP_MS / 1000);
            list_remove(&gc->link);
            g->n_clears--;
            free(gc);
            continue;
        }
        if (!redis_up(g->env.redis)) {
            left = true;
            continue;
        }
        gc->in_flight = true;
        ackstore_fence_clear(g->env.redis, *g->env.cfg, gc->idhex, gc->cid,
                             gc->held_wall_ms, g->env.cluster, gc->mask,
                             gate_clear_on_reply, gc);
    }
    if (left)
        gate_clear_arm(g);
}

static void gate_clear_tick(void *arg)
{
    gate_clear_retry(arg);
}

void gate_clear_later(struct gate *g, const char *idhex, const char *cid,
                      uint64_t held_wall_ms, uint64_t mask)
{
    if (!mask)
        return;
    if (g->n_clears >= GATE_CLEAR_MAX) {
        log_printf(g->env.log, LOG_LEVEL_WARN,
                   "replication gate: %d fence liftings wait for Redis; "
                   "this one is not kept (the fence expires on its own)",
                   GATE_CLEAR_MAX);
        return;
    }
    if (!g->clear_timer)
        g->clear_timer = loop_timer_new(g->env.loop, gate_clear_tick, g);
    struct gate_clear *gc = xcalloc(1, sizeof(*gc));
    gc->g = g;
    memcpy(gc->idhex, idhex, sizeof(gc->idhex));
    memcpy(gc->cid, cid, sizeof(gc->cid));
    gc->held_wall_ms = held_wall_ms;
    gc->mask = mask;
    gc->first_ms = loop_now_ms(g->env.loop);
    list_insert_tail(&g->clears, &gc->link);
    g->n_clears++;
    gate_clear_arm(g);
}

void gate_clear_free_all(struct gate *g)
{
    struct list *n;
    while ((n = list_pop_head(&g->clears)))
        free(list_entry(n, struct gate_clear, link));
    g->n_clears = 0;
    loop_timer_free(g->clear_timer);
    g->clear_timer = NULL;
}
