/* ackstore.h - the replication gate's records in Redis:
 *   <prefix>gate:<cid>        hash: call, identity, required, deadline,
 *                             answeredBy, status (pending|released|timeout),
 *                             replication (the header value sent)
 *   <prefix>gate:<cid>:acks   set of controller ids that have the change
 *   <prefix>gate-open         sorted set: the cids still pending, by
 *                             deadline (unix ms); a holder's outcome takes
 *                             its cid out, so one left past its deadline
 *                             was held by a quorumgate that went away
 *   <prefix>fence:<idhex>     hash: controller id ->
 *                             "<expiry unix ms>:<held unix ms>:<cid>", the
 *                             latest change that fenced it there
 *   PUBLISH <prefix>acks <cid>, PUBLISH <prefix>fences <idhex>
 * Every key expires (gate.timeout + gate.outcome_ttl; gate.fence_ttl); no
 * token or secret is stored: cids and identities are HMACs.  Writes that
 * belong together run as one script, so a reader never sees half of them.
 *
 * Every function issues one command on the caller's connection (NULL when
 * Redis is not configured for this caller: then cb gets ok=false). */
#ifndef QG_ACKSTORE_H
#define QG_ACKSTORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "base/crypto.h"
#include "config/config.h"
#include "io/redis.h"

struct redis;
struct redis_cmd;
struct config;
struct cluster;

typedef void (*ackstore_acks_cb)(void *arg, bool ok, uint64_t acked_mask);

struct ackstore_record {
    bool exists;
    char status[16];          /* pending, released, timeout */
    char replication[CONFIG_REPLICATION_MAX];
    uint64_t deadline_wall_ms;
    uint64_t acked;           /* mask over the cluster's controllers */
};
typedef void (*ackstore_record_cb)(void *arg, bool ok,
                                   const struct ackstore_record *rec);

/* A change whose holder went away (ackstore_orphans). */
struct ackstore_orphan {
    char cid[CRYPTO_HMAC_HEX_LEN + 1];
    char idhex[CRYPTO_HMAC_HEX_LEN + 1];
    char call[16];            /* create, verify, delete */
    uint64_t held_ms;         /* when it was held (unix ms) */
    uint64_t acked;           /* mask over the cluster's controllers */
};
#define ACKSTORE_ORPHANS_MAX 16

/* What a command calls back, owned by the caller and embedded in its
 * state: it must stay valid until the callback ran or the connection was
 * freed.  One context may serve several commands at once. */
struct ackstore_ctx {
    const struct cluster *c;
    ackstore_acks_cb acks;
    ackstore_record_cb record;
    /* a fence read: idhex names the identity it is about */
    void (*fence)(void *arg, bool ok, const char *idhex, uint64_t mask,
                  uint64_t expiry_ms);
    /* claimed orphans (valid during the call) */
    void (*orphans)(void *arg, bool ok, const struct ackstore_orphan *o,
                    size_t n);
    void *arg;
};

/* Create the record if absent (held at held_wall_ms, unix ms; open until
 * its outcome), add answered_by to the acks, publish; cb gets the
 * acknowledgements recorded so far. */
struct redis_cmd *ackstore_hold(struct redis *r, const struct config *cfg,
                                const char *cid, const char *idhex,
                                const char *call, const struct cluster *c,
                                uint64_t required, uint64_t deadline_ms,
                                uint64_t held_wall_ms,
                                const char *answered_by,
                                struct ackstore_ctx *ctx);
/* Claim up to ACKSTORE_ORPHANS_MAX records still pending whose deadline is
 * before cutoff_wall_ms (their holder went away without an outcome): each
 * is marked timed out, for one caller only; ctx->orphans gets them. */
struct redis_cmd *ackstore_orphans(struct redis *r, const struct config *cfg,
                                   uint64_t cutoff_wall_ms,
                                   struct ackstore_ctx *ctx);
/* controller_id has the change: add it and publish (no callback). */
void ackstore_ack(struct redis *r, const struct config *cfg, const char *cid,
                  const char *controller_id);
/* The same with a redis_command callback (cb(arg, status, reply)). */
struct redis_cmd *ackstore_ack_cb(struct redis *r, const struct config *cfg,
                                  const char *cid, const char *controller_id,
                                  redis_cb cb, void *arg);
struct redis_cmd *ackstore_read_acks(struct redis *r,
                                     const struct config *cfg,
                                     const char *cid,
                                     struct ackstore_ctx *ctx);
struct redis_cmd *ackstore_read_record(struct redis *r,
                                       const struct config *cfg,
                                       const char *cid,
                                       struct ackstore_ctx *ctx);
/* The next three take an optional redis_command callback (may be NULL). */
/* The change's outcome (the record is no longer open). */
void ackstore_record_outcome(struct redis *r, const struct config *cfg,
                             const char *cid, const char *status,
                             const char *replication, redis_cb cb,
                             void *arg);
/* Fence the identity away from the controllers in mask for change cid,
 * held at held_ms (unix ms); a newer change's fence there stays. */
void ackstore_fence_add(struct redis *r, const struct config *cfg,
                        const char *idhex, const char *cid, uint64_t held_ms,
                        const struct cluster *c, uint64_t mask, redis_cb cb,
                        void *arg);
/* Those controllers acknowledged change cid (held at held_ms): lift the
 * fences it or an older change set there -- having it, they have those --
 * but not a newer change's, which they may not have yet. */
void ackstore_fence_clear(struct redis *r, const struct config *cfg,
                          const char *idhex, const char *cid,
                          uint64_t held_ms, const struct cluster *c,
                          uint64_t mask, redis_cb cb, void *arg);
/* Read a fence hash: mask of controllers still fenced and the latest
 * expiry (unix ms). */
struct redis_cmd *ackstore_fence_read(struct redis *r,
                                      const struct config *cfg,
                                      const char *idhex,
                                      struct ackstore_ctx *ctx);
/* Read every fence (after a reconnection): ctx->fence once per identity,
 * then once with idhex NULL when done. */
struct redis_cmd *ackstore_fence_read_all(struct redis *r,
                                          const struct config *cfg,
                                          struct ackstore_ctx *ctx);

/* Convert a list of controller ids (reply elements or "a,b") to a mask. */
uint64_t ackstore_mask_of(const struct cluster *c, const char *id,
                          size_t len);

/* The readers of the replies above, by what they read (tests, fuzzing):
 * call one with a struct ackstore_ctx as arg. */
enum ackstore_reply {
    ACKSTORE_REPLY_ACKS,      /* hold, read_acks */
    ACKSTORE_REPLY_RECORD,    /* read_record */
    ACKSTORE_REPLY_FENCE,     /* fence_read, fence_read_all */
    ACKSTORE_REPLY_ORPHANS,   /* orphans */
};
redis_cb ackstore_reply_reader(enum ackstore_reply which);

/* The channels every quorumgate and relay publish on: "acks" (a change
 * was acknowledged: its cid) and "fences" (an identity's fence changed:
 * its id hex), under redis.key_prefix. */
#define ACKSTORE_CHANNEL_ACKS "acks"
#define ACKSTORE_CHANNEL_FENCES "fences"

static inline void ackstore_channel(const struct config *cfg,
                                    const char *name, char *out, size_t cap)
{
    snprintf(out, cap, "%s%s", cfg->redis.key_prefix, name);
}

#endif
