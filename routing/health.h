/* health.h - active health checks of every controller, on the control
 * loop: GET the health path (200 = leader, 429 = follower, else unhealthy)
 * every interval (fast_interval while no leader is known), with rise/fall
 * counts; a worker's passive signal (refused connection, 503
 * CLUSTER_NO_LEADER) triggers an immediate re-probe.
 *
 * A controller without the health-checks API (the default configuration of
 * `ziti create config controller`) answers the health path 404.  It is
 * then watched, by the same rules, through GET
 * /fabric/v1/cluster/list-members with a management session (the
 * gate.management credential, through the token callbacks): its own row's
 * `leader` says whether it leads, `readOnly` whether its mesh refuses every
 * write (mixed versions).  Without a credential such a controller cannot be
 * watched: on_unwatchable says so (the app refuses to start).
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
    /* One probe finished: node, status (0 = no answer; a list-members
     * answer counts as 200 for a leader and 429 for a follower). */
    void (*on_probe)(void *arg, int node, int status);
    /* A management session for node (see mgmt.h): cb runs later with the
     * token, or NULL when there is none; never from inside this call unless
     * the answer is known at once.  NULL = no credential. */
    void (*token)(void *arg, int node, void (*cb)(void *cbarg,
                                                  const char *token),
                  void *cbarg);
    /* The controller refused that session (401): forget it. */
    void (*token_refused)(void *arg, int node, const char *token);
    /* A management credential is configured. */
    bool (*has_credential)(void *arg);
    /* node answers 404 for the health path and there is no credential to
     * watch it otherwise; why names both fixes.  Control thread. */
    void (*on_unwatchable)(void *arg, int node, const char *why);
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

/* The error for a controller without health-checks API nor credential,
 * naming both fixes (malloc'ed). */
char *health_unwatchable_message(const char *id, const char *url);

/* Thread-safe: a worker saw node fail to connect (failed=true) or answer
 * 503 CLUSTER_NO_LEADER (failed=false: re-probe every node). */
void health_report(struct health *h, int node, bool failed);

#endif
