/* pipeline.c - see pipeline.h.  This file: the steps in order
 * (pipeline_run), the identity and fences, affinity lookups and learning;
 * the gate's steps are in pipeline_gate.c. */
#include "proxy/pipeline.h"
#include "proxy/pipeline_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/json.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"
#include "consistency/gate.h"
#include "io/listener.h"
#include "io/redis.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/request.h"
#include "proxy/worker.h"
#include "routing/atable.h"
#include "routing/cluster.h"
#include "routing/fence.h"
#include "routing/identity.h"
#include "routing/jwks.h"
#include "routing/ratelimit.h"

static bool pipeline_run(struct request *rq);

static uint64_t pipeline_now_s(struct request *rq)
{
    return atable_clock(&pipeline_app(rq)->affinity, util_mono_ms());
}

/* An asynchronous step finished: go on, and route when all are done. */
void pipeline_resume(struct request *rq)
{
    rq->pipe.async = true;
    if (!pipeline_run(rq) && rq->stage != STAGE_ANSWERED)
        request_reroute(rq);
}

/* The worker's Redis connection is being made: what needs it waits for
 * it (worker_redis_await), then runs again (cb). */
static bool pipeline_await_redis(struct request *rq, void (*cb)(void *))
{
    if (!worker_redis_await(rq->w, &rq->pipe.redis_wait, cb, rq))
        return false;
    rq->stage = STAGE_AFFINITY;
    return true;
}

static void pipeline_redis_ready(void *arg)
{
    pipeline_resume(arg);
}

static void pipeline_learn_ready(void *arg)
{
    struct request *rq = arg;
    if (!pipeline_learn(rq))
        request_learned(rq);
}

bool pipeline_await_step(struct request *rq, int step)
{
    if (!pipeline_await_redis(rq, pipeline_redis_ready))
        return false;
    rq->pipe.step = step; /* runs again */
    return true;
}

static void pipeline_warn_redis(struct request *rq, const char *what)
{
    struct worker *w = rq->w;
    uint64_t now = loop_now_ms(w->loop);
    if (now - w->redis_warned_ms < 10000 && w->redis_warned_ms)
        return; /* at most one line every 10 s per worker */
    w->redis_warned_ms = now;
    log_printf(w->app->log, LOG_LEVEL_WARN,
               "Redis unavailable for %s: using the local affinity cache",
               what);
}

static void pipeline_warn_learn(struct request *rq)
{
    struct worker *w = rq->w;
    uint64_t now = loop_now_ms(w->loop);
    if (w->learn_warned_ms && now - w->learn_warned_ms < 10000)
        return;
    w->learn_warned_ms = now;
    log_printf(w->app->log, LOG_LEVEL_WARN,
               "client %s learns affinity faster than "
               "routing.affinity_learn_rate: entries dropped",
               rq->ex->client_addr);
}

/* ---- identity and fences -------------------------------------------- */

static void pipeline_keys_fetched(void *arg)
{
    pipeline_resume(arg);
}

/* Who the request speaks for: the sub of a bearer token that a
 * controller signed (routing/jwks.h), never of one it only carries.
 * Verified only when something depends on it (a gated call, fences).
 * true when it waits for the controllers' keys. */
static bool pipeline_identity(struct request *rq)
{
    struct listener_exchange *ex = rq->ex;
    struct app *a = pipeline_app(rq);
    struct fence *f = &a->fence;
    struct pipeline_state *ps = &rq->pipe;
    bool fences = atomic_load(&f->identities) > 0;
    size_t len = 0, tlen = 0;
    const char *v = identity_authorization(ex->headers, ex->n_headers, &len);
    const char *tok = jwks_bearer(v, len, &tlen);
    if (tok && (ps->gated || fences) && !rq->identity[0]) {
        ps->id_result = (int)jwks_verify(a->jwks, tok, tlen,
                                         util_wall_ms() / 1000, rq->identity,
                                         sizeof(rq->identity));
        /* a kid not seen yet: the controllers may have rotated keys */
        if (ps->id_result == JWKS_UNKNOWN_KID && !ps->keys_fetched) {
            ps->keys_fetched = true;
            if (jwks_refresh(rq->w->jwks, loop_now_ms(rq->w->loop),
                             pipeline_keys_fetched, rq)) {
                rq->stage = STAGE_AFFINITY;
                return true;
            }
        }
    }
    ps->step = STEP_AFFINITY;
    if (!fences)
        return false;
    uint64_t now = fence_now(f);
    if (rq->identity[0]) {
        char idhex[CRYPTO_HMAC_HEX_LEN + 1];
        struct fence_key k;
        gate_identity_hex(rq->cfg, rq->identity, idhex);
        fence_key_from_hex(idhex, &k);
        uint64_t mine = fence_mask(f, &k, now);
        rq->route.fenced |= mine;
        if (mine)
            request_login_hint(rq, mine);
    }
    /* a login's answer names its identity: it is checked then
     * (request_login.c); no login is kept away for someone else's fence,
     * only those from where a fenced identity's calls came lately */
    if (rq->cls.call == CALL_OIDC_AUTHORIZE)
        rq->route.fenced |= request_login_avoid(rq);
    return false;
}

