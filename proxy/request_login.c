/* request_login.c - see request_impl.h: logins answered by a controller
 * fenced for the identity that logged in (issue 17).  Fences are per
 * identity: a login does not say who logs in until it is answered, so the
 * answer is checked instead of keeping every login away from controllers
 * fenced for anyone.  A legacy login answered by a controller that lacks
 * its identity's latest MFA change is discarded and sent once to one that
 * is not fenced for it (a login only creates a session: the unused one
 * expires on the lagging controller).  An OIDC login's token answer
 * (authorization-code grant) whose access token names an identity fenced
 * on the controller that minted it is refused with 503 and the client's
 * address noted (fence hints), so that its next login starts elsewhere.
 *
 * The identity's fence on that controller may have been lifted between
 * the password step it answered without asking for TOTP (it lacked the
 * verify then) and the token step (it has it now): the controller does
 * not check again -- an OIDC token's session is MFA-complete by its amr
 * claim alone, never "required" (controller/env/appenv.go, the API
 * session built from the claims: MfaRequired false).  So a login whose
 * answer does not say "totp" (the amr of its ID token: the access token
 * carries none, tests/realcluster/OBSERVATIONS.md), minted by a controller
 * fenced for someone within an auth request's life, is passed only once that
 * controller shows the
 * identity without a verified enrollment (GET .../current-identity/mfa
 * with that token); otherwise it is refused the same way (bench/soak.py,
 * issue 18: the token of such a login was issued after the fence went). */
#include "proxy/request.h"
#include "proxy/request_impl.h"

#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"

#include "base/crypto.h"
#include "base/json.h"
#include "base/nodeset.h"
#include "consistency/gate.h"
#include "io/listener.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/pipeline.h"
#include "routing/cluster.h"
#include "routing/fence.h"
#include "routing/identity.h"
#include "routing/jwks.h"
#include "proxy/worker.h"

uint64_t request_login_fences(struct request *rq, const char *identity)
{
    struct fence *f = &request_app(rq)->fence;
    char idhex[CRYPTO_HMAC_HEX_LEN + 1];
    struct fence_key k = {0};
    gate_identity_hex(rq->cfg, identity, idhex);
    fence_key_from_hex(idhex, &k);
    return fence_mask(f, &k, fence_now(f));
}

static uint64_t request_login_up(const struct cluster *c)
{
    uint64_t m = 0;
    for (int i = 0; i < c->n && i < 64; i++)
        if (cluster_up(c, i))
            m |= nodeset_of(i);
    return m;
}

/* The fence-table key of the request's client address (its HMAC, as
 * identities are kept: addresses are no secret, but need not be kept). */
static void request_login_addr_key(const struct request *rq,
                                   struct fence_key *k)
{
    char *buf = xasprintf("client|%s", rq->ex->client_addr);
    char hex[CRYPTO_HMAC_HEX_LEN + 1];
    crypto_hmac_hex(rq->cfg->hmac_key, rq->cfg->hmac_key_len, buf,
                    strlen(buf), hex);
    free(buf);
    k->check = 0;
    fence_key_from_hex(hex, k);
}

void request_login_hint(struct request *rq, uint64_t mask)
{
    struct fence *f = &request_app(rq)->fence;
    struct fence_key k;
    uint64_t now = fence_now(f);
    uint64_t ttl_s = (rq->cfg->gate.fence_ttl_ms + 999) / 1000;
    if (!rq->ex || !mask)
        return;
    request_login_addr_key(rq, &k);
    /* most calls find their hint there already: no write */
    if ((fence_hint_mask(f, &k, now) & mask) == mask && ttl_s > 1 &&
        atable_get(&f->hints, k.fp, now + ttl_s / 2, &(uint32_t){0}, NULL))
        return;
    fence_hint_add(f, &k, mask, now + ttl_s);
}

uint64_t request_login_avoid(struct request *rq)
{
    struct fence *f = &request_app(rq)->fence;
    struct fence_key k;
    if (!rq->ex || atomic_load(&f->identities) == 0)
        return 0;
    request_login_addr_key(rq, &k);
    return fence_hint_mask(f, &k, fence_now(f));
}

/* An answer never passed on: its session or tokens are not kept in
 * memory either (headers included: zt-session). */
