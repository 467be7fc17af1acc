/* ackstore.c - see ackstore.h. */
#include "consistency/ackstore.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/crypto.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "config/config.h"
#include "io/redis.h"
#include "routing/cluster.h"

/* KEYS: record, acks, open.  ARGV: call, identity, required, deadline,
 * answeredBy, ttl_ms, channel, cid, held. */
static const char ackstore_hold_lua[] =
    "redis.call('HSETNX',KEYS[1],'call',ARGV[1]) "
    "redis.call('HSETNX',KEYS[1],'identity',ARGV[2]) "
    "redis.call('HSETNX',KEYS[1],'required',ARGV[3]) "
    "redis.call('HSETNX',KEYS[1],'deadline',ARGV[4]) "
    "redis.call('HSETNX',KEYS[1],'answeredBy',ARGV[5]) "
    "redis.call('HSETNX',KEYS[1],'held',ARGV[9]) "
    "redis.call('HSETNX',KEYS[1],'status','pending') "
    "if redis.call('HGET',KEYS[1],'status') == 'pending' then "
    "redis.call('ZADD',KEYS[3],redis.call('HGET',KEYS[1],'deadline'),"
    "ARGV[8]) "
    "redis.call('PEXPIRE',KEYS[3],ARGV[6]) end "
    "if ARGV[5] ~= '' then redis.call('SADD',KEYS[2],ARGV[5]) end "
    "redis.call('PEXPIRE',KEYS[1],ARGV[6]) "
    "if redis.call('EXISTS',KEYS[2]) == 1 then "
    "redis.call('PEXPIRE',KEYS[2],ARGV[6]) end "
    "redis.call('PUBLISH',ARGV[7],ARGV[8]) "
    "return redis.call('SMEMBERS',KEYS[2])";

/* KEYS: acks.  ARGV: controller, ttl_ms, channel, cid. */
static const char ackstore_ack_lua[] =
    "local n = redis.call('SADD',KEYS[1],ARGV[1]) "
    "if redis.call('PTTL',KEYS[1]) < 0 then "
    "redis.call('PEXPIRE',KEYS[1],ARGV[2]) end "
    "redis.call('PUBLISH',ARGV[3],ARGV[4]) "
    "return n";

/* KEYS: record, acks. */
static const char ackstore_read_lua[] =
    "return {redis.call('HGETALL',KEYS[1]),redis.call('SMEMBERS',KEYS[2])}";

/* KEYS: fence.  ARGV: ttl_ms, channel, idhex, then pairs: controller and
 * "<expiry>:<held>:<cid>" (add) or "-<held>:<cid>" (clear).  A field names
 * the latest change that fenced that controller (held: when it was held,
 * unix ms).  Add keeps a newer change's fence; clear lifts the fence of the
 * same change or of an older one (a controller that has a change has every
 * earlier one), never a newer one's. */
/* Keys are built in fixed buffers below: with the prefix bounded
 * (config.h), none is ever cut. */
_Static_assert(CONFIG_KEY_PREFIX_MAX + sizeof("gate::acks") +
                       CRYPTO_HMAC_HEX_LEN <= 160,
               "gate keys fit their buffers");
_Static_assert(CONFIG_KEY_PREFIX_MAX + sizeof("fence-index") <= 96,
               "fence index and channel names fit their buffers");

static const char ackstore_fence_lua[] =
    "local i = 4 "
    "while i <= #ARGV do "
    "local v = ARGV[i+1] "
    "local clear = string.sub(v,1,1) == '-' "
    "local wh, wc = string.match(v, '(%d+):(%x+)$') "
    "local cur = redis.call('HGET',KEYS[1],ARGV[i]) "
    "local ch, cc = nil, nil "
    "if cur then ch, cc = string.match(cur, '^%d+:(%d+):(%x+)$') end "
    "local mine_or_older = cur and (cc == wc or "
    "(ch ~= nil and tonumber(ch) <= tonumber(wh))) "
    "if clear then "
    "if mine_or_older then redis.call('HDEL',KEYS[1],ARGV[i]) end "
    "elseif not cur or mine_or_older or not ch then "
    "redis.call('HSET',KEYS[1],ARGV[i],v) end "
    "i = i + 2 end "
    "if redis.call('EXISTS',KEYS[1]) == 1 then "
    "redis.call('PEXPIRE',KEYS[1],ARGV[1]) "
    "redis.call('SADD',KEYS[2],ARGV[3]) "
    "redis.call('PEXPIRE',KEYS[2],ARGV[1]) "
    "else redis.call('SREM',KEYS[2],ARGV[3]) end "
    "redis.call('PUBLISH',ARGV[2],ARGV[3]) "
    "return 1";

