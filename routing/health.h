/* health.h - active health checks of every controller, on the control
 * loop: GET the health path (200 = leader, 429 = follower, else unhealthy)
 * every interval (fast_interval while no leader is known), with rise/fall
 * counts; a worker's passive signal (refused connection, 503
 * CLUSTER_NO_LEADER) triggers an immediate re-probe.
 *
 * Ownership: owned by the app; runs on the control loop; borrows the
 * cluster, log and upstream it is given. */
#ifndef QG_HEALTH_H
#define QG_HEALTH_H

#include <stdbool.h>

#include "config/config.h"

struct loop;
struct log;
struct cluster;
struct upstream;
struct health;

struct health_events {
    /* Something visible changed (up/down, leader).  Control thread. */
    void (*on_change)(void *arg);
    /* One probe finished: node, status (0 = no answer). */
    void (*on_probe)(void *arg, int node, int status);
    void *arg;
};

struct health *health_new(struct loop *loop, struct upstream *up,
                          struct cluster *c, struct log *lg,
                          const struct config *cfg,
                          const struct health_events *ev);
void health_free(struct health *h);
/* New timing settings (reload).  cfg is borrowed for the call only. */
void health_set_config(struct health *h, const struct config *cfg);
/* Probe everything now (start-up, leader lost). */
void health_probe_all(struct health *h);

/* Thread-safe: a worker saw node fail to connect (failed=true) or answer
 * 503 CLUSTER_NO_LEADER (failed=false: re-probe every node). */
void health_report(struct health *h, int node, bool failed);

#endif
