/* fence.c - see fence.h.  Payload: node mask (16 bits) + check (8 bits). */
#include "routing/fence.h"

#include "base/util.h"

void fence_init(struct fence *f, uint32_t capacity)
{
    atable_init(&f->t, capacity);
    atable_init(&f->hints, capacity);
    pthread_mutex_init(&f->wlock, NULL);
    atomic_store(&f->login_mask, 0);
    atomic_store(&f->login_until, 0);
    atomic_store(&f->identities, 0);
    for (int i = 0; i < CONFIG_MAX_CONTROLLERS; i++)
        atomic_store(&f->last_fenced[i], 0);
}

void fence_free(struct fence *f)
{
    atable_free(&f->t);
    atable_free(&f->hints);
    pthread_mutex_destroy(&f->wlock);
}

uint64_t fence_now(const struct fence *f)
{
    return atable_clock(&f->t, util_mono_ms());
}

void fence_key_from_hex(const char *hex, struct fence_key *k)
{
    uint64_t v = 0;
    for (int i = 0; i < 18 && hex[i]; i++) {
        char c = hex[i];
        uint64_t d = (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
        if (i < 16)
            v = (v << 4) | d;
        else
            k->check = (uint8_t)((k->check << 4) | d);
    }
    k->fp = v ? v : 1;
}

static uint32_t fence_payload(const struct fence_key *k, uint64_t mask)
{
    return (uint32_t)(mask & 0xffff) | ((uint32_t)k->check << 16);
}

uint64_t fence_mask(const struct fence *f, const struct fence_key *k,
                    uint64_t now_s)
{
    uint32_t p;
    if (!atable_get(&f->t, k->fp, now_s, &p, NULL))
        return 0;
    if ((p >> 16) != k->check)
        return 0;
    return p & 0xffff;
}

struct fence_scan {
    uint64_t mask;
    uint64_t until;
    int n;
};

static void fence_scan_one(void *arg, uint64_t key, uint32_t payload,
                           uint64_t expiry)
{
    struct fence_scan *s = arg;
    if ((payload & 0xffff) == 0)
        return;
    s->mask |= payload & 0xffff;
    s->n++;
    if (s->until == 0 || expiry < s->until)
        s->until = expiry; /* recomputed again when the first one ends */
}

/* Under wlock: refresh the login mask and the identity count; the nodes
 * fenced before or after it were fenced until now. */
static void fence_recount(struct fence *f)
{
    struct fence_scan s = {0};
    uint64_t now = fence_now(f);
    atable_each(&f->t, now, fence_scan_one, &s);
    uint64_t seen = s.mask | atomic_load(&f->login_mask);
    for (int i = 0; i < CONFIG_MAX_CONTROLLERS; i++)
        if (seen & ((uint64_t)1 << i))
            atomic_store(&f->last_fenced[i], now);
    atomic_store(&f->login_mask, s.mask);
    atomic_store(&f->login_until, s.until);
    atomic_store(&f->identities, s.n);
}

void fence_set(struct fence *f, const struct fence_key *k, uint64_t mask,
               uint64_t expiry_s)
{
    pthread_mutex_lock(&f->wlock);
    if (mask)
        atable_put(&f->t, k->fp, fence_payload(k, mask), expiry_s);
    else
        atable_del(&f->t, k->fp);
    fence_recount(f);
    pthread_mutex_unlock(&f->wlock);
}

void fence_add(struct fence *f, const struct fence_key *k, uint64_t mask,
               uint64_t expiry_s)
{
    pthread_mutex_lock(&f->wlock);
    uint64_t now = fence_now(f), exp = 0;
    uint32_t p;
    uint64_t cur = 0;
    if (atable_get(&f->t, k->fp, now, &p, &exp) && (p >> 16) == k->check)
        cur = p & 0xffff;
    if (exp > expiry_s)
        expiry_s = exp;
    atable_put(&f->t, k->fp, fence_payload(k, cur | mask), expiry_s);
    fence_recount(f);
    pthread_mutex_unlock(&f->wlock);
}

void fence_clear(struct fence *f, const struct fence_key *k, uint64_t mask)
{
    pthread_mutex_lock(&f->wlock);
    uint64_t now = fence_now(f), exp = 0;
    uint32_t p;
    if (atable_get(&f->t, k->fp, now, &p, &exp) && (p >> 16) == k->check) {
        uint64_t left = (p & 0xffff) & ~mask;
        if (left)
            atable_put(&f->t, k->fp, fence_payload(k, left), exp);
        else
            atable_del(&f->t, k->fp);
        fence_recount(f);
    }
    pthread_mutex_unlock(&f->wlock);
}

uint64_t fence_login_mask(const struct fence *f, uint64_t now_s)
{
    uint64_t until = atomic_load(&f->login_until);
    if (until == 0)
        return 0;
    if (until <= now_s) {
        /* the earliest fence ended: recount (rare) */
        struct fence *w = (struct fence *)f;
        pthread_mutex_lock(&w->wlock);
        fence_recount(w);
        pthread_mutex_unlock(&w->wlock);
    }
    return atomic_load(&f->login_mask);
}

bool fence_node_recent(const struct fence *f, int node, uint64_t now_s,
                       uint64_t window_s)
{
    if (node < 0 || node >= CONFIG_MAX_CONTROLLERS)
        return false;
    if (fence_login_mask(f, now_s) & ((uint64_t)1 << node))
        return true;
    uint64_t last = atomic_load(&f->last_fenced[node]);
    return last && last + window_s >= now_s;
}

void fence_hint_add(struct fence *f, const struct fence_key *k, uint64_t mask,
                    uint64_t expiry_s)
{
    pthread_mutex_lock(&f->wlock);
    uint64_t exp = 0;
    uint32_t p;
    if (atable_get(&f->hints, k->fp, fence_now(f), &p, &exp) &&
        (p >> 16) == k->check) {
        mask |= p & 0xffff;
        if (exp > expiry_s)
            expiry_s = exp;
    }
    atable_put(&f->hints, k->fp, fence_payload(k, mask), expiry_s);
    pthread_mutex_unlock(&f->wlock);
}

uint64_t fence_hint_mask(const struct fence *f, const struct fence_key *k,
                         uint64_t now_s)
{
    uint32_t p;
    if (!atable_get(&f->hints, k->fp, now_s, &p, NULL) ||
        (p >> 16) != k->check)
        return 0;
    /* a fence lifted (acknowledged, expired) is no reason any more */
    return (p & 0xffff) & fence_login_mask(f, now_s);
}
