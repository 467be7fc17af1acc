/* ackstore.h - the replication gate's records in Redis:
 *   <prefix>gate:<cid>        hash: call, identity, required, deadline,
 *                             answeredBy, status (pending|released|timeout),
 *                             replication (the header value sent)
 *   <prefix>gate:<cid>:acks   set of controller ids that have the change
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
    void *arg;
};

/* Create the record if absent, add answered_by to the acks, publish;
 * cb gets the acknowledgements recorded so far. */
struct redis_cmd *ackstore_hold(struct redis *r, const struct config *cfg,
                                const char *cid, const char *idhex,
                                const char *call, const struct cluster *c,
                                uint64_t required, uint64_t deadline_ms,
                                const char *answered_by,
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
