/* health.c - see health.h. */
#include "routing/health.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "io/upstream.h"
#include "routing/cluster.h"

struct health_probe {
    struct health *h;            /* borrowed */
    int node;
    bool in_flight;
    bool waiting_token;          /* a management session is awaited */
    bool refused_once;           /* a cached session got 401: one re-login */
    bool told_unwatchable;       /* the 404-without-credential error logged */
    char *url;                   /* owned: the health path */
    char *members_url;           /* owned: .../fabric/v1/cluster/list-members */
    char *token;                 /* owned: the session used (list-members) */
    char *auth;                  /* owned: "zt-session: ..." */
    const char *hdr[3];          /* borrowed lines */
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
    log_write(h->lg, LOG_LEVEL_INFO, "cluster view changed", fields);
    if (h->ev.on_change)
        h->ev.on_change(h->ev.arg);
}

static void health_probe_node(struct health *h, int i);

static void health_set_method(struct health *h, int i, enum cluster_method m,
                              const char *why)
{
    struct cluster_node *nd = &h->c->nodes[i];
    if ((enum cluster_method)atomic_exchange(&nd->method, (int)m) == m)
        return;
    if (m != CLUSTER_BY_LIST_MEMBERS)
        atomic_store(&nd->read_only, 0);
    char fields[200];
    snprintf(fields, sizeof(fields), "\"controller\":\"%s\",\"method\":\"%s\"",
             nd->id, cluster_method_name(m));
    log_write(h->lg, LOG_LEVEL_INFO, why, fields);
}

char *health_unwatchable_message(const char *id, const char *url)
{
    return xasprintf(
        "controller %s (%s) has no health-checks API (404 for the health "
        "path) and no management credential is configured to find the "
        "leader through /fabric/v1/cluster/list-members.  Either bind the "
        "health-checks API on it: in its ctrl.yaml, under web: -> apis:, "
        "add '- binding: health-checks' and restart it; or give quorumgate "
        "an admin credential: gate.management.username and "
        "gate.management.password_file",
        id, url);
}

/* Controller i answered the health path 404 and nothing else can tell its
 * role: say how to fix it (once per controller until it changes). */
static void health_unwatchable(struct health *h, struct health_probe *p)
{
    struct cluster_node *nd = &h->c->nodes[p->node];
    if (p->told_unwatchable)
        return;
    p->told_unwatchable = true;
    char *why = health_unwatchable_message(nd->id, nd->base_url);
    log_write(h->lg, LOG_LEVEL_ERROR, why, NULL);
    if (h->ev.on_unwatchable)
        h->ev.on_unwatchable(h->ev.arg, p->node, why);
    free(why);
}

/* One list-members answer: the row of controller i (by id, else by its
 * address) says whether it leads; readOnly is its own mesh state. */
static bool health_members(struct health *h, int i, const char *body,
                           size_t len, bool *leader, bool *read_only,
                           char *err, size_t errlen)
{
    struct cluster_node *nd = &h->c->nodes[i];
    struct json *j = json_parse(body, len);
    struct json *data = json_get(j, "data");
    struct json *self = NULL, *by_addr = NULL;
    const char *port = strrchr(nd->base_url, ':');
    bool ok = false;
    *read_only = false;
    for (struct json *m = json_first(data); m; m = json_next(m)) {
        const char *id = json_string(json_get(m, "id"));
        const char *addr = json_string(json_get(m, "address"));
        bool ro = false;
        if (json_bool(json_get(m, "readOnly"), &ro) && ro)
            *read_only = true;
        if (id && strcmp(id, nd->id) == 0)
            self = m;
        else if (addr && port && strrchr(addr, ':') &&
                 strcmp(strrchr(addr, ':'), port) == 0)
            by_addr = m;
    }
    if (!self)
        self = by_addr;
    if (!json_is_array(data))
        snprintf(err, errlen, "list-members: no data array in the answer");
    else if (!self)
        snprintf(err, errlen, "list-members: no member with id %s (nor "
                 "its port) in its own answer", nd->id);
    else if (!json_bool(json_get(self, "leader"), leader))
        snprintf(err, errlen, "list-members: no leader field");
    else
        ok = true;
    if (self) {
        const char *v = json_string(json_get(self, "version"));
        snprintf(nd->version, sizeof(nd->version), "%s", v ? v : "");
    }
    json_free(j);
    return ok;
}

static void health_record(struct health *h, int node, int status,
                          int probe_status, bool is_leader, const char *err)
{
    bool changed = cluster_probe_result(h->c, node, status, is_leader, err,
                                        h->rise, h->fall,
                                        loop_now_ms(h->loop));
    if (h->ev.on_probe)
        h->ev.on_probe(h->ev.arg, node, probe_status);
    if (changed)
        health_changed(h);
    if (changed && cluster_leader(h->c) < 0)
        loop_timer_start(h->timer, h->fast_ms, 0);
}

