/* app.c - see app.h. */
#include "proxy/app.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "consistency/fencesync.h"
#include "io/redis_sentinel.h"
#include "consistency/mgmt.h"
#include "metrics/admin.h"
#include "proxy/status.h"
#include "metrics/metrics.h"
#include "io/listener.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/sdnotify.h"
#include "io/upstream.h"
#include "base/crypto.h"
#include "base/util.h"
#include "proxy/worker.h"
#include "routing/cluster.h"
#include "routing/health.h"
#include "routing/jwks.h"

#define APP_AFFINITY_SLOTS (1u << 17)
#define APP_FENCE_SLOTS 4096

struct config *app_config(struct app *a)
{
    /* Control thread only: it is also the only writer of a->cfg, so the
     * configuration cannot be released between the load and the ref.
     * Workers use their own reference (w->cfg). */
    return config_ref(atomic_load(&a->cfg));
}

static void app_print_errors(const struct config_errors *errs)
{
    for (int i = 0; i < errs->n; i++) {
        if (errs->items[i].line > 0)
            fprintf(stderr, "%s:%d: %s\n", errs->items[i].file,
                    errs->items[i].line, errs->items[i].message);
        else
            fprintf(stderr, "%s: %s\n", errs->items[i].file,
                    errs->items[i].message);
    }
}

static void app_log_errors(struct app *a, const struct config_errors *errs)
{
    for (int i = 0; i < errs->n; i++) {
        struct buf f = {0};
        buf_puts(&f, "\"problem\":\"");
        char *line = xasprintf("%s:%d: %s", errs->items[i].file,
                               errs->items[i].line, errs->items[i].message);
        buf_json_escape(&f, line, strlen(line));
        buf_putc(&f, '"');
        log_write(a->log, LOG_LEVEL_ERROR,
                  "configuration reload refused: keeping the running one",
                  f.data);
        free(line);
        buf_free(&f);
    }
}

/* ---- cluster view -> metrics and workers ------------------------------ */

static void app_cluster_changed(void *arg)
{
    struct app *a = arg;
    struct cluster *c = a->cluster;
    int leader = cluster_leader(c);
    for (int i = 0; i < c->n; i++) {
        metrics_set(a->metrics, M_CONTROLLER_UP, i, cluster_up(c, i) ? 1 : 0);
        metrics_set(a->metrics, M_CONTROLLER_LEADER, i, i == leader ? 1 : 0);
    }
    if (leader != a->metrics_leader) {
        /* every change of the known leader, to and from none as well */
        metrics_inc(a->metrics, M_LEADER_CHANGES_TOTAL);
        a->metrics_leader = leader;
    }
    for (int i = 0; i < a->n_workers; i++)
        worker_kick(a->workers[i]);
}

static void app_probe_done(void *arg, int node, int status)
{
    struct app *a = arg;
    enum metrics_probe_result r = status == 200   ? M_PROBE_LEADER
                                  : status == 429 ? M_PROBE_FOLLOWER
                                  : status == 0   ? M_PROBE_ERROR
                                                  : M_PROBE_UNHEALTHY;
    metrics_inc(a->metrics, M_HEALTH_PROBES_TOTAL, node, r);
}

static void app_token(void *arg, int node,
                      void (*cb)(void *cbarg, const char *token), void *cbarg)
{
    struct app *a = arg;
    mgmt_token(a->mgmt, node, cb, cbarg);
}

static void app_token_refused(void *arg, int node, const char *token)
{
    struct app *a = arg;
    mgmt_invalidate(a->mgmt, node, token);
}

static bool app_has_credential(void *arg)
{
    struct app *a = arg;
    return mgmt_configured(a->mgmt);
}

/* A controller answers 404 for the health path and there is no credential
 * to watch it by list-members: at start, refuse to run (the operator must
 * choose a fix); later (a controller restarted with another ctrl.yaml) it
 * stays down with the reason in the log and /status. */
