/* ratelimit.h - token buckets by key (a client address): at most rate
 * takes per second on average, burst at once.  A fixed table: keys that
 * hash to the same slot share a bucket, which is only ever stricter.
 *
 * Ownership: embedded in its owner (one per worker loop); not thread-safe.
 * Pure but for the table it owns. */
#ifndef QG_RATELIMIT_H
#define QG_RATELIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ratelimit_slot {
    double tokens;
    uint64_t last_ms;
};

struct ratelimit {
    struct ratelimit_slot *slots;    /* owned array of n */
    uint32_t n;
};

void ratelimit_init(struct ratelimit *r, uint32_t slots);
void ratelimit_free(struct ratelimit *r);
/* Takes one token from key's bucket (rate per second, burst); false when
 * it is empty. */
bool ratelimit_take(struct ratelimit *r, const char *key, size_t len,
                    double rate, double burst, uint64_t now_ms);

#endif
