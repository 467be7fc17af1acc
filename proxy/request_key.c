/* request_key.c - see request.h: tokens a controller refuses
 * (routing/keyrefusal.h).  A call whose valid bearer token a controller
 * refused in its auth layer is sent again to the token's minter; the
 * minter's tokens go there first while such refusals are remembered. */
#include "proxy/request.h"
#include "proxy/request_impl.h"

#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"
#include "io/listener.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "proxy/worker.h"
#include "routing/cluster.h"
#include "routing/identity.h"
#include "routing/jwks.h"
#include "routing/keyrefusal.h"

/* The call's bearer token, or NULL (a zt-session decides where it goes). */
static const char *request_key_bearer(const struct request *rq, size_t *len)
{
    size_t vlen = 0;
    if (!rq->ex || identity_session(rq->ex->headers, rq->ex->n_headers))
        return NULL;
    const char *v = identity_authorization(rq->ex->headers,
                                           rq->ex->n_headers, &vlen);
    return jwks_bearer(v, vlen, len);
}

void request_key_home(struct request *rq)
{
    struct app *a = request_app(rq);
    uint64_t now = util_mono_ms();
    size_t len = 0;
    if (!keyrefusal_any(&a->keyrefusal, now))
        return; /* the common case: no member refuses another's tokens */
    const char *tok = request_key_bearer(rq, &len);
    int minter = tok ? keyrefusal_minter(a->jwks, tok, len) : -1;
    if (minter < 0 || !keyrefusal_mask(&a->keyrefusal, minter, now) ||
        !cluster_up(a->cluster, minter))
        return;
    rq->home = minter;
    rq->route.home = minter;
}

uint64_t request_key_refusers(struct request *rq)
{
    struct app *a = request_app(rq);
    uint64_t now = util_mono_ms();
    size_t len = 0;
    if (!keyrefusal_any(&a->keyrefusal, now))
        return 0;
    const char *tok = request_key_bearer(rq, &len);
    return tok ? keyrefusal_mask(&a->keyrefusal,
                                 keyrefusal_minter(a->jwks, tok, len), now)
               : 0;
}

bool request_key_refusal(struct request *rq, int node,
                         const struct upstream_req *r)
{
    struct app *a = request_app(rq);
    size_t len = 0;
    char sub[128];
    if (r->result != UPSTREAM_OK ||
        !keyrefusal_is_refusal(r->status, r->resp_body.data,
                               r->resp_body.len))
        return false;
    const char *tok = request_key_bearer(rq, &len);
    int minter = tok ? keyrefusal_minter(a->jwks, tok, len) : -1;
    if (minter < 0 || minter == node || rq->home == minter ||
        !cluster_up(a->cluster, minter))
        return false;
    /* only a token its minter signed and that has not expired: any other
     * 401 is the right answer and goes back as it is */
    if (jwks_verify(a->jwks, tok, len, util_wall_ms() / 1000, sub,
                    sizeof(sub)) != JWKS_VERIFIED)
        return false;
    metrics_inc(a->metrics, M_TOKEN_RESENDS_TOTAL, node);
    if (keyrefusal_note(&a->keyrefusal, minter, node, util_mono_ms()))
        log_printf(a->log, LOG_LEVEL_WARN,
                   "controller %s refused a token minted by %s (401: it "
                   "does not know %s's signing key, a controller bug: "
                   "tests/realcluster/OBSERVATIONS.md); such calls go to "
                   "%s",
                   a->cluster->nodes[node].id, a->cluster->nodes[minter].id,
                   a->cluster->nodes[minter].id,
                   a->cluster->nodes[minter].id);
    rq->home = minter;
    rq->route.home = minter;
    return true;
}

static void request_key_fetched(void *arg)
{
    struct request *rq = arg;
    rq->stage = STAGE_ATTEMPT;
    if (request_key_refusal(rq, rq->node, &rq->up))
        request_attempt_start(rq, rq->home);
    else
        request_attempt_answered(rq);
}

bool request_key_fetch(struct request *rq, const struct upstream_req *r)
{
    struct app *a = request_app(rq);
    size_t len = 0;
    if (rq->key_fetched || r->result != UPSTREAM_OK ||
        !keyrefusal_is_refusal(r->status, r->resp_body.data,
                               r->resp_body.len))
        return false;
    const char *tok = request_key_bearer(rq, &len);
    if (!tok || keyrefusal_minter(a->jwks, tok, len) >= 0)
        return false;
    rq->key_fetched = true;
    if (!jwks_refresh(rq->w->jwks, loop_now_ms(rq->w->loop),
                      request_key_fetched, rq))
        return false; /* fetched a moment ago: the answer goes as it is */
    rq->stage = STAGE_RECONCILE;
    return true;
}
