/* atable.h - a fixed-size, lock-free hash table of 64-bit keys and values,
 * shared by every worker: readers never lock, writers use compare-and-swap.
 *
 * A value packs an expiry (seconds on the table's clock, 40 bits) with a
 * 24-bit payload that the user defines.  Keys are 64-bit fingerprints (the
 * first bytes of an HMAC), never 0.  A slot is reused once its value has
 * expired; when the probe window is full the entry expiring soonest is
 * replaced.  Payloads carry a check value so that a reader racing with a
 * slot's reuse can tell the value is not its key's.
 *
 * Ownership: the creator owns it; any thread may read and write. */
#ifndef QG_ATABLE_H
#define QG_ATABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct atable_slot {
    atomic_uint_fast64_t key;
    atomic_uint_fast64_t val;
};

struct atable {
    struct atable_slot *slots;   /* owned */
    uint64_t mask;               /* capacity - 1 (a power of two) */
    uint64_t epoch_ms;           /* the clock's zero (monotonic ms) */
    atomic_int live;             /* approximate count of live entries */
};

#define ATABLE_PAYLOAD_BITS 24
#define ATABLE_PROBE 16

void atable_init(struct atable *t, uint32_t capacity);
void atable_free(struct atable *t);
/* Seconds on the table's clock for a monotonic time in ms. */
uint64_t atable_clock(const struct atable *t, uint64_t mono_ms);
/* Insert or replace; expiry in table seconds. */
void atable_put(struct atable *t, uint64_t key, uint32_t payload,
                uint64_t expiry);
/* The payload of a live entry; false when absent or expired at now. */
bool atable_get(const struct atable *t, uint64_t key, uint64_t now,
                uint32_t *payload, uint64_t *expiry);
/* Expire an entry now. */
void atable_del(struct atable *t, uint64_t key);
/* Visit live entries (best effort under concurrent writes). */
void atable_each(const struct atable *t, uint64_t now,
                 void (*fn)(void *arg, uint64_t key, uint32_t payload,
                            uint64_t expiry),
                 void *arg);

#endif
