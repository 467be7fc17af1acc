/* mgmt.h - management API sessions of quorumgate's own (gate.management),
 * one per controller per worker: the replication gate confirms changes
 * made with a legacy zt-session (valid only on the controller that issued
 * it) by asking every other controller for the identity with this
 * credential (GET /edge/management/v1/identities/{id}: isMfaEnabled).
 * A legacy session is itself local to the controller that issued it, hence
 * one login per controller.  The password never leaves this module except
 * in the login request body.
 *
 * Ownership: a struct mgmt belongs to one worker and its loop; it owns its
 * sessions and the callbacks it was given until it calls them; what
 * struct mgmt_env points at is borrowed and outlives it. */
#ifndef QG_MGMT_H
#define QG_MGMT_H

#include <stdbool.h>

struct mgmt;
struct upstream;
struct cluster;
struct log;
struct config;

/* What the sessions are made with, all borrowed. */
struct mgmt_env {
    struct upstream *up;             /* on the owner's loop */
    const struct cluster *cluster;
    struct log *log;
    struct config *const *cfg;       /* the owner's current configuration */
};

/* token is NULL when no session could be had (no credential configured,
 * the controller refused, or it is unreachable). */
typedef void (*mgmt_cb)(void *arg, const char *token);

struct mgmt *mgmt_new(const struct mgmt_env *env);
/* Drops sessions and pending callbacks (not called). */
void mgmt_free(struct mgmt *m);
bool mgmt_configured(const struct mgmt *m);
/* A session on node: at once when one is cached, else after a login. */
void mgmt_token(struct mgmt *m, int node, mgmt_cb cb, void *arg);
/* The controller refused token (401): forget it. */
void mgmt_invalidate(struct mgmt *m, int node, const char *token);
/* Forget every pending callback with this arg (its owner is going away). */
void mgmt_cancel(struct mgmt *m, void *arg);

#endif