uint64_t ackstore_mask_of(const struct cluster *c, const char *s, size_t len)
{
    uint64_t m = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',')
            j++;
        for (int k = 0; k < c->n; k++)
            if (strlen(c->nodes[k].id) == j - i &&
                memcmp(c->nodes[k].id, s + i, j - i) == 0)
                m |= nodeset_of(k);
        i = j + 1;
    }
    return m;
}

static uint64_t ackstore_members(const struct cluster *c,
                                 const struct redis_reply *rep)
{
    uint64_t m = 0;
    if (!rep || rep->type != REDIS_TYPE_ARRAY)
        return 0;
    for (size_t i = 0; i < rep->n_elements; i++)
        if (rep->elements[i].type == REDIS_TYPE_STRING)
            m |= ackstore_mask_of(c, rep->elements[i].str,
                                  rep->elements[i].len);
    return m;
}

/* Every controller id with its comma fits: the list is never cut. */
#define ACKSTORE_IDS_MAX CONFIG_ID_LIST_MAX

static void ackstore_ids(const struct cluster *c, uint64_t mask,
                         char out[ACKSTORE_IDS_MAX])
{
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < c->n; i++) {
        if (!nodeset_has(mask, i))
            continue;
        /* an id is at most CONFIG_ID_MAX - 1 bytes: with its comma and the
         * final NUL, no more than CONFIG_ID_MAX each */
        int w = snprintf(out + o, ACKSTORE_IDS_MAX - o, "%s%s",
                         o ? "," : "", c->nodes[i].id);
        if (w < 0 || (size_t)w >= ACKSTORE_IDS_MAX - o)
            abort(); /* cannot happen: sized above */
        o += (size_t)w;
    }
}

static void ackstore_on_acks(void *arg, enum redis_status st,
                             const struct redis_reply *rep)
{
    struct ackstore_ctx *k = arg;
    bool ok = redis_reply_ok(st, rep);
    k->acks(k->arg, ok, ok ? ackstore_members(k->c, rep) : 0);
}

struct redis_cmd *ackstore_hold(struct redis *r, const struct config *cfg,
                                const char *cid, const char *idhex,
                                const char *call, const struct cluster *c,
                                uint64_t required, uint64_t deadline_ms,
                                uint64_t held_wall_ms,
                                const char *answered_by,
                                struct ackstore_ctx *ctx)
{
    char rec[160], acks[170], open[96], chan[96], req[ACKSTORE_IDS_MAX],
        dl[24], ttl[24], held[24];
    const char *p = cfg->redis.key_prefix;
    snprintf(rec, sizeof(rec), "%sgate:%s", p, cid);
    snprintf(acks, sizeof(acks), "%sgate:%s:acks", p, cid);
    snprintf(open, sizeof(open), "%sgate-open", p);
    snprintf(held, sizeof(held), "%llu", (unsigned long long)held_wall_ms);
    ackstore_channel(cfg, ACKSTORE_CHANNEL_ACKS, chan, sizeof(chan));
    ackstore_ids(c, required, req);
    snprintf(dl, sizeof(dl), "%llu",
             (unsigned long long)(util_wall_ms() + (deadline_ms >
                                                    util_mono_ms()
                                                    ? deadline_ms -
                                                          util_mono_ms()
                                                    : 0)));
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)(cfg->gate.timeout_ms +
                                  cfg->gate.outcome_ttl_ms));
    const char *argv[] = {"EVAL", ackstore_hold_lua, "3", rec, acks, open,
                          call, idhex, req, dl, answered_by, ttl, chan, cid,
                          held};
    return redis_command_argv(r, ackstore_on_acks, ctx, (int)ARRAY_LEN(argv),
                              argv, NULL);
}

void ackstore_ack(struct redis *r, const struct config *cfg, const char *cid,
                  const char *controller_id)
{
    ackstore_ack_cb(r, cfg, cid, controller_id, NULL, NULL);
}

struct redis_cmd *ackstore_ack_cb(struct redis *r, const struct config *cfg,
                                  const char *cid, const char *controller_id,
                                  redis_cb cb, void *arg)
{
    char acks[170], chan[96], ttl[24];
    const char *p = cfg->redis.key_prefix;
    snprintf(acks, sizeof(acks), "%sgate:%s:acks", p, cid);
    ackstore_channel(cfg, ACKSTORE_CHANNEL_ACKS, chan, sizeof(chan));
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)(cfg->gate.timeout_ms +
                                  cfg->gate.outcome_ttl_ms));
    const char *argv[] = {"EVAL", ackstore_ack_lua, "1", acks, controller_id,
                          ttl, chan, cid};
    return redis_command_argv(r, cb, arg, (int)ARRAY_LEN(argv), argv, NULL);
}

