/* app_ext.c - see app_ext.h.  The control thread's side of the shared
 * state: the process-wide affinity and fence tables (read lock-free by the
 * workers), a Redis connection that answers readiness (a PING every
 * second) and keeps the fences in step with the other quorumgate
 * processes (a subscriber on <prefix>fences). */
#include "proxy/app_ext.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consistency/ackstore.h"
#include "consistency/gate.h"
#include "io/redis.h"
#include "io/redis_sentinel.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "base/buf.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "proxy/worker.h"
#include "routing/affinity.h"
#include "routing/atable.h"
#include "routing/cluster.h"
#include "routing/fence.h"

#define APP_EXT_AFFINITY_SLOTS (1u << 17)

/* affinity_entries{kind} is indexed by enum affinity_kind. */
_Static_assert((int)AFF_SESS == (int)M_AFFINITY_SESS &&
                   (int)AFF_OIDC == (int)M_AFFINITY_OIDC &&
                   (int)AFF_CODE == (int)M_AFFINITY_CODE &&
                   (int)AFF__COUNT == (int)M_AFFINITY_KIND__COUNT,
               "enum affinity_kind and METRICS_VALUES_AFFINITY_KIND differ");
#define APP_EXT_FENCE_SLOTS 4096

/* Counting context for Redis commands whose only follow-up is a metric. */
struct app_ext_count {
    struct metrics *m;
    enum metrics_redis_op op;
};

/* Owned by the app. */
struct app_ext {
    struct app *a;                       /* borrowed */
    struct atable affinity;              /* process-wide */
    struct fence fence;                  /* process-wide */
    struct gate_slots slots;             /* process-wide: held-call caps */
    struct redis *redis;                 /* owned, control loop */
    struct redis *sub;                   /* owned, control loop */
    struct redis_sentinel *sentinel;     /* owned, control loop; NULL
                                            without redis.sentinels */
    uint64_t switches_seen;              /* counted into the metric */
    struct loop_timer *ping;             /* owned */
    atomic_bool redis_ok;                /* last PING answered */
    atomic_bool redis_evicts;            /* maxmemory-policy not noeviction */
    struct ackstore_ctx fence_ctx;
    struct app_ext_count counts[M_REDIS_OP__COUNT];
    uint64_t last_ping_ms;
    /* connect ok/error, subscribe ok/error already counted (control
     * thread, at scrapes) */
    uint64_t redis_seen[2][2];
};

struct atable *app_ext_affinity(struct app *a)
{
    return &a->ext->affinity;
}

struct fence *app_ext_fence(struct app *a)
{
    return &a->ext->fence;
}

struct gate_slots *app_ext_slots(struct app *a)
{
    return &a->ext->slots;
}

bool app_ext_redis_ok(struct app *a)
{
    return a->ext && atomic_load(&a->ext->redis_ok);
}

void *app_ext_count_ctx(struct app *a, int op)
{
    return &a->ext->counts[op];
}

