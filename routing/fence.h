/* fence.h - identities fenced away from controllers that do not have their
 * latest MFA change yet (the replication gate fences them), until those
 * controllers acknowledge it or the fence expires.  A fenced controller is
 * skipped for that identity's requests.  One identity's fences never keep
 * other identities' logins away: a login does not say who logs in until
 * it is answered, so its answer is checked (proxy/request_login.c), and an
 * OIDC login's first step avoids only the controllers fenced for the
 * identities whose calls came lately from the same client address (the
 * hints: address HMAC -> nodes, local to the process).
 *
 * Process-wide: readers (workers) never lock; writers (gates, the Redis
 * subscriber) serialise on a mutex.  Redis holds the shared copy
 * (<prefix>fence:<identity hmac>: controller -> expiry) so every
 * quorumgate applies the same fences.
 *
 * Ownership: embedded in the app's extension state. */
#ifndef QG_FENCE_H
#define QG_FENCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"
#include "routing/atable.h"

struct fence {
    struct atable t;                   /* identity fp -> mask + check */
    pthread_mutex_t wlock;             /* writers only */
    atomic_uint_fast64_t login_mask;   /* nodes fenced for someone */
    atomic_uint_fast64_t login_until;  /* table clock: mask valid until */
    atomic_int identities;             /* fenced identities (gauge) */
    struct atable hints;               /* client address fp -> mask + check
                                          (same clock as t) */
    /* per controller: the table time it was last seen fenced for someone
     * (0: never); set at every change, so at most a change late */
    atomic_uint_fast64_t last_fenced[CONFIG_MAX_CONTROLLERS];
};

struct fence_key {
    uint64_t fp;
    uint8_t check;
};

void fence_init(struct fence *f, uint32_t capacity);
void fence_free(struct fence *f);
/* Key from the identity HMAC hex (64 chars). */
void fence_key_from_hex(const char *hex, struct fence_key *k);
/* Nodes fenced for this identity at now (table seconds). */
uint64_t fence_mask(const struct fence *f, const struct fence_key *k,
                    uint64_t now_s);
/* Adds nodes to an identity's fence, lasting until expiry_s. */
void fence_add(struct fence *f, const struct fence_key *k, uint64_t mask,
               uint64_t expiry_s);
/* Removes nodes (they acknowledged). */
void fence_clear(struct fence *f, const struct fence_key *k, uint64_t mask);
/* Replace an identity's fence (from Redis): mask 0 removes it. */
void fence_set(struct fence *f, const struct fence_key *k, uint64_t mask,
               uint64_t expiry_s);
/* Nodes fenced for someone (status; hints count only while in it). */
uint64_t fence_login_mask(const struct fence *f, uint64_t now_s);
/* Node is fenced for someone at now_s, or was within the last window_s
 * seconds (an OIDC login answered by it then may end only now). */
bool fence_node_recent(const struct fence *f, int node, uint64_t now_s,
                       uint64_t window_s);
uint64_t fence_now(const struct fence *f);
/* A fenced identity's call came from the client address whose key is k
 * (fence_key_from_hex of its HMAC): until expiry_s, that address's new
 * OIDC logins avoid mask. */
void fence_hint_add(struct fence *f, const struct fence_key *k, uint64_t mask,
                    uint64_t expiry_s);
/* The nodes an OIDC login from that address avoids at now: its hints that
 * are still fenced for someone. */
uint64_t fence_hint_mask(const struct fence *f, const struct fence_key *k,
                         uint64_t now_s);

#endif
