/* app.h - the quorumgate process: configuration, control loop (signals,
 * reload, health probes, admin listener), worker threads, shared state.
 *
 * Ownership: main() owns the app; the app owns everything else.  Shared
 * state that workers read on the request path (cluster view, budget,
 * metrics, current configuration) is read lock-free. */
#ifndef QG_APP_H
#define QG_APP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "consistency/gate.h"
#include "io/listener.h"
#include "io/redis.h"
#include "metrics/metrics.h"
#include "retry/budget.h"
#include "routing/atable.h"
#include "routing/fence.h"
#include "routing/keyrefusal.h"

struct log;
struct loop;
struct loop_signal;
struct loop_timer;
struct upstream;
struct cluster;
struct health;
struct mgmt;
struct worker;
struct listener;
struct metrics;
struct admin;
struct fencesync;
struct redis_sentinel;
struct jwks;

/* Counting context for Redis commands whose only follow-up is a metric
 * (app_redis_count_cb). */
struct app_redis_count {
    struct metrics *m;                 /* borrowed */
    enum metrics_redis_op op;
};

struct app {
    char *config_path;                 /* owned */
    _Atomic(struct config *) cfg;      /* owned reference: current */
    struct log *log;                   /* owned */
    struct metrics *metrics;           /* owned */
    int metrics_leader;                /* leader the metrics last showed,
                                          -1 = none (control thread) */
    struct cluster *cluster;           /* owned */
    struct jwks *jwks;                 /* owned: controllers' token keys */
    struct keyrefusal keyrefusal;      /* embedded: members refusing
                                          another's tokens (any thread) */
    struct budget budget;              /* embedded */

    struct loop *loop;                 /* owned: control loop (main thread) */
    struct upstream *up;               /* owned: probes from the control loop */
    struct health *health;             /* owned */
    struct mgmt *mgmt;                 /* owned: the control loop's
                                          management sessions (leader
                                          discovery by list-members) */
    struct admin *admin;               /* owned */
    struct worker **workers;           /* owned array */
    int n_workers;
    struct loop_signal *sig[4];        /* owned: TERM, INT, HUP, USR1 */
    struct loop_timer *drain_timer;    /* owned */
    uint64_t drain_deadline_ms;
    bool draining;
    int exit_code;
    atomic_int connections;            /* open client connections */
    struct listener_budget buffers;    /* embedded: every client listener's
                                          request and answer bytes */
    struct listener_clients *clients;  /* owned: open connections per client
                                          address, every client listener */
    uint64_t started_wall_ms;
    uint64_t reloads_ok, reloads_failed;

    /* process-wide tables the workers read without locks */
    struct atable affinity;            /* embedded: affinity entries */
    struct fence fence;                /* embedded: fences */
    struct gate_slots slots;           /* embedded: caps on held calls */
    struct fencesync *fencesync;       /* owned: the control loop's Redis
                                          (fences from other processes,
                                          readiness) */
    struct redis_sentinel *sentinel;   /* owned, control loop: finds the
                                          Redis master (redis.sentinels)
                                          for every Redis connection; NULL
                                          with redis.address */
    uint64_t redis_switches_seen;      /* master switches counted (control
                                          thread, at scrapes) */
    struct app_redis_count redis_counts[M_REDIS_OP__COUNT];
    uint64_t redis_seen[2][2];         /* Redis connect ok/error, subscribe
                                          ok/error already counted
                                          (control thread, at scrapes) */
    unsigned char ticket_keys[LISTENER_TICKET_KEYS]; /* random, made at
                                          start: TLS session tickets of
                                          every worker's HTTPS listeners */
    uint16_t public_port;              /* port the first client listener got */
    uint16_t passthrough_port;         /* port the passthrough listener got */
};

/* Loads the configuration and builds everything; 0 or -1 (reported). */
int app_init(struct app *a, const char *config_path);
/* Runs until SIGTERM/SIGINT has drained; returns the exit code. */
int app_run(struct app *a);
void app_free(struct app *a);

/* Reloads the configuration file (SIGHUP); 0 on success. */
int app_reload(struct app *a);

/* The current configuration, with a reference the caller must drop.
 * Control thread only. */
struct config *app_config(struct app *a);

/* A redis_command callback; its argument is &a->redis_counts[op]: the
 * result is counted in redis_operations_total{op} (any thread). */
void app_redis_count_cb(void *arg, enum redis_status st,
                        const struct redis_reply *rep);

#endif
