/* relay_main.c - see relay_main.h: the relay process (one loop: the event
 * files, Redis, a small /metrics + /healthz listener, signals). */
#include "consistency/relay_main.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/redis.h"
#include "consistency/relay.h"
#include "metrics/metrics.h"
#include "base/buf.h"
#include "base/sdnotify.h"
#include "config/config.h"
#include "io/listener.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"

/* Everything the relay process owns. */
struct relay_proc {
    struct config *cfg;           /* owned reference */
    struct log *lg;               /* owned */
    struct loop *loop;            /* owned */
    struct metrics *m;            /* owned */
    struct redis *redis;          /* owned */
    struct relay *relay;          /* owned */
    struct listener *http;        /* owned */
    struct loop_signal *sig[2];   /* owned */
};

static void relay_main_on_request(void *ctx, struct listener_exchange *ex)
{
    struct relay_proc *p = ctx;
    struct buf b = {0};
    const char *ctype = "application/json";
    int status = 200;
    size_t plen = strcspn(ex->url, "?");
    if (plen == 8 && memcmp(ex->url, "/metrics", 8) == 0) {
        metrics_set(p->m, M_REDIS_UP, redis_up(p->redis) ? 1 : 0);
        metrics_render(p->m, &b);
        ctype = METRICS_CONTENT_TYPE;
    } else if (plen == 8 && memcmp(ex->url, "/healthz", 8) == 0) {
        buf_printf(&b, "{\"status\":\"ok\",\"redis\":%s,\"pending\":%zu}\n",
                   redis_up(p->redis) ? "true" : "false",
                   relay_pending(p->relay));
    } else {
        status = 404;
        buf_puts(&b, "{\"error\":\"try /metrics or /healthz\"}\n");
    }
    const struct http_field hdrs[] = {http_field_of("Content-Type", ctype)};
    size_t len;
    char *body = buf_steal(&b, &len);
    listener_respond(ex, status, hdrs, 1, body, len, false);
}

static void relay_main_on_complete(void *ctx, struct listener_exchange *ex)
{
}

static bool relay_main_admit(void *ctx)
{
    return true;
}

static const struct listener_ops relay_main_ops = {
    .on_request = relay_main_on_request,
    .on_complete = relay_main_on_complete,
    .admit = relay_main_admit,
};

static void relay_main_stop(void *arg)
{
    struct relay_proc *p = arg;
    log_printf(p->lg, LOG_LEVEL_INFO, "relay: stopping");
    sdnotify_send("STOPPING=1");
    loop_stop(p->loop);
}

static int relay_main_start(struct relay_proc *p, const char *path)
{
    struct config_errors errs = {0};
    char *err = NULL;
    p->cfg = config_load(path, &errs);
    if (!p->cfg) {
        for (int i = 0; i < errs.n; i++)
            fprintf(stderr, "%s\n", errs.items[i].text);
        config_errors_free(&errs);
        return -1;
    }
    if (p->cfg->relay.n_sources == 0) {
        fprintf(stderr, "%s: relay.sources is empty: nothing to follow\n",
                path);
        return -1;
    }
    struct log_sinks sinks;
    config_log_sinks(p->cfg, &sinks);
    p->lg = log_new(&sinks, &err);
    if (!p->lg) {
        fprintf(stderr, "quorumgate relay: %s\n", err);
        free(err);
        return -1;
    }
    const char *ids[CONFIG_MAX_CONTROLLERS];
    for (int i = 0; i < p->cfg->n_controllers; i++)
        ids[i] = p->cfg->controllers[i].id;
    p->m = metrics_create(ids, p->cfg->n_controllers);
    p->loop = loop_new();
    p->redis = redis_new(p->loop, &p->cfg->redis,
                         &(struct redis_options){.name = "relay",
                                                 .log = p->lg});
    const struct config_addr *ma = &p->cfg->relay.metrics_addr;
    int fd = listener_bind(ma->host, ma->port, 64, &err);
    if (fd < 0) {
        fprintf(stderr, "%s: relay.metrics_address: %s\n", path, err);
        free(err);
        return -1;
    }
    uint16_t port = listener_bound_port(fd);
    struct listener_limits lim = {
        .max_header_bytes = 16 * 1024,
        .max_headers = 64,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .max_connections = 64,
        .send_timeout_ms = 10000,
    };
    p->http = listener_new(p->loop, fd, -1, NULL, &lim, "X-Request-Id",
                           &relay_main_ops, p, &err);
    if (!p->http) {
        fprintf(stderr, "%s: %s\n", path, err);
        free(err);
        return -1;
    }
    char fields[160];
    bool v6 = strchr(ma->host, ':') != NULL;
    snprintf(fields, sizeof(fields),
             "\"kind\":\"relay\",\"address\":\"%s%s%s:%u\",\"tls\":false",
             v6 ? "[" : "", ma->host, v6 ? "]" : "", port);
    log_write(p->lg, LOG_LEVEL_INFO, "listening", fields);
    p->relay = relay_new(p->loop, p->redis, p->cfg, p->lg, p->m);
    p->sig[0] = loop_signal_new(p->loop, SIGTERM, relay_main_stop, p);
    p->sig[1] = loop_signal_new(p->loop, SIGINT, relay_main_stop, p);
    log_printf(p->lg, LOG_LEVEL_INFO,
               "relay: following %d event file(s)",
               p->cfg->relay.n_sources);
    return 0;
}

int relay_main(const char *config_path)
{
    struct relay_proc p = {0};
    int rc = 1;
    if (relay_main_start(&p, config_path) == 0) {
        sdnotify_send("READY=1\nSTATUS=following the event files");
        loop_run(p.loop);
        rc = 0;
    }
    listener_free(p.http);
    redis_free(p.redis);
    relay_free(p.relay);
    for (int i = 0; i < 2; i++)
        loop_signal_free(p.sig[i]);
    loop_free(p.loop);
    metrics_free(p.m);
    log_free(p.lg);
    if (p.cfg)
        config_unref(p.cfg);
    return rc;
}
