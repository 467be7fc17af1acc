/* policy.c - see policy.h. */
#include "retry/policy.h"

uint64_t policy_rand(uint64_t *state)
{
    uint64_t x = *state ? *state : 0x9E3779B97F4A7C15ull;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

uint64_t policy_backoff(uint64_t base_ms, uint64_t cap_ms, uint32_t n,
                        uint64_t *rng)
{
    uint64_t ceiling = base_ms;
    for (uint32_t i = 0; i < n && ceiling < cap_ms; i++)
        ceiling *= 2;
    if (ceiling > cap_ms)
        ceiling = cap_ms;
    if (ceiling == 0)
        return 0;
    return policy_rand(rng) % (ceiling + 1);
}

void policy_decide(const struct policy_input *in, uint64_t *rng,
                   struct policy_decision *out)
{
    const struct config_retry_policy *p = in->p;
    const struct failure *f = in->f;
    out->action = POLICY_ANSWER;
    out->delay_ms = 0;
    out->why = "not_retryable";

    if (f->kind == FAILURE_NONE || f->kind == FAILURE_FATAL)
        return;
    if (!(p->on & (1u << f->reason)))
        return;
    if (f->kind == FAILURE_AMBIGUOUS) {
        if (in->reconciler) {
            out->action = POLICY_RECONCILE;
            out->why = "ambiguous";
        }
        return;
    }
    bool idem = http_method_idempotent(in->method) && !in->reconciler;
    bool safe = f->kind == FAILURE_NEVER_SENT || f->kind == FAILURE_NO_LEADER;
    if (!idem && !safe && !in->reconciler)
        return;
    if (in->attempts >= p->max_attempts) {
        out->why = "attempts";
        return;
    }
    uint64_t delay = policy_backoff(p->backoff_base_ms, p->backoff_cap_ms,
                                    in->attempts - 1, rng);
    if (in->now_ms + delay >= in->deadline_ms) {
        out->why = "deadline";
        return;
    }
    out->action = POLICY_RETRY;
    out->delay_ms = delay;
    out->why = "retry";
}
