/* pipeline.c - see pipeline.h. */
#include "proxy/pipeline.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consistency/gate.h"
#include "consistency/mgmt.h"
#include "io/redis.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/app_ext.h"
#include "base/json.h"
#include "io/listener.h"
#include "base/log.h"
#include "base/loop.h"
#include "proxy/request.h"
#include "base/util.h"
#include "proxy/worker.h"
#include "retry/reconcile.h"
#include "routing/atable.h"
#include "routing/cluster.h"
#include "routing/fence.h"
#include "routing/identity.h"
#include "routing/jwks.h"
#include "routing/ratelimit.h"

enum pipeline_step {
    STEP_IDENTITY = 0,
    STEP_AFFINITY,
    STEP_GATE_CHECK,
    STEP_LEGACY_ID,
    STEP_STATE_READ,
    STEP_RECORD,
    STEP_DONE,
};

static bool pipeline_run(struct request *rq);

static struct app *pipeline_app(struct request *rq)
{
    return rq->w->app;
}

static uint64_t pipeline_now_s(struct request *rq)
{
    return atable_clock(app_ext_affinity(pipeline_app(rq)), util_mono_ms());
}

/* An asynchronous step finished: go on, and route when all are done. */
static void pipeline_resume(struct request *rq)
{
    rq->pipe.async = true;
    if (!pipeline_run(rq) && rq->stage != STAGE_ANSWERED)
        request_reroute(rq);
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

static void pipeline_warn_legacy(struct request *rq)
{
    struct worker *w = rq->w;
    uint64_t now = loop_now_ms(w->loop);
    if (w->legacy_warned_ms && now - w->legacy_warned_ms < 60000)
        return;
    w->legacy_warned_ms = now;
    log_printf(w->app->log, LOG_LEVEL_WARN,
               "replication gate: an MFA call made with a legacy zt-session "
               "is not held: configure gate.management (or gate.source: "
               "events) to confirm it on the other controllers");
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
    struct fence *f = app_ext_fence(a);
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
        rq->route.fenced |= fence_mask(f, &k, now);
    }
    if (rq->cls.call == CALL_OIDC_AUTHORIZE ||
        rq->cls.call == CALL_AUTHENTICATE)
        rq->route.fenced |= fence_login_mask(f, now);
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
        snprintf(id, sizeof(id), "%.*s", (int)rep->len, rep->str);
        int node = cluster_index(a->cluster, id);
        if (node >= 0) {
            uint64_t ttl_s = (rq->cfg->routing.affinity_ttl_ms + 999) / 1000;
            affinity_put(app_ext_affinity(a), &rq->pipe.aff, node,
                         pipeline_now_s(rq) + ttl_s);
            pipeline_set_home(rq, node);
        }
    }
    pipeline_resume(rq);
}

