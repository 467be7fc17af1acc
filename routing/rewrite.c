/* rewrite.c - see rewrite.h. */
#include "routing/rewrite.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/util.h"
#include "config/config.h"
#include "io/headers.h"

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
 * by the server name sent to them)?  A port left out is the scheme's
 * default: that is how a controller on 443 names itself, since the Host
 * it was sent (and builds absolute redirects from) leaves it out. */
static bool rewrite_points_at_controller(const struct config *cfg,
                                         const char *url)
{
    const char *p = strstr(url, "://");
    if (!p)
        return false;
    size_t slen = (size_t)(p - url);
    p += 3;
    size_t n = strcspn(p, "/?#");
    /* host (brackets of an IPv6 literal dropped) and port */
    const char *host = p, *hend = p + n;
    const char *colon = NULL;
    if (*p == '[') {
        const char *rb = memchr(p, ']', n);
        if (!rb)
            return false;
        host = p + 1;
        colon = rb + 1 < hend && rb[1] == ':' ? rb + 1 : NULL;
        hend = rb;
    } else {
        colon = memchr(p, ':', n);
        if (colon)
            hend = colon;
    }
    unsigned long port;
    if (colon) {
        char *end;
        port = strtoul(colon + 1, &end, 10);
        if (end != p + n || end == colon + 1)
            return false;
    } else if (slen == 5 && strncasecmp(url, "https", 5) == 0) {
        port = 443;
    } else if (slen == 4 && strncasecmp(url, "http", 4) == 0) {
        port = 80;
    } else {
        return false;
    }
    size_t hlen = (size_t)(hend - host);
    for (int i = 0; i < cfg->n_controllers; i++) {
        const struct config_controller *cc = &cfg->controllers[i];
        const char *names[2] = {cc->host, cfg->upstream.server_name};
        if (port != cc->port)
            continue;
        for (int k = 0; k < 2; k++)
            if (names[k] && strlen(names[k]) == hlen &&
                strncasecmp(host, names[k], hlen) == 0)
                return true;
    }
    return false;
}

void rewrite_request(enum classify_call call, struct headers *up_headers)
{
    /* every answer quorumgate reads (rewrites; the enrollment id and
     * state the gate and the reconciler need; the logins affinity learns
     * from) must come uncompressed */
    switch (call) {
    case CALL_CONTROLLERS:
    case CALL_VERSION:
    case CALL_MFA_CREATE:
    case CALL_MFA_VERIFY:
    case CALL_MFA_DELETE:
    case CALL_MFA_READ:
    case CALL_AUTHENTICATE:
    case CALL_OIDC_AUTHORIZE:
    case CALL_OIDC_TOKEN:
    case CALL_OIDC_LOGIN:
        headers_remove(up_headers, "Accept-Encoding");
        break;
    default:
        break;
    }
}

void rewrite_response(const struct config *cfg, enum classify_call call,
                      int status, struct buf *resp_body, struct http_fields *h,
                      char **keep)
{
    const char *pub = cfg->public_url;
    *keep = NULL;
    http_fields_remove(h, "ziti-ctrl-address");
    if (!pub)
        return;
    const struct http_field *f = http_fields_get(h, "Location");
    if (f) {
        char *loc = xstrndup(f->value, f->value_len);
        if (rewrite_points_at_controller(cfg, loc) &&
            (*keep = rewrite_origin(loc, pub)) != NULL) {
            http_fields_remove(h, "Location");
            http_fields_adds(h, "Location", *keep);
        }
        free(loc);
    }
    if (status != 200)
        return;
    char *body = NULL;
    size_t len = 0;
    if (call == CALL_CONTROLLERS)
        body = rewrite_controllers_body(resp_body->data, resp_body->len, pub,
                                        &len);
    else if (call == CALL_VERSION)
        body = rewrite_version_body(resp_body->data, resp_body->len, pub,
                                    &len);
    if (body) {
        buf_reset(resp_body);
        buf_append(resp_body, body, len);
        free(body);
    }
}