static void health_members_done(struct health_probe *p,
                                struct upstream_req *r, char *err,
                                size_t errlen)
{
    struct health *h = p->h;
    struct cluster_node *nd = &h->c->nodes[p->node];
    bool leader = false, ro = false;
    if (r->result == UPSTREAM_OK && r->status == 401) {
        if (h->ev.token_refused)
            h->ev.token_refused(h->ev.arg, p->node, p->token);
        if (!p->refused_once) { /* an expired session: log in once more */
            p->refused_once = true;
            health_probe_node(h, p->node);
            return;
        }
        snprintf(err, errlen, "list-members: the management session was "
                 "refused (401): is gate.management an admin?");
    } else if (r->result == UPSTREAM_OK && r->status == 404) {
        /* no fabric API either: try the health path again next time */
        snprintf(err, errlen, "list-members: 404 (no fabric API bound)");
        health_set_method(h, p->node, CLUSTER_BY_HEALTH_CHECK,
                          "controller answers list-members 404: back to "
                          "its health path");
    } else if (r->result == UPSTREAM_OK && r->status == 200 &&
               health_members(h, p->node, r->resp_body.data,
                              r->resp_body.len, &leader, &ro, err,
                              errlen)) {
        p->refused_once = false;
        if (atomic_exchange(&nd->read_only, ro ? 1 : 0) != (ro ? 1 : 0))
            log_printf(h->lg, ro ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
                       ro ? "controller %s reports a read-only cluster "
                            "(members of different versions): writes are "
                            "answered 503 CLUSTER_READ_ONLY"
                          : "controller %s is no longer read-only",
                       nd->id);
        health_record(h, p->node, 200, leader ? 200 : 429, leader, "");
        return;
    } else if (r->result == UPSTREAM_OK && !err[0]) {
        snprintf(err, errlen, "list-members: status %d", r->status);
    }
    health_record(h, p->node, r->result == UPSTREAM_OK ? r->status : 0,
                  r->result == UPSTREAM_OK ? r->status : 0, false, err);
}

static void health_probe_done(struct upstream_req *r, void *arg)
{
    struct health_probe *p = arg;
    struct health *h = p->h;
    struct cluster_node *nd = &h->c->nodes[p->node];
    bool is_leader = r->status == 200;
    p->in_flight = false;
    char err[160] = "";
    if (r->result != UPSTREAM_OK)
        snprintf(err, sizeof(err), "%s: %s", upstream_result_name(r->result),
                 r->error);
    if (atomic_load(&nd->method) == CLUSTER_BY_LIST_MEMBERS) {
        health_members_done(p, r, err, sizeof(err));
        buf_reset(&r->resp_body);
        return;
    }
    if (r->result == UPSTREAM_OK && r->status == 404) {
        bool cred = h->ev.has_credential && h->ev.has_credential(h->ev.arg);
        if (cred && h->ev.token) {
            p->told_unwatchable = false;
            health_set_method(h, p->node, CLUSTER_BY_LIST_MEMBERS,
                              "controller has no health-checks API (404): "
                              "watching it through GET "
                              "/fabric/v1/cluster/list-members with "
                              "gate.management");
            health_probe_node(h, p->node);
            return;
        }
        snprintf(err, sizeof(err), "status 404: no health-checks API; bind "
                 "it in ctrl.yaml or configure gate.management");
        health_unwatchable(h, p);
    }
    if (r->result == UPSTREAM_OK && r->status == 200) {
        /* trust the body when it says who leads: {"raft":{"isLeader":..}} */
        struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
        bool v;
        if (json_bool(json_path(j, "raft.isLeader"), &v))
            is_leader = v;
        json_free(j);
    }
    if (r->result == UPSTREAM_OK && r->status != 200 && r->status != 429 &&
        !err[0])
        snprintf(err, sizeof(err), "status %d", r->status);
    health_record(h, p->node, r->status, r->status, is_leader, err);
}

/* A management session for a list-members probe arrived (or not). */
static void health_token(void *arg, const char *token)
{
    struct health_probe *p = arg;
    struct health *h = p->h;
    struct cluster_node *nd = &h->c->nodes[p->node];
    p->waiting_token = false;
    if (!token) {
        p->in_flight = false;
        health_record(h, p->node, 0, 0, false,
                      "list-members: no management session (login failed)");
        return;
    }
    free(p->token);
    p->token = xstrdup(token);
    free(p->auth);
    p->auth = xasprintf("zt-session: %s", token);
    if (!p->members_url)
        p->members_url = xasprintf("%s/fabric/v1/cluster/list-members",
                                   nd->base_url);
    p->hdr[0] = health_headers[0];
    p->hdr[1] = health_headers[1];
    p->hdr[2] = p->auth;
    p->req.method = HTTP_GET;
    p->req.url = p->members_url;
    p->req.connect_to = nd->connect_to;
    p->req.headers = p->hdr;
    p->req.n_headers = 3;
    p->req.timeout_ms = h->timeout_ms;
    p->req.max_response = 256 * 1024;
    p->req.done = health_probe_done;
    p->req.arg = p;
    upstream_start(h->up, &p->req);
}

static void health_probe_node(struct health *h, int i)
{
    struct health_probe *p = &h->probes[i];
    if (p->in_flight)
        return;
    p->in_flight = true;
    if (atomic_load(&h->c->nodes[i].method) == CLUSTER_BY_LIST_MEMBERS) {
        p->waiting_token = true;
        h->ev.token(h->ev.arg, i, health_token, p);
        return;
    }
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
        if (nodeset_has(mask, i))
            changed |= cluster_passive_failure(h->c, i, "connect failed",
                                               h->fall, loop_now_ms(h->loop));
    }
    if (changed)
        health_changed(h);
    if (all || changed) {
        health_probe_all(h);
    } else {
        for (int i = 0; i < h->c->n; i++)
            if (nodeset_has(mask, i))
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
        free(h->probes[i].members_url);
        free(h->probes[i].auth);
        free(h->probes[i].token);
    }
    free(h->probes);
    loop_timer_free(h->timer);
    loop_async_free(h->wake);
    free(h);
}

void health_report(struct health *h, int node, bool failed)
{
    if (failed && node >= 0 && node < 64)
        atomic_fetch_or(&h->failed_mask, nodeset_of(node));
    else
        atomic_store(&h->reprobe_all, 1);
    loop_async_send(h->wake);
}
