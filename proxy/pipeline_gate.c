/* pipeline_gate.c - see pipeline.h: the gate's steps of the request path
 * (the checks before a gated MFA write is sent, the identity and
 * enrollment reads, a repeated verify) and holding its answer. */
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
#include "consistency/mgmt.h"
#include "io/listener.h"
#include "io/redis.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/request.h"
#include "proxy/worker.h"
#include "retry/reconcile.h"
#include "base/nodeset.h"
#include "routing/cluster.h"
#include "routing/identity.h"
#include "routing/jwks.h"

static void pipeline_gate_warn_legacy(struct request *rq)
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

int pipeline_gate_call(enum classify_call c)
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

static void pipeline_gate_read_retry(void *arg)
{
    pipeline_resume(arg);
}

/* rq's identity is fenced on the controller its state was read on. */
static bool pipeline_gate_fenced_here(struct request *rq)
{
    return rq->identity[0] &&
           nodeset_has(request_login_fences(rq, rq->identity), rq->node);
}

static void pipeline_gate_read_done(struct upstream_req *r, void *arg)
{
    struct request *rq = arg;
    struct pipeline_state *ps = &rq->pipe;
    if (request_key_refusal(rq, rq->node, r)) {
        /* the leader refuses the token's key (routing/keyrefusal.h): its
         * minter, now the request's home, is read instead */
        request_attempt_log(rq, rq->node, "state", r->status,
                            r->duration_ns, true);
        ps->step = STEP_STATE_READ;
        pipeline_resume(rq);
        return;
    }
    ps->pre_state = RECONCILE_UNREADABLE;
    if (r->result == UPSTREAM_OK)
        ps->pre_state = reconcile_parse(r->status, r->resp_body.data,
                                        r->resp_body.len, ps->mfa_id,
                                        sizeof(ps->mfa_id), NULL);
    request_attempt_log(rq, rq->node, "state", r->status, r->duration_ns,
                        true);
    bool no_answer = r->result != UPSTREAM_OK || r->status == 429 ||
                     (r->status >= 500 && r->status <= 599);
    if (rq->home >= 0 && rq->node == rq->home && r->unreachable) {
        /* nobody can stand in for a hard home: the session is gone */
        request_answer_home_unreachable(rq, r);
        return;
    }
    bool fenced_here = !no_answer && rq->home < 0 &&
                       pipeline_gate_fenced_here(rq);
    if (!no_answer && rq->home < 0 && !fenced_here)
        /* it has them now: the call may go there (the fence was taken
         * into the route when the request came) */
        rq->route.fenced &= ~nodeset_of(rq->node);
    if (fenced_here) {
        /* the leader lacks the identity's latest MFA change (a follower
         * that lagged, just elected: bench/soak.py, v1.5.4 op 81382 read
         * an enrollment already deleted and answered a verify that was
         * never sent as a repeat): its state says nothing yet.  Read again
         * within the leader wait; after it, the state is not used (no
         * repeat, no enrollment id: the call goes out and the gate holds
         * it as when the state cannot be read) */
        if (loop_now_ms(rq->w->loop) < ps->deadline_ms) {
            ps->pre_state = -1;
            ps->step = STEP_STATE_READ;
            request_after(rq, 50, pipeline_gate_read_retry);
            return;
        }
        ps->pre_state = RECONCILE_UNREADABLE;
        ps->mfa_id[0] = '\0';
    }
    if (no_answer && loop_now_ms(rq->w->loop) < ps->deadline_ms) {
        /* the leader died or is changing (seen on a real cluster: the read
         * met the killed leader before the cluster view did): without the
         * enrollment id the gate could only fence, so read again on
         * whoever leads next, within the leader wait */
        if (r->result == UPSTREAM_CONNECT_ERROR)
            worker_report_failure(rq->w, rq->node, true);
        ps->pre_state = -1;
        ps->step = STEP_STATE_READ;
        request_after(rq, 50, pipeline_gate_read_retry);
        return;
    }
    pipeline_resume(rq);
}

/* Reads the enrollment on the leader: its id names the change for the
 * gate, and a verify already verified may be a repeat.  true = async. */
static bool pipeline_gate_read(struct request *rq)
{
    struct app *a = pipeline_app(rq);
    struct worker *w = rq->w;
    uint64_t now = loop_now_ms(w->loop);
    /* a legacy session can only be read where it lives: there even while
     * its probes mark it down (slow is not gone, routing/route.h) */
    int leader = rq->home >= 0 ? rq->home : cluster_leader(a->cluster);
    if (leader < 0 || (rq->home < 0 && !cluster_up(a->cluster, leader))) {
        if (now >= rq->pipe.deadline_ms) {
            request_answer_error(rq, ERR_CLUSTER_NO_LEADER, NULL);
            return true;
        }
        request_after(rq, 50, pipeline_gate_read_retry);
        rq->pipe.step = STEP_STATE_READ;
        return true;
    }
    char *path = request_mfa_state_path(rq);
    rq->node = leader;
    rq->stage = STAGE_RECONCILE;
    request_attempt_aux_get(rq, leader, path, rq->policy->per_try_timeout_ms,
                            pipeline_gate_read_done);
    free(path);
    return true;
}

