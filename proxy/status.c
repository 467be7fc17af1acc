/* status.c - see status.h. */
#include "proxy/status.h"

#include <stdatomic.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "proxy/app.h"
#include "proxy/app_ext.h"
#include "proxy/worker.h"
#include "routing/cluster.h"

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
    return app_ext_ready(a, reasons, ready);
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
    app_ext_status(a, b);
    buf_puts(b, "}\n");
}

static struct config *status_config(void *ctx)
{
    return app_config(ctx);
}

static void status_scrape(void *ctx)
{
    app_ext_scrape(ctx);
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
