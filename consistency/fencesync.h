/* fencesync.h - the control loop's Redis: it keeps the process-wide fence
 * table in step with the other quorumgate processes (a subscriber on
 * <prefix>fences; every fence read again after a reconnect) and watches
 * Redis for readiness (a PING every second, maxmemory-policy at each
 * connect), counting what it does in redis_operations_total and redis_up.
 *
 * Ownership: the app owns its fencesync (control thread); the fence table,
 * the cluster, the metrics and the log are borrowed and outlive it.  It
 * holds a reference on the configuration it was last given. */
#ifndef QG_FENCESYNC_H
#define QG_FENCESYNC_H

#include <stdbool.h>

struct cluster;
struct config;
struct fence;
struct log;
struct loop;
struct metrics;
struct redis_stats;
struct redis_sentinel;

struct fencesync_args {
    struct loop *loop;           /* the control loop */
    struct redis_sentinel *sentinel; /* redis.sentinels: the shared
                                    monitor (outlives it), else NULL */
    struct config *cfg;          /* Redis settings (restart-only), prefix */
    const struct cluster *cluster;
    struct fence *fence;         /* updated from Redis */
    struct metrics *metrics;
    struct log *log;
};

struct fencesync;

struct fencesync *fencesync_new(const struct fencesync_args *args);
void fencesync_free(struct fencesync *fs);
/* The configuration changed (reload): key prefix and channel names are
 * read from it from now on (Redis settings themselves are restart-only). */
void fencesync_set_config(struct fencesync *fs, struct config *cfg);
/* Redis answered the last PING (any thread; false for NULL). */
bool fencesync_redis_ok(const struct fencesync *fs);
/* Redis said its maxmemory-policy is not noeviction (any thread). */
bool fencesync_redis_evicts(const struct fencesync *fs);
/* The counters of its two connections: [0] commands, [1] subscriber. */
void fencesync_stats(const struct fencesync *fs, struct redis_stats *out);

#endif
