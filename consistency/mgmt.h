/* mgmt.h - management API sessions of quorumgate's own (gate.management),
 * one per controller per loop (each worker's, and the control loop's for
 * leader discovery through GET /fabric/v1/cluster/list-members when a
 * controller has no health-checks API): the replication gate confirms changes
 * made with a legacy zt-session (valid only on the controller that issued
 * it) by asking every other controller for the identity with this
 * credential (GET /edge/management/v1/identities/{id}: isMfaEnabled).
 * A legacy session is itself local to the controller that issued it, hence
 * one login per controller.  The password never leaves this module except
 * in the login request body.
 *
 * Ownership: a struct mgmt belongs to one loop (a worker's or the control
 * loop) and borrows what its mgmt_env names; it owns its sessions and the
 * callbacks it was given until it calls them. */
#ifndef QG_MGMT_H
#define QG_MGMT_H

#include <stdbool.h>

struct upstream;
struct log;
struct cluster;
struct config;
struct mgmt;

/* What a struct mgmt borrows from its owner, all on the owner's loop. */
struct mgmt_env {
    struct upstream *up;
    struct log *log;
    const struct cluster *c;
    /* the owner's current configuration (credentials, reloadable) */
    const struct config *(*config)(void *arg);
    void *arg;
};

/* token is NULL when no session could be had (no credential configured,
 * the controller refused, or it is unreachable). */
typedef void (*mgmt_cb)(void *arg, const char *token);

struct mgmt *mgmt_new(const struct mgmt_env *env);
/* Drops sessions and pending callbacks (not called). */
void mgmt_free(struct mgmt *m);
bool mgmt_configured(const struct mgmt *m);
/* The same, from a configuration. */
bool mgmt_config_has_credential(const struct config *cfg);
/* A session on node: at once when one is cached, else after a login. */
void mgmt_token(struct mgmt *m, int node, mgmt_cb cb, void *arg);
/* The controller refused token (401): forget it. */
void mgmt_invalidate(struct mgmt *m, int node, const char *token);
/* Forget every pending callback with this arg (its owner is going away). */
void mgmt_cancel(struct mgmt *m, void *arg);

#endif