static void request_login_discard(struct upstream_req *r)
{
    buf_wipe(&r->resp_body);
    buf_wipe(&r->resp_hdr_data);
    r->n_resp_hdrs = 0;
}

/* An auth request (and its code) lives at most 10 minutes on the
 * controller that holds it, removed by a sweep every 10 s
 * (controller/oidc_auth/storage.go HybridStorage.start and Clean): a
 * login whose password step a fenced controller answered ends (or
 * expires) within this long after the fence went. */
#define LOGIN_AUTH_REQUEST_LIFE_S 620

/* The state read of a token without TOTP (the controller's client API). */
#define LOGIN_MFA_PATH "/edge/client/v1/current-identity/mfa"

/* Refuses the token answer r of node (a retry from the client's address
 * avoids fenced, when not 0). */
static void request_login_refuse(struct request *rq, int node,
                                 struct upstream_req *r, uint64_t fenced)
{
    metrics_inc(request_app(rq)->metrics, M_LOGIN_TOKENS_REFUSED_TOTAL,
                node);
    if (fenced)
        request_login_hint(rq, fenced); /* the retry starts elsewhere */
    request_login_discard(r);
    request_answer_error(rq, ERR_REPLICATION_LOGIN_FENCED,
                         "the controller that answered this login lacks the "
                         "identity's latest MFA change; log in again");
}

/* The minter's answer to "which enrollment does this token's identity
 * have": none (404) or an unverified one passes the token. */
static void request_login_mfa_read(struct upstream_req *r, void *arg)
{
    struct request *rq = arg;
    struct app *a = request_app(rq);
    bool verified = false, none = false;
    request_aux_auth_free(rq);
    if (r->result == UPSTREAM_OK && r->status == 404) {
        none = true;
    } else if (r->result == UPSTREAM_OK && r->status == 200) {
        struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
        none = json_bool(json_path(j, "data.isVerified"), &verified) &&
               !verified;
        json_free(j);
    }
    request_attempt_log(rq, rq->aux_node,
                        none       ? "no_mfa"
                        : verified ? "mfa_verified"
                                   : "unreadable",
                        r->status, r->duration_ns, true);
    rq->stage = STAGE_ATTEMPT;
    if (none) {
        if (!request_login_fenced(rq, rq->node, &rq->up))
            request_attempt_answered(rq);
        return;
    }
    if (!verified)
        log_printf(a->log, LOG_LEVEL_WARN,
                   "the MFA state of a login's identity could not be read "
                   "on %s (%s, status %d): its token without TOTP refused",
                   a->cluster->nodes[rq->aux_node].id,
                   upstream_result_name(r->result), r->status);
    request_login_refuse(rq, rq->node, &rq->up, 0);
}

/* The token answer j says the login's TOTP step ran: the amr of its ID
 * token (the controller's own answer, from the same key as the access
 * token), else of the access token. */
static bool request_login_had_totp(const struct json *j, const char *tok)
{
    const char *idt = json_string(json_get(j, "id_token"));
    if (idt && *idt)
        return jwks_claim_lists(idt, strlen(idt), "amr", "totp");
    return jwks_claim_lists(tok, strlen(tok), "amr", "totp");
}

/* A verified token of a login without TOTP (answer j), minted by node
 * lately fenced for someone: read the identity's enrollment there (true:
 * the read is out). */
static bool request_login_read_mfa(struct request *rq, int node,
                                   const struct json *j, const char *tok)
{
    struct fence *f = &request_app(rq)->fence;
    uint64_t now = loop_now_ms(rq->w->loop);
    if (rq->amr_checked ||
        !fence_node_recent(f, node, fence_now(f), LOGIN_AUTH_REQUEST_LIFE_S) ||
        request_login_had_totp(j, tok))
        return false;
    uint64_t left = rq->deadline_ms > now ? rq->deadline_ms - now : 1;
    uint64_t per_try = rq->policy->per_try_timeout_ms;
    rq->amr_checked = true;
    rq->aux_auth = xasprintf("Authorization: Bearer %s", tok);
    rq->aux_lines[0] = "Accept: application/json";
    rq->aux_lines[1] = rq->aux_auth;
    rq->stage = STAGE_RECONCILE;
    request_attempt_aux_get_as(rq, node, LOGIN_MFA_PATH, rq->aux_lines, 2,
                               per_try && per_try < left ? per_try : left,
                               request_login_mfa_read);
    return true;
}

