/* health.c - see health.h. */
#include "routing/health.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/log.h"
#include "base/loop.h"
#include "io/upstream.h"
#include "base/util.h"
#include "routing/cluster.h"

struct health_probe {
    struct health *h;            /* borrowed */
    int node;
    bool in_flight;
    char *url;                   /* owned */
    struct upstream_req req;     /* owned response buffers */
};

/* Owned by the app, lives on the control loop. */
struct health {
    struct loop *loop;           /* borrowed */
    struct upstream *up;         /* borrowed */
    struct cluster *c;           /* borrowed */
    struct log *lg;              /* borrowed */
    struct health_events ev;
    struct health_probe *probes; /* owned, one per node */
    struct loop_timer *timer;    /* owned */
    struct loop_async *wake;     /* owned: reports from workers */
    atomic_uint_fast64_t failed_mask;  /* nodes reported failing */
    atomic_int reprobe_all;
    uint64_t interval_ms, fast_ms, timeout_ms;
    uint32_t rise, fall;
    uint64_t last_round_ms;
};

static const char *const health_headers[] = {
    "Accept: application/json",
    "User-Agent: quorumgate-health/" QG_VERSION,
};

static void health_changed(struct health *h)
{
    int leader = cluster_leader(h->c);
    for (int i = 0; i < h->c->n; i++) {
        struct cluster_node *nd = &h->c->nodes[i];
        log_debug(h->lg, "controller %s up=%d leader_claim=%d", nd->id,
                  atomic_load(&nd->up), atomic_load(&nd->claims_leader));
    }
    char fields[160];
    snprintf(fields, sizeof(fields), "\"leader\":\"%s\",\"controllers_up\":%d",
             leader >= 0 ? h->c->nodes[leader].id : "",
             cluster_count_up(h->c));
    log_write(h->lg, CONFIG_LOG_INFO, "cluster view changed", fields);
    if (h->ev.on_change)
        h->ev.on_change(h->ev.arg);
}

static void health_probe_done(struct upstream_req *r, void *arg)
{
    struct health_probe *p = arg;
    struct health *h = p->h;
    bool is_leader = r->status == 200;
    p->in_flight = false;
    if (r->result == UPSTREAM_OK && r->status == 200) {
        /* trust the body when it says who leads: {"raft":{"isLeader":..}} */
        struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
        bool v;
        if (json_bool(json_path(j, "raft.isLeader"), &v))
            is_leader = v;
        json_free(j);
    }
    char err[128] = "";
    if (r->result != UPSTREAM_OK)
        snprintf(err, sizeof(err), "%s: %s", upstream_result_name(r->result),
                 r->error);
    else if (r->status != 200 && r->status != 429)
        snprintf(err, sizeof(err), "status %d", r->status);
    bool changed = cluster_probe_result(h->c, p->node, r->status, is_leader,
                                        err, h->rise, h->fall,
                                        loop_now_ms(h->loop));
    if (h->ev.on_probe)
        h->ev.on_probe(h->ev.arg, p->node, r->status);
    if (changed)
        health_changed(h);
    if (changed && cluster_leader(h->c) < 0)
        loop_timer_start(h->timer, h->fast_ms, 0);
}

static void health_probe_node(struct health *h, int i)
{
    struct health_probe *p = &h->probes[i];
    if (p->in_flight)
        return;
    p->in_flight = true;
    p->req.method = HTTP_GET;
    p->req.url = p->url;
    p->req.connect_to = h->c->nodes[i].connect_to;
    p->req.headers = health_headers;
    p->req.n_headers = (int)ARRAY_LEN(health_headers);
    p->req.timeout_ms = h->timeout_ms;
    p->req.max_response = 64 * 1024;
    p->req.done = health_probe_done;
    p->req.arg = p;
    upstream_start(h->up, &p->req);
}

void health_probe_all(struct health *h)
{
    h->last_round_ms = loop_now_ms(h->loop);
    for (int i = 0; i < h->c->n; i++)
        health_probe_node(h, i);
}

static void health_tick(void *arg)
{
    struct health *h = arg;
    health_probe_all(h);
    uint64_t next = cluster_leader(h->c) < 0 ? h->fast_ms : h->interval_ms;
    loop_timer_start(h->timer, next, 0);
}

static void health_wake(void *arg)
{
    struct health *h = arg;
    uint64_t mask = atomic_exchange(&h->failed_mask, 0);
    bool all = atomic_exchange(&h->reprobe_all, 0) != 0;
    bool changed = false;
    for (int i = 0; i < h->c->n; i++) {
        if (mask & (1ull << i))
            changed |= cluster_passive_failure(h->c, i, "connect failed",
                                               h->fall, loop_now_ms(h->loop));
    }
    if (changed)
        health_changed(h);
    if (all || changed) {
        health_probe_all(h);
    } else {
        for (int i = 0; i < h->c->n; i++)
            if (mask & (1ull << i))
                health_probe_node(h, i);
    }
    if (cluster_leader(h->c) < 0)
        loop_timer_start(h->timer, h->fast_ms, 0);
}

void health_set_config(struct health *h, const struct config *cfg)
{
    h->interval_ms = cfg->health.interval_ms;
    h->fast_ms = cfg->health.fast_interval_ms;
    h->timeout_ms = cfg->health.timeout_ms;
    h->rise = cfg->health.rise;
    h->fall = cfg->health.fall;
    for (int i = 0; i < h->c->n; i++) {
        free(h->probes[i].url);
        h->probes[i].url = xasprintf("%s%s", h->c->nodes[i].base_url,
                                     cfg->health.path);
    }
}

struct health *health_new(struct loop *loop, struct upstream *up,
                          struct cluster *c, struct log *lg,
                          const struct config *cfg,
                          const struct health_events *ev)
{
    struct health *h = xcalloc(1, sizeof(*h));
    h->loop = loop;
    h->up = up;
    h->c = c;
    h->lg = lg;
    if (ev)
        h->ev = *ev;
    h->probes = xcalloc((size_t)c->n, sizeof(*h->probes));
    for (int i = 0; i < c->n; i++) {
        h->probes[i].h = h;
        h->probes[i].node = i;
    }
    health_set_config(h, cfg);
    h->timer = loop_timer_new(loop, health_tick, h);
    h->wake = loop_async_new(loop, health_wake, h);
    loop_timer_start(h->timer, 0, 0);
    return h;
}

void health_free(struct health *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->c->n; i++) {
        upstream_cancel(h->up, &h->probes[i].req);
        upstream_req_free(&h->probes[i].req);
        free(h->probes[i].url);
    }
    free(h->probes);
    loop_timer_free(h->timer);
    loop_async_free(h->wake);
    free(h);
}

void health_report(struct health *h, int node, bool failed)
{
    if (failed && node >= 0 && node < 64)
        atomic_fetch_or(&h->failed_mask, 1ull << node);
    else
        atomic_store(&h->reprobe_all, 1);
    loop_async_send(h->wake);
}
