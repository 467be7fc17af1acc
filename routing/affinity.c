/* affinity.c - see affinity.h.  Payload: node+1 (8 bits), kind (2 bits),
 * check (14 bits). */
#include "routing/affinity.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"
#include "routing/atable.h"

static const char *const affinity_names[AFF__COUNT] = {"sess", "oidc", "code"};

const char *affinity_kind_name(enum affinity_kind kind)
{
    return (unsigned)kind < AFF__COUNT ? affinity_names[kind] : "sess";
}

static uint64_t affinity_hex64(const char *hex)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        char c = hex[i];
        v = (v << 4) | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return v;
}

void affinity_key(const unsigned char *hmac_key, size_t key_len,
                  enum affinity_kind kind, const char *token, size_t len,
                  struct affinity_key *out)
{
    char small[16 + 512];
    const char *name = affinity_kind_name(kind);
    size_t n = strlen(name) + 1;
    /* the whole token: tokens that differ past any fixed size differ */
    char *buf = n + len <= sizeof(small) ? small : xmalloc(n + len);
    memcpy(buf, name, n - 1);
    buf[n - 1] = ':';
    memcpy(buf + n, token, len);
    out->kind = kind;
    crypto_hmac_hex(hmac_key, key_len, buf, n + len, out->hex);
    if (buf != small)
        free(buf);
    out->fp = affinity_hex64(out->hex);
    if (out->fp == 0)
        out->fp = 1;
    out->check = (uint16_t)(affinity_hex64(out->hex + 16) & 0x3fff);
}

static uint32_t affinity_payload(const struct affinity_key *k, int node)
{
    return (uint32_t)((node + 1) & 0xff) | ((uint32_t)k->kind << 8) |
           ((uint32_t)k->check << 10);
}

int affinity_get(const struct atable *t, const struct affinity_key *k,
                 uint64_t now_s, uint64_t *expiry_s)
{
    uint32_t p;
    if (!atable_get(t, k->fp, now_s, &p, expiry_s))
        return -1;
    if ((p >> 10) != k->check || ((p >> 8) & 3) != (uint32_t)k->kind)
        return -1;
    return (int)(p & 0xff) - 1;
}

void affinity_put(struct atable *t, const struct affinity_key *k, int node,
                  uint64_t expiry_s)
{
    atable_put(t, k->fp, affinity_payload(k, node), expiry_s);
}

/* The longest key fits the callers' buffers (AFFINITY_REDIS_KEY_MAX). */
_Static_assert(CONFIG_KEY_PREFIX_MAX + sizeof("aff:oidc:") +
                       CRYPTO_HMAC_HEX_LEN <= AFFINITY_REDIS_KEY_MAX,
               "affinity keys fit their buffers");

void affinity_redis_key(const char *prefix, const struct affinity_key *k,
                        char *out, size_t cap)
{
    snprintf(out, cap, "%saff:%s:%s", prefix, affinity_kind_name(k->kind),
             k->hex);
}

struct affinity_counter {
    int *counts;
};

static void affinity_count_one(void *arg, uint64_t key, uint32_t payload,
                               uint64_t expiry)
{
    struct affinity_counter *c = arg;
    unsigned kind = (payload >> 8) & 3;
    if (kind < AFF__COUNT)
        c->counts[kind]++;
}

void affinity_count(const struct atable *t, uint64_t now_s,
                    int counts[AFF__COUNT])
{
    struct affinity_counter c = {counts};
    memset(counts, 0, sizeof(int) * AFF__COUNT);
    atable_each(t, now_s, affinity_count_one, &c);
}