struct redis_cmd *ackstore_read_acks(struct redis *r,
                                     const struct config *cfg,
                                     const char *cid,
                                     struct ackstore_ctx *ctx)
{
    return redis_command(r, ackstore_on_acks, ctx, "SMEMBERS %sgate:%s:acks",
                         cfg->redis.key_prefix, cid);
}

static void ackstore_on_record(void *arg, enum redis_status st,
                               const struct redis_reply *rep)
{
    struct ackstore_ctx *k = arg;
    struct ackstore_record rec = {0};
    bool ok = st == REDIS_STATUS_OK && rep->type == REDIS_TYPE_ARRAY &&
              rep->n_elements == 2;
    if (ok) {
        const struct redis_reply *h = &rep->elements[0];
        /* h->n_elements is 0 unless h is an array; strings are "" unless
         * strings (redis.h) */
        for (size_t i = 0; i + 1 < h->n_elements; i += 2) {
            const struct redis_reply *f = &h->elements[i];
            const struct redis_reply *v = &h->elements[i + 1];
            rec.exists = true;
            /* a value too long to hold whole is not read */
            if (strcmp(f->str, "status") == 0)
                util_copy_whole(rec.status, sizeof(rec.status), v->str,
                                v->len);
            else if (strcmp(f->str, "replication") == 0)
                util_copy_whole(rec.replication, sizeof(rec.replication),
                                v->str, v->len);
            else if (strcmp(f->str, "deadline") == 0)
                rec.deadline_wall_ms = strtoull(v->str, NULL, 10);
        }
        rec.acked = ackstore_members(k->c, &rep->elements[1]);
    }
    k->record(k->arg, ok, &rec);
}

struct redis_cmd *ackstore_read_record(struct redis *r,
                                       const struct config *cfg,
                                       const char *cid,
                                       struct ackstore_ctx *ctx)
{
    char rec[160], acks[170];
    const char *p = cfg->redis.key_prefix;
    snprintf(rec, sizeof(rec), "%sgate:%s", p, cid);
    snprintf(acks, sizeof(acks), "%sgate:%s:acks", p, cid);
    const char *argv[] = {"EVAL", ackstore_read_lua, "2", rec, acks};
    return redis_command_argv(r, ackstore_on_record, ctx,
                              (int)ARRAY_LEN(argv), argv, NULL);
}

/* KEYS: gate record, open.  ARGV: status, replication, ttl (ms), cid. */
static const char ackstore_outcome_lua[] =
    "redis.call('HSET',KEYS[1],'status',ARGV[1],'replication',ARGV[2]) "
    "if redis.call('PTTL',KEYS[1]) < 0 then "
    "redis.call('PEXPIRE',KEYS[1],ARGV[3]) end "
    "redis.call('ZREM',KEYS[2],ARGV[4]) "
    "return 1";

void ackstore_record_outcome(struct redis *r, const struct config *cfg,
                             const char *cid, const char *status,
                             const char *replication, redis_cb cb,
                             void *arg)
{
    /* the record may be gone (its hold failed, it expired): one made here
     * gets a TTL too, never an immortal key */
    char rec[160], open[96], ttl[24];
    snprintf(rec, sizeof(rec), "%sgate:%s", cfg->redis.key_prefix, cid);
    snprintf(open, sizeof(open), "%sgate-open", cfg->redis.key_prefix);
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)(cfg->gate.timeout_ms +
                                  cfg->gate.outcome_ttl_ms));
    const char *argv[] = {"EVAL", ackstore_outcome_lua, "2", rec, open,
                          status, replication, ttl, cid};
    redis_command_argv(r, cb, arg, (int)ARRAY_LEN(argv), argv, NULL);
}

/* KEYS: open.  ARGV: cutoff (unix ms), key prefix, limit.  Claims the
 * records still pending whose deadline is before the cutoff: their holder
 * did not release them (it died); each is marked timed out here, so that
 * one quorumgate takes it over.  Returns {cid, identity, held, call,
 * {acks}} for each. */