static void request_login_keys_fetched(void *arg)
{
    struct request *rq = arg;
    rq->stage = STAGE_ATTEMPT;
    if (!request_login_fenced(rq, rq->node, &rq->up))
        request_attempt_answered(rq);
}

/* Wipes a string the tree owns (a token read from an answer). */
static void request_login_wipe(struct json *j, const char *key)
{
    const char *v = json_string(json_get(j, key));
    if (v)
        explicit_bzero((char *)v, strlen(v));
}

/* An OIDC token answer to an authorization-code grant: true when handled
 * (refused: its identity is fenced on node; or waiting for keys). */
static bool request_login_token(struct request *rq, int node,
                                struct upstream_req *r)
{
    struct app *a = request_app(rq);
    struct listener_exchange *ex = rq->ex;
    char code[1024], sub[128];
    uint64_t fenced = 0;
    bool handled = false;
    if (rq->cls.call != CALL_OIDC_TOKEN ||
        !identity_oidc_code(ex->body, ex->body_len, code, sizeof(code)))
        return false;
    explicit_bzero(code, sizeof(code));
    struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
    const char *tok = json_string(json_get(j, "access_token"));
    enum jwks_result v = JWKS_MALFORMED;
    if (tok)
        v = jwks_verify(a->jwks, tok, strlen(tok), util_wall_ms() / 1000, sub,
                        sizeof(sub));
    if (v == JWKS_UNKNOWN_KID && !rq->key_fetched) {
        /* a key not seen yet (a new controller certificate): fetch them */
        rq->key_fetched = true;
        if (jwks_refresh(rq->w->jwks, loop_now_ms(rq->w->loop),
                         request_login_keys_fetched, rq)) {
            rq->stage = STAGE_RECONCILE;
            handled = true;
            goto out;
        }
    }
    if (v == JWKS_VERIFIED)
        fenced = request_login_fences(rq, sub);
    else if (tok)
        /* the controller's own answer with a token nobody's keys verify:
         * who it names cannot be known, so it is not passed either */
        log_printf(a->log, LOG_LEVEL_WARN,
                   "a token answer of %s could not be verified (result %d) "
                   "while fences are in place: refused",
                   a->cluster->nodes[node].id, (int)v);
    if (!nodeset_has(fenced, node) && (v == JWKS_VERIFIED || !tok)) {
        handled =
            v == JWKS_VERIFIED && request_login_read_mfa(rq, node, j, tok);
        goto out;
    }
    request_login_refuse(rq, node, r, fenced);
    handled = true;
out:
    request_login_wipe(j, "access_token");
    request_login_wipe(j, "refresh_token");
    request_login_wipe(j, "id_token");
    json_free(j);
    explicit_bzero(sub, sizeof(sub));
    return handled;
}

bool request_login_fenced(struct request *rq, int node,
                          struct upstream_req *r)
{
    struct app *a = request_app(rq);
    uint64_t fenced = 0;
    if (!rq->ex || r->result != UPSTREAM_OK || r->status != 200)
        return false;
    if (rq->cls.call == CALL_OIDC_TOKEN) {
        /* a fence lifted lately may have let its password step through */
        if (atomic_load(&a->fence.identities) == 0 &&
            !fence_node_recent(&a->fence, node, fence_now(&a->fence),
                               LOGIN_AUTH_REQUEST_LIFE_S))
            return false;
        return request_login_token(rq, node, r);
    }
    if (atomic_load(&a->fence.identities) == 0 ||
        !pipeline_is_authenticate(rq))
        return false;
    struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
    const char *id = json_path_string(j, "data.identity.id");
    if (!id)
        id = json_path_string(j, "data.identityId");
    if (id)
        fenced = request_login_fences(rq, id);
    json_free(j);
    if (!nodeset_has(fenced, node))
        return false;
    /* the session it carries is never used */
    request_login_discard(r);
    metrics_inc(a->metrics, M_LOGINS_STEERED_TOTAL, node);
    rq->route.fenced |= fenced;
    if (rq->login_resent ||
        !(request_login_up(a->cluster) & ~fenced & ~nodeset_of(node))) {
        request_answer_error(rq, ERR_REPLICATION_LOGIN_FENCED, NULL);
        return true;
    }
    rq->login_resent = true;
    request_reroute(rq);
    return true;
}
