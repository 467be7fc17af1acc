/* policy.h - retry decisions, as data: the route class's policy says which
 * failure classes may retry, how often, how fast and for how long.
 *   - a non-idempotent request is resent after it left only when its route
 *     has a reconciler (the MFA calls) or the cluster said nothing was
 *     committed (503 CLUSTER_NO_LEADER);
 *   - an ambiguous write with a reconciler is reconciled, not resent;
 *   - backoff is exponential with full jitter: a delay drawn uniformly in
 *     [0, min(cap, base * 2^retry)];
 *   - nothing is retried past the overall deadline.
 * (Nothing is retried once bytes went to the client: answers are buffered
 * and sent whole, so this holds by construction.)  Pure functions. */
#ifndef QG_POLICY_H
#define QG_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "base/http.h"
#include "retry/failure.h"

enum policy_action {
    POLICY_ANSWER = 0,   /* pass the answer (or error) on */
    POLICY_RETRY,        /* try again after delay_ms */
    POLICY_RECONCILE,    /* read the state to learn what happened */
};

struct policy_decision {
    enum policy_action action;
    uint64_t delay_ms;
    const char *why;     /* static: "not_retryable", "attempts", "deadline" */
};

struct policy_input {
    const struct config_retry_policy *p;
    const struct failure *f;
    enum http_method method;
    bool reconciler;     /* the route can reconcile an ambiguous write */
    uint32_t attempts;   /* attempts made so far (>= 1) */
    uint64_t now_ms;
    uint64_t deadline_ms;
};

void policy_decide(const struct policy_input *in, uint64_t *rng,
                   struct policy_decision *out);
/* Full-jitter delay before retry number n (0 for the first retry). */
uint64_t policy_backoff(uint64_t base_ms, uint64_t cap_ms, uint32_t n,
                        uint64_t *rng);
/* xorshift64* step shared by balancing and jitter. */
uint64_t policy_rand(uint64_t *state);

#endif
