/* certfront.c - see certfront.h. */
#include "proxy/certfront.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "io/listener.h"
#include "proxy/app.h"
#include "proxy/request.h"
#include "proxy/worker.h"

static bool certfront_path_is(const char *path, size_t len, const char *want)
{
    return strlen(want) == len && memcmp(path, want, len) == 0;
}

/* The query holds method=cert (exactly; other parameters may be there). */
static bool certfront_method_cert(const char *query)
{
    while (query && *query) {
        size_t plen = strcspn(query, "&");
        if (plen == strlen("method=cert") &&
            memcmp(query, "method=cert", plen) == 0)
            return true;
        query += plen;
        if (*query == '&')
            query++;
    }
    return false;
}

bool certfront_is_cert_login(const char *target, bool client_cert)
{
    size_t len = strcspn(target, "?");
    const char *query = target[len] == '?' ? target + len + 1 : NULL;
    bool authenticate =
        certfront_path_is(target, len, "/edge/client/v1/authenticate") ||
        certfront_path_is(target, len, "/edge/management/v1/authenticate");
    bool oidc = len >= 6 && memcmp(target, "/oidc/", 6) == 0;
    if (authenticate && certfront_method_cert(query))
        return true;
    if (oidc && len >= strlen("/oidc/login/cert") &&
        memcmp(target, "/oidc/login/cert", strlen("/oidc/login/cert")) == 0 &&
        (len == strlen("/oidc/login/cert") ||
         target[strlen("/oidc/login/cert")] == '/'))
        return true;
    return client_cert && (authenticate || oidc);
}

bool certfront_refuse(struct request *rq)
{
    const struct listener_exchange *ex = rq->ex;
    if (!certfront_is_cert_login(ex->url, ex->client_cert))
        return false;
    const struct config_passthrough *pt = &rq->cfg->passthrough;
    uint16_t port = rq->w->app->passthrough_port;
    char *msg;
    if (pt->addr.text) {
        bool v6 = strchr(pt->addr.host, ':') != NULL;
        msg = xasprintf(
            "certificate authentication cannot go through quorumgate's HTTP "
            "front: TLS ends here, so the controller would never see the "
            "client certificate. Connect to quorumgate's passthrough "
            "listener instead (%s%s%s:%u), which passes TLS through to the "
            "raft leader",
            v6 ? "[" : "", pt->addr.host, v6 ? "]" : "", (unsigned)port);
    } else {
        msg = xstrdup(
            "certificate authentication cannot go through quorumgate's HTTP "
            "front: TLS ends here, so the controller would never see the "
            "client certificate. This quorumgate has no passthrough "
            "listener (passthrough.address): ask its operator for one");
    }
    request_answer_error(rq, ERR_PROXY_CERT_AUTH_UNSUPPORTED, msg);
    free(msg);
    return true;
}