static const char ackstore_orphans_lua[] =
    "local due = redis.call('ZRANGEBYSCORE',KEYS[1],'-inf',ARGV[1],"
    "'LIMIT',0,tonumber(ARGV[3])) "
    "local out = {} "
    "for _, cid in ipairs(due) do "
    "redis.call('ZREM',KEYS[1],cid) "
    "local rk = ARGV[2] .. 'gate:' .. cid "
    "local f = redis.call('HMGET',rk,'status','identity','held','call') "
    "if f[1] == 'pending' then "
    "redis.call('HSET',rk,'status','timeout') "
    "out[#out+1] = {cid, f[2] or '', f[3] or '0', f[4] or '', "
    "redis.call('SMEMBERS',rk .. ':acks')} end end "
    "return out";

static void ackstore_on_orphans(void *arg, enum redis_status st,
                                const struct redis_reply *rep)
{
    struct ackstore_ctx *k = arg;
    struct ackstore_orphan o[ACKSTORE_ORPHANS_MAX];
    size_t n = 0;
    bool ok = redis_reply_ok(st, rep) && rep->type == REDIS_TYPE_ARRAY;
    for (size_t i = 0; ok && i < rep->n_elements; i++) {
        const struct redis_reply *e = &rep->elements[i];
        if (n == ACKSTORE_ORPHANS_MAX || e->type != REDIS_TYPE_ARRAY ||
            e->n_elements != 5 || e->elements[0].len == 0 ||
            e->elements[1].len == 0)
            continue;
        /* a value too long to hold whole is not read (a record of another
         * kind, not ours) */
        if (!util_copy_whole(o[n].cid, sizeof(o[n].cid), e->elements[0].str,
                             e->elements[0].len) ||
            !util_copy_whole(o[n].idhex, sizeof(o[n].idhex),
                             e->elements[1].str, e->elements[1].len) ||
            !util_copy_whole(o[n].call, sizeof(o[n].call),
                             e->elements[3].str, e->elements[3].len))
            continue;
        o[n].held_ms = strtoull(e->elements[2].str, NULL, 10);
        o[n].acked = ackstore_members(k->c, &e->elements[4]);
        n++;
    }
    k->orphans(k->arg, ok, o, n);
}

struct redis_cmd *ackstore_orphans(struct redis *r, const struct config *cfg,
                                   uint64_t cutoff_wall_ms,
                                   struct ackstore_ctx *ctx)
{
    char open[96], cutoff[24], limit[8];
    snprintf(open, sizeof(open), "%sgate-open", cfg->redis.key_prefix);
    snprintf(cutoff, sizeof(cutoff), "%llu",
             (unsigned long long)cutoff_wall_ms);
    snprintf(limit, sizeof(limit), "%d", ACKSTORE_ORPHANS_MAX);
    const char *argv[] = {"EVAL", ackstore_orphans_lua, "1", open, cutoff,
                          cfg->redis.key_prefix, limit};
    return redis_command_argv(r, ackstore_on_orphans, ctx,
                              (int)ARRAY_LEN(argv), argv, NULL);
}

static void ackstore_fence_cmd(struct redis *r, const struct config *cfg,
                               const char *idhex, const char *cid,
                               uint64_t held_ms, const struct cluster *c,
                               uint64_t mask, bool add, redis_cb cb,
                               void *arg)
{
    char key[160], index[96], chan[96], ttl[24], val[112];
    const char *argv[7 + 2 * CONFIG_MAX_CONTROLLERS];
    int n = 0;
    const char *p = cfg->redis.key_prefix;
    snprintf(key, sizeof(key), "%sfence:%s", p, idhex);
    snprintf(index, sizeof(index), "%sfence-index", p);
    ackstore_channel(cfg, ACKSTORE_CHANNEL_FENCES, chan, sizeof(chan));
    snprintf(ttl, sizeof(ttl), "%llu",
             (unsigned long long)cfg->gate.fence_ttl_ms);
    if (add)
        snprintf(val, sizeof(val), "%llu:%llu:%s",
                 (unsigned long long)(util_wall_ms() +
                                      cfg->gate.fence_ttl_ms),
                 (unsigned long long)held_ms, cid);
    else
        snprintf(val, sizeof(val), "-%llu:%s", (unsigned long long)held_ms,
                 cid);
    argv[n++] = "EVAL";
    argv[n++] = ackstore_fence_lua;
    argv[n++] = "2";
    argv[n++] = key;
    argv[n++] = index;
    argv[n++] = ttl;
    argv[n++] = chan;
    argv[n++] = idhex;
    for (int i = 0; i < c->n && n + 2 <= (int)ARRAY_LEN(argv); i++)
        if (nodeset_has(mask, i)) {
            argv[n++] = c->nodes[i].id;
            argv[n++] = val;
        }
    redis_command_argv(r, cb, arg, n, argv, NULL);
}

