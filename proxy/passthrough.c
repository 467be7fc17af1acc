/* passthrough.c - see passthrough.h. */
#include "proxy/passthrough.h"

#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/log.h"
#include "base/util.h"
#include "io/listener.h"
#include "io/splice.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/worker.h"
#include "routing/cluster.h"

/* Why connections were retired (splice_retire's why). */
enum { PT_WHY_LEADER_CHANGE = 1, PT_WHY_DRAIN = 2 };

struct passthrough_target {
    struct sockaddr_storage addr;
    socklen_t len;
};

struct passthrough {
    struct worker *w;                 /* borrowed: the owner */
    struct splice *splice;            /* owned; NULL without an address */
    struct splice *sni;               /* owned; NULL without sni.names */
    struct listener *sni_listener;    /* borrowed: gets what sni hands off */
    struct passthrough_target *targets; /* owned: one per controller */
    int n_targets;
    int leader_seen;                  /* leader when last looked; -1 none */
    bool draining;
};

/* ---- splice callbacks --------------------------------------------------- */

static int passthrough_pick(void *ctx, struct sockaddr_storage *addr,
                            socklen_t *len, int *reason)
{
    struct passthrough *pt = ctx;
    const struct config_passthrough *cp = &pt->w->cfg->passthrough;
    int leader = cluster_leader(pt->w->app->cluster);
    if (leader < 0 || leader >= pt->n_targets) {
        *reason = M_PT_REFUSE_NO_LEADER;
        return -1;
    }
    if (!(cp->allowed & (1u << leader))) {
        *reason = M_PT_REFUSE_LEADER_NOT_ALLOWED;
        return -1;
    }
    *addr = pt->targets[leader].addr;
    *len = pt->targets[leader].len;
    atomic_fetch_add(&pt->w->pt_open, 1);
    metrics_inc(pt->w->app->metrics, M_PASSTHROUGH_OPEN_CONNECTIONS, leader);
    return leader;
}

static void passthrough_bytes(void *ctx, int target, bool up, size_t n)
{
    struct passthrough *pt = ctx;
    metrics_add(pt->w->app->metrics, M_PASSTHROUGH_BYTES_TOTAL, target,
                up ? M_DIRECTION_TO_CONTROLLER : M_DIRECTION_TO_CLIENT,
                (uint64_t)n);
}

static void passthrough_connected(void *ctx, int target)
{
    struct passthrough *pt = ctx;
    metrics_inc(pt->w->app->metrics, M_PASSTHROUGH_CONNECTIONS_TOTAL, target);
}

/* The metrics reason of an ended connection that had a target. */
static enum metrics_pt_close passthrough_close_reason(
    const struct splice_result *r)
{
    switch (r->end) {
    case SPLICE_END_CLIENT_CLOSED: return M_PT_CLOSE_CLIENT;
    case SPLICE_END_UPSTREAM_CLOSED: return M_PT_CLOSE_CONTROLLER;
    case SPLICE_END_IDLE: return M_PT_CLOSE_IDLE;
    case SPLICE_END_RETIRED:
        return r->reason == PT_WHY_DRAIN ? M_PT_CLOSE_DRAIN
                                         : M_PT_CLOSE_LEADER_CHANGE;
    case SPLICE_END_CONNECT_FAILED: return M_PT_CLOSE_CONNECT_FAILED;
    case SPLICE_END_CONNECT_TIMEOUT: return M_PT_CLOSE_CONNECT_TIMEOUT;
    case SPLICE_END_SHUTDOWN: return M_PT_CLOSE_SHUTDOWN;
    case SPLICE_END_ERROR:
    case SPLICE_END_REFUSED:
    case SPLICE_END_LIMIT:
        break;
    }
    return M_PT_CLOSE_ERROR;
}

static const char *passthrough_result_name(const struct splice_result *r)
{
    if (r->end == SPLICE_END_REFUSED)
        return r->reason == M_PT_REFUSE_LEADER_NOT_ALLOWED
                   ? "refused_leader_not_allowed"
                   : "refused_no_leader";
    if (r->end == SPLICE_END_LIMIT)
        return "refused_max_connections";
    if (r->end == SPLICE_END_RETIRED)
        return r->reason == PT_WHY_DRAIN ? "drain" : "leader_change";
    return splice_end_name(r->end);
}

