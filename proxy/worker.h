/* worker.h - one worker thread: its own event loop, its own listeners (one
 * per configured client listener, sockets bound with SO_REUSEPORT), its
 * own upstream client and libcurl multi handle.  A request is served from
 * start to end on the worker that accepted it; nothing is handed between
 * threads on the request path.
 *
 * The control thread talks to a worker only through the atomics below and
 * the wake handle: a new configuration, a drain, a stop, a cluster change.
 *
 * Ownership: the app owns its workers; a worker owns its loop and
 * everything created on it, and holds one reference on its current config. */
#ifndef QG_WORKER_H
#define QG_WORKER_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/list.h"
#include "base/log.h"
#include "config/config.h"
#include "routing/ratelimit.h"

struct app;
struct loop;
struct loop_async;
struct loop_prepare;
struct loop_timer;
struct upstream;
struct listener;
struct request;
struct redis;
struct redis_stats;
struct gate;
struct jwks_fetch;
struct passthrough;

/* A request waiting for its worker's Redis connection to come up
 * (worker_redis_await).  Embedded in its owner, which keeps it alive until
 * cb runs or it calls worker_redis_unawait. */
struct worker_redis_waiter {
    struct list link;                 /* in the worker's redis_waiting, or
                                         unlinked */
    void (*cb)(void *arg);            /* up, or the wait is over */
    void *arg;
};

/* What a worker reports to its owner, through callbacks the owner gives
 * at worker_new (they run on the worker's thread). */
struct worker_events {
    /* a controller failed passively: a connection refused or timed out
     * (connect_failed), or an answer saying it is not the leader */
    void (*controller_failed)(void *ctx, int node, bool connect_failed);
    void *ctx;
};

/* The worker's configuration as its requests hold it.  A request counts
 * itself here, on the worker's thread, instead of taking a reference on
 * the struct config all workers share: that was two atomic operations per
 * request on one cache line for every worker.  Owned by the worker while
 * current; after a reload, by the requests still using it (the last one
 * frees it). */
struct worker_cfg_hold {
    struct config *cfg;               /* owned reference */
    unsigned long users;              /* requests using cfg */
};

struct worker {
    struct app *app;                  /* borrowed */
    struct worker_events events;      /* the owner's callbacks */
    int id;
    struct loop *loop;                /* owned */
    struct upstream *up;              /* owned */
    struct listener *listeners[CONFIG_MAX_LISTENERS]; /* owned */
    int n_listeners;
    struct loop_async *wake;          /* owned */
    struct loop_prepare *flush;       /* owned: access-log batch */
    struct log_batch access;          /* owned */
    struct config *cfg;               /* borrowed from hold */
    struct worker_cfg_hold *hold;     /* owned while current (above) */
    pthread_t thread;

    /* from the control thread */
    _Atomic(struct config *) next_cfg;/* owned reference when set */
    atomic_int drain;
    atomic_int stop;
    atomic_uint_fast64_t cluster_gen;

    /* worker-local state */
    int *outstanding;                 /* owned: attempts in flight per node */
    uint64_t rng;                     /* balancing and jitter */
    struct list requests;             /* borrowed: live requests */
    struct list waiting;              /* borrowed: requests waiting for
                                         the cluster */
    struct list spare_requests;       /* owned: freed structs for reuse */
    int n_spare_requests;
    atomic_int live;                  /* requests in progress */
    bool draining;
    uint64_t learn_warned_ms;         /* last learn-rate warning */
    bool stopping;                    /* answering what is left, then stop */
    uint64_t stop_deadline_ms;        /* loop clock */
    struct loop_timer *stop_timer;    /* owned */
    uint64_t seen_gen;
    uint64_t redis_warned_ms;         /* rate limit of a warning */
    uint64_t accept_warned_ms;        /* rate limit of a warning */
    uint64_t legacy_warned_ms;        /* likewise */

    /* replication, on the worker's loop */
    struct redis *redis;              /* owned: commands */
    struct redis *acks_sub;           /* owned: subscriber on <prefix>acks */
    struct list redis_waiting;        /* borrowed: worker_redis_waiter */
    uint64_t redis_wait_until;        /* loop clock: requests wait for the
                                         connection until then */
    struct loop_timer *redis_wait_timer; /* owned: ends the waits */
    struct gate *gate;                /* owned: the held answers */
    atomic_int gate_waiting;          /* mirror of gate_waiting(), for
                                         other threads */
    struct jwks_fetch *jwks;          /* owned: fetches the controllers'
                                         token keys (routing/jwks.h) */
    struct ratelimit learn;           /* owned: affinity entries learned
                                         per client address */
    struct passthrough *pt;           /* owned; NULL without passthrough */
    atomic_int pt_open;               /* passthrough connections open */
};

/* Creates the worker (not started).  fds[i] is the bound socket for
 * configured listener i, pt_fd the passthrough listener's (-1: none); all
 * taken over. */
struct worker *worker_new(struct app *app, const struct worker_events *ev,
                          int id, const int *fds, int n_fds, int pt_fd,
                          char **err);
/* A controller failed passively (request path, passthrough): tells the
 * owner (events.controller_failed). */
void worker_report_failure(struct worker *w, int node, bool connect_failed);
int worker_start(struct worker *w);
/* Stop accepting; in-flight requests go on (thread-safe). */
void worker_drain(struct worker *w);
/* Stop the loop and join the thread (thread-safe, blocks). */
void worker_stop(struct worker *w);
void worker_free(struct worker *w);
/* Hand over a new configuration (thread-safe; takes a reference). */
void worker_set_config(struct worker *w, struct config *cfg);

/* The current configuration for a new request (worker thread only); hand
 * *hold back to worker_cfg_drop() when the request ends. */
struct config *worker_cfg_take(struct worker *w,
                               struct worker_cfg_hold **hold);
void worker_cfg_drop(struct worker *w, struct worker_cfg_hold *hold);
/* The cluster view changed: re-check waiting requests (thread-safe). */
void worker_kick(struct worker *w);
/* Requests still in progress on this worker, passthrough connections
 * included (approximate, any thread). */
int worker_in_flight(const struct worker *w);

uint64_t worker_rand(struct worker *w);

/* Statistics of the worker's Redis connections: out[0] commands, out[1]
 * the subscriber.  Any thread, until the worker stops. */
void worker_redis_stats(struct worker *w, struct redis_stats *out);
/* The worker's Redis connection is not up but is being made (at start,
 * after it was lost, when the Sentinel master moved), and it went down at
 * most redis.connect_timeout ago: wt waits for it (cb(arg) runs once, on
 * the loop, when it is up or that time is over; a request thus never
 * routes without the shared affinity, nor refuses a gated call, because
 * its worker was reconnecting) and true is returned.  false: it is up, or
 * it has been down longer: degrade now (the wait is counted in
 * redis_connection_waits_total). */
bool worker_redis_await(struct worker *w, struct worker_redis_waiter *wt,
                        void (*cb)(void *arg), void *arg);
/* wt no longer waits (nothing when it does not). */
void worker_redis_unawait(struct worker_redis_waiter *wt);
/* Answers held by the gate (approximate, any thread). */
int worker_gate_waiting(struct worker *w);

struct upstream_settings;
/* The upstream engine's settings from a configuration. */
void worker_upstream_settings(const struct config *cfg,
                              struct upstream_settings *s);
/* A whole file (PEM material), malloc'ed; NULL and *err on failure. */
char *worker_read_file(const char *path, char **err);

#endif