static bool pipeline_is_authenticate(const struct request *rq)
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
    int node = affinity_get(app_ext_affinity(a), &ps->aff, pipeline_now_s(rq),
                            &ps->aff_expiry);
    if (node >= 0) {
        ps->aff_hit = true;
        pipeline_set_home(rq, node);
        /* refreshed on use: locally, and in Redis, once at most half its
         * life is left (whole seconds: a TTL of 1 or 2 s refreshes too) */
        uint64_t ttl_s = (rq->cfg->routing.affinity_ttl_ms + 999) / 1000;
        uint64_t now = pipeline_now_s(rq);
        if (ps->aff_expiry <= now + (ttl_s + 1) / 2) {
            char key[160];
            affinity_put(app_ext_affinity(a), &ps->aff, node, now + ttl_s);
            affinity_redis_key(rq->cfg->redis.key_prefix, &ps->aff, key,
                               sizeof(key));
            redis_command(rq->w->redis, app_ext_count_cb,
                          app_ext_count_ctx(a, M_REDIS_AFFINITY_SET),
                          "PEXPIRE %s %llu", key,
                          (unsigned long long)rq->cfg->routing.affinity_ttl_ms);
        }
        return false;
    }
    if (!redis_up(rq->w->redis)) {
        pipeline_warn_redis(rq, "an affinity lookup");
        metrics_inc(a->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_AFFINITY_GET,
                    M_RESULT_ERROR);
        return false;
    }
    char key[160];
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
    char key[160];
    uint64_t ttl_s = (cfg->routing.affinity_ttl_ms + 999) / 1000;
    if (!len || node < 0)
        return false;
    affinity_key(cfg->hmac_key, cfg->hmac_key_len, kind, token, len, &k);
    affinity_put(app_ext_affinity(a), &k, node, pipeline_now_s(rq) + ttl_s);
    affinity_redis_key(cfg->redis.key_prefix, &k, key, sizeof(key));
    hold = hold && redis_up(r);
    struct redis_cmd *cmd = redis_command(
        r, hold ? pipeline_learned : app_ext_count_cb,
        hold ? (void *)rq : app_ext_count_ctx(a, M_REDIS_AFFINITY_SET),
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

/* ---- gate preparation ------------------------------------------------- */

static int pipeline_gate_call(enum classify_call c)
{
    switch (c) {
    case CALL_MFA_CREATE:
        return GATE_CREATE;
    case CALL_MFA_VERIFY:
        return GATE_VERIFY;
    case CALL_MFA_DELETE:
        return GATE_DELETE;
    default:
        return -1;
    }
}

static void pipeline_state_read_retry(void *arg)
{
    pipeline_resume(arg);
}

static void pipeline_state_read_done(struct upstream_req *r, void *arg)
{
    struct request *rq = arg;
    struct pipeline_state *ps = &rq->pipe;
    if (request_key_refusal(rq, rq->node, r)) {
        /* the leader refuses the token's key (routing/keyrefusal.h): its
         * minter, now the request's home, is read instead */
        request_log_attempt(rq, rq->node, "state", r->status, r->duration_ns,
                            true);
        ps->step = STEP_STATE_READ;
        pipeline_resume(rq);
        return;
    }
    ps->pre_state = RECONCILE_UNREADABLE;
    if (r->result == UPSTREAM_OK)
        ps->pre_state = reconcile_parse(r->status, r->resp_body.data,
                                        r->resp_body.len, ps->mfa_id,
                                        sizeof(ps->mfa_id), NULL);
    request_log_attempt(rq, rq->node, "state", r->status, r->duration_ns,
                        true);
    bool no_answer = r->result != UPSTREAM_OK || r->status == 429 ||
                     (r->status >= 500 && r->status <= 599);
    if (no_answer && loop_now_ms(rq->w->loop) < ps->deadline_ms) {
        /* the leader died or is changing (seen on a real cluster: the read
         * met the killed leader before the cluster view did): without the
         * enrollment id the gate could only fence, so read again on
         * whoever leads next, within the leader wait */
        if (r->result == UPSTREAM_CONNECT_ERROR)
            app_report_failure(pipeline_app(rq), rq->node, true);
        ps->pre_state = -1;
        ps->step = STEP_STATE_READ;
        request_after(rq, 50, pipeline_state_read_retry);
        return;
    }
    pipeline_resume(rq);
}

/* Reads the enrollment on the leader: its id names the change for the
 * gate, and a verify already verified may be a repeat.  true = async. */
static bool pipeline_state_read(struct request *rq)
{
    struct app *a = pipeline_app(rq);
    struct worker *w = rq->w;
    uint64_t now = loop_now_ms(w->loop);
    /* a legacy session can only be read where it lives */
    int leader = rq->home >= 0 ? rq->home : cluster_leader(a->cluster);
    if (leader < 0 || !cluster_up(a->cluster, leader)) {
        if (now >= rq->pipe.deadline_ms) {
            request_answer_error(rq, 503, "CLUSTER_NO_LEADER",
                                 "Cluster has no leader, unable to make "
                                 "model updates.");
            return true;
        }
        request_after(rq, 50, pipeline_state_read_retry);
        rq->pipe.step = STEP_STATE_READ;
        return true;
    }
    char *path = request_mfa_state_path(rq);
    rq->node = leader;
    rq->stage = STAGE_RECONCILE;
    request_aux_get(rq, leader, path, rq->policy->per_try_timeout_ms,
                    pipeline_state_read_done);
    free(path);
    return true;
}

static bool pipeline_legacy_id(struct request *rq);

static void pipeline_legacy_id_done(struct upstream_req *r, void *arg)
{
    struct request *rq = arg;
    request_log_attempt(rq, rq->node, "identity", r->status, r->duration_ns,
                        true);
    if (r->result != UPSTREAM_OK && !rq->pipe.id_retried) {
        /* No answer at all (seen in the docker stack right after a
         * cluster view change: a reused connection failed within 1 ms):
         * once more on a new connection, before the write goes out. */
        log_printf(rq->w->app->log, LOG_LEVEL_WARN,
                   "identity read for a gated MFA call failed (%s: %s); "
                   "retrying on a new connection",
                   upstream_result_name(r->result), r->error);
        rq->pipe.id_retried = true;
        rq->aux_fresh = true;
        if (pipeline_legacy_id(rq))
            return;
    }
    if (r->result == UPSTREAM_OK && r->status == 200) {
        struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
        const char *id = json_path_string(j, "data.id");
        if (id)
            snprintf(rq->identity, sizeof(rq->identity), "%s", id);
        json_free(j);
    }
    if (!rq->identity[0]) {
        if (r->result == UPSTREAM_OK && r->status >= 400 && r->status < 500) {
            /* the controller refuses the credential: the call itself
             * will be refused the same way, nothing to hold */
            rq->pipe.gated = false;
        } else {
            /* no answer: the change could not be tracked; nothing was
             * sent yet, so refusing changes nothing */
            metrics_inc(pipeline_app(rq)->metrics,
                        M_REPLICATION_TRACKING_UNAVAILABLE_TOTAL);
            request_answer_error(rq, 503, "REPLICATION_TRACKING_UNAVAILABLE",
                                 "the identity behind this MFA change could "
                                 "not be read; nothing was changed, retry "
                                 "later");
            return;
        }
    }
    pipeline_resume(rq);
}

/* A legacy session, or a bearer token quorumgate could not verify: ask the
 * controller who it is (GET current-identity with the call's own credential). */
static bool pipeline_legacy_id(struct request *rq)
{
    struct app *a = pipeline_app(rq);
    int node = rq->home >= 0 ? rq->home : cluster_leader(a->cluster);
    if (node < 0) {
        /* an election: the identity is read on whoever leads next (the
         * call itself waits for a leader too); never passed unheld */
        if (loop_now_ms(rq->w->loop) >= rq->pipe.deadline_ms) {
            request_answer_error(rq, 503, "CLUSTER_NO_LEADER",
                                 "Cluster has no leader, unable to make "
                                 "model updates.");
            return true;
        }
        request_after(rq, 50, pipeline_state_read_retry);
        rq->pipe.step = STEP_LEGACY_ID;
        return true;
    }
    const char *api = util_has_prefix(rq->ex->url, "/edge/management/")
                          ? "/edge/management/v1/current-identity"
                          : "/edge/client/v1/current-identity";
    rq->node = node;
    rq->stage = STAGE_RECONCILE;
    request_aux_get(rq, node, api, rq->policy->per_try_timeout_ms,
                    pipeline_legacy_id_done);
    return true;
}

/* The gate released a held answer: what goes out is decided here. */
static void pipeline_gate_released(void *arg, const struct gate_release *rel)
{
    struct request *rq = arg;
    snprintf(rq->replication, sizeof(rq->replication), "%s",
             rel->replication);
    if (rel->fail) {
        char msg[320];
        snprintf(msg, sizeof(msg),
                 "the change committed but was not acknowledged in time "
                 "by every controller (%s)",
                 rel->replication);
        request_answer_error(rq, 504, "REPLICATION_TIMEOUT", msg);
    } else {
        request_answer_upstream(rq);
    }
}

/* Hold rq's successful answer (in rq->up) for the gate; false when it
 * cannot be held (it is then sent at once). */
static bool pipeline_hold(struct request *rq, enum gate_call call,
                          int answered_by, uint64_t deadline_ms)
{
    char *path = request_mfa_state_path(rq);
    bool held = gate_hold(
        rq->w->gate,
        &(struct gate_hold_args){
            .call = call,
            .identity = rq->identity,
            .mfa_id = rq->pipe.mfa_id,
            .answered_by = answered_by,
            .deadline_ms = deadline_ms,
            .legacy = rq->pipe.legacy,
            .authorization = request_header(rq, "Authorization"),
            .state_path = path,
            .refused = request_key_refusers(rq),
            .done = pipeline_gate_released,
            .arg = rq,
            .handle = &rq->gate,
        });
    free(path);
    return held;
}

/* A repeated verify: the record of the first one decides the answer. */
static void pipeline_record(void *arg, bool ok,
                            const struct ackstore_record *rec)
{
    struct request *rq = arg;
    struct app *a = pipeline_app(rq);
    rq->pipe.cmd = NULL;
    metrics_inc(a->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_GATE_READ,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    if (!ok) {
        metrics_inc(a->metrics, M_REPLICATION_TRACKING_UNAVAILABLE_TOTAL);
        request_answer_error(rq, 503, "REPLICATION_TRACKING_UNAVAILABLE",
                             "replication tracking (Redis) is unavailable; "
                             "nothing was changed, retry later");
        return;
    }
    if (!rec->exists) {
        pipeline_resume(rq); /* not ours: the controller answers (404) */
        return;
    }
    /* the verify happened (it is verified on the leader): answer as the
     * first verify was answered, or wait with it if it is still held */
    rq->up.result = UPSTREAM_OK;
    rq->up.status = 200;
    rq->up.n_resp_hdrs = 0;
    buf_reset(&rq->up.resp_hdr_data);
    buf_reset(&rq->up.resp_body);
    buf_puts(&rq->up.resp_body, "{\"data\":{},\"meta\":{}}");
    upstream_resp_header_add(&rq->up, "Content-Type", "application/json");
    rq->reconciled = "repeat";
    if (strcmp(rec->status, "pending") == 0) {
        uint64_t now_wall = util_wall_ms();
        uint64_t left = rec->deadline_wall_ms > now_wall
                            ? rec->deadline_wall_ms - now_wall
                            : 0;
        rq->stage = STAGE_GATE;
        /* rq->node, the leader, just showed it verified: it has it */
        if (pipeline_hold(rq, GATE_VERIFY, rq->node,
                          loop_now_ms(rq->w->loop) + left))
            return;
    }
    if (strcmp(rec->status, "timeout") == 0 && rq->cfg->gate.fail_on_timeout) {
        snprintf(rq->replication, sizeof(rq->replication), "%s",
                 rec->replication);
        request_answer_error(rq, 504, "REPLICATION_TIMEOUT",
                             "the change committed but was not acknowledged "
                             "in time by every controller");
        return;
    }
    snprintf(rq->replication, sizeof(rq->replication), "%s",
             rec->replication);
    request_answer_upstream(rq);
}

static bool pipeline_gate_prepare(struct request *rq, int step)
{
    struct app *a = pipeline_app(rq);
    struct pipeline_state *ps = &rq->pipe;
    switch (step) {
    case STEP_GATE_CHECK:
        ps->step = STEP_LEGACY_ID;
        if (!ps->gated)
            return false;
        if (!rq->identity[0] && ps->id_result == JWKS_UNKNOWN_KID &&
            jwks_nodes_loaded(a->jwks) == 0) {
            /* a bearer token whose signer cannot be known: no controller
             * published its keys (all unreachable?) */
            request_answer_error(rq, 503, "REPLICATION_TRACKING_UNAVAILABLE",
                                 "the controllers' token keys could not be "
                                 "read; nothing was changed, retry later");
            return true;
        }
        if (!rq->identity[0] && ps->id_result >= 0) {
            /* a bearer token quorumgate could not verify (a key it cannot
             * fetch now, say): never pass unheld; ask the controller whose
             * token it is, with the token itself */
            ps->ask_id = true;
        } else if (!rq->identity[0]) {
            if (!identity_session(rq->ex->headers, rq->ex->n_headers)) {
                ps->gated = false; /* no credential: the controller says 401 */
                return false;
            }
            ps->legacy = true;
            if (rq->cfg->gate.source == GATE_SRC_PROBE &&
                !mgmt_configured(gate_mgmt(rq->w->gate)) &&
                ps->gcall != GATE_CREATE) {
                /* nothing to confirm the change on other controllers with:
                 * see README, "Legacy sessions" (the configuration allows
                 * it only with gate.legacy_sessions: unconfirmed, or with
                 * one controller) */
                if (rq->cfg->gate.legacy_sessions == GATE_LEGACY_UNCONFIRMED)
                    ps->unconfirmed = true;
                else
                    pipeline_warn_legacy(rq);
                ps->gated = false;
                return false;
            }
        }
        if (!redis_up(rq->w->redis)) {
            metrics_inc(a->metrics, M_REPLICATION_TRACKING_UNAVAILABLE_TOTAL);
            request_answer_error(rq, 503, "REPLICATION_TRACKING_UNAVAILABLE",
                                 "replication tracking (Redis) is "
                                 "unavailable; nothing was changed, retry "
                                 "later");
            return true;
        }
        if (ps->gcall == GATE_CREATE && !ps->legacy && !ps->ask_id)
            return false; /* its id comes with its answer */
        return pipeline_gate_prepare(rq, STEP_LEGACY_ID);
    case STEP_LEGACY_ID:
        ps->step = STEP_STATE_READ;
        if (!ps->gated || !(ps->legacy || ps->ask_id) || rq->identity[0])
            return false;
        return pipeline_legacy_id(rq);
    case STEP_STATE_READ:
        ps->step = STEP_RECORD;
        if (!ps->gated || ps->gcall == GATE_CREATE || ps->pre_state >= 0)
            return false;
        return pipeline_state_read(rq);
    case STEP_RECORD:
        ps->step = STEP_DONE;
        if (!ps->gated || ps->gcall != GATE_VERIFY ||
            ps->pre_state != RECONCILE_VERIFIED)
            return false;
        char cid[CRYPTO_HMAC_HEX_LEN + 1];
        gate_change_id(rq->cfg, rq->identity, ps->mfa_id, GATE_VERIFY, cid);
        ps->actx = (struct ackstore_ctx){.c = a->cluster,
                                         .record = pipeline_record,
                                         .arg = rq};
        rq->stage = STAGE_GATE;
        ps->cmd = ackstore_read_record(rq->w->redis, rq->cfg, cid,
                                       &ps->actx);
        return true;
    default:
        return false;
    }
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
        if (!gate_slot_take(app_ext_slots(pipeline_app(rq)), rq->cfg,
                            rq->identity, &ps->slot_bucket)) {
            metrics_inc(pipeline_app(rq)->metrics,
                        M_REPLICATION_HELD_REFUSED_TOTAL);
            request_answer_error(rq, 503, "PROXY_GATE_BUSY",
                                 "too many MFA changes are waiting for "
                                 "replication (gate.max_held / "
                                 "gate.max_held_per_identity); nothing was "
                                 "changed, retry later");
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
    ps->gated = rq->cfg->gate.enabled && gc >= 0;
    ps->gcall = gc;
    ps->deadline_ms = rq->start_ms + rq->cfg->routing.leader_wait_ms;
    return pipeline_run(rq);
}

bool pipeline_gate(struct request *rq)
{
    struct pipeline_state *ps = &rq->pipe;
    if ((ps->unconfirmed || rq->cls.totp_write != CALL_OTHER) &&
        rq->up.status >= 200 &&
        rq->up.status <= 299) {
        /* passed unheld by choice: say so, and count it */
        snprintf(rq->replication, sizeof(rq->replication), "unconfirmed");
        /* an OIDC login's TOTP enrollment names no identity quorumgate
         * can confirm it for (its auth request is the controller's) */
        int call = rq->cls.totp_write != CALL_OTHER
                       ? pipeline_gate_call(rq->cls.totp_write)
                       : ps->gcall;
        metrics_inc(pipeline_app(rq)->metrics, M_REPLICATION_UNCONFIRMED_TOTAL,
                    (enum metrics_mfa_call)call);
        return false;
    }
    if (!ps->gated || rq->up.status < 200 || rq->up.status > 299)
        return false;
    if (ps->gcall == GATE_CREATE) {
        struct json *j = json_parse(rq->up.resp_body.data,
                                    rq->up.resp_body.len);
        const char *id = json_path_string(j, "data.id");
        snprintf(ps->mfa_id, sizeof(ps->mfa_id), "%s", id ? id : "");
        json_free(j);
    }
    rq->stage = STAGE_GATE;
    return pipeline_hold(rq, (enum gate_call)ps->gcall, rq->node, 0);
}

void pipeline_cancel(struct request *rq)
{
    if (rq->pipe.slot) {
        gate_slot_give(app_ext_slots(pipeline_app(rq)), rq->pipe.slot_bucket);
        rq->pipe.slot = false;
    }
    if (rq->pipe.cmd) {
        redis_cancel(rq->w->redis, rq->pipe.cmd);
        rq->pipe.cmd = NULL;
    }
    jwks_cancel(rq->w->jwks, rq);
    gate_detach(&rq->gate);
}