static void passthrough_log(struct passthrough *pt,
                            const struct splice_result *r)
{
    struct worker *w = pt->w;
    if (!log_access_enabled(w->app->log))
        return;
    struct buf b = {0};
    char ts[32];
    log_timestamp(ts);
    buf_printf(&b, "{\"ts\":\"%s\",\"kind\":\"passthrough\"", ts);
    buf_printf(&b, ",\"client\":\"%s\",\"client_port\":%u", r->client_addr,
               r->client_port);
    buf_printf(&b, ",\"controller\":\"%s\"",
               r->target >= 0 ? w->app->cluster->nodes[r->target].id : "");
    buf_printf(&b, ",\"result\":\"%s\"", passthrough_result_name(r));
    if (r->err)
        buf_printf(&b, ",\"error\":\"%s\"", strerror(r->err));
    buf_printf(&b, ",\"bytes_to_controller\":%llu,\"bytes_to_client\":%llu",
               (unsigned long long)r->bytes_up,
               (unsigned long long)r->bytes_down);
    buf_printf(&b, ",\"duration_ms\":%.3f",
               (double)(r->end_ns - r->start_ns) / 1e6);
    if (r->connected_ns)
        buf_printf(&b, ",\"connect_ms\":%.3f",
                   (double)(r->connected_ns - r->start_ns) / 1e6);
    buf_putc(&b, '}');
    log_batch_add(&w->access, b.data, b.len);
    buf_free(&b);
}

static void passthrough_end(void *ctx, const struct splice_result *r)
{
    struct passthrough *pt = ctx;
    struct app *a = pt->w->app;
    if (r->end == SPLICE_END_REFUSED) {
        metrics_inc(a->metrics, M_PASSTHROUGH_REFUSED_TOTAL,
                    (enum metrics_pt_refuse)r->reason);
    } else if (r->end == SPLICE_END_LIMIT) {
        metrics_inc(a->metrics, M_PASSTHROUGH_REFUSED_TOTAL,
                    M_PT_REFUSE_MAX_CONNECTIONS);
    } else {
        metrics_inc(a->metrics, M_PASSTHROUGH_CLOSES_TOTAL,
                    passthrough_close_reason(r));
    }
    if (r->target >= 0) {
        atomic_fetch_sub(&pt->w->pt_open, 1);
        metrics_dec(a->metrics, M_PASSTHROUGH_OPEN_CONNECTIONS, r->target);
        if (r->connected_ns)
            metrics_observe_ns(a->metrics,
                               M_PASSTHROUGH_CONNECTION_DURATION_SECONDS,
                               r->end_ns - r->connected_ns);
        if (r->end == SPLICE_END_CONNECT_FAILED ||
            r->end == SPLICE_END_CONNECT_TIMEOUT)
            worker_report_failure(pt->w, r->target,
                                  r->end == SPLICE_END_CONNECT_FAILED);
    }
    passthrough_log(pt, r);
}

static bool passthrough_sni_match(void *ctx, const char *name)
{
    struct passthrough *pt = ctx;
    const struct config_passthrough *cp = &pt->w->cfg->passthrough;
    for (int i = 0; i < cp->n_sni; i++)
        if (strcmp(cp->sni_names[i], name) == 0)
            return true;
    return false;
}

static void passthrough_hand_off(void *ctx, int fd,
                                 const struct sockaddr_storage *peer,
                                 socklen_t len)
{
    struct passthrough *pt = ctx;
    listener_adopt(pt->sni_listener, fd, peer, len);
}

static const struct splice_ops passthrough_ops = {
    .pick = passthrough_pick,
    .on_bytes = passthrough_bytes,
    .on_connected = passthrough_connected,
    .on_end = passthrough_end,
    .sni_match = passthrough_sni_match,
    .hand_off = passthrough_hand_off,
};

/* ---- the worker's passthrough ------------------------------------------- */

static void passthrough_limits(const struct config *cfg, int n_workers,
                               struct splice_limits *lim)
{
    const struct config_passthrough *cp = &cfg->passthrough;
    lim->max_connections = cp->max_connections / (uint32_t)n_workers;
    if (lim->max_connections == 0)
        lim->max_connections = 1;
    lim->idle_timeout_ms = cp->idle_timeout_ms;
    lim->connect_timeout_ms = cp->connect_timeout_ms;
    lim->peek_timeout_ms = cfg->timeouts.client_header_ms;
}

