/* request_login.c - see request_impl.h: logins answered by a controller
 * fenced for the identity that logged in (issue 17).  Fences are per
 * identity: a login does not say who logs in until it is answered, so the
 * answer is checked instead of keeping every login away from controllers
 * fenced for anyone.  A legacy login answered by a controller that lacks
 * its identity's latest MFA change is discarded and sent once to one that
 * is not fenced for it (a login only creates a session: the unused one
 * expires on the lagging controller). */
#include "proxy/request.h"
#include "proxy/request_impl.h"

#include <string.h>

#include "base/crypto.h"
#include "base/json.h"
#include "base/nodeset.h"
#include "consistency/gate.h"
#include "io/listener.h"
#include "metrics/metrics.h"
#include "proxy/app.h"
#include "routing/cluster.h"
#include "routing/fence.h"

/* POST .../authenticate of the client or the management API. */
static bool request_login_is_legacy(const struct request *rq)
{
    size_t n = strcspn(rq->ex->url, "?");
    return rq->ex->method == HTTP_POST &&
           ((n == 28 &&
             memcmp(rq->ex->url, "/edge/client/v1/authenticate", 28) == 0) ||
            (n == 32 &&
             memcmp(rq->ex->url, "/edge/management/v1/authenticate", 32) ==
                 0));
}

/* The controllers fenced for identity (0: none). */
static uint64_t request_login_fences(struct request *rq, const char *identity)
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

bool request_login_fenced(struct request *rq, int node,
                          struct upstream_req *r)
{
    struct app *a = request_app(rq);
    uint64_t fenced = 0;
    if (!rq->ex || r->result != UPSTREAM_OK || r->status != 200 ||
        atomic_load(&a->fence.identities) == 0 ||
        !request_login_is_legacy(rq))
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
    /* the session it carries is never used: not kept in memory either */
    buf_wipe(&r->resp_body);
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
