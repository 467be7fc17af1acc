/* listener_request.c - reading a request for the listener (see
 * listener_impl.h): request ids, the exchange and its reuse on kept-alive
 * connections, the client's address and certificate, collecting and
 * checking the headers (framing, limits, methods, admission). */
#include <arpa/inet.h>
#include <gnutls/gnutls.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "io/framing.h"
#include "io/listener_impl.h"

static bool listener_request_peer_cert(struct MHD_Connection *c);

/* ---- request ids ---------------------------------------------------- */

static uint64_t listener_request_rand(struct listener *l)
{
    /* xorshift64*: request ids need to be unique, not unpredictable */
    uint64_t x = l->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    l->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static bool listener_request_id_ok(const char *v)
{
    size_t n = 0;
    for (const char *p = v; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                  (c >= '0' && c <= '9') || c == '-' || c == '_' ||
                  c == '.' || c == ':';
        if (!ok || n >= 64)
            return false;
    }
    return n > 0;
}

void listener_request_set_id(struct listener *l,
                             struct listener_exchange *ex)
{
    const char *in = listener_header(ex, l->request_id_header);
    if (in && listener_request_id_ok(in)) {
        snprintf(ex->request_id, sizeof(ex->request_id), "%s", in);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    for (int k = 0; k < 2; k++) {
        uint64_t x = listener_request_rand(l);
        for (int i = 15; i >= 0; i--, x >>= 4)
            ex->request_id[16 * k + i] = hex[x & 15];
    }
    ex->request_id[32] = '\0';
}

void listener_request_free(struct listener_exchange_alloc *a)
{
    if (!a)
        return;
    buf_free(&a->p.body);
    buf_free(&a->p.text);
    free(a->p.raw_url);
    free(a->ex.headers);
    free(a);
}

/* (header index, URL, text and body buffers) */
struct listener_exchange_alloc *listener_request_reuse(
    struct listener_conn *conn)
{
    struct listener_exchange_alloc *a = conn ? conn->spare : NULL;
    if (!a)
        return xcalloc(1, sizeof(*a));
    conn->spare = NULL;
    struct listener_header *hdrs = a->ex.headers;
    int hdr_cap = a->p.hdr_cap;
    char *url = a->p.raw_url;
    size_t url_cap = a->p.url_cap;
    struct buf body = a->p.body;
    struct buf text = a->p.text;
    memset(a, 0, sizeof(*a));
    a->ex.headers = hdrs;
    a->p.hdr_cap = hdr_cap;
    a->p.raw_url = url;
    a->p.url_cap = url_cap;
    buf_reset(&body);
    a->p.body = body;
    buf_reset(&text);
    a->p.text = text;
    return a;
}

_Static_assert(sizeof(((struct listener_conn *)0)->client_addr) ==
                   sizeof(((struct listener_exchange *)0)->client_addr),
               "the connection keeps the exchange's address text");

void *listener_request_begin(void *cls, const char *uri,
                             struct MHD_Connection *c)
{
    struct listener *l = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct listener_conn *conn = ci ? ci->socket_context : NULL;
    struct listener_exchange_alloc *a = listener_request_reuse(conn);
    struct listener_exchange *ex = &a->ex;
    size_t ulen = strlen(uri ? uri : "");
    ex->priv = &a->p;
    a->p.conn = conn;
    if (ulen + 1 > a->p.url_cap) {
        a->p.url_cap = ulen + 1 < 256 ? 256 : ulen + 1;
        a->p.raw_url = xrealloc(a->p.raw_url, a->p.url_cap);
    }
    memcpy(a->p.raw_url, uri ? uri : "", ulen + 1);
    ex->url = a->p.raw_url;
    ex->start_ns = util_mono_ns();
    ex->tls = l->tls;
    ex->listener_index = l->index;
    ex->method_name = "";
    ex->method = HTTP_OTHER; /* until the headers are in */
    ex->version = "";
    if (conn && conn->client_addr[0]) {
        /* the peer's text, made once per connection (inet_ntop and the
         * library's lookup were ~1,700 instructions per request) */
        memcpy(ex->client_addr, conn->client_addr, sizeof(ex->client_addr));
        ex->client_port = conn->client_port;
    } else {
        listener_request_client_addr(ex, c);
        if (conn) {
            memcpy(conn->client_addr, ex->client_addr,
                   sizeof(conn->client_addr));
            conn->client_port = ex->client_port;
        }
    }
    ex->client_cert = l->tls && listener_request_peer_cert(c);
    if (conn) {
        conn->ex = ex;
        /* a later request on a kept-alive connection: its own deadline
         * (the first one's runs from the connection's start) */
        if (conn->served > 0)
            listener_respond_arm(conn, l->limits.header_timeout_ms);
    }
    return ex;
}

/* Did the client present a certificate in the TLS handshake?  Only asked
 * for when the listener has tls.client_ca.  libmicrohttpd 0.9.75 hands out
 * its GnuTLS session (the certificate query it had is gone), so this one
 * GnuTLS call belongs to this wrapper of libmicrohttpd. */
static bool listener_request_peer_cert(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    unsigned int n = 0;
    if (!ci || !ci->tls_session)
        return false;
    return gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session,
                                        &n) != NULL && n > 0;
}

void listener_request_client_addr(struct listener_exchange *ex,
                                  struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    if (!ci || !ci->client_addr)
        return;
    const struct sockaddr *sa = ci->client_addr;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ex->client_addr,
                  sizeof(ex->client_addr));
        ex->client_port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ex->client_addr,
                  sizeof(ex->client_addr));
        ex->client_port = ntohs(in6->sin6_port);
    }
}

