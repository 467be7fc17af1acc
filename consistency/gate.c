/* gate.c - see gate.h. */
#include "consistency/gate.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consistency/ackstore.h"
#include "consistency/gate_before.h"
#include "consistency/gate_clear.h"
#include "consistency/gate_impl.h"
#include "consistency/mgmt.h"
#include "io/redis.h"
#include "metrics/metrics.h"
#include "base/envelope.h"
#include "base/json.h"
#include "base/log.h"
#include "base/loop.h"
#include "io/upstream.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "config/config.h"
#include "routing/cluster.h"
#include "routing/fence.h"

/* The call label of the gate's metrics is the gate call, cast. */
_Static_assert((int)GATE_CREATE == (int)M_CALL_CREATE &&
                   (int)GATE_VERIFY == (int)M_CALL_VERIFY &&
                   (int)GATE_DELETE == (int)M_CALL_DELETE &&
                   (int)M_MFA_CALL__COUNT == 3,
               "enum gate_call and METRICS_VALUES_MFA_CALL differ");

static const char *const gate_call_names[] = {"create", "verify", "delete"};

const char *gate_call_name(enum gate_call call)
{
    return (unsigned)call < 3 ? gate_call_names[call] : "verify";
}

void gate_change_id(const struct config *cfg, const char *identity,
                    const char *mfa_id, enum gate_call call,
                    char out[CRYPTO_HMAC_HEX_LEN + 1])
{
    /* never cut: two changes must never share an id */
    char *buf = xasprintf("change|%s|%s|%s", identity, mfa_id,
                          gate_call_name(call));
    crypto_hmac_hex(cfg->hmac_key, cfg->hmac_key_len, buf, strlen(buf), out);
    free(buf);
}

void gate_identity_hex(const struct config *cfg, const char *identity,
                       char out[CRYPTO_HMAC_HEX_LEN + 1])
{
    char *buf = xasprintf("identity|%s", identity);
    crypto_hmac_hex(cfg->hmac_key, cfg->hmac_key_len, buf, strlen(buf), out);
    free(buf);
}

bool gate_acknowledges_mgmt(enum gate_call call, int status, const char *body,
                            size_t len)
{
    bool enabled = false;
    if (status != 200 || call == GATE_CREATE)
        return false;
    struct json *j = json_parse(body, len);
    bool has = json_bool(json_path(j, "data.isMfaEnabled"), &enabled);
    json_free(j);
    if (!has)
        return false;
    return call == GATE_VERIFY ? enabled : !enabled;
}

bool gate_acknowledges(enum gate_call call, const char *mfa_id, int status,
                       const char *body, size_t len)
{
    if (status == 404)
        return call == GATE_DELETE;
    if (status != 200)
        return false;
    struct json *j = json_parse(body, len);
    struct json *data = json_get(j, "data");
    const char *id = json_string(json_get(data, "id"));
    bool verified = false, has = json_bool(json_get(data, "isVerified"),
                                           &verified);
    bool same = id && mfa_id && strcmp(id, mfa_id) == 0;
    bool ack = false;
    switch (call) {
    case GATE_CREATE:
        ack = has && same;
        break;
    case GATE_VERIFY:
        ack = has && same && verified;
        break;
    case GATE_DELETE:
        ack = has && !same; /* a newer enrollment: the old one is gone */
        break;
    }
    json_free(j);
    return ack;
}

bool gate_slot_take(struct gate_slots *s, const struct config *cfg,
                    const char *identity, unsigned *bucket)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = identity; p && *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    *bucket = h % GATE_SLOT_BUCKETS;
    if (atomic_fetch_add(&s->total, 1) >= (int)cfg->gate.max_held) {
        atomic_fetch_sub(&s->total, 1);
        return false;
    }
    if (atomic_fetch_add(&s->per_id[*bucket], 1) >=
        (int)cfg->gate.max_held_per_identity) {
        atomic_fetch_sub(&s->per_id[*bucket], 1);
        atomic_fetch_sub(&s->total, 1);
        return false;
    }
    return true;
}