void app_ext_count_cb(void *arg, enum redis_status st,
                      const struct redis_reply *rep)
{
    struct app_ext_count *c = arg;
    bool ok = redis_reply_ok(st, rep);
    metrics_inc(c->m, M_REDIS_OPERATIONS_TOTAL, c->op,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
}

static void app_ext_on_ping(void *arg, enum redis_status st,
                            const struct redis_reply *rep)
{
    struct app_ext *x = arg;
    bool ok = redis_reply_ok(st, rep);
    bool was = atomic_exchange(&x->redis_ok, ok);
    metrics_inc(x->a->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_PING,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    metrics_set(x->a->metrics, M_REDIS_UP, ok ? 1 : 0);
    if (was != ok) {
        char err[160] = "";
        redis_last_error(x->redis, err, sizeof(err));
        if (ok)
            log_printf(x->a->log, LOG_LEVEL_INFO, "Redis is reachable");
        else
            log_printf(x->a->log, LOG_LEVEL_WARN,
                       "Redis is unreachable (%s): affinity falls back to "
                       "the local cache, gated MFA calls are refused",
                       err[0] ? err : redis_status_name(st));
    }
}

static void app_ext_ping(void *arg)
{
    struct app_ext *x = arg;
    redis_command(x->redis, app_ext_on_ping, x, "PING");
    loop_timer_start(x->ping, 1000, 0);
}

/* CONFIG GET maxmemory-policy: anything but noeviction lets Redis drop
 * gate records, acknowledgements and fences under memory pressure (and
 * clients can create affinity keys).  Said at every connect. */
static void app_ext_on_policy(void *arg, enum redis_status st,
                              const struct redis_reply *rep)
{
    struct app_ext *x = arg;
    if (st != REDIS_STATUS_OK)
        return;
    if (rep->type == REDIS_TYPE_ARRAY && rep->n_elements == 2 &&
        rep->elements[1].type == REDIS_TYPE_STRING) {
        const char *policy = rep->elements[1].str;
        x->redis_evicts = strcmp(policy, "noeviction") != 0;
        if (x->redis_evicts)
            log_printf(x->a->log, LOG_LEVEL_ERROR,
                       "Redis maxmemory-policy is '%s': under memory "
                       "pressure Redis may evict replication records and "
                       "fences; set 'maxmemory-policy noeviction' (or use "
                       "a database of its own with that policy)",
                       policy);
        return;
    }
    log_printf(x->a->log, LOG_LEVEL_WARN,
               "could not read Redis maxmemory-policy (CONFIG GET refused: "
               "%.*s): make sure it is 'noeviction'",
               (int)(rep->len < 200 ? rep->len : 200), rep->str);
}

bool app_ext_redis_evicts(struct app *a)
{
    return a->ext && atomic_load(&a->ext->redis_evicts);
}

static void app_ext_state(void *arg, bool up)
{
    struct app_ext *x = arg;
    if (up)
        redis_command(x->redis, app_ext_on_policy, x,
                      "CONFIG GET maxmemory-policy");
    if (!up)
        atomic_store(&x->redis_ok, false);
    loop_timer_start(x->ping, 0, 0); /* find out now, not in a second */
}

static void app_ext_on_fence(void *arg, bool ok, const char *idhex,
                             uint64_t mask, uint64_t expiry_ms)
{
    struct app_ext *x = arg;
    if (!idhex) {
        metrics_inc(x->a->metrics, M_REDIS_OPERATIONS_TOTAL,
                    M_REDIS_FENCE_READ, ok ? M_RESULT_OK : M_RESULT_ERROR);
        metrics_set(x->a->metrics, M_FENCED_IDENTITIES,
                    atomic_load(&x->fence.identities));
        return;
    }
    struct fence_key k;
    uint64_t now_wall = util_wall_ms();
    fence_key_from_hex(idhex, &k);
    uint64_t left_s = expiry_ms > now_wall ? (expiry_ms - now_wall + 999) / 1000
                                           : 0;
    fence_set(&x->fence, &k, left_s ? mask : 0,
              fence_now(&x->fence) + left_s);
}

static void app_ext_fence_message(void *arg, const char *ch, size_t chlen,
                                  const char *msg, size_t len)
{
    struct app_ext *x = arg;
    char idhex[CRYPTO_HMAC_HEX_LEN + 1];
    if (len != CRYPTO_HMAC_HEX_LEN)
        return;
    memcpy(idhex, msg, len);
    idhex[len] = '\0';
    struct config *cfg = app_config(x->a);
    ackstore_fence_read(x->redis, cfg, idhex, &x->fence_ctx);
    config_unref(cfg);
}

static void app_ext_sub_state(void *arg, bool up)
{
    struct app_ext *x = arg;
    if (!up)
        return;
    /* messages may have been missed while down: read every fence */
    struct config *cfg = app_config(x->a);
    ackstore_fence_read_all(x->redis, cfg, &x->fence_ctx);
    config_unref(cfg);
}

void app_ext_init(struct app *a)
{
    struct app_ext *x = xcalloc(1, sizeof(*x));
    struct config *cfg = app_config(a);
    char chan[96];
    a->ext = x;
    x->a = a;
    atable_init(&x->affinity, APP_EXT_AFFINITY_SLOTS);
    fence_init(&x->fence, APP_EXT_FENCE_SLOTS);
    for (int i = 0; i < M_REDIS_OP__COUNT; i++)
        x->counts[i] = (struct app_ext_count){a->metrics,
                                              (enum metrics_redis_op)i};
    x->fence_ctx = (struct ackstore_ctx){.c = a->cluster,
                                         .fence = app_ext_on_fence, .arg = x};
    x->ping = loop_timer_new(a->loop, app_ext_ping, x);
    if (cfg->redis.n_sentinels > 0) /* one monitor for every connection */
        x->sentinel = redis_sentinel_new(a->loop, &cfg->redis, a->log);
    x->redis = redis_new(a->loop, &cfg->redis,
                         &(struct redis_options){.name = "control",
                                                 .log = a->log,
                                                 .on_state = app_ext_state,
                                                 .state_arg = x,
                                                 .sentinel = x->sentinel});
    x->sub = redis_new(a->loop, &cfg->redis,
                       &(struct redis_options){.name = "control-sub",
                                               .subscriber = true,
                                               .log = a->log,
                                               .on_state = app_ext_sub_state,
                                               .state_arg = x,
                                               .sentinel = x->sentinel});
    ackstore_channel(cfg, ACKSTORE_CHANNEL_FENCES, chan, sizeof(chan));
    redis_subscribe(x->sub, chan, app_ext_fence_message, x);
    /* The first PING goes out when the connection is up (app_ext_state):
     * one sent now could only fail and count a Redis error at every
     * start. */
    config_unref(cfg);
}

void app_ext_config(struct app *a)
{
    (void)a; /* Redis settings are restart-only */
}

bool app_ext_ready(struct app *a, struct buf *reasons, bool ready)
{
    if (!app_ext_redis_ok(a)) {
        buf_printf(reasons, "%s\"Redis does not answer\"", ready ? "" : ",");
        return false;
    }
    if (app_ext_redis_evicts(a)) {
        buf_printf(reasons,
                   "%s\"Redis maxmemory-policy is not noeviction\"",
                   ready ? "" : ",");
        return false;
    }
    return ready;
}

struct redis_sentinel *app_ext_sentinel(struct app *a)
{
    return a->ext ? a->ext->sentinel : NULL;
}

/* Which Redis is in use: "address" is the master's (or the configured
 * address), "" while the sentinels have not named one. */
static const char *app_ext_redis_source(struct app *a, char *addr,
                                        size_t size,
                                        struct redis_sentinel_info *si)
{
    struct app_ext *x = a->ext;
    memset(si, 0, sizeof(*si));
    if (x->sentinel) {
        redis_sentinel_info(x->sentinel, si);
        snprintf(addr, size, "%s", si->master);
        return "sentinel";
    }
    struct config *cfg = app_config(a);
    snprintf(addr, size, "%s",
             cfg->redis.addr.text ? cfg->redis.addr.text : "127.0.0.1:6379");
    config_unref(cfg);
    return "direct";
}

static void app_ext_status_redis(struct app *a, struct buf *b)
{
    struct redis_sentinel_info si;
    char addr[REDIS_SENTINEL_ADDR_MAX];
    const char *source = app_ext_redis_source(a, addr, sizeof(addr), &si);
    buf_printf(b, ",\"redis\":{\"source\":\"%s\",\"master\":\"", source);
    buf_json_escape(b, addr, strlen(addr));
    buf_puts(b, "\"");
    if (a->ext->sentinel) {
        struct config *cfg = app_config(a);
        buf_puts(b, ",\"master_name\":\"");
        buf_json_escape(b, cfg->redis.master_name,
                        strlen(cfg->redis.master_name));
        config_unref(cfg);
        buf_printf(b, "\",\"master_known\":%s,\"master_switches\":%llu,"
                      "\"sentinel\":\"",
                   si.known ? "true" : "false",
                   (unsigned long long)si.switches);
        buf_json_escape(b, si.sentinel, strlen(si.sentinel));
        buf_puts(b, "\",\"sentinel_error\":\"");
        buf_json_escape(b, si.last_error, strlen(si.last_error));
        buf_puts(b, "\"");
    }
    buf_puts(b, "}");
}

void app_ext_status(struct app *a, struct buf *b)
{
    struct app_ext *x = a->ext;
    int counts[AFF__COUNT];
    int held = 0;
    affinity_count(&x->affinity, atable_clock(&x->affinity, util_mono_ms()),
                   counts);
    for (int i = 0; i < a->n_workers; i++)
        held += worker_gate_waiting(a->workers[i]);
    buf_printf(b, ",\"redis_ok\":%s,\"affinity\":{\"sess\":%d,\"oidc\":%d,"
                  "\"code\":%d},\"fenced_identities\":%d,"
                  "\"login_fenced\":[",
               app_ext_redis_ok(a) ? "true" : "false", counts[AFF_SESS],
               counts[AFF_OIDC], counts[AFF_CODE],
               atomic_load(&x->fence.identities));
    uint64_t lm = fence_login_mask(&x->fence, fence_now(&x->fence));
    bool first = true;
    for (int i = 0; i < a->cluster->n; i++)
        if (nodeset_has(lm, i)) {
            buf_printf(b, "%s\"%s\"", first ? "" : ",",
                       a->cluster->nodes[i].id);
            first = false;
        }
    buf_printf(b, "],\"pending_acknowledgements\":%d", held);
    app_ext_status_redis(a, b);
}

static void app_ext_add_stats(uint64_t sum[2][2],
                              const struct redis_stats *s)
{
    const uint64_t *sub = s->ops[REDIS_OP_SUBSCRIBE];
    sum[0][0] += s->connects;
    sum[0][1] += s->connect_failures;
    sum[1][0] += sub[REDIS_RESULT_OK];
    sum[1][1] += sub[REDIS_RESULT_ERROR] + sub[REDIS_RESULT_TIMEOUT] +
                 sub[REDIS_RESULT_UNAVAILABLE];
}

/* Connections and subscriptions are counted by the Redis module, per
 * connection: what every connection of the process did since the last
 * scrape goes into redis_operations_total{op="connect"|"subscribe"}. */
static void app_ext_count_connections(struct app *a)
{
    struct app_ext *x = a->ext;
    static const enum metrics_redis_op ops[2] = {M_REDIS_CONNECT,
                                                 M_REDIS_SUBSCRIBE};
    static const enum metrics_ok_error res[2] = {M_RESULT_OK,
                                                 M_RESULT_ERROR};
    uint64_t sum[2][2] = {{0}};
    struct redis_stats s[2];
    redis_stats(x->redis, &s[0]);
    redis_stats(x->sub, &s[1]);
    app_ext_add_stats(sum, &s[0]);
    app_ext_add_stats(sum, &s[1]);
    for (int i = 0; i < a->n_workers; i++) {
        worker_redis_stats(a->workers[i], s);
        app_ext_add_stats(sum, &s[0]);
        app_ext_add_stats(sum, &s[1]);
    }
    for (int o = 0; o < 2; o++)
        for (int r = 0; r < 2; r++) {
            if (sum[o][r] > x->redis_seen[o][r])
                metrics_add(a->metrics, M_REDIS_OPERATIONS_TOTAL, ops[o],
                            res[r], sum[o][r] - x->redis_seen[o][r]);
            x->redis_seen[o][r] = sum[o][r];
        }
}

void app_ext_scrape(struct app *a)
{
    struct app_ext *x = a->ext;
    app_ext_count_connections(a);
    if (x->sentinel) {
        struct redis_sentinel_info si;
        redis_sentinel_info(x->sentinel, &si);
        metrics_set(a->metrics, M_REDIS_MASTER_KNOWN, si.known ? 1 : 0);
        metrics_set(a->metrics, M_REDIS_SOURCE, M_REDIS_SOURCE_SENTINEL, 1);
        if (si.switches > x->switches_seen)
            metrics_add(a->metrics, M_REDIS_MASTER_SWITCHES_TOTAL,
                        si.switches - x->switches_seen);
        x->switches_seen = si.switches;
    } else {
        metrics_set(a->metrics, M_REDIS_MASTER_KNOWN, 1);
        metrics_set(a->metrics, M_REDIS_SOURCE, M_REDIS_SOURCE_DIRECT, 1);
    }
    int counts[AFF__COUNT];
    affinity_count(&x->affinity, atable_clock(&x->affinity, util_mono_ms()),
                   counts);
    for (int k = 0; k < AFF__COUNT; k++)
        metrics_set(a->metrics, M_AFFINITY_ENTRIES,
                    (enum metrics_affinity_kind)k, counts[k]);
    fence_login_mask(&x->fence, fence_now(&x->fence)); /* refresh count */
    metrics_set(a->metrics, M_FENCED_IDENTITIES,
                atomic_load(&x->fence.identities));
    metrics_set(a->metrics, M_BUFFERED_BYTES,
                (double)atomic_load(&a->buffers.used));
}

void app_ext_free(struct app *a)
{
    struct app_ext *x = a->ext;
    if (!x)
        return;
    redis_free(x->redis);
    redis_free(x->sub);
    redis_sentinel_free(x->sentinel); /* every connection is gone */
    loop_timer_free(x->ping);
    atable_free(&x->affinity);
    fence_free(&x->fence);
    free(x);
    a->ext = NULL;
}