static bool pipeline_gate_legacy_id(struct request *rq);

static void pipeline_gate_legacy_id_done(struct upstream_req *r, void *arg)
{
    struct request *rq = arg;
    request_attempt_log(rq, rq->node, "identity", r->status, r->duration_ns,
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
        if (pipeline_gate_legacy_id(rq))
            return;
    }
    if (r->result == UPSTREAM_OK && r->status == 200) {
        struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
        const char *id = json_path_string(j, "data.id");
        if (id)
            util_copy_whole(rq->identity, sizeof(rq->identity), id,
                            strlen(id)); /* too long: unknown, never cut */
        json_free(j);
    }
    if (!rq->identity[0]) {
        if (r->result == UPSTREAM_OK && r->status >= 400 && r->status < 500) {
            /* the controller refuses the credential: the call itself
             * will be refused the same way, nothing to hold */
            rq->pipe.gated = false;
        } else if (rq->home >= 0 && rq->node == rq->home &&
                   r->unreachable) {
            /* the session's home cannot be reached (twice): it is gone */
            request_answer_home_unreachable(rq, r);
            return;
        } else {
            /* no answer: the change could not be tracked; nothing was
             * sent yet, so refusing changes nothing */
            metrics_inc(pipeline_app(rq)->metrics,
                        M_REPLICATION_TRACKING_UNAVAILABLE_TOTAL);
            request_answer_error(rq, ERR_REPLICATION_TRACKING_UNAVAILABLE,
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
static bool pipeline_gate_legacy_id(struct request *rq)
{
    struct app *a = pipeline_app(rq);
    int node = rq->home >= 0 ? rq->home : cluster_leader(a->cluster);
    if (node < 0) {
        /* an election: the identity is read on whoever leads next (the
         * call itself waits for a leader too); never passed unheld */
        if (loop_now_ms(rq->w->loop) >= rq->pipe.deadline_ms) {
            request_answer_error(rq, ERR_CLUSTER_NO_LEADER, NULL);
            return true;
        }
        request_after(rq, 50, pipeline_gate_read_retry);
        rq->pipe.step = STEP_LEGACY_ID;
        return true;
    }
    const char *api = util_has_prefix(rq->ex->url, "/edge/management/")
                          ? "/edge/management/v1/current-identity"
                          : "/edge/client/v1/current-identity";
    rq->node = node;
    rq->stage = STAGE_RECONCILE;
    request_attempt_aux_get(rq, node, api, rq->policy->per_try_timeout_ms,
                            pipeline_gate_legacy_id_done);
    return true;
}

static void pipeline_gate_before_done(void *arg,
                                      const struct gate_before_result *res)
{
    struct request *rq = arg;
    rq->pipe.before = NULL;
    rq->pipe.before_res = *res;
    rq->pipe.before_read = true;
    pipeline_resume(rq);
}

/* A delete: every controller's state of the enrollment, read before the
 * delete goes out (consistency/gate_before.h).  true = async. */
static bool pipeline_gate_before(struct request *rq)
{
    struct pipeline_state *ps = &rq->pipe;
    char *path = request_mfa_state_path(rq);
    ps->before = gate_before_start(
        rq->w->gate,
        &(struct gate_before_args){
            .call = (enum gate_call)ps->gcall,
            .identity = rq->identity,
            .mfa_id = ps->mfa_id,
            .verified = ps->pre_state == RECONCILE_VERIFIED,
            .legacy = ps->legacy,
            .authorization = request_header(rq, "Authorization"),
            .state_path = path,
            .refused = request_key_refusers(rq),
            .done = pipeline_gate_before_done,
            .arg = rq,
        });
    free(path);
    if (!ps->before)
        return false;
    rq->stage = STAGE_RECONCILE;
    return true;
}

/* The gate released a held answer: what goes out is decided here. */
static void pipeline_gate_released(void *arg, const struct gate_release *rel)
{
    struct request *rq = arg;
    snprintf(rq->replication, sizeof(rq->replication), "%s",
             rel->replication);
    /* the client's next OIDC login (the usual next step after a verify)
     * starts where the change is: the controllers named pending would let
     * it in without TOTP */
    if (rel->fenced)
        request_login_hint(rq, rel->fenced);
    if (rel->fail) {
        char msg[320];
        snprintf(msg, sizeof(msg),
                 "the change committed but was not acknowledged in time "
                 "by every controller (%s)",
                 rel->replication);
        request_answer_error(rq, ERR_REPLICATION_TIMEOUT, msg);
    } else {
        request_answer_upstream(rq);
    }
}

/* Hold rq's successful answer (in rq->up) for the gate; false when it
 * cannot be held (it is then sent at once). */
static bool pipeline_gate_hold(struct request *rq, enum gate_call call,
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
            .before = rq->pipe.before_read ? &rq->pipe.before_res : NULL,
            .done = pipeline_gate_released,
            .arg = rq,
            .handle = &rq->gate,
        });
    free(path);
    return held;
}

/* A repeated verify: the record of the first one decides the answer. */
static void pipeline_gate_record(void *arg, bool ok,
                                 const struct ackstore_record *rec)
{
    struct request *rq = arg;
    struct app *a = pipeline_app(rq);
    rq->pipe.cmd = NULL;
    metrics_inc(a->metrics, M_REDIS_OPERATIONS_TOTAL, M_REDIS_GATE_READ,
                ok ? M_RESULT_OK : M_RESULT_ERROR);
    if (!ok) {
        metrics_inc(a->metrics, M_REPLICATION_TRACKING_UNAVAILABLE_TOTAL);
        request_answer_error(rq, ERR_REPLICATION_TRACKING_UNAVAILABLE, NULL);
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
        if (pipeline_gate_hold(rq, GATE_VERIFY, rq->node,
                               loop_now_ms(rq->w->loop) + left))
            return;
    }
    if (strcmp(rec->status, "timeout") == 0 && rq->cfg->gate.fail_on_timeout) {
        snprintf(rq->replication, sizeof(rq->replication), "%s",
                 rec->replication);
        request_answer_error(rq, ERR_REPLICATION_TIMEOUT, NULL);
        return;
    }
    snprintf(rq->replication, sizeof(rq->replication), "%s",
             rec->replication);
    request_answer_upstream(rq);
}

bool pipeline_gate_prepare(struct request *rq, int step)
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
            request_answer_error(rq, ERR_REPLICATION_TRACKING_UNAVAILABLE,
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
                    pipeline_gate_warn_legacy(rq);
                ps->gated = false;
                return false;
            }
        }
        if (!redis_up(rq->w->redis) &&
            pipeline_await_step(rq, STEP_GATE_CHECK))
            return true;
        if (!redis_up(rq->w->redis)) {
            metrics_inc(a->metrics, M_REPLICATION_TRACKING_UNAVAILABLE_TOTAL);
            request_answer_error(rq, ERR_REPLICATION_TRACKING_UNAVAILABLE, NULL);
            return true;
        }
        if (ps->gcall == GATE_CREATE && !ps->legacy && !ps->ask_id)
            return false; /* its id comes with its answer */
        return pipeline_gate_prepare(rq, STEP_LEGACY_ID);
    case STEP_LEGACY_ID:
        ps->step = STEP_STATE_READ;
        if (!ps->gated || !(ps->legacy || ps->ask_id) || rq->identity[0])
            return false;
        return pipeline_gate_legacy_id(rq);
    case STEP_STATE_READ:
        ps->step = STEP_BEFORE;
        if (!ps->gated || ps->gcall == GATE_CREATE || ps->pre_state >= 0)
            return false;
        return pipeline_gate_read(rq);
    case STEP_BEFORE:
        ps->step = STEP_RECORD;
        if (!ps->gated || ps->gcall == GATE_CREATE ||
            (ps->gcall == GATE_DELETE &&
             ps->pre_state != RECONCILE_VERIFIED &&
             ps->pre_state != RECONCILE_UNVERIFIED) ||
            (ps->gcall == GATE_VERIFY &&
             (ps->pre_state != RECONCILE_UNVERIFIED ||
              !(ps->legacy || request_key_refusers(rq)))))
            return false;
        return pipeline_gate_before(rq);
    case STEP_RECORD:
        ps->step = STEP_DONE;
        if (!ps->gated || ps->gcall != GATE_VERIFY ||
            ps->pre_state != RECONCILE_VERIFIED)
            return false;
        char cid[CRYPTO_HMAC_HEX_LEN + 1];
        gate_change_id(rq->cfg, rq->identity, ps->mfa_id, GATE_VERIFY, cid);
        ps->actx = (struct ackstore_ctx){.c = a->cluster,
                                         .record = pipeline_gate_record,
                                         .arg = rq};
        rq->stage = STAGE_GATE;
        ps->cmd = ackstore_read_record(rq->w->redis, rq->cfg, cid,
                                       &ps->actx);
        return true;
    default:
        return false;
    }
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
        util_copy_whole(ps->mfa_id, sizeof(ps->mfa_id), id,
                        id ? strlen(id) : 0); /* too long: unreadable */
        json_free(j);
    }
    rq->stage = STAGE_GATE;
    return pipeline_gate_hold(rq, (enum gate_call)ps->gcall, rq->node, 0);
}

