/* worker_ext.h - per-worker state of the optional stages, created with the
 * worker, on its loop: a Redis connection for commands, a subscriber on
 * <prefix>acks that wakes the replication gate, and the gate's waits.
 * Ownership: w->ext is owned by the worker. */
#ifndef QG_WORKER_EXT_H
#define QG_WORKER_EXT_H

struct worker;
struct redis;
struct gate;

void worker_ext_init(struct worker *w);
/* w->cfg changed (reload). */
void worker_ext_config(struct worker *w);
/* The worker loop is stopping: close connections, drop waits. */
void worker_ext_stop(struct worker *w);
void worker_ext_free(struct worker *w);

struct redis *worker_ext_redis(struct worker *w);
/* Statistics of the worker's Redis connections: out[0] commands,
 * out[1] subscriber.  Any thread, until the worker stops. */
struct redis_stats;
void worker_ext_redis_stats(struct worker *w, struct redis_stats *out);
struct gate *worker_ext_gate(struct worker *w);
struct jwks_fetch;
struct jwks_fetch *worker_ext_jwks(struct worker *w);
/* Affinity entries learned per client address (routing.affinity_learn_rate). */
struct ratelimit;
struct ratelimit *worker_ext_learn_limit(struct worker *w);
struct mgmt *worker_ext_mgmt(struct worker *w);
/* Held answers (approximate, any thread), and the counter the gate keeps
 * up to date for that. */
int worker_ext_gate_waiting(struct worker *w);
#include <stdatomic.h>
atomic_int *worker_ext_waiting_counter(struct worker *w);

#endif
