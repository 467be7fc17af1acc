/* status.c - see status.h. */
#include "proxy/status.h"

#include <stdatomic.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "proxy/app.h"
#include "base/nodeset.h"
#include "consistency/fencesync.h"
#include "io/redis.h"
#include "io/redis_sentinel.h"
#include "metrics/metrics.h"
#include "routing/affinity.h"
#include "routing/atable.h"
#include "routing/fence.h"
#include "proxy/worker.h"
#include "routing/cluster.h"

/* affinity_entries{kind} is indexed by enum affinity_kind. */
_Static_assert((int)AFF_SESS == (int)M_AFFINITY_SESS &&
                   (int)AFF_OIDC == (int)M_AFFINITY_OIDC &&
                   (int)AFF_CODE == (int)M_AFFINITY_CODE &&
                   (int)AFF__COUNT == (int)M_AFFINITY_KIND__COUNT,
               "enum affinity_kind and METRICS_VALUES_AFFINITY_KIND differ");

bool status_ready(struct app *a, struct buf *reasons)
{
    bool ready = true;
    if (a->draining) {
        buf_puts(reasons, "\"draining\"");
        ready = false;
    }
    if (cluster_leader(a->cluster) < 0) {
        buf_printf(reasons, "%s\"no raft leader known\"", ready ? "" : ",");
        ready = false;
    }
    if (!fencesync_redis_ok(a->fencesync)) {
        buf_printf(reasons, "%s\"Redis does not answer\"", ready ? "" : ",");
        return false;
    }
    if (fencesync_redis_evicts(a->fencesync)) {
        buf_printf(reasons,
                   "%s\"Redis maxmemory-policy is not noeviction\"",
                   ready ? "" : ",");
        return false;
    }
    return ready;
}

/* Affinity, fences and held calls: ,"key":value members of /status. */
static void status_render_tables(struct app *a, struct buf *b)
{
    int counts[AFF__COUNT];
    int held = 0;
    affinity_count(&a->affinity, atable_clock(&a->affinity, util_mono_ms()),
                   counts);
    for (int i = 0; i < a->n_workers; i++)
        held += worker_gate_waiting(a->workers[i]);
    buf_printf(b, ",\"redis_ok\":%s,\"affinity\":{\"sess\":%d,\"oidc\":%d,"
                  "\"code\":%d},\"fenced_identities\":%d,"
                  "\"login_fenced\":[",
               fencesync_redis_ok(a->fencesync) ? "true" : "false",
               counts[AFF_SESS], counts[AFF_OIDC], counts[AFF_CODE],
               atomic_load(&a->fence.identities));
    uint64_t lm = fence_login_mask(&a->fence, fence_now(&a->fence));
    bool first = true;
    for (int i = 0; i < a->cluster->n; i++)
        if (nodeset_has(lm, i)) {
            buf_printf(b, "%s\"%s\"", first ? "" : ",",
                       a->cluster->nodes[i].id);
            first = false;
        }
    buf_printf(b, "],\"pending_acknowledgements\":%d", held);
}

/* Which Redis is in use: ,"redis":{...} of /status. */
static void status_render_redis(struct app *a, struct buf *b)
{
    struct config *cfg = app_config(a);
    const struct config_redis *rc = &cfg->redis;
    if (!a->sentinel) {
        const char *addr = rc->addr.text ? rc->addr.text : "127.0.0.1:6379";
        buf_puts(b, ",\"redis\":{\"source\":\"direct\",\"master\":\"");
        buf_json_escape(b, addr, strlen(addr));
        buf_puts(b, "\"}");
        config_unref(cfg);
        return;
    }
    struct redis_sentinel_info si;
    redis_sentinel_info(a->sentinel, &si);
    buf_puts(b, ",\"redis\":{\"source\":\"sentinel\",\"master\":\"");
    buf_json_escape(b, si.master, strlen(si.master));
    buf_puts(b, "\",\"master_name\":\"");
    buf_json_escape(b, rc->master_name, strlen(rc->master_name));
    buf_printf(b, "\",\"master_known\":%s,\"master_switches\":%llu,"
                  "\"sentinel\":\"",
               si.known ? "true" : "false", (unsigned long long)si.switches);
    buf_json_escape(b, si.sentinel, strlen(si.sentinel));
    buf_puts(b, "\",\"sentinel_error\":\"");
    buf_json_escape(b, si.last_error, strlen(si.last_error));
    buf_puts(b, "\"}");
    config_unref(cfg);
}

/* redis_source, redis_master_known, redis_master_switches_total. */
static void status_scrape_redis(struct app *a)
{
    if (!a->sentinel) {
        metrics_set(a->metrics, M_REDIS_SOURCE, M_REDIS_SOURCE_DIRECT, 1);
        metrics_set(a->metrics, M_REDIS_MASTER_KNOWN, 1);
        return;
    }
    struct redis_sentinel_info si;
    redis_sentinel_info(a->sentinel, &si);
    metrics_set(a->metrics, M_REDIS_SOURCE, M_REDIS_SOURCE_SENTINEL, 1);
    metrics_set(a->metrics, M_REDIS_MASTER_KNOWN, si.known ? 1 : 0);
    if (si.switches > a->redis_switches_seen)
        metrics_add(a->metrics, M_REDIS_MASTER_SWITCHES_TOTAL,
                    si.switches - a->redis_switches_seen);
    a->redis_switches_seen = si.switches;
}