/* ---- affinity -------------------------------------------------------- */

static void pipeline_set_home(struct request *rq, int node)
{
    rq->home = node;
    rq->route.home = node;
    rq->decision = DECISION_STICKY_HIT;
}

static void pipeline_aff_reply(void *arg, enum redis_status st,
                               const struct redis_reply *rep)
{
    struct request *rq = arg;
    struct app *a = pipeline_app(rq);
    rq->pipe.cmd = NULL;
    bool ok = redis_reply_ok(st, rep);
    metrics_inc(a->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_AFFINITY_GET,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    if (!ok) {
        pipeline_warn_redis(rq, "an affinity lookup");
    } else if (rep->type == REDIS_TYPE_STRING) {
        char id[CONFIG_ID_MAX];
        util_copy_whole(id, sizeof(id), rep->str, rep->len); /* never cut */
        int node = cluster_index(a->cluster, id);
        if (node >= 0) {
            uint64_t ttl_s = (rq->cfg->routing.affinity_ttl_ms + 999) / 1000;
            affinity_put(&a->affinity, &rq->pipe.aff, node,
                         pipeline_now_s(rq) + ttl_s);
            pipeline_set_home(rq, node);
        } else {
            /* held by a controller this process does not know (removed
             * from the configuration): the state is out of reach */
            rq->route.home_gone = true;
            rq->decision = DECISION_STICKY_HIT;
        }
    }
    pipeline_resume(rq);
}

bool pipeline_is_authenticate(const struct request *rq)
{
    size_t n = strcspn(rq->ex->url, "?");
    return rq->ex->method == HTTP_POST &&
           ((n == 28 &&
             memcmp(rq->ex->url, "/edge/client/v1/authenticate", 28) == 0) ||
            (n == 32 &&
             memcmp(rq->ex->url, "/edge/management/v1/authenticate", 32) ==
                 0));
}

/* Which login state does this request refer to?  false when none. */
static bool pipeline_aff_key(struct request *rq, struct affinity_key *k)
{
    struct listener_exchange *ex = rq->ex;
    const struct config *cfg = rq->cfg;
    char tok[1024];
    const char *sess = identity_session(ex->headers, ex->n_headers);
    /* a login creates a session (on the leader): an old one it still
     * carries says nothing about where it must go */
    if (sess && !pipeline_is_authenticate(rq)) {
        affinity_key(cfg->hmac_key, cfg->hmac_key_len, AFF_SESS, sess,
                     strlen(sess), k);
        return true;
    }
    if (rq->cls.call == CALL_OIDC_TOKEN &&
        identity_oidc_code(ex->body, ex->body_len, tok, sizeof(tok))) {
        affinity_key(cfg->hmac_key, cfg->hmac_key_len, AFF_CODE, tok,
                     strlen(tok), k);
        return true;
    }
    if (rq->cls.call == CALL_OIDC_LOGIN &&
        identity_oidc_request_id(ex->url, ex->body, ex->body_len, tok,
                                 sizeof(tok))) {
        affinity_key(cfg->hmac_key, cfg->hmac_key_len, AFF_OIDC, tok,
                     strlen(tok), k);
        return true;
    }
    return false;
}

/* true when a Redis lookup went out */
static bool pipeline_affinity(struct request *rq)
{
    struct app *a = pipeline_app(rq);
    struct pipeline_state *ps = &rq->pipe;
    if (!pipeline_aff_key(rq, &ps->aff))
        return false;
    ps->has_aff = true;
    int node = affinity_get(&a->affinity, &ps->aff, pipeline_now_s(rq),
                            &ps->aff_expiry);
    if (node >= 0) {
        ps->aff_hit = true;
        pipeline_set_home(rq, node);
        /* refreshed on use: locally, and in Redis, once at most half its
         * life is left (whole seconds: a TTL of 1 or 2 s refreshes too) */
        uint64_t ttl_s = (rq->cfg->routing.affinity_ttl_ms + 999) / 1000;
        uint64_t now = pipeline_now_s(rq);
        if (ps->aff_expiry <= now + (ttl_s + 1) / 2) {
            char key[AFFINITY_REDIS_KEY_MAX];
            affinity_put(&a->affinity, &ps->aff, node, now + ttl_s);
            affinity_redis_key(rq->cfg->redis.key_prefix, &ps->aff, key,
                               sizeof(key));
            redis_command(rq->w->redis, app_redis_count_cb,
                          &a->redis_counts[M_REDIS_AFFINITY_SET],
                          "PEXPIRE %s %llu", key,
                          (unsigned long long)rq->cfg->routing.affinity_ttl_ms);
        }
        return false;
    }
    if (!redis_up(rq->w->redis) && pipeline_await_step(rq, STEP_AFFINITY))
        return true;
    if (!redis_up(rq->w->redis)) {
        pipeline_warn_redis(rq, "an affinity lookup");
        metrics_inc(a->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_AFFINITY_GET,
                    M_RESULT_ERROR);
        return false;
    }
    char key[AFFINITY_REDIS_KEY_MAX];
    affinity_redis_key(rq->cfg->redis.key_prefix, &ps->aff, key, sizeof(key));
    rq->stage = STAGE_AFFINITY;
    ps->cmd = redis_command(rq->w->redis, pipeline_aff_reply, rq,
                            "GET %s", key);
    return true;
}

/* The last entry learned from an answer is in Redis (or Redis failed):
 * the answer may go.  Until then a client that takes the next step to
 * another quorumgate would find nothing there. */
static void pipeline_learned(void *arg, enum redis_status st,
                             const struct redis_reply *rep)
{
    struct request *rq = arg;
    struct app *a = pipeline_app(rq);
    bool ok = redis_reply_ok(st, rep);
    rq->pipe.cmd = NULL;
    metrics_inc(a->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_AFFINITY_SET,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    if (!ok)
        pipeline_warn_redis(rq, "storing an affinity entry");
    request_learned(rq);
}

/* Learns one entry: in the local table at once, in Redis with the
 * answer held until Redis has it when hold (the last entry learned). */
static bool pipeline_learn_one(struct request *rq, enum affinity_kind kind,
                               const char *token, size_t len, int node,
                               bool hold)
{
    struct app *a = pipeline_app(rq);
    const struct config *cfg = rq->cfg;
    struct redis *r = rq->w->redis;
    struct affinity_key k;
    char key[AFFINITY_REDIS_KEY_MAX];
    uint64_t ttl_s = (cfg->routing.affinity_ttl_ms + 999) / 1000;
    if (!len || node < 0)
        return false;
    affinity_key(cfg->hmac_key, cfg->hmac_key_len, kind, token, len, &k);
    affinity_put(&a->affinity, &k, node, pipeline_now_s(rq) + ttl_s);
    affinity_redis_key(cfg->redis.key_prefix, &k, key, sizeof(key));
    hold = hold && redis_up(r);
    struct redis_cmd *cmd = redis_command(
        r, hold ? pipeline_learned : app_redis_count_cb,
        hold ? (void *)rq : &a->redis_counts[M_REDIS_AFFINITY_SET],
        "SET %s %s PX %llu", key, a->cluster->nodes[node].id,
        (unsigned long long)cfg->routing.affinity_ttl_ms);
    if (hold)
        rq->pipe.cmd = cmd;
    return hold;
}

/* One thing an answer teaches (pipeline_learn). */
struct pipeline_learning {
    enum affinity_kind kind;
    char *tok; /* owned */
};

bool pipeline_learn(struct request *rq)
{
    struct upstream_req *up = &rq->up;
    const char *v;
    size_t len;
    /* what this answer teaches, in order; the last one holds the answer */
    struct pipeline_learning learn[4];
    int n = 0;
    char tok[1024];
    bool held = false;
    /* only what a controller minted: a 4xx answer may echo what the client
     * sent (issue 17) */
    if (!rq->ex || up->result != UPSTREAM_OK || rq->node < 0 ||
        up->status < 200 || up->status > 399)
        return false;
    /* legacy: the session lives on the controller that issued it */
    if (pipeline_is_authenticate(rq) && up->status == 200) {
        struct json *j = json_parse(up->resp_body.data, up->resp_body.len);
        const char *t = json_path_string(j, "data.token");
        if (t)
            learn[n++] = (struct pipeline_learning){AFF_SESS, xstrdup(t)};
        else if (upstream_resp_header(up, "zt-session", &v, &len))
            learn[n++] = (struct pipeline_learning){AFF_SESS, xstrndup(v, len)};
        json_free(j);
    }
    if (rq->cls.call == CALL_OIDC_AUTHORIZE ||
        rq->cls.call == CALL_OIDC_LOGIN) {
        /* OIDC: the auth request id and the code, from the controller's
         * own answers (login.go: auth-request-id; redirects) */
        /* not the auth-request-id header: login.go echoes whatever id it
         * is given (loginHandler, genericHandler), so it was never minted */
        if (upstream_resp_header(up, "Location", &v, &len)) {
            char *loc = xstrndup(v, len);
            if (identity_location_param(loc, "authRequestID", tok,
                                        sizeof(tok)) ||
                (strstr(loc, "/oidc/") &&
                 identity_location_param(loc, "id", tok, sizeof(tok))))
                learn[n++] = (struct pipeline_learning){AFF_OIDC, xstrdup(tok)};
            if (identity_location_param(loc, "code", tok, sizeof(tok)))
                learn[n++] = (struct pipeline_learning){AFF_CODE, xstrdup(tok)};
            free(loc);
        }
    }
    if (n > 0 && !redis_up(rq->w->redis) &&
        pipeline_await_redis(rq, pipeline_learn_ready)) {
        /* every quorumgate must find it: learned once Redis is there */
        for (int i = 0; i < n; i++) {
            explicit_bzero(learn[i].tok, strlen(learn[i].tok));
            free(learn[i].tok);
        }
        return true;
    }
    /* a bounded rate per client address: a loop of logins cannot fill
     * Redis with entries */
    const struct config_routing *rt = &rq->cfg->routing;
    for (int i = 0; i < n; i++) {
        if (!ratelimit_take(&rq->w->learn,
                            rq->ex->client_addr,
                            strlen(rq->ex->client_addr),
                            rt->affinity_learn_rate,
                            5.0 * rt->affinity_learn_rate,
                            loop_now_ms(rq->w->loop))) {
            pipeline_warn_learn(rq);
            explicit_bzero(learn[i].tok, strlen(learn[i].tok));
            free(learn[i].tok);
            continue;
        }
        held |= pipeline_learn_one(rq, learn[i].kind, learn[i].tok,
                                   strlen(learn[i].tok), rq->node,
                                   i == n - 1);
        explicit_bzero(learn[i].tok, strlen(learn[i].tok));
        free(learn[i].tok);
    }
    if (held)
        rq->stage = STAGE_AFFINITY;
    return held;
}

/* Runs the remaining steps; true when one went asynchronous (or answered). */
static bool pipeline_run(struct request *rq)
{
    struct pipeline_state *ps = &rq->pipe;
    while (ps->step < STEP_DONE) {
        int step = ps->step;
        switch (step) {
        case STEP_IDENTITY:
            if (pipeline_identity(rq))
                return true;
            break;
        case STEP_AFFINITY:
            ps->step = STEP_GATE_CHECK;
            if (pipeline_affinity(rq))
                return true;
            break;
        default:
            if (pipeline_gate_prepare(rq, step))
                return true;
            break;
        }
        if (rq->stage == STAGE_ANSWERED)
            return true;
    }
    if (ps->gated && !ps->slot) {
        /* before anything is sent: a refusal changes nothing */
        if (!gate_slot_take(&pipeline_app(rq)->slots, rq->cfg,
                            rq->identity, &ps->slot_bucket)) {
            metrics_inc(pipeline_app(rq)->metrics,
                        M_REPLICATION_HELD_REFUSED_TOTAL);
            request_answer_error(rq, ERR_PROXY_GATE_BUSY, NULL);
            return true;
        }
        ps->slot = true;
    }
    rq->stage = STAGE_ROUTING;
    return false;
}

bool pipeline_before_route(struct request *rq)
{
    struct pipeline_state *ps = &rq->pipe;
    int gc = pipeline_gate_call(rq->cls.call);
    ps->pre_state = -1;
    ps->id_result = -1;
    ps->unconfirmed = false;
    ps->slot = false;
    ps->before = NULL;
    ps->before_read = false;
    ps->gated = rq->cfg->gate.enabled && gc >= 0;
    ps->gcall = gc;
    ps->deadline_ms = rq->start_ms + rq->cfg->routing.leader_wait_ms;
    return pipeline_run(rq);
}

void pipeline_cancel(struct request *rq)
{
    if (rq->pipe.slot) {
        gate_slot_give(&pipeline_app(rq)->slots, rq->pipe.slot_bucket);
        rq->pipe.slot = false;
    }
    if (rq->pipe.cmd) {
        redis_cancel(rq->w->redis, rq->pipe.cmd);
        rq->pipe.cmd = NULL;
    }
    gate_before_cancel(rq->pipe.before);
    rq->pipe.before = NULL;
    jwks_cancel(rq->w->jwks, rq);
    worker_redis_unawait(&rq->pipe.redis_wait);
    gate_detach(&rq->gate);
}
