/* fencesync.c - see fencesync.h. */
#include "consistency/fencesync.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/crypto.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "config/config.h"
#include "consistency/ackstore.h"
#include "consistency/gate.h"
#include "io/redis.h"
#include "metrics/metrics.h"
#include "routing/cluster.h"
#include "routing/fence.h"

/* How long after its deadline a change still open counts as abandoned. */
#define FENCESYNC_ORPHAN_MARGIN_MS 3000

/* Owned by the app (control thread). */
struct fencesync {
    struct loop *loop;                   /* borrowed */
    struct config *cfg;                  /* owned reference */
    struct fence *fence;                 /* borrowed */
    struct metrics *metrics;             /* borrowed */
    struct log *log;                     /* borrowed */
    struct redis *redis;                 /* owned, control loop */
    struct redis *sub;                   /* owned, control loop */
    struct loop_timer *ping;             /* owned */
    atomic_bool redis_ok;                /* last PING answered */
    atomic_bool redis_evicts;            /* maxmemory-policy not noeviction */
    struct ackstore_ctx fence_ctx;
    struct ackstore_ctx orphan_ctx;
    bool orphans_out;                    /* a claim is in flight */
};

static void fencesync_on_ping(void *arg, enum redis_status st,
                              const struct redis_reply *rep)
{
    struct fencesync *fs = arg;
    bool ok = redis_reply_ok(st, rep);
    bool was = atomic_exchange(&fs->redis_ok, ok);
    metrics_inc(fs->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_PING,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    metrics_set(fs->metrics, M_REDIS_UP, ok ? 1 : 0);
    if (was != ok) {
        char err[160] = "";
        redis_last_error(fs->redis, err, sizeof(err));
        if (ok)
            log_printf(fs->log, LOG_LEVEL_INFO, "Redis is reachable");
        else
            log_printf(fs->log, LOG_LEVEL_WARN,
                       "Redis is unreachable (%s): affinity falls back to "
                       "the local cache, gated MFA calls are refused",
                       err[0] ? err : redis_status_name(st));
    }
}

static void fencesync_on_write(void *arg, enum redis_status st,
                               const struct redis_reply *rep)
{
    struct fencesync *fs = arg;
    metrics_inc(fs->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_FENCE_WRITE,
                redis_reply_ok(st, rep) ? M_RESULT_OK : M_RESULT_ERROR);
}

/* Changes whose holder went away before their deadline (killed, crashed,
 * its host lost) were never released: nobody fenced the controllers that
 * lacked them, so a login there could skip TOTP until they catch up.  Done
 * here what the holder's release would have done (gate.c gate_release):
 * the identity fenced on every controller without an acknowledgement, the
 * outcome recorded (a repeated verify is answered from it). */
static void fencesync_on_orphans(void *arg, bool ok,
                                 const struct ackstore_orphan *o, size_t n)
{
    struct fencesync *fs = arg;
    const struct cluster *c = fs->orphan_ctx.c;
    fs->orphans_out = false;
    metrics_inc(fs->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_GATE_READ,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    for (size_t i = 0; i < n; i++) {
        uint64_t pending = nodeset_first(c->n) & ~o[i].acked;
        struct buf h = {0};
        buf_puts(&h, "acked=");
        cluster_names(c, o[i].acked, &h);
        if (pending) {
            buf_puts(&h, "; pending=");
            cluster_names(c, pending, &h);
            ackstore_fence_add(fs->redis, fs->cfg, o[i].idhex, o[i].cid,
                               o[i].held_ms, c, pending, fencesync_on_write,
                               fs);
        }
        ackstore_record_outcome(fs->redis, fs->cfg, o[i].cid, "timeout",
                                h.data, fencesync_on_write, fs);
        for (int k = 0; k < 3; k++)
            if (strcmp(o[i].call, gate_call_name((enum gate_call)k)) == 0)
                metrics_inc(fs->metrics, M_REPLICATION_TIMEOUTS_TOTAL,
                            (enum metrics_mfa_call)k);
        log_printf(fs->log, LOG_LEVEL_WARN,
                   "replication gate: a held %s (change %.12s) was not "
                   "released by its deadline: the quorumgate holding it "
                   "went away; taken over (%s)%s",
                   o[i].call, o[i].cid, h.data,
                   pending ? ", the identity is fenced on the pending "
                             "controllers"
                           : "");
        buf_free(&h);
    }
}

static void fencesync_ping(void *arg)
{
    struct fencesync *fs = arg;
    redis_command(fs->redis, fencesync_on_ping, fs, "PING");
    /* a holder releases at its deadline: one still open a while after it
     * went away (the margin covers the hosts' clocks and a slow release) */
    if (atomic_load(&fs->redis_ok) && fs->cfg->gate.enabled &&
        !fs->orphans_out) {
        uint64_t margin = FENCESYNC_ORPHAN_MARGIN_MS + fs->cfg->gate.poll_ms;
        uint64_t now = util_wall_ms();
        if (now > margin) {
            fs->orphans_out = true; /* before: its answer may come at once */
            ackstore_orphans(fs->redis, fs->cfg, now - margin,
                             &fs->orphan_ctx);
        }
    }
    loop_timer_start(fs->ping, 1000, 0);
}

/* CONFIG GET maxmemory-policy: anything but noeviction lets Redis drop
 * gate records, acknowledgements and fences under memory pressure (and
 * clients can create affinity keys).  Said at every connect. */
static void fencesync_on_policy(void *arg, enum redis_status st,
                                const struct redis_reply *rep)
{
    struct fencesync *fs = arg;
    if (st != REDIS_STATUS_OK)
        return;
    if (rep->type == REDIS_TYPE_ARRAY && rep->n_elements == 2 &&
        rep->elements[1].type == REDIS_TYPE_STRING) {
        const char *policy = rep->elements[1].str;
        fs->redis_evicts = strcmp(policy, "noeviction") != 0;
        if (fs->redis_evicts)
            log_printf(fs->log, LOG_LEVEL_ERROR,
                       "Redis maxmemory-policy is '%s': under memory "
                       "pressure Redis may evict replication records and "
                       "fences; set 'maxmemory-policy noeviction' (or use "
                       "a database of its own with that policy)",
                       policy);
        return;
    }
    log_printf(fs->log, LOG_LEVEL_WARN,
               "could not read Redis maxmemory-policy (CONFIG GET refused: "
               "%.*s): make sure it is 'noeviction'",
               (int)(rep->len < 200 ? rep->len : 200), rep->str);
}

static void fencesync_state(void *arg, bool up)
{
    struct fencesync *fs = arg;
    if (up)
        redis_command(fs->redis, fencesync_on_policy, fs,
                      "CONFIG GET maxmemory-policy");
    if (!up)
        atomic_store(&fs->redis_ok, false);
    loop_timer_start(fs->ping, 0, 0); /* find out now, not in a second */
}

static void fencesync_on_fence(void *arg, bool ok, const char *idhex,
                               uint64_t mask, uint64_t expiry_ms)
{
    struct fencesync *fs = arg;
    if (!idhex) {
        metrics_inc(fs->metrics, M_REDIS_OPERATIONS_TOTAL,
                    M_REDIS_FENCE_READ, ok ? M_RESULT_OK : M_RESULT_ERROR);
        metrics_set(fs->metrics, M_FENCED_IDENTITIES,
                    atomic_load(&fs->fence->identities));
        return;
    }
    struct fence_key k;
    uint64_t now_wall = util_wall_ms();
    fence_key_from_hex(idhex, &k);
    uint64_t left_s = expiry_ms > now_wall ? (expiry_ms - now_wall + 999) / 1000
                                           : 0;
    fence_set(fs->fence, &k, left_s ? mask : 0,
              fence_now(fs->fence) + left_s);
}

static void fencesync_message(void *arg, const char *ch, size_t chlen,
                              const char *msg, size_t len)
{
    struct fencesync *fs = arg;
    char idhex[CRYPTO_HMAC_HEX_LEN + 1];
    if (len != CRYPTO_HMAC_HEX_LEN)
        return;
    memcpy(idhex, msg, len);
    idhex[len] = '\0';
    ackstore_fence_read(fs->redis, fs->cfg, idhex, &fs->fence_ctx);
}

static void fencesync_sub_state(void *arg, bool up)
{
    struct fencesync *fs = arg;
    if (!up)
        return;
    /* messages may have been missed while down: read every fence */
    ackstore_fence_read_all(fs->redis, fs->cfg, &fs->fence_ctx);
}

struct fencesync *fencesync_new(const struct fencesync_args *args)
{
    struct fencesync *fs = xcalloc(1, sizeof(*fs));
    char chan[96];
    fs->loop = args->loop;
    fs->cfg = config_ref(args->cfg);
    fs->fence = args->fence;
    fs->metrics = args->metrics;
    fs->log = args->log;
    fs->fence_ctx = (struct ackstore_ctx){
        .c = args->cluster, .fence = fencesync_on_fence, .arg = fs};
    fs->orphan_ctx = (struct ackstore_ctx){
        .c = args->cluster, .orphans = fencesync_on_orphans, .arg = fs};
    fs->ping = loop_timer_new(fs->loop, fencesync_ping, fs);
    fs->redis = redis_new(fs->loop, &fs->cfg->redis,
                          &(struct redis_options){.name = "control",
                                                  .log = fs->log,
                                                  .on_state = fencesync_state,
                                                  .state_arg = fs,
                                                  .sentinel = args->sentinel});
    fs->sub = redis_new(fs->loop, &fs->cfg->redis,
                        &(struct redis_options){
                            .name = "control-sub",
                            .subscriber = true,
                            .log = fs->log,
                            .on_state = fencesync_sub_state,
                            .state_arg = fs,
                            .sentinel = args->sentinel});
    ackstore_channel(fs->cfg, ACKSTORE_CHANNEL_FENCES, chan, sizeof(chan));
    redis_subscribe(fs->sub, chan, fencesync_message, fs);
    /* The first PING goes out when the connection is up (fencesync_state):
     * one sent now could only fail and count a Redis error at every
     * start. */
    return fs;
}

void fencesync_set_config(struct fencesync *fs, struct config *cfg)
{
    struct config *old = fs->cfg;
    fs->cfg = config_ref(cfg);
    config_unref(old);
}

bool fencesync_redis_ok(const struct fencesync *fs)
{
    return fs && atomic_load(&fs->redis_ok);
}

bool fencesync_redis_evicts(const struct fencesync *fs)
{
    return fs && atomic_load(&fs->redis_evicts);
}

void fencesync_stats(const struct fencesync *fs, struct redis_stats *out)
{
    redis_stats(fs->redis, &out[0]);
    redis_stats(fs->sub, &out[1]);
}

void fencesync_free(struct fencesync *fs)
{
    if (!fs)
        return;
    redis_free(fs->redis);
    redis_free(fs->sub);
    loop_timer_free(fs->ping);
    config_unref(fs->cfg);
    free(fs);
}
