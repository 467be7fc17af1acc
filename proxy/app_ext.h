/* app_ext.h - process-wide routing and replication state, owned by the app
 * through a->ext: the affinity and fence tables (workers read them without
 * locks), and the control thread's Redis connections (readiness PING,
 * fence updates from other quorumgate processes). */
#ifndef QG_APP_EXT_H
#define QG_APP_EXT_H

#include <stdbool.h>

#include "io/redis.h"

struct app;
struct buf;
struct atable;
struct fence;

void app_ext_init(struct app *a);
/* a->cfg changed (reload, control thread). */
void app_ext_config(struct app *a);
/* Readiness: append JSON strings (with a leading comma unless first) to
 * reasons for what is not ready; returns ready && (its own readiness). */
bool app_ext_ready(struct app *a, struct buf *reasons, bool ready);
/* Append ,"key":value members to the /status object. */
void app_ext_status(struct app *a, struct buf *b);
/* Refresh gauges that are computed, before a scrape. */
void app_ext_scrape(struct app *a);
/* The shared Sentinel monitor (redis.sentinels), or NULL. */
struct redis_sentinel *app_ext_sentinel(struct app *a);
void app_ext_free(struct app *a);

struct atable *app_ext_affinity(struct app *a);
struct fence *app_ext_fence(struct app *a);
/* Redis said its maxmemory-policy is not noeviction (any thread). */
bool app_ext_redis_evicts(struct app *a);
struct gate_slots;
/* The caps on held calls (consistency/gate.h). */
struct gate_slots *app_ext_slots(struct app *a);
/* Redis answered the last PING (any thread). */
bool app_ext_redis_ok(struct app *a);
/* A redis_command callback + argument that only counts the result in
 * redis_operations_total{op} (op: enum metrics_redis_op). */
void app_ext_count_cb(void *arg, enum redis_status st,
                      const struct redis_reply *rep);
void *app_ext_count_ctx(struct app *a, int op);

#endif