void ackstore_fence_add(struct redis *r, const struct config *cfg,
                        const char *idhex, const char *cid, uint64_t held_ms,
                        const struct cluster *c, uint64_t mask, redis_cb cb,
                        void *arg)
{
    ackstore_fence_cmd(r, cfg, idhex, cid, held_ms, c, mask, true, cb, arg);
}

void ackstore_fence_clear(struct redis *r, const struct config *cfg,
                          const char *idhex, const char *cid,
                          uint64_t held_ms, const struct cluster *c,
                          uint64_t mask, redis_cb cb, void *arg)
{
    ackstore_fence_cmd(r, cfg, idhex, cid, held_ms, c, mask, false, cb,
                       arg);
}

/* KEYS: fence.  ARGV: idhex. */
static const char ackstore_fence_get_lua[] =
    "return {{ARGV[1], redis.call('HGETALL',KEYS[1])}}";

/* KEYS: the fence index (a set of identity HMACs that have a fence).
 * ARGV: the fence key prefix.  Reads as many fences as there are fenced
 * identities, never the keyspace; members whose fence expired go. */
static const char ackstore_fence_all_lua[] =
    "local out = {} "
    "for _,id in ipairs(redis.call('SMEMBERS',KEYS[1])) do "
    "local h = redis.call('HGETALL',ARGV[1]..id) "
    "if #h == 0 then redis.call('SREM',KEYS[1],id) "
    "else out[#out+1] = {id, h} end end "
    "return out";

static void ackstore_fence_one(struct ackstore_ctx *k,
                               const struct redis_reply *pair)
{
    uint64_t mask = 0, latest = 0, now = util_wall_ms();
    char idhex[80];
    if (pair->type != REDIS_TYPE_ARRAY || pair->n_elements != 2)
        return;
    const struct redis_reply *id = &pair->elements[0];
    const struct redis_reply *h = &pair->elements[1];
    if (id->type != REDIS_TYPE_STRING || id->len >= sizeof(idhex))
        return;
    snprintf(idhex, sizeof(idhex), "%.*s", (int)id->len, id->str);
    for (size_t i = 0; i + 1 < h->n_elements; i += 2) {
        uint64_t exp = strtoull(h->elements[i + 1].str, NULL, 10);
        if (exp <= now)
            continue;
        mask |= ackstore_mask_of(k->c, h->elements[i].str,
                                 h->elements[i].len);
        if (exp > latest)
            latest = exp;
    }
    k->fence(k->arg, true, idhex, mask, latest);
}

static void ackstore_on_fence(void *arg, enum redis_status st,
                              const struct redis_reply *rep)
{
    struct ackstore_ctx *k = arg;
    bool ok = st == REDIS_STATUS_OK && rep->type == REDIS_TYPE_ARRAY;
    for (size_t i = 0; ok && i < rep->n_elements; i++)
        ackstore_fence_one(k, &rep->elements[i]);
    k->fence(k->arg, ok, NULL, 0, 0);
}

struct redis_cmd *ackstore_fence_read(struct redis *r,
                                      const struct config *cfg,
                                      const char *idhex,
                                      struct ackstore_ctx *ctx)
{
    char key[160];
    snprintf(key, sizeof(key), "%sfence:%s", cfg->redis.key_prefix, idhex);
    const char *argv[] = {"EVAL", ackstore_fence_get_lua, "1", key, idhex};
    return redis_command_argv(r, ackstore_on_fence, ctx, (int)ARRAY_LEN(argv),
                              argv, NULL);
}

struct redis_cmd *ackstore_fence_read_all(struct redis *r,
                                          const struct config *cfg,
                                          struct ackstore_ctx *ctx)
{
    char index[96], prefix[96];
    snprintf(index, sizeof(index), "%sfence-index", cfg->redis.key_prefix);
    snprintf(prefix, sizeof(prefix), "%sfence:", cfg->redis.key_prefix);
    const char *argv[] = {"EVAL", ackstore_fence_all_lua, "1", index,
                          prefix};
    return redis_command_argv(r, ackstore_on_fence, ctx, (int)ARRAY_LEN(argv),
                              argv, NULL);
}

redis_cb ackstore_reply_reader(enum ackstore_reply which)
{
    switch (which) {
    case ACKSTORE_REPLY_ACKS:
        return ackstore_on_acks;
    case ACKSTORE_REPLY_RECORD:
        return ackstore_on_record;
    case ACKSTORE_REPLY_ORPHANS:
        return ackstore_on_orphans;
    default:
        return ackstore_on_fence;
    }
}