void gate_slot_give(struct gate_slots *s, unsigned bucket)
{
    atomic_fetch_sub(&s->per_id[bucket % GATE_SLOT_BUCKETS], 1);
    atomic_fetch_sub(&s->total, 1);
}


/* ---- bookkeeping -------------------------------------------------------- */

static void gate_unlink(struct gate_wait *gw)
{
    list_remove(&gw->link);
    list_remove(&gw->id_link);
}

/* Ends a wait: everything but its memory, which Redis callbacks may still
 * reach; that goes when the last of them ran (gate_unref). */
static void gate_wait_free(struct gate_wait *gw)
{
    struct upstream *up = gw->g->env.up;
    if (gw->dead)
        return;
    gate_unlink(gw);
    gate_probe_detach(gw);
    for (int i = 0; i < gw->n; i++) {
        struct gate_probe *p = &gw->probes[i];
        if (p->req.priv)
            upstream_cancel(up, &p->req);
        mgmt_cancel(gw->g->mgmt, p);
        upstream_req_free(&p->req);
        loop_timer_free(p->timer);
        free(p->url);
        free(p->auth);
        free(p->token);
    }
    loop_timer_free(gw->deadline);
    loop_timer_free(gw->poll);
    if (gw->auth) /* the client's own credential */
        explicit_bzero(gw->auth, strlen(gw->auth));
    free(gw->auth);
    free(gw->state_path);
    gw->auth = gw->state_path = NULL;
    gw->g->live--;
    gw->dead = true;
    if (gw->refs == 0) {
        free(gw);
        return;
    }
    list_insert_head(&gw->g->dead, &gw->link); /* until its callbacks ran */
}

/* A Redis callback for gw arrived: true when gw is finished (and freed if
 * it was the last reference), so the callback must return at once. */
static bool gate_unref(struct gate_wait *gw)
{
    gw->refs--;
    if (!gw->dead)
        return false;
    if (gw->refs == 0) {
        list_remove(&gw->link);
        free(gw);
    }
    return true;
}

/* redis_operations_total{op}: a callback for commands whose only
 * follow-up is the count, and the count for those that have one. */
void *gate_count(struct gate *g, enum metrics_redis_op op)
{
    return g->env.count_ctx[op];
}

