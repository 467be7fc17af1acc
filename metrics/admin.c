/* admin.c - see admin.h. */
#include "metrics/admin.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/buf.h"
#include "base/crypto.h"
#include "base/util.h"
#include "config/config_addr.h"
#include "io/listener.h"
#include "metrics/metrics.h"

/* On the control loop. */
struct admin {
    const struct admin_ops *ops; /* borrowed */
    void *ctx;                   /* borrowed: ops' argument */
    struct metrics *metrics;     /* borrowed */
    struct listener *l;          /* owned */
};

bool admin_client_allowed(const struct config_admin *cfg, const char *addr)
{
    return cfg->n_allow == 0 ||
           config_addr_cidr_match_text(cfg->allow, cfg->n_allow, addr);
}

bool admin_peer_allowed(const struct config_admin *cfg,
                        const struct sockaddr *sa, socklen_t len)
{
    if (cfg->n_allow == 0)
        return true;
    if (sa->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const void *)sa;
        return config_addr_cidr_match(cfg->allow, cfg->n_allow, AF_INET,
                                      (const unsigned char *)&in->sin_addr);
    }
    if (sa->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        return config_addr_cidr_match(cfg->allow, cfg->n_allow, AF_INET6,
                                      in6->sin6_addr.s6_addr);
    }
    return false;
}

static bool admin_consttime_eq(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    unsigned char diff = (unsigned char)(la != lb);
    for (size_t i = 0; i < la && i < lb; i++)
        diff |= (unsigned char)(a[i] ^ b[i]);
    return diff == 0;
}

bool admin_auth_ok(const struct config_admin *cfg, const char *authorization)
{
    if (!cfg->basic_auth_user)
        return true;
    if (!authorization || strncasecmp(authorization, "Basic ", 6) != 0)
        return false;
    char *plain = xasprintf("%s:%s", cfg->basic_auth_user,
                            cfg->basic_auth_password
                                ? cfg->basic_auth_password
                                : "");
    char *expect = crypto_b64_encode(plain, strlen(plain));
    const char *given = authorization + 6;
    while (*given == ' ')
        given++;
    bool ok = admin_consttime_eq(given, expect);
    free(plain);
    free(expect);
    return ok;
}

static void admin_reply(struct listener_exchange *ex, int status,
                        const char *ctype, struct buf *body,
                        const char *extra_name, const char *extra_value)
{
    struct http_field hdrs[3] = {
        http_field_of("Content-Type", ctype),
        HTTP_FIELD("Cache-Control", "no-store"),
    };
    size_t len;
    char *data = buf_steal(body, &len);
    if (extra_name)
        hdrs[2] = http_field_of(extra_name, extra_value);
    listener_respond(ex, status, hdrs, extra_name ? 3 : 2, data, len, false);
}

static void admin_on_request(void *ctx, struct listener_exchange *ex)
{
    struct admin *ad = ctx;
    struct config *cfg = ad->ops->config(ad->ctx);
    struct buf b = {0};
    size_t plen = strcspn(ex->url, "?");
    char path[64];
    snprintf(path, sizeof(path), "%.*s", (int)(plen < 63 ? plen : 63),
             ex->url);

    if (!admin_client_allowed(&cfg->admin, ex->client_addr)) {
        buf_puts(&b, "forbidden\n");
        admin_reply(ex, 403, "text/plain; charset=utf-8", &b, NULL, NULL);
    } else if (!admin_auth_ok(&cfg->admin,
                              listener_header(ex, "Authorization"))) {
        buf_puts(&b, "authentication required\n");
        admin_reply(ex, 401, "text/plain; charset=utf-8", &b,
                    "WWW-Authenticate", "Basic realm=\"quorumgate admin\"");
    } else if (ex->method != HTTP_GET && ex->method != HTTP_HEAD) {
        buf_puts(&b, "method not allowed\n");
        admin_reply(ex, 405, "text/plain; charset=utf-8", &b, "Allow",
                    "GET, HEAD");
    } else if (strcmp(path, "/metrics") == 0) {
        ad->ops->scrape(ad->ctx);
        metrics_render(ad->metrics, &b);
        admin_reply(ex, 200, METRICS_CONTENT_TYPE, &b, NULL, NULL);
    } else if (strcmp(path, "/healthz") == 0) {
        buf_puts(&b, "{\"status\":\"ok\"}\n");
        admin_reply(ex, 200, "application/json", &b, NULL, NULL);
    } else if (strcmp(path, "/readyz") == 0) {
        struct buf reasons = {0};
        buf_putc(&reasons, '[');
        bool ready = ad->ops->ready(ad->ctx, &reasons);
        buf_putc(&reasons, ']');
        buf_printf(&b, "{\"status\":\"%s\",\"reasons\":%s}\n",
                   ready ? "ready" : "not ready", reasons.data);
        buf_free(&reasons);
        admin_reply(ex, ready ? 200 : 503, "application/json", &b, NULL,
                    NULL);
    } else if (strcmp(path, "/status") == 0) {
        ad->ops->status(ad->ctx, &b);
        admin_reply(ex, 200, "application/json", &b, NULL, NULL);
    } else {
        buf_puts(&b, "not found: try /metrics, /healthz, /readyz, /status\n");
        admin_reply(ex, 404, "text/plain; charset=utf-8", &b, NULL, NULL);
    }
    config_unref(cfg);
}

static void admin_on_complete(void *ctx, struct listener_exchange *ex)
{
}

static bool admin_admit(void *ctx)
{
    return true;
}

/* admin.allow, applied when the connection is accepted: a peer outside it
 * is closed before it can hold one of the admin's connections (the check
 * on each request stays, for a list changed by a reload). */
static bool admin_accept(void *ctx, const struct sockaddr *peer,
                         socklen_t len)
{
    struct admin *ad = ctx;
    struct config *cfg = ad->ops->config(ad->ctx);
    bool ok = admin_peer_allowed(&cfg->admin, peer, len);
    config_unref(cfg);
    return ok;
}

static const struct listener_ops admin_ops = {
    .on_request = admin_on_request,
    .on_complete = admin_on_complete,
    .admit = admin_admit,
    .on_connection = NULL,
    .accept = admin_accept,
    .on_event = NULL,
};

struct admin *admin_new(const struct admin_ops *ops, void *ctx,
                        struct metrics *m, struct loop *loop, int fd,
                        char **err)
{
    struct admin *ad = xcalloc(1, sizeof(*ad));
    struct listener_limits lim = {
        .max_header_bytes = 16 * 1024,
        .max_headers = 64,
        .max_body_bytes = 0,
        .header_timeout_ms = 10000,
        .body_timeout_ms = 10000,
        .idle_timeout_ms = 60000,
        .max_connections = 256,
        .send_timeout_ms = 30000,
    };
    ad->ops = ops;
    ad->ctx = ctx;
    ad->metrics = m;
    ad->l = listener_new(loop, fd, -1, NULL, &lim, "X-Request-Id", &admin_ops,
                         ad, err);
    if (!ad->l) {
        free(ad);
        return NULL;
    }
    return ad;
}

void admin_free(struct admin *ad)
{
    if (!ad)
        return;
    listener_free(ad->l);
    free(ad);
}
