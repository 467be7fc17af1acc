/* check_sentinel.h - asks the sentinels of a Sentinel-managed Redis
 * (redis.sentinels) what `-t` and `quorumgate check` report: is each one
 * reachable, does it know redis.master_name, which address does it name,
 * and does the master named there answer, say ROLE master and use
 * maxmemory-policy noeviction.  Runs its own loop; bounded by the
 * configured Redis timeouts. */
#ifndef QG_CHECK_SENTINEL_H
#define QG_CHECK_SENTINEL_H

#include <stdbool.h>

#include "config/config.h"

enum check_sentinel_state {
    CHECK_SENTINEL_UNREACHABLE = 0,  /* no connection (or no answer) */
    CHECK_SENTINEL_ERROR,            /* an error reply (NOAUTH...) */
    CHECK_SENTINEL_UNKNOWN,          /* does not know master_name */
    CHECK_SENTINEL_NAMED             /* named an address */
};

#define CHECK_SENTINEL_TEXT 300

struct check_sentinel_report {
    int n;                                   /* sentinels asked */
    enum check_sentinel_state state[CONFIG_MAX_SENTINELS];
    char detail[CONFIG_MAX_SENTINELS][CHECK_SENTINEL_TEXT]; /* the address
                                               named, or what went wrong */
    int named;                               /* how many named one */
    bool agree;                              /* all that named, the same */
    char master[CHECK_SENTINEL_TEXT];        /* the first named ("" none) */
    bool master_reached;                     /* connected + answered */
    char master_error[CHECK_SENTINEL_TEXT];  /* why not, when not */
    char role[32];                           /* ROLE's first element */
    char policy[64];                         /* maxmemory-policy, or "" */
};

/* cfg->redis.n_sentinels must be > 0. */
void check_sentinel_ask(const struct config *cfg,
                        struct check_sentinel_report *out);

#endif