/* The controllers' own addresses (host and port of their url). */
static int passthrough_resolve(struct passthrough *pt, const struct config *cfg,
                               char **err)
{
    pt->n_targets = cfg->n_controllers;
    pt->targets = xcalloc((size_t)cfg->n_controllers, sizeof(*pt->targets));
    for (int i = 0; i < cfg->n_controllers; i++) {
        const struct config_controller *cc = &cfg->controllers[i];
        struct addrinfo hints = {0}, *res = NULL;
        char port[8];
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        snprintf(port, sizeof(port), "%u", (unsigned)cc->port);
        int rc = getaddrinfo(cc->host, port, &hints, &res);
        if (rc != 0 || !res) {
            *err = xasprintf("passthrough: cannot resolve controller %s "
                             "(%s): %s", cc->id, cc->host, gai_strerror(rc));
            if (res)
                freeaddrinfo(res);
            return -1;
        }
        memcpy(&pt->targets[i].addr, res->ai_addr, res->ai_addrlen);
        pt->targets[i].len = res->ai_addrlen;
        freeaddrinfo(res);
    }
    return 0;
}

struct passthrough *passthrough_new(struct worker *w, int fd, int sni_fd,
                                    struct listener *sni_listener, char **err)
{
    struct passthrough *pt = xcalloc(1, sizeof(*pt));
    struct splice_limits lim;
    pt->w = w;
    pt->sni_listener = sni_listener;
    pt->leader_seen = cluster_leader(w->app->cluster);
    if (passthrough_resolve(pt, w->cfg, err) != 0) {
        if (fd >= 0)
            close(fd);
        if (sni_fd >= 0)
            close(sni_fd);
        passthrough_free(pt);
        return NULL;
    }
    passthrough_limits(w->cfg, w->app->n_workers, &lim);
    if (fd >= 0)
        pt->splice = splice_new(w->loop, fd, &lim, &passthrough_ops, pt, err);
    if (sni_fd >= 0 && (fd < 0 || pt->splice))
        pt->sni = splice_new_sni(w->loop, sni_fd, &lim, &passthrough_ops, pt,
                                 err);
    else if (sni_fd >= 0)
        close(sni_fd);
    if ((fd >= 0 && !pt->splice) || (sni_fd >= 0 && !pt->sni)) {
        passthrough_free(pt);
        return NULL;
    }
    return pt;
}

void passthrough_config(struct passthrough *pt)
{
    struct splice_limits lim;
    passthrough_limits(pt->w->cfg, pt->w->app->n_workers, &lim);
    if (pt->splice)
        splice_set_limits(pt->splice, &lim);
    if (pt->sni)
        splice_set_limits(pt->sni, &lim);
}

void passthrough_cluster_changed(struct passthrough *pt)
{
    const struct config_passthrough *cp = &pt->w->cfg->passthrough;
    int leader = cluster_leader(pt->w->app->cluster);
    if (leader == pt->leader_seen)
        return;
    pt->leader_seen = leader;
    if (cp->on_leader_change == CONFIG_PT_KEEP || pt->draining)
        return;
    /* keep the connections to the new leader (if any), retire the rest */
    struct splice *both[] = {pt->splice, pt->sni};
    for (size_t i = 0; i < ARRAY_LEN(both); i++)
        if (both[i])
            splice_retire(both[i], leader, cp->leader_change_grace_ms,
                          cp->leader_change_quiet_ms, PT_WHY_LEADER_CHANGE);
}

void passthrough_drain(struct passthrough *pt, uint64_t grace_ms)
{
    const struct config_passthrough *cp = &pt->w->cfg->passthrough;
    struct splice *both[] = {pt->splice, pt->sni};
    pt->draining = true;
    for (size_t i = 0; i < ARRAY_LEN(both); i++) {
        if (!both[i])
            continue;
        splice_quiesce(both[i]);
        splice_retire(both[i], -1, grace_ms, cp->leader_change_quiet_ms,
                      PT_WHY_DRAIN);
    }
}

void passthrough_free(struct passthrough *pt)
{
    if (!pt)
        return;
    splice_free(pt->splice);
    splice_free(pt->sni);
    free(pt->targets);
    free(pt);
}