/* ---- the buffer budget ----------------------------------------------- */

/* Would n more bytes fit in the budget? */
static bool listener_request_budget_ok(struct listener *l, uint64_t n)
{
    struct listener_budget *b = l->limits.budget;
    uint64_t limit = b ? atomic_load(&b->limit) : 0;
    if (!limit)
        return true;
    uint64_t used = atomic_load(&b->used);
    return used < limit && n <= limit - used;
}

void listener_request_budget_spent(struct listener *l,
                                   struct listener_exchange *ex)
{
    if (l->ops->on_event)
        l->ops->on_event(l->ctx, LISTENER_BUDGET_SPENT);
    listener_respond_error(ex, l, ERR_PROXY_BUFFER_BUDGET, NULL, true);
}

bool listener_request_charge(struct listener *l, struct listener_exchange *ex,
                             uint64_t n, bool force)
{
    struct listener_budget *b = l->limits.budget;
    if (!b || !n)
        return true;
    uint64_t limit = atomic_load(&b->limit);
    uint64_t before = atomic_fetch_add(&b->used, n);
    if (!force && limit && (before >= limit || n > limit - before)) {
        atomic_fetch_sub(&b->used, n);
        return false;
    }
    XP(ex)->charged += n;
    return true;
}

void listener_request_uncharge(struct listener *l,
                               struct listener_exchange *ex)
{
    struct listener_xpriv *xp = XP(ex);
    if (xp->charged && l->limits.budget)
        atomic_fetch_sub(&l->limits.budget->used, xp->charged);
    xp->charged = 0;
}

struct listener_request_walk {
    struct listener_header *items;
    int n, cap;
};

static enum MHD_Result listener_request_collect(void *cls,
                                                enum MHD_ValueKind kind,
                                                const char *key,
                                                size_t key_size,
                                                const char *value,
                                                size_t value_size)
{
    struct listener_request_walk *w = cls;
    if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 16;
        w->items = xrealloc(w->items, (size_t)w->cap * sizeof(*w->items));
    }
    w->items[w->n++] = (struct listener_header){key, key_size,
                                                value ? value : "",
                                                value ? value_size : 0};
    return MHD_YES;
}

/* First call: headers are in.  Returns false when already answered. */
bool listener_request_headers(struct listener *l,
                              struct listener_exchange *ex,
                              struct MHD_Connection *c, const char *method,
                              const char *version)
{
    struct listener_xpriv *xp = XP(ex);
    struct listener_request_walk w = {ex->headers, 0, xp->hdr_cap};
    ex->method_name = method;
    ex->method = http_method_parse(method);
    ex->version = version;
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, listener_request_collect,
                                &w);
    ex->headers = w.items;
    ex->n_headers = w.n;
    xp->hdr_cap = w.cap;
    listener_request_set_id(l, ex);

    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t hsize = ci ? ci->header_size : 0;
    return listener_request_check(
        l, ex, framing_fields(ex->headers, ex->n_headers, method, hsize),
        hsize);
}

bool listener_request_check(struct listener *l, struct listener_exchange *ex,
                            const char *bad, size_t hsize)
{
    uint64_t clen = 0;
    bool has_clen = false;
    const char *method = ex->method_name;
    if (!bad)
        bad = framing_check(ex->headers, ex->n_headers, ex->version, &clen,
                            &has_clen);
    if (bad) {
        listener_respond_error(ex, l, ERR_BAD_REQUEST, bad, true);
    } else if ((uint64_t)ex->n_headers > l->limits.max_headers ||
               hsize > l->limits.max_header_bytes) {
        listener_respond_error(ex, l, ERR_REQUEST_HEADER_FIELDS_TOO_LARGE, NULL,
                               true);
    } else if ((bad = framing_target(ex->url, method, ex->version))) {
        listener_respond_error(ex, l, ERR_BAD_REQUEST, bad, true);
    } else if (strcmp(method, "TRACE") == 0 || strcmp(method, "TRACK") == 0) {
        /* it would echo the request, credentials and all, back */
        listener_respond_error(ex, l, ERR_METHOD_NOT_ALLOWED, NULL, false);
    } else if (ex->method == HTTP_OTHER) {
        /* the controllers' APIs use none other (CONNECT included): an
         * unknown method would go up as a custom request */
        listener_respond_error(ex, l, ERR_NOT_IMPLEMENTED, NULL, false);
    } else if (has_clen && clen > l->limits.max_body_bytes) {
        listener_respond_error(ex, l, ERR_REQUEST_ENTITY_TOO_LARGE, NULL, true);
    } else if (!listener_request_budget_ok(l, has_clen ? clen : 0)) {
        listener_request_budget_spent(l, ex);
    } else if (!(ex->admitted = l->ops->admit(l->ctx))) {
        listener_respond_error(ex, l, ERR_PROXY_OVERLOADED, NULL, false);
    }
    return ex->status == 0;
}

bool listener_request_body(struct listener *l, struct listener_exchange *ex,
                           const char *p, size_t n)
{
    struct listener_xpriv *xp = XP(ex);
    if (xp->discarding || xp->body.len + n > l->limits.max_body_bytes) {
        xp->discarding = true;
        xp->discarded += n;
        /* drop bodies that keep coming long after the limit */
        return xp->discarded <= 4 * l->limits.max_body_bytes + 65536;
    }
    if (!listener_request_charge(l, ex, n, false)) {
        /* the budget is spent: keep none of it, answer 503 */
        xp->discarding = xp->over_budget = true;
        xp->discarded += n;
        buf_free(&xp->body);
        listener_request_uncharge(l, ex);
        return true;
    }
    buf_append(&xp->body, p, n);
    return true;
}
