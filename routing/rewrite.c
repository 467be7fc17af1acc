/* rewrite.c - see rewrite.h. */
#include "routing/rewrite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proxy/app.h"
#include "proxy/headers.h"
#include "proxy/json.h"
#include "proxy/request.h"
#include "proxy/util.h"
#include "proxy/worker.h"

char *rewrite_origin(const char *url, const char *public_url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return NULL;
    p += 3;
    const char *rest = p + strcspn(p, "/?#");
    size_t plen = strlen(public_url);
    while (plen && public_url[plen - 1] == '/')
        plen--;
    return xasprintf("%.*s%s", (int)plen, public_url, rest);
}

static void rewrite_string_node(struct json *node, const char *public_url)
{
    const char *s = json_string(node);
    if (!s)
        return;
    char *n = rewrite_origin(s, public_url);
    if (n) {
        json_set_string(node, n);
        free(n);
    }
}

static char *rewrite_finish(struct json *j, size_t *out_len)
{
    char *text = json_print(j);
    json_free(j);
    *out_len = strlen(text);
    return text;
}

char *rewrite_controllers_body(const char *body, size_t len,
                               const char *public_url, size_t *out_len)
{
    struct json *j = json_parse(body, len);
    struct json *data = json_get(j, "data");
    if (!json_is_array(data)) {
        json_free(j);
        return NULL;
    }
    for (struct json *c = json_first(data); c; c = json_next(c)) {
        struct json *addrs = json_get(c, "apiAddresses");
        for (struct json *b = json_first(addrs); b; b = json_next(b))
            for (struct json *e = json_first(b); e; e = json_next(e))
                rewrite_string_node(json_get(e, "url"), public_url);
    }
    return rewrite_finish(j, out_len);
}

char *rewrite_version_body(const char *body, size_t len,
                           const char *public_url, size_t *out_len)
{
    struct json *j = json_parse(body, len);
    struct json *apis = json_path(j, "data.apiVersions");
    if (!json_is_object(apis)) {
        json_free(j);
        return NULL;
    }
    for (struct json *b = json_first(apis); b; b = json_next(b))
        for (struct json *v = json_first(b); v; v = json_next(v)) {
            struct json *urls = json_get(v, "apiBaseUrls");
            for (struct json *u = json_first(urls); u; u = json_next(u))
                rewrite_string_node(u, public_url);
            rewrite_string_node(json_get(v, "path"), public_url);
        }
    return rewrite_finish(j, out_len);
}

/* Does url's origin name one of the controllers (by configured address or
 * by the server name sent to them)? */
static bool rewrite_points_at_controller(const struct config *cfg,
                                         const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return false;
    p += 3;
    size_t n = strcspn(p, "/?#");
    for (int i = 0; i < cfg->n_controllers; i++) {
        const struct config_controller *cc = &cfg->controllers[i];
        const char *names[2] = {cc->host, cfg->upstream.server_name};
        for (int k = 0; k < 2; k++) {
            if (!names[k])
                continue;
            char hp[300];
            bool v6 = strchr(names[k], ':') != NULL;
            int m = snprintf(hp, sizeof(hp), "%s%s%s:%u", v6 ? "[" : "",
                             names[k], v6 ? "]" : "", cc->port);
            if ((size_t)m == n && strncasecmp(p, hp, n) == 0)
                return true;
        }
    }
    return false;
}

void rewrite_response(struct request *rq, struct headers *h)
{
    const struct config *cfg = rq->cfg;
    struct app *a = rq->w->app;
    const char *pub = cfg->public_url_derived && a->public_url ? a->public_url
                                                              : cfg->public_url;
    headers_remove(h, "ziti-ctrl-address");
    if (!pub)
        return;
    const char *loc = headers_get(h, "Location");
    if (loc && rewrite_points_at_controller(cfg, loc)) {
        char *n = rewrite_origin(loc, pub);
        headers_remove(h, "Location");
        headers_adds(h, "Location", n);
        free(n);
    }
    if (rq->up.status != 200)
        return;
    char *body = NULL;
    size_t len = 0;
    if (rq->cls.call == CALL_CONTROLLERS)
        body = rewrite_controllers_body(rq->up.resp_body.data,
                                        rq->up.resp_body.len, pub, &len);
    else if (rq->cls.call == CALL_VERSION)
        body = rewrite_version_body(rq->up.resp_body.data,
                                    rq->up.resp_body.len, pub, &len);
    if (body) {
        buf_reset(&rq->up.resp_body);
        buf_append(&rq->up.resp_body, body, len);
        free(body);
    }
}