static void app_unwatchable(void *arg, int node, const char *why)
{
    struct app *a = arg;
    (void)node;
    if (atomic_load(&a->cluster->settled) || a->exit_code)
        return;
    fprintf(stderr, "quorumgate: %s\n", why);
    a->exit_code = 1;
    loop_stop(a->loop);
}

static const struct config *app_current_config(void *arg)
{
    struct app *a = arg;
    return atomic_load(&a->cfg);
}

void app_redis_count_cb(void *arg, enum redis_status st,
                        const struct redis_reply *rep)
{
    struct app_redis_count *c = arg;
    bool ok = redis_reply_ok(st, rep);
    metrics_inc(c->m, M_REDIS_OPERATIONS_TOTAL, c->op,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
}

/* A worker saw a controller fail passively (worker threads; health_report
 * is thread-safe). */
static void app_controller_failed(void *ctx, int node, bool connect_failed)
{
    struct app *a = ctx;
    health_report(a->health, node, connect_failed);
}

/* ---- signals ---------------------------------------------------------- */

static int app_in_flight(struct app *a)
{
    int n = 0;
    for (int i = 0; i < a->n_workers; i++)
        n += worker_in_flight(a->workers[i]);
    return n;
}

static void app_drain_tick(void *arg)
{
    struct app *a = arg;
    int n = app_in_flight(a);
    uint64_t now = loop_now_ms(a->loop);
    if (n == 0 || now >= a->drain_deadline_ms) {
        if (n > 0)
            log_printf(a->log, LOG_LEVEL_WARN,
                       "drain time is up: %d request(s) still in flight are "
                       "answered 503",
                       n);
        else
            log_printf(a->log, LOG_LEVEL_INFO, "drained, exiting");
        loop_stop(a->loop);
        return;
    }
    loop_timer_start(a->drain_timer, 20, 0);
}

static void app_on_term(void *arg)
{
    struct app *a = arg;
    if (a->draining)
        return;
    struct config *cfg = app_config(a);
    a->draining = true;
    sdnotify_send("STOPPING=1\nSTATUS=draining");
    a->drain_deadline_ms = loop_now_ms(a->loop) + cfg->timeouts.drain_ms;
    config_unref(cfg);
    log_printf(a->log, LOG_LEVEL_INFO,
               "stopping: no new connections, draining %d request(s)",
               app_in_flight(a));
    for (int i = 0; i < a->n_workers; i++)
        worker_drain(a->workers[i]);
    loop_timer_start(a->drain_timer, 0, 0);
}

/* The service manager (Type=notify) sees the reload begin and end. */
static void app_on_hup(void *arg)
{
    sdnotify_reloading();
    if (app_reload(arg) == 0)
        sdnotify_send("READY=1\nSTATUS=configuration reloaded");
    else
        sdnotify_send("READY=1\nSTATUS=reload refused, running "
                      "configuration kept (see the error log)");
}

/* Points lg at cfg's log files and level. */
static int app_log_reopen(struct log *lg, const struct config *cfg,
                          char **err)
{
    struct log_sinks sinks;
    config_log_sinks(cfg, &sinks);
    return log_reopen(lg, &sinks, err);
}

static void app_on_usr1(void *arg)
{
    struct app *a = arg;
    struct config *cfg = app_config(a);
    char *err = NULL;
    if (app_log_reopen(a->log, cfg, &err) != 0) {
        log_printf(a->log, LOG_LEVEL_ERROR, "log reopen failed: %s", err);
        free(err);
    }
    config_unref(cfg);
}

/* A public URL derived from a first listener with port 0 ("...:0") gets
 * the port that listener was given, so that rewritten addresses reach us. */
static void app_fix_public_url(struct app *a, struct config *cfg)
{
    const char *u = cfg->public_url;
    size_t n = u ? strlen(u) : 0;
    if (!cfg->public_url_derived || a->public_port == 0 || n < 2 ||
        strcmp(u + n - 2, ":0") != 0)
        return;
    cfg->public_url = xasprintf("%.*s:%u", (int)(n - 2), u,
                                (unsigned)a->public_port);
    free((char *)u);
}

int app_reload(struct app *a)
{
    struct config_errors errs = {0};
    struct config *neu = config_load(a->config_path, &errs);
    struct config *old = atomic_load(&a->cfg);
    char *err = NULL;
    if (neu) {
        app_fix_public_url(a, neu);
        char *diff = config_restart_only_diff(old, neu);
        if (diff) {
            log_printf(a->log, LOG_LEVEL_ERROR,
                       "configuration reload refused: %s changed, which "
                       "needs a restart; keeping the running configuration",
                       diff);
            free(diff);
            config_unref(neu);
            neu = NULL;
        } else if (app_log_reopen(a->log, neu, &err) != 0) {
            log_printf(a->log, LOG_LEVEL_ERROR,
                       "configuration reload refused: %s", err);
            free(err);
            config_unref(neu);
            neu = NULL;
        }
    } else {
        app_log_errors(a, &errs);
    }
    config_errors_free(&errs);
    if (!neu) {
        a->reloads_failed++;
        metrics_inc(a->metrics, M_CONFIG_RELOADS_TOTAL, M_RELOAD_FAILURE);
        metrics_set(a->metrics, M_CONFIG_LAST_RELOAD_SUCCESSFUL, 0);
        return -1;
    }
    atomic_store(&a->cfg, neu);
    health_set_config(a->health, neu);
    budget_configure(&a->budget, neu->retry.budget_ratio,
                     neu->retry.budget_min);
    for (int i = 0; i < a->n_workers; i++)
        worker_set_config(a->workers[i], neu);
    fencesync_set_config(a->fencesync, neu);
    config_unref(old);
    a->reloads_ok++;
    metrics_inc(a->metrics, M_CONFIG_RELOADS_TOTAL, M_RELOAD_SUCCESS);
    metrics_set(a->metrics, M_CONFIG_LAST_RELOAD_SUCCESSFUL, 1);
    metrics_set(a->metrics, M_CONFIG_LAST_RELOAD_SUCCESS_TIMESTAMP_SECONDS,
                (double)util_wall_ms() / 1000.0);
    log_printf(a->log, LOG_LEVEL_INFO, "configuration reloaded from %s",
               a->config_path);
    return 0;
}

/* ---- start-up ----------------------------------------------------------- */

static void app_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

static void app_log_listening(struct app *a, const char *kind,
                              const struct config_addr *addr, uint16_t port,
                              bool tls)
{
    char fields[256];
    bool v6 = strchr(addr->host, ':') != NULL;
    snprintf(fields, sizeof(fields),
             "\"kind\":\"%s\",\"address\":\"%s%s%s:%u\",\"tls\":%s", kind,
             v6 ? "[" : "", addr->host, v6 ? "]" : "", port,
             tls ? "true" : "false");
    log_write(a->log, LOG_LEVEL_INFO, "listening", fields);
}

/* The passthrough listener, once per worker like the client listeners;
 * pt_fds[w] stays -1 without one. */
static int app_bind_passthrough(struct app *a, const struct config *cfg,
                                int *pt_fds)
{
    const struct config_passthrough *cp = &cfg->passthrough;
    uint16_t port = cp->addr.port;
    for (int w = 0; w < a->n_workers; w++)
        pt_fds[w] = -1;
    if (!cp->addr.text)
        return 0;
    for (int w = 0; w < a->n_workers; w++) {
        char *err = NULL;
        int fd = listener_bind(cp->addr.host, port, 1024, &err);
        if (fd < 0) {
            fprintf(stderr, "%s:%d: passthrough: %s\n", cfg->path, cp->line,
                    err);
            free(err);
            return -1;
        }
        if (port == 0)
            port = listener_bound_port(fd);
        pt_fds[w] = fd;
    }
    a->passthrough_port = port;
    app_log_listening(a, "passthrough", &cp->addr, port, false);
    return 0;
}

/* Binds every client listener once per worker (SO_REUSEPORT), the first
 * bind choosing the port when the configuration says 0.  fds is
 * [worker][listener]. */
static int app_bind_all(struct app *a, const struct config *cfg, int *fds)
{
    for (int l = 0; l < cfg->n_listeners; l++) {
        const struct config_listener *cl = &cfg->listeners[l];
        uint16_t port = cl->addr.port;
        for (int w = 0; w < a->n_workers; w++) {
            char *err = NULL;
            int fd = listener_bind(cl->addr.host, port, 1024, &err);
            if (fd < 0) {
                fprintf(stderr, "%s:%d: %s\n", cfg->path, cl->line, err);
                free(err);
                return -1;
            }
            if (port == 0)
                port = listener_bound_port(fd);
            fds[w * CONFIG_MAX_LISTENERS + l] = fd;
        }
        if (l == 0)
            a->public_port = port;
        app_log_listening(a, "client", &cl->addr, port, cl->tls);
    }
    return 0;
}

int app_init(struct app *a, const char *config_path)
{
    struct config_errors errs = {0};
    struct config *cfg;
    char *err = NULL;
    int *fds = NULL, *pt_fds = NULL;
    int rc = -1;
    memset(a, 0, sizeof(*a));
    atable_init(&a->affinity, APP_AFFINITY_SLOTS);
    fence_init(&a->fence, APP_FENCE_SLOTS);
    a->config_path = xstrdup(config_path);
    a->started_wall_ms = util_wall_ms();
    cfg = config_load(config_path, &errs);
    if (!cfg) {
        app_print_errors(&errs);
        config_errors_free(&errs);
        return -1;
    }
    atomic_store(&a->cfg, cfg);
    struct log_sinks sinks;
    config_log_sinks(cfg, &sinks);
    a->log = log_new(&sinks, &err);
    if (!a->log) {
        fprintf(stderr, "quorumgate: %s\n", err);
        free(err);
        return -1;
    }
    app_raise_nofile();

    const char *ids[CONFIG_MAX_CONTROLLERS];
    for (int i = 0; i < cfg->n_controllers; i++)
        ids[i] = cfg->controllers[i].id;
    a->metrics = metrics_create(ids, cfg->n_controllers);
    a->metrics_leader = -1;
    a->cluster = cluster_new(cfg);
    a->jwks = jwks_new(a->cluster->n);
    budget_configure(&a->budget, cfg->retry.budget_ratio,
                     cfg->retry.budget_min);
    a->loop = loop_new();
    a->drain_timer = loop_timer_new(a->loop, app_drain_tick, a);

    struct upstream_settings us;
    worker_upstream_settings(cfg, &us);
    us.log = a->log;
    us.batch_sends = false; /* the control plane: one request at a time */
    a->up = upstream_new(a->loop, &us);
    struct mgmt_env menv = {.up = a->up, .log = a->log, .c = a->cluster,
                            .config = app_current_config, .arg = a};
    a->mgmt = mgmt_new(&menv);
    struct health_events ev = {.on_change = app_cluster_changed,
                               .on_probe = app_probe_done,
                               .token = app_token,
                               .token_refused = app_token_refused,
                               .has_credential = app_has_credential,
                               .on_unwatchable = app_unwatchable,
                               .arg = a};
    a->health = health_new(a->loop, a->up, a->cluster, a->log, cfg, &ev);

    crypto_random(a->ticket_keys, sizeof(a->ticket_keys)); /* one set for every worker */
    uint64_t seed;
    crypto_random(&seed, sizeof(seed));
    a->clients = listener_clients_new(seed); /* before the workers */
    a->n_workers = (int)cfg->workers;
    a->workers = xcalloc((size_t)a->n_workers, sizeof(*a->workers));
    fds = xmalloc((size_t)a->n_workers * CONFIG_MAX_LISTENERS * sizeof(int));
    pt_fds = xmalloc((size_t)a->n_workers * sizeof(int));
    if (app_bind_all(a, cfg, fds) != 0 ||
        app_bind_passthrough(a, cfg, pt_fds) != 0)
        goto out;
    app_fix_public_url(a, cfg);

    int afd = listener_bind(cfg->admin.addr.host, cfg->admin.addr.port, 128,
                            &err);
    if (afd < 0) {
        fprintf(stderr, "%s: admin: %s\n", cfg->path, err);
        goto out;
    }
    uint16_t aport = listener_bound_port(afd);
    a->admin = admin_new(&status_admin_ops, a, a->metrics, a->loop, afd,
                         &err);
    if (!a->admin) {
        fprintf(stderr, "%s: admin: %s\n", cfg->path, err);
        goto out;
    }
    app_log_listening(a, "admin", &cfg->admin.addr, aport, false);

    for (int i = 0; i < M_REDIS_OP__COUNT; i++)
        a->redis_counts[i] = (struct app_redis_count){
            a->metrics, (enum metrics_redis_op)i};
    if (cfg->redis.n_sentinels > 0) /* one monitor for every connection */
        a->sentinel = redis_sentinel_new(a->loop, &cfg->redis, a->log);
    a->fencesync = fencesync_new(&(struct fencesync_args){
        .sentinel = a->sentinel,
        .loop = a->loop,
        .cfg = cfg,
        .cluster = a->cluster,
        .fence = &a->fence,
        .metrics = a->metrics,
        .log = a->log,
    });
    for (int w = 0; w < a->n_workers; w++) {
        a->workers[w] = worker_new(
            a,
            &(struct worker_events){.controller_failed =
                                        app_controller_failed,
                                    .ctx = a},
            w, &fds[w * CONFIG_MAX_LISTENERS], cfg->n_listeners, pt_fds[w],
            &err);
        if (!a->workers[w]) {
            fprintf(stderr, "%s: %s\n", cfg->path, err);
            goto out;
        }
    }
    a->sig[0] = loop_signal_new(a->loop, SIGTERM, app_on_term, a);
    a->sig[1] = loop_signal_new(a->loop, SIGINT, app_on_term, a);
    a->sig[2] = loop_signal_new(a->loop, SIGHUP, app_on_hup, a);
    a->sig[3] = loop_signal_new(a->loop, SIGUSR1, app_on_usr1, a);
    app_cluster_changed(a);
    rc = 0;
out:
    free(err);
    free(fds);
    free(pt_fds);
    return rc;
}

int app_run(struct app *a)
{
    for (int i = 0; i < a->n_workers; i++) {
        if (worker_start(a->workers[i]) != 0) {
            log_printf(a->log, LOG_LEVEL_ERROR, "cannot start worker %d", i);
            return 1;
        }
    }
    log_printf(a->log, LOG_LEVEL_INFO,
               "quorumgate %s started: %d worker(s), %d controller(s)",
               QG_VERSION, a->n_workers, a->cluster->n);
    sdnotify_send("READY=1\nSTATUS=serving");
    loop_run(a->loop);
    for (int i = 0; i < a->n_workers; i++)
        worker_stop(a->workers[i]);
    return a->exit_code;
}

void app_free(struct app *a)
{
    for (int i = 0; i < a->n_workers; i++)
        worker_free(a->workers[i]);
    free(a->workers);
    listener_clients_free(a->clients); /* after every client listener */
    admin_free(a->admin);
    fencesync_free(a->fencesync);
    redis_sentinel_free(a->sentinel); /* after every Redis connection */
    atable_free(&a->affinity);
    fence_free(&a->fence);
    mgmt_free(a->mgmt); /* first: it drops the health probes' callbacks */
    health_free(a->health);
    upstream_free(a->up);
    for (size_t i = 0; i < ARRAY_LEN(a->sig); i++)
        loop_signal_free(a->sig[i]);
    loop_timer_free(a->drain_timer);
    loop_free(a->loop);
    cluster_free(a->cluster);
    jwks_free(a->jwks);
    metrics_free(a->metrics);
    log_free(a->log);
    config_unref(atomic_load(&a->cfg));
    free(a->config_path);
}