static void gate_count_result(struct gate *g, enum metrics_redis_op op,
                              bool ok)
{
    metrics_inc(g->env.metrics, M_REDIS_OPERATIONS_TOTAL, op,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
}

static void gate_read(struct gate_wait *gw)
{
    gw->refs++;
    ackstore_read_acks(gw->g->env.redis, gate_cfg(gw->g), gw->cid,
                       &gw->read_ctx);
}

static bool gate_satisfied(const struct gate_wait *gw)
{
    if (gw->match_all)
        return (gw->acked & gw->required) == gw->required;
    return nodeset_count(gw->acked & gw->all) >= gw->need;
}

/* ---- fences ------------------------------------------------------------ */

static void gate_fence(struct gate_wait *gw, uint64_t mask)
{
    struct gate *g = gw->g;
    const struct gate_env *env = &g->env;
    struct config *cfg = gate_cfg(g);
    if (!mask)
        return;
    uint64_t now_s = fence_now(env->fence);
    uint64_t ttl_s = (cfg->gate.fence_ttl_ms + 999) / 1000;
    uint64_t until = loop_now_ms(g->env.loop) + cfg->gate.fence_ttl_ms;
    fence_add(env->fence, &gw->fk, mask, now_s + ttl_s);
    gw->fenced |= mask;
    /* the fence lasts until they acknowledge: keep asking them as long */
    if (until > gw->end_ms)
        gw->end_ms = until;
    ackstore_fence_add(g->env.redis, cfg, gw->idhex, gw->cid,
                       gw->held_wall_ms, env->cluster, mask, g->env.count_cb,
                       gate_count(g, M_REDIS_FENCE_WRITE));
    metrics_set(env->metrics, M_FENCED_IDENTITIES,
                atomic_load(&env->fence->identities));
}

static void gate_unfence_local(struct gate *g, const struct fence_key *fk,
                               uint64_t mask)
{
    const struct gate_env *env = &g->env;
    fence_clear(env->fence, fk, mask);
    metrics_set(env->metrics, M_FENCED_IDENTITIES,
                atomic_load(&env->fence->identities));
}

static void gate_on_unfenced(void *arg, enum redis_status st,
                             const struct redis_reply *rep)
{
    struct gate_wait *gw = arg; /* memory kept while refs > 0 */
    bool ok = redis_reply_ok(st, rep);
    gate_count_result(gw->g, M_REDIS_FENCE_WRITE, ok);
    if (!ok) { /* Redis is gone: lift them here at least, and there later */
        gate_unfence_local(gw->g, &gw->fk, gw->unfenced);
        gate_clear_later(gw->g, gw->idhex, gw->cid, gw->held_wall_ms,
                         gw->unfenced);
    }
    gate_unref(gw);
}

/* Controllers in mask acknowledged this change: lift the fences it set,
 * and those an older change of the identity set there (a controller that
 * has a change has every earlier one).  An acknowledgement of an older
 * change (the create) says nothing about a newer one (the verify): Redis
 * knows which change fenced each controller last and when it was held, and
 * lifts accordingly; every quorumgate (this one too) then re-reads the
 * fence from the publish that follows.  Without Redis, this change's own
 * fences are lifted here directly. */
static void gate_unfence(struct gate_wait *gw, uint64_t mask)
{
    struct gate *g = gw->g;
    const struct gate_env *env = &g->env;
    struct fence *f = env->fence;
    struct redis *r = g->env.redis;
    uint64_t own = mask & gw->fenced;
    mask &= gw->fenced | fence_mask(f, &gw->fk, fence_now(f));
    if (!mask)
        return;
    gw->fenced &= ~mask;
    if (!redis_up(r)) {
        if (own)
            gate_unfence_local(g, &gw->fk, own);
        /* the fence may be in Redis (written before it went) */
        gate_clear_later(g, gw->idhex, gw->cid, gw->held_wall_ms, mask);
        return;
    }
    /* A wait that lost Redis (a restart, a Sentinel failover) and finds it
     * back lifts here and there: the fence it set may be in Redis (written
     * before, or replicated to the new master) and would hold the identity
     * away from that controller in every quorumgate until it expired. */
    if (gw->redis_lost && own)
        gate_unfence_local(g, &gw->fk, own);
    gw->unfenced |= own;
    gw->refs++;
    ackstore_fence_clear(r, gate_cfg(g), gw->idhex, gw->cid, gw->held_wall_ms,
                         env->cluster, mask, gate_on_unfenced, gw);
}

/* ---- release ----------------------------------------------------------- */

static void gate_maybe_finish(struct gate_wait *gw);

static void gate_release(struct gate_wait *gw, bool timed_out)
{
    struct gate *g = gw->g;
    const struct gate_env *env = &g->env;
    struct config *cfg = gate_cfg(g);
    struct cluster *c = env->cluster;
    uint64_t pending = gw->all & ~gw->acked;
    struct buf h = {0};
    if (gw->released)
        return;
    gw->released = true;
    buf_puts(&h, "acked=");
    cluster_names(c, gw->acked & gw->all, &h);
    if (pending) {
        buf_puts(&h, "; pending=");
        cluster_names(c, pending, &h);
    }
    if (timed_out)
        metrics_inc(env->metrics, M_REPLICATION_TIMEOUTS_TOTAL,
                    (enum metrics_mfa_call)gw->call);
    metrics_observe_ns(env->metrics, M_REPLICATION_WAIT_SECONDS,
                       (enum metrics_mfa_call)gw->call,
                       util_mono_ns() - gw->start_ns);
    /* a controller that only refused the credential says nothing about
     * replication (a forged or expired token would fence its identity
     * everywhere): not fenced */
    uint64_t refusing = pending & gw->denied & ~gw->answered;
    gate_fence(gw, pending & ~refusing);
    if (refusing) {
        struct buf r = {0};
        cluster_names(c, refusing, &r);
        log_info(env->log,
                 "replication gate: %s (change %.12s) pending on %s, not "
                 "fenced: they only refused the client's credential",
                 gate_call_name(gw->call), gw->cid, r.data);
        buf_free(&r);
    }
    if (pending && (cfg->gate.source == GATE_SRC_PROBE || gw->redis_lost))
        gate_probe_all(gw); /* the fenced ones: until they have it */
    ackstore_record_outcome(g->env.redis, cfg, gw->cid,
                            timed_out ? "timeout" : "released", h.data,
                            g->env.count_cb,
                            gate_count(g, M_REDIS_GATE_WRITE));
    gate_release_cb done = gw->done;
    void *done_arg = gw->done_arg;
    gw->done = NULL;
    if (gw->handle)
        *gw->handle = NULL;
    gw->handle = NULL;
    g->waiting--;
    atomic_store(g->env.waiting, g->waiting);
    if (done)
        done(done_arg,
             &(struct gate_release){
                 .timed_out = timed_out,
                 .fail = timed_out && cfg->gate.fail_on_timeout,
                 .fenced = gw->fenced,
                 .replication = h.data});
    buf_free(&h);
    gate_maybe_finish(gw);
}

/* Free the wait once it is released and nothing is left to learn: every
 * controller it fenced acknowledged, or its fence there went otherwise
 * (expired; lifted by a newer change's acknowledgement), or the last fence
 * it set expired.  Until then it keeps asking the controllers it fenced, so
 * their fences clear as soon as they have the change, also long after the
 * answer went out. */
static void gate_maybe_finish(struct gate_wait *gw)
{
    if (!gw->released)
        return;
    uint64_t now = loop_now_ms(gw->g->env.loop);
    uint64_t watching = gw->all & ~gw->acked & ~gw->refused & gw->fenced;
    if (!watching || now >= gw->end_ms)
        gate_wait_free(gw);
    else if (now >= gw->deadline_ms)
        loop_timer_start(gw->deadline, gw->end_ms - now, 0);
}

void gate_check(struct gate_wait *gw)
{
    if (gw->released) {
        gate_maybe_finish(gw);
        return;
    }
    if (gate_satisfied(gw))
        gate_release(gw, false);
    else if (!gw->holding &&
             loop_now_ms(gw->g->env.loop) >= gw->deadline_ms)
        gate_release(gw, true); /* the deadline passed during the hold */
}

/* New acknowledgements learned (from a probe, Redis or a publish). */
void gate_add_acks(struct gate_wait *gw, uint64_t mask)
{
    const struct gate_env *env = &gw->g->env;
    uint64_t fresh = mask & ~gw->counted & gw->all;
    gw->acked |= mask & gw->all;
    for (int i = 0; i < gw->n; i++)
        if (nodeset_has(fresh, i))
            metrics_inc(env->metrics, M_REPLICATION_ACKS_TOTAL, i);
    gw->counted |= fresh;
    if (fresh)
        gate_unfence(gw, fresh);
}

/* ---- Redis ------------------------------------------------------------- */

static void gate_redis_lost(struct gate_wait *gw, const char *what);

static void gate_on_members(void *arg, bool ok, uint64_t mask)
{
    struct gate_wait *gw = arg;
    gate_count_result(gw->g, M_REDIS_ACK_READ, ok);
    if (gate_unref(gw))
        return;
    if (!ok) {
        gate_redis_lost(gw, "reading acknowledgements");
        return;
    }
    gate_add_acks(gw, mask);
    gate_check(gw);
}

/* A stale controller that acknowledged the enrollment's create held it
 * once: its "gone" is the delete's, its isMfaEnabled the verify's; one that
 * acknowledged the verify had isMfaEnabled true: its false is the delete's
 * (gate_probe.c). */
static void gate_on_had(struct gate_wait *gw, bool ok, uint64_t mask,
                        uint64_t *had)
{
    gate_count_result(gw->g, M_REDIS_ACK_READ, ok);
    if (gate_unref(gw))
        return;
    if (ok)
        *had |= mask;
}

static void gate_on_had_create(void *arg, bool ok, uint64_t mask)
{
    struct gate_wait *gw = arg;
    gate_on_had(gw, ok, mask, &gw->had);
}

static void gate_on_had_verify(void *arg, bool ok, uint64_t mask)
{
    struct gate_wait *gw = arg;
    gate_on_had(gw, ok, mask, &gw->had_verified);
}

static void gate_read_had(struct gate_wait *gw)
{
    struct config *cfg = gate_cfg(gw->g);
    char cid[CRYPTO_HMAC_HEX_LEN + 1];
    enum gate_call earlier[] = {GATE_CREATE, GATE_VERIFY};
    ackstore_acks_cb cb[] = {gate_on_had_create, gate_on_had_verify};
    size_t n = gw->call == GATE_DELETE ? 2 : 1;
    for (size_t i = 0; i < n; i++) {
        gw->had_ctx[i] = (struct ackstore_ctx){.c = gw->g->env.cluster,
                                               .acks = cb[i], .arg = gw};
        gate_change_id(cfg, gw->identity, gw->mfa_id, earlier[i], cid);
        gw->refs++;
        ackstore_read_acks(gw->g->env.redis, cfg, cid, &gw->had_ctx[i]);
    }
}

/* Mode healthy: a required controller that went down during the wait is
 * no longer waited for; it is fenced at once, like one down at the start. */
static void gate_drop_unhealthy(struct gate_wait *gw)
{
    struct cluster *c = gw->g->env.cluster;
    uint64_t down = 0;
    for (int i = 0; i < gw->n; i++)
        if (nodeset_has(gw->required & ~gw->acked, i) && !cluster_up(c, i))
            down |= nodeset_of(i);
    if (!down)
        return;
    gw->required &= ~down;
    gw->need = nodeset_count(gw->required);
    gate_fence(gw, down);
    gate_check(gw); /* may free gw */
}

void gate_give_up(struct gate_wait *gw, uint64_t mask)
{
    mask &= gw->all & ~gw->acked & ~gw->refused;
    if (!mask)
        return;
    gw->refused |= mask;
    if (gw->released) {
        gw->fenced &= ~mask; /* nothing more to learn there */
        gate_maybe_finish(gw); /* may free gw */
        return;
    }
    if (gw->match_all) {
        gw->required &= ~mask;
        gw->need = nodeset_count(gw->required);
    }
    /* only refusals from there: nothing says it lags (issue 17: a forged
     * or expired token would fence its identity everywhere) */
    gate_fence(gw, mask & ~(gw->denied & ~gw->answered));
    if (!gw->match_all &&
        nodeset_count(gw->all & ~gw->refused) < gw->need) {
        gate_release(gw, true); /* cannot be met: no point waiting */
        return;
    }
    gate_check(gw); /* may free gw */
}

/* A released wait stops watching a controller whose fence is gone from
 * the table without its acknowledgement (lifted by a newer change that
 * controller acknowledged, or expired): two polls in a row, so that a
 * re-read of the fence racing with our own write cannot end the watch. */
static void gate_forget_lifted(struct gate_wait *gw)
{
    struct fence *f = gw->g->env.fence;
    uint64_t gone = gw->fenced & ~gw->acked &
                    ~fence_mask(f, &gw->fk, fence_now(f));
    gw->fenced &= ~(gone & gw->lifted_once);
    gw->lifted_once = gone;
    gate_maybe_finish(gw); /* may free gw */
}

static void gate_poll(void *arg)
{
    struct gate_wait *gw = arg;
    struct config *cfg = gate_cfg(gw->g);
    loop_timer_start(gw->poll, cfg->gate.poll_ms, 0);
    if (!gw->redis_lost)
        gate_read(gw);
    /* last: these may free gw */
    if (gw->released)
        gate_forget_lifted(gw);
    else if (gw->healthy)
        gate_drop_unhealthy(gw);
}

static void gate_redis_lost(struct gate_wait *gw, const char *what)
{
    const struct gate_env *env = &gw->g->env;
    if (gw->redis_lost)
        return;
    gw->redis_lost = true;
    metrics_inc(env->metrics, M_REPLICATION_TRACKING_UNAVAILABLE_TOTAL);
    log_printf(env->log, LOG_LEVEL_WARN,
               "replication gate: Redis unavailable while %s; confirming "
               "the %s directly with the controllers",
               what, gate_call_name(gw->call));
    gate_probe_all(gw); /* events mode falls back to probing too */
}

static void gate_on_held(void *arg, bool ok, uint64_t mask)
{
    struct gate_wait *gw = arg;
    gate_count_result(gw->g, M_REDIS_GATE_WRITE, ok);
    gw->holding = false;
    if (gate_unref(gw))
        return;
    if (!ok)
        gate_redis_lost(gw, "recording the change");
    else
        gate_add_acks(gw, mask);
    gate_check(gw);
}

/* ---- deadline ---------------------------------------------------------- */

/* The deadline, and later the end of the watch over fenced controllers. */
static void gate_deadline(void *arg)
{
    struct gate_wait *gw = arg;
    if (!gw->released && gw->holding)
        return; /* the hold's reply (bounded by the command timeout) */
    if (!gw->released)
        gate_release(gw, !gate_satisfied(gw));
    else
        gate_maybe_finish(gw);
}

/* ---- public ------------------------------------------------------------ */

bool gate_hold(struct gate *g, const struct gate_hold_args *h)
{
    const struct gate_env *env = &g->env;
    struct config *cfg = gate_cfg(g);
    struct cluster *c = env->cluster;
    uint64_t now = loop_now_ms(env->loop);
    enum gate_call call = h->call;
    const char *identity = h->identity, *mfa_id = h->mfa_id;
    int answered_by = h->answered_by;
    bool legacy = h->legacy;
    /* a success whose enrollment id could not be read is not let through
     * unheld: nothing can confirm it, so the others are fenced at once */
    bool unreadable = !mfa_id || !*mfa_id;
    if (!identity || !*identity)
        return false;
    if (unreadable)
        mfa_id = "(unreadable)";
    struct gate_wait *gw = xcalloc(1, sizeof(*gw));
    gw->g = g;
    gw->done = h->done;
    gw->done_arg = h->arg;
    gw->handle = h->handle;
    gw->call = call;
    gw->n = c->n;
    snprintf(gw->mfa_id, sizeof(gw->mfa_id), "%s", mfa_id);
    snprintf(gw->identity, sizeof(gw->identity), "%s", identity);
    gw->legacy = legacy;
    gate_change_id(cfg, identity, mfa_id, call, gw->cid);
    gate_identity_hex(cfg, identity, gw->idhex);
    fence_key_from_hex(gw->idhex, &gw->fk);
    gw->start_ms = now;
    gw->start_ns = util_mono_ns();
    gw->held_wall_ms = util_wall_ms();
    gw->deadline_ms = h->deadline_ms ? h->deadline_ms
                                     : now + cfg->gate.timeout_ms;
    gw->end_ms = gw->deadline_ms;
    gw->all = nodeset_first(c->n);
    uint64_t up = 0;
    for (int i = 0; i < c->n; i++)
        if (cluster_up(c, i))
            up |= nodeset_of(i);
    switch (cfg->gate.mode) {
    case GATE_HEALTHY:
        gw->required = up | (answered_by >= 0 ? nodeset_of(answered_by) : 0);
        gw->match_all = true;
        gw->healthy = true;
        break;
    case GATE_ALL:
        gw->required = gw->all;
        gw->match_all = true;
        break;
    case GATE_MAJORITY:
        gw->required = gw->all;
        gw->need = c->n / 2 + 1;
        break;
    case GATE_COUNT:
    default:
        gw->required = gw->all;
        gw->need = (int)cfg->gate.count < c->n ? (int)cfg->gate.count : c->n;
        break;
    }
    if (legacy && call == GATE_CREATE &&
        cfg->gate.source == GATE_SRC_PROBE && answered_by >= 0) {
        /* not observable through the management API: the controller that
         * answered (where the session lives) is what can be confirmed */
        gw->all = gw->required = nodeset_of(answered_by);
        gw->match_all = true;
    }
    if (gw->match_all)
        gw->need = nodeset_count(gw->required);
    if (h->authorization)
        gw->auth = xasprintf("Authorization: %s", h->authorization);
    gw->state_path = xstrdup(h->state_path ? h->state_path : "");
    /* the client's token is refused there: asked with the management
     * credential when that shows the change, else not waited for */
    uint64_t refused = legacy ? 0
                              : h->refused & gw->all &
                                    ~(answered_by >= 0 ? nodeset_of(answered_by)
                                                       : 0);
    bool by_mgmt = refused && call != GATE_CREATE && mgmt_configured(g->mgmt);
    uint64_t give = by_mgmt ? 0 : refused;
    for (int i = 0; i < c->n; i++) {
        gw->probes[i].gw = gw;
        gw->probes[i].node = i;
        gw->probes[i].delay_ms = cfg->gate.probe_initial_ms;
        gw->probes[i].timer = loop_timer_new(env->loop, gate_probe_send,
                                             &gw->probes[i]);
        list_init(&gw->probes[i].riders);
        list_init(&gw->probes[i].ride);
        gw->probes[i].mgmt = by_mgmt && nodeset_has(refused, i);
        gw->probes[i].refused = nodeset_has(give, i);
    }
    gw->denied |= give; /* a refusal says nothing of lag: no fence */
    gw->key_refused = refused != 0;
    gw->deadline = loop_timer_new(env->loop, gate_deadline, gw);
    gw->poll = loop_timer_new(env->loop, gate_poll, gw);
    list_insert_head(&g->buckets[gate_bucket(gw->cid)], &gw->link);
    list_insert_head(&g->by_id[gate_bucket(gw->idhex)], &gw->id_link);
    g->waiting++;
    atomic_store(g->env.waiting, g->waiting);
    g->live++;
    if (gw->handle)
        *gw->handle = gw;

    /* missed an earlier change of the identity, or down: "no enrollment"
     * there may be from before this one's create (gate_probe.c) */
    gw->stale = ((gw->all & ~up) |
                 fence_mask(env->fence, &gw->fk, fence_now(env->fence))) &
                ~(answered_by >= 0 ? nodeset_of(answered_by) : 0);
    if (h->before) {
        /* each member's state read before the call went out
         * (gate_before.h) */
        uint64_t me = answered_by >= 0 ? nodeset_of(answered_by) : 0;
        /* isMfaEnabled names no enrollment: from a member already fenced
         * for the identity (behind by an unknown number of its changes),
         * true or false says nothing of this one (gate_probe.c) */
        uint64_t behind = gw->stale;
        if (call == GATE_DELETE) {
            /* holding the enrollment then, "gone" now is the delete; gone
             * already, it lacks an earlier change */
            gw->had |= h->before->holding;
            gw->had_verified |= h->before->enabled & ~behind;
            gw->lacked = (h->before->gone | h->before->disabled) & ~me;
        } else if (call == GATE_VERIFY) {
            /* no MFA then: isMfaEnabled true now is this verify; true
             * already: an older enrollment it has not seen deleted */
            gw->had |= h->before->disabled & ~behind;
            gw->lacked = h->before->enabled & ~me;
        }
        /* not read in time: it may be either */
        gw->stale |= (gw->lacked | (h->before->unread & ~me)) & gw->all;
    }
    /* the controller that answered has it */
    if (answered_by >= 0)
        gate_add_acks(gw, nodeset_of(answered_by));
    /* healthy mode: the unhealthy ones are fenced at once */
    if (cfg->gate.mode == GATE_HEALTHY)
        gate_fence(gw, gw->all & ~gw->required);

    loop_timer_start(gw->deadline,
                     gw->deadline_ms > now ? gw->deadline_ms - now : 0, 0);
    loop_timer_start(gw->poll, cfg->gate.poll_ms, 0);
    gw->held_ctx = (struct ackstore_ctx){.c = c, .acks = gate_on_held,
                                         .arg = gw};
    gw->read_ctx = (struct ackstore_ctx){.c = c, .acks = gate_on_members,
                                         .arg = gw};
    gw->refs++;
    gw->holding = true;
    ackstore_hold(g->env.redis, cfg, gw->cid, gw->idhex,
                  gate_call_name(call), c, gw->required, gw->deadline_ms,
                  gw->held_wall_ms,
                  answered_by >= 0 ? c->nodes[answered_by].id : "",
                  &gw->held_ctx);
    if (unreadable) {
        log_printf(env->log, LOG_LEVEL_WARN,
                   "replication gate: the %s answer names no enrollment id "
                   "(unreadable body); the other controllers are fenced for "
                   "the identity instead of waited for",
                   gate_call_name(call));
        uint64_t rest = gw->all & ~gw->acked;
        if (rest)
            gate_give_up(gw, rest); /* may release gw */
        else
            gate_check(gw); /* nothing else to wait for: released */
        return true;
    }
    if ((call == GATE_DELETE || call == GATE_VERIFY) && gw->stale &&
        cfg->gate.source == GATE_SRC_PROBE)
        gate_read_had(gw);
    if (cfg->gate.source == GATE_SRC_PROBE)
        gate_probe_all(gw);
    if (give && cfg->gate.source == GATE_SRC_PROBE) {
        gate_give_up(gw, give); /* may release gw */
        return true;
    }
    if (gate_satisfied(gw)) {
        /* one-controller clusters and modes already met need no wait */
        gate_release(gw, false);
    }
    return true;
}

void gate_detach(struct gate_wait **handle)
{
    struct gate_wait *gw = *handle;
    if (!gw)
        return;
    *handle = NULL;
    gw->handle = NULL;
    gw->done = NULL;
    if (!gw->released) {
        gw->released = true; /* nobody to answer; keep probing for fences */
        gw->g->waiting--;
        atomic_store(gw->g->env.waiting, gw->g->waiting);
    }
    gate_maybe_finish(gw);
}

void gate_on_message(struct gate *g, const char *cid, size_t len)
{
    char id[CRYPTO_HMAC_HEX_LEN + 1];
    if (len != CRYPTO_HMAC_HEX_LEN)
        return;
    memcpy(id, cid, len);
    id[len] = '\0';
    struct list *pos, *tmp;
    list_foreach_safe(pos, tmp, &g->buckets[gate_bucket(id)]) {
        struct gate_wait *gw = list_entry(pos, struct gate_wait, link);
        if (strcmp(gw->cid, id) == 0 && !gw->redis_lost)
            gate_read(gw);
    }
}

void gate_resync(struct gate *g)
{
    struct list *pos, *tmp;
    for (int b = 0; b < GATE_BUCKETS; b++)
        list_foreach_safe(pos, tmp, &g->buckets[b]) {
            struct gate_wait *gw = list_entry(pos, struct gate_wait, link);
            if (!gw->redis_lost)
                gate_read(gw);
        }
    gate_clear_retry(g);
}

struct mgmt *gate_mgmt(struct gate *g)
{
    return g->mgmt;
}

int gate_waiting(const struct gate *g)
{
    return g->waiting;
}

static const struct config *gate_mgmt_config(void *arg)
{
    return gate_cfg(arg);
}

struct gate *gate_new(const struct gate_env *env)
{
    struct gate *g = xcalloc(1, sizeof(*g));
    g->env = *env;
    for (int b = 0; b < GATE_BUCKETS; b++) {
        list_init(&g->buckets[b]);
        list_init(&g->by_id[b]);
    }
    list_init(&g->dead);
    list_init(&g->clears);
    g->mgmt = mgmt_new(&(struct mgmt_env){.up = env->up,
                                          .log = env->log,
                                          .c = env->cluster,
                                          .config = gate_mgmt_config,
                                          .arg = g});
    return g;
}

/* The worker's Redis connections are gone (their callbacks never run):
 * every wait can go. */
void gate_free(struct gate *g)
{
    if (!g)
        return;
    struct list *n;
    for (int b = 0; b < GATE_BUCKETS; b++)
        while ((n = list_first(&g->buckets[b]))) {
            struct gate_wait *gw = list_entry(n, struct gate_wait, link);
            if (gw->handle)
                *gw->handle = NULL;
            gw->refs = 0;
            gate_wait_free(gw);
        }
    while ((n = list_pop_head(&g->dead)))
        free(list_entry(n, struct gate_wait, link));
    gate_clear_free_all(g);
    mgmt_free(g->mgmt);
    free(g);
}
