/* affinity.h - where login state lives: a legacy zt-session exists only
 * on the controller that issued it (controller/model/api_session_manager.go
 * writes it to the local bolt db), an OIDC auth request and its
 * authorization code only in the memory of the controller that started
 * the login (controller/oidc_auth/storage.go).  Entries map the HMAC of the
 * token/id/code to that controller, in a process-wide lock-free table and
 * in Redis (<prefix>aff:<kind>:<hmac>, with a TTL refreshed on use), so
 * every quorumgate sharing the Redis routes the same way.  No token is
 * stored or logged in the clear.  Pure functions over the table. */
#ifndef QG_AFFINITY_H
#define QG_AFFINITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/crypto.h"

struct atable;

enum affinity_kind { AFF_SESS = 0, AFF_OIDC, AFF_CODE, AFF__COUNT };

struct affinity_key {
    enum affinity_kind kind;
    char hex[CRYPTO_HMAC_HEX_LEN + 1];   /* HMAC-SHA256 of kind:token */
    uint64_t fp;                          /* table key (never 0) */
    uint16_t check;                       /* payload check bits */
};

void affinity_key(const unsigned char *hmac_key, size_t key_len,
                  enum affinity_kind kind, const char *token, size_t len,
                  struct affinity_key *out);
/* The controller of a live entry, or -1. */
int affinity_get(const struct atable *t, const struct affinity_key *k,
                 uint64_t now_s, uint64_t *expiry_s);
void affinity_put(struct atable *t, const struct affinity_key *k, int node,
                  uint64_t expiry_s);
/* Callers' buffers for affinity_redis_key hold this many bytes: with
 * redis.key_prefix bounded, a key is never cut. */
#define AFFINITY_REDIS_KEY_MAX 160
/* "<prefix>aff:<kind>:<hex>" into out. */
void affinity_redis_key(const char *prefix, const struct affinity_key *k,
                        char *out, size_t cap);
const char *affinity_kind_name(enum affinity_kind kind);
/* Live entries per kind, for the affinity_entries gauge. */
void affinity_count(const struct atable *t, uint64_t now_s,
                    int counts[AFF__COUNT]);

#endif
