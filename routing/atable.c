/* atable.c - see atable.h. */
#include "routing/atable.h"

#include <stdlib.h>

#include "base/util.h"

#define ATABLE_EXP_SHIFT ATABLE_PAYLOAD_BITS
#define ATABLE_PAYLOAD_MASK ((1u << ATABLE_PAYLOAD_BITS) - 1)

static uint64_t atable_pack(uint32_t payload, uint64_t expiry)
{
    return (expiry << ATABLE_EXP_SHIFT) | (payload & ATABLE_PAYLOAD_MASK);
}

static uint64_t atable_expiry(uint64_t v)
{
    return v >> ATABLE_EXP_SHIFT;
}

void atable_init(struct atable *t, uint32_t capacity)
{
    uint64_t cap = 64;
    while (cap < capacity)
        cap <<= 1;
    t->slots = xcalloc((size_t)cap, sizeof(*t->slots));
    t->mask = cap - 1;
    t->epoch_ms = util_mono_ms();
    atomic_store(&t->live, 0);
}

void atable_free(struct atable *t)
{
    free(t->slots);
    t->slots = NULL;
}

uint64_t atable_clock(const struct atable *t, uint64_t mono_ms)
{
    return mono_ms > t->epoch_ms ? (mono_ms - t->epoch_ms) / 1000 + 1 : 1;
}

static uint64_t atable_mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return k;
}

/* Replaces the value of a slot that holds key. */
static void atable_update(struct atable *t, struct atable_slot *s,
                          uint64_t val, uint64_t now)
{
    uint64_t old = atomic_exchange(&s->val, val);
    if (atable_expiry(old) <= now)
        atomic_fetch_add(&t->live, 1);
}

void atable_put(struct atable *t, uint64_t key, uint32_t payload,
                uint64_t expiry)
{
    uint64_t h = atable_mix(key);
    uint64_t now = atable_clock(t, util_mono_ms());
    uint64_t val = atable_pack(payload, expiry);
    struct atable_slot *victim = NULL;
    uint64_t victim_exp = UINT64_MAX;
    /* Where the key already is, it is updated there: storing it again in
     * a slot freed before it would leave two copies, and the older one
     * would come back once the newer is deleted and its slot reused. */
    for (int i = 0; i < ATABLE_PROBE; i++) {
        struct atable_slot *s = &t->slots[(h + (uint64_t)i) & t->mask];
        uint64_t k = atomic_load(&s->key);
        if (k == 0)
            break; /* keys are never cleared: it is not further on */
        if (k == key) {
            atable_update(t, s, val, now);
            return;
        }
    }
    for (int i = 0; i < ATABLE_PROBE; i++) {
        struct atable_slot *s = &t->slots[(h + (uint64_t)i) & t->mask];
        uint64_t k = atomic_load(&s->key);
        if (k == key) { /* put by another thread meanwhile */
            atable_update(t, s, val, now);
            return;
        }
        uint64_t v = atomic_load(&s->val);
        if (k == 0 || atable_expiry(v) <= now) {
            /* empty or expired: claim it */
            if (atomic_compare_exchange_strong(&s->key, &k, key)) {
                atomic_store(&s->val, val);
                atomic_fetch_add(&t->live, 1);
                return;
            }
            if (k == key) { /* the same key won the slot */
                atable_update(t, s, val, now);
                return;
            }
            continue; /* somebody else took it */
        }
        if (atable_expiry(v) < victim_exp) {
            victim = s;
            victim_exp = atable_expiry(v);
        }
    }
    if (victim) {
        /* full window: replace the entry that expires first */
        atomic_store(&victim->val, 0);
        atomic_store(&victim->key, key);
        atomic_store(&victim->val, val);
    }
}

bool atable_get(const struct atable *t, uint64_t key, uint64_t now,
                uint32_t *payload, uint64_t *expiry)
{
    uint64_t h = atable_mix(key);
    for (int i = 0; i < ATABLE_PROBE; i++) {
        const struct atable_slot *s = &t->slots[(h + (uint64_t)i) & t->mask];
        uint64_t k = atomic_load(&s->key);
        if (k == 0)
            return false;
        if (k != key)
            continue;
        uint64_t v = atomic_load(&s->val);
        if (atable_expiry(v) <= now)
            return false;
        if (atomic_load(&s->key) != key)
            return false; /* reused under our feet */
        *payload = (uint32_t)(v & ATABLE_PAYLOAD_MASK);
        if (expiry)
            *expiry = atable_expiry(v);
        return true;
    }
    return false;
}

void atable_del(struct atable *t, uint64_t key)
{
    uint64_t h = atable_mix(key);
    for (int i = 0; i < ATABLE_PROBE; i++) {
        struct atable_slot *s = &t->slots[(h + (uint64_t)i) & t->mask];
        uint64_t k = atomic_load(&s->key);
        if (k == 0)
            return;
        if (k == key) {
            uint64_t old = atomic_exchange(&s->val, 0);
            if (old)
                atomic_fetch_sub(&t->live, 1);
            return;
        }
    }
}

void atable_each(const struct atable *t, uint64_t now,
                 void (*fn)(void *arg, uint64_t key, uint32_t payload,
                            uint64_t expiry),
                 void *arg)
{
    for (uint64_t i = 0; i <= t->mask; i++) {
        uint64_t k = atomic_load(&t->slots[i].key);
        uint64_t v = atomic_load(&t->slots[i].val);
        if (k && atable_expiry(v) > now)
            fn(arg, k, (uint32_t)(v & ATABLE_PAYLOAD_MASK), atable_expiry(v));
    }
}
