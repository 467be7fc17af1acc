/* listener_request.c - the request side of the listener (see
 * listener_impl.h): request ids, the exchange and its reuse on kept-alive
 * connections, the client's address, the checks once the head is in
 * (framing, limits, methods, admission), the body and the buffer budget. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "io/framing.h"
#include "io/listener_impl.h"

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
    free(a->ex.headers);
    free(a);
}

/* (header index, text and body buffers) */
struct listener_exchange_alloc *listener_request_reuse(
    struct listener_conn *conn)
{
    struct listener_exchange_alloc *a = conn ? conn->spare : NULL;
    if (!a)
        return xcalloc(1, sizeof(*a));
    conn->spare = NULL;
    struct listener_header *hdrs = a->ex.headers;
    int hdr_cap = a->p.hdr_cap;
    struct buf body = a->p.body;
    struct buf text = a->p.text;
    memset(a, 0, sizeof(*a));
    a->ex.headers = hdrs;
    a->p.hdr_cap = hdr_cap;
    buf_reset(&body);
    a->p.body = body;
    buf_reset(&text);
    a->p.text = text;
    return a;
}

_Static_assert(sizeof(((struct listener_conn *)0)->client_addr) ==
                   sizeof(((struct listener_exchange *)0)->client_addr),
               "the connection keeps the exchange's address text");

void listener_request_peer_text(const struct sockaddr *sa, char *text,
                                size_t len, uint16_t *port)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, text, (socklen_t)len);
        *port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, text, (socklen_t)len);
        *port = ntohs(in6->sin6_port);
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
        l->ops->on_event(l->ctx, LISTENER_BUDGET_SPENT, NULL);
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

bool listener_request_check(struct listener *l, struct listener_exchange *ex,
                            size_t hsize)
{
    uint64_t clen = 0;
    bool has_clen = false;
    const char *method = ex->method_name;
    const char *bad = framing_check(ex->headers, ex->n_headers, ex->version,
                                    &clen, &has_clen);
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