void status_render(struct app *a, struct buf *b)
{
    struct cluster *c = a->cluster;
    int leader = cluster_leader(c);
    int in_flight = 0;
    for (int i = 0; i < a->n_workers; i++)
        in_flight += worker_in_flight(a->workers[i]);
    buf_printf(b, "{\"version\":\"%s\",\"uptime_seconds\":%.3f,"
                  "\"draining\":%s,\"leader\":\"%s\","
                  "\"leader_changes\":%llu,\"controllers\":[",
               QG_VERSION,
               (double)(util_wall_ms() - a->started_wall_ms) / 1000.0,
               a->draining ? "true" : "false",
               leader >= 0 ? c->nodes[leader].id : "",
               (unsigned long long)atomic_load(&c->leader_changes));
    for (int i = 0; i < c->n; i++) {
        struct cluster_node *nd = &c->nodes[i];
        buf_printf(b, "%s{\"id\":\"", i ? "," : "");
        buf_json_escape(b, nd->id, strlen(nd->id));
        buf_puts(b, "\",\"url\":\"");
        buf_json_escape(b, nd->base_url, strlen(nd->base_url));
        buf_printf(b, "\",\"up\":%s,\"leader\":%s,\"last_status\":%d,"
                      "\"last_probe_ms\":%llu,\"last_error\":\"",
                   cluster_up(c, i) ? "true" : "false",
                   i == leader ? "true" : "false",
                   atomic_load(&nd->last_status),
                   (unsigned long long)atomic_load(&nd->last_probe_wall_ms));
        buf_json_escape(b, nd->last_error, strlen(nd->last_error));
        buf_printf(b, "\",\"method\":\"%s\",\"read_only\":%s,"
                      "\"version\":\"",
                   cluster_method_name(
                       (enum cluster_method)atomic_load(&nd->method)),
                   cluster_read_only(c, i) ? "true" : "false");
        buf_json_escape(b, nd->version, strlen(nd->version));
        buf_puts(b, "\"}");
    }
    buf_printf(b, "],\"requests_in_flight\":%d,\"client_connections\":%d,"
                  "\"retries_in_flight\":%d,\"workers\":%d,"
                  "\"config_reloads\":{\"success\":%llu,\"failure\":%llu}",
               in_flight, atomic_load(&a->connections),
               atomic_load(&a->budget.retries), a->n_workers,
               (unsigned long long)a->reloads_ok,
               (unsigned long long)a->reloads_failed);
    status_render_tables(a, b);
    status_render_redis(a, b);
    buf_puts(b, "}\n");
}

static struct config *status_config(void *ctx)
{
    return app_config(ctx);
}

static void status_add_stats(uint64_t sum[2][2],
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
static void status_count_connections(struct app *a)
{
    static const enum metrics_redis_op ops[2] = {M_REDIS_CONNECT,
                                                 M_REDIS_SUBSCRIBE};
    static const enum metrics_ok_error res[2] = {M_RESULT_OK,
                                                 M_RESULT_ERROR};
    uint64_t sum[2][2] = {{0}};
    struct redis_stats s[2];
    fencesync_stats(a->fencesync, s);
    status_add_stats(sum, &s[0]);
    status_add_stats(sum, &s[1]);
    for (int i = 0; i < a->n_workers; i++) {
        worker_redis_stats(a->workers[i], s);
        status_add_stats(sum, &s[0]);
        status_add_stats(sum, &s[1]);
    }
    for (int o = 0; o < 2; o++)
        for (int r = 0; r < 2; r++) {
            if (sum[o][r] > a->redis_seen[o][r])
                metrics_add(a->metrics, M_REDIS_OPERATIONS_TOTAL, ops[o],
                            res[r], sum[o][r] - a->redis_seen[o][r]);
            a->redis_seen[o][r] = sum[o][r];
        }
}

/* Gauges that are computed, refreshed before a scrape. */
static void status_scrape(void *ctx)
{
    struct app *a = ctx;
    status_count_connections(a);
    status_scrape_redis(a);
    int counts[AFF__COUNT];
    affinity_count(&a->affinity, atable_clock(&a->affinity, util_mono_ms()),
                   counts);
    for (int k = 0; k < AFF__COUNT; k++)
        metrics_set(a->metrics, M_AFFINITY_ENTRIES,
                    (enum metrics_affinity_kind)k, counts[k]);
    fence_login_mask(&a->fence, fence_now(&a->fence)); /* refresh count */
    metrics_set(a->metrics, M_FENCED_IDENTITIES,
                atomic_load(&a->fence.identities));
    metrics_set(a->metrics, M_BUFFERED_BYTES,
                (double)atomic_load(&a->buffers.used));
}

static bool status_ready_op(void *ctx, struct buf *reasons)
{
    return status_ready(ctx, reasons);
}

static void status_render_op(void *ctx, struct buf *out)
{
    status_render(ctx, out);
}

const struct admin_ops status_admin_ops = {
    .config = status_config,
    .scrape = status_scrape,
    .ready = status_ready_op,
    .status = status_render_op,
};
