/* route.h - choosing the controller for one attempt.
 *
 * Precedence when constraints meet:
 *  1. a hard home (the controller that holds a legacy session or an OIDC
 *     login's auth request/code): that controller, even when health probes
 *     mark it down (slow is not gone: the state exists nowhere else, and
 *     only an attempt that cannot reach it says it is gone, proxy/
 *     request_answer.c); a home not in the configuration is gone;
 *  2. leader pinning: MFA enrollment must reach the leader (waiting for one
 *     when none is known); writes prefer it (saving the follower's forward
 *     hop and its 5 s timeout) and fall back to balancing;
 *  3. balancing over healthy controllers by power of two choices on the
 *     worker's outstanding attempts.
 * Fenced controllers and, for balanced retries, the ones already tried are
 * skipped.  Pure functions over the cluster view. */
#ifndef QG_ROUTE_H
#define QG_ROUTE_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct cluster;

enum route_kind {
    ROUTE_TO = 0,          /* node is set */
    ROUTE_WAIT_LEADER,     /* leader required, none known yet */
    ROUTE_NO_HEALTHY,      /* nobody to send it to */
    ROUTE_HOME_GONE,       /* the hard home is not in the configuration */
};

enum route_decision {
    DECISION_PINNED = 0,   /* leader */
    DECISION_STICKY_HIT,   /* hard home */
    DECISION_STICKY_MISS,  /* affinity looked up, not found: balanced */
    DECISION_FENCED_SKIP,  /* a fenced controller was skipped */
    DECISION_NO_LEADER_WAIT,
    DECISION_BALANCED,
    DECISION__COUNT
};

enum route_pin {
    PIN_NONE = 0,          /* balance */
    PIN_PREFER_LEADER,     /* leader if known, else balance */
    PIN_REQUIRE_LEADER,    /* leader or wait */
};

struct route_in {
    enum route_pin pin;
    int home;              /* hard home node, -1 = none */
    bool home_gone;        /* the affinity entry names a controller that is
                              not configured (any more) */
    uint64_t fenced;       /* nodes this identity must not reach */
    uint64_t tried;        /* nodes already tried (avoided when balancing) */
    int not_leader;        /* answered CLUSTER_NO_LEADER, -1 = none ... */
    uint64_t not_leader_gen; /* ... while the cluster view was this one, */
    uint64_t not_leader_wall_ms; /* ... at this time (wall clock): a probe
                              answered later that still says "leader"
                              confirms it again */
};

struct route_out {
    enum route_kind kind;
    int node;
    enum route_decision decision;
    bool fenced_skip;      /* a fence changed the choice */
    bool home_down;        /* node is a hard home health probes mark down */
};

void route_pick(const struct cluster *c, const struct route_in *in,
                const int *outstanding, uint64_t *rng, struct route_out *out);
/* Power of two choices among mask; -1 when mask is empty. */
int route_p2c(const int *outstanding, uint64_t mask, int n, uint64_t *rng);
const char *route_decision_name(enum route_decision d);

#endif
