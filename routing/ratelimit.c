/* ratelimit.c - see ratelimit.h. */
#include "routing/ratelimit.h"

#include <stdlib.h>

#include "base/util.h"

void ratelimit_init(struct ratelimit *r, uint32_t slots)
{
    r->n = slots ? slots : 1;
    r->slots = xcalloc(r->n, sizeof(*r->slots));
}

void ratelimit_free(struct ratelimit *r)
{
    free(r->slots);
    r->slots = NULL;
    r->n = 0;
}

bool ratelimit_take(struct ratelimit *r, const char *key, size_t len,
                    double rate, double burst, uint64_t now_ms)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)key[i]) * 1099511628211ull;
    struct ratelimit_slot *s = &r->slots[h % r->n];
    if (s->last_ms == 0) {
        s->tokens = burst;
    } else if (now_ms > s->last_ms) {
        s->tokens += (double)(now_ms - s->last_ms) * rate / 1000.0;
        if (s->tokens > burst)
            s->tokens = burst;
    }
    s->last_ms = now_ms ? now_ms : 1;
    if (s->tokens < 1.0)
        return false;
    s->tokens -= 1.0;
    return true;
}
