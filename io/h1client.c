/* h1client.c - see h1client.h.  Sockets and system calls directly; one
 * connection in h1conn.c, TLS in h1tls.c, the answer parser in
 * base/h1parse.c.  This file: exchanges, origins, the pools. */
#include "io/h1client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/list.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/uring.h"
#include "base/util.h"
#include "io/h1client_impl.h"
#include "io/h1tls.h"

static void h1x_timeout(void *arg);

/* ---- small helpers ----------------------------------------------------- */

static char *h1_strndup(const char *s, size_t n)
{
    char *d = xmalloc(n + 1);
    memcpy(d, s, n);
    d[n] = '\0';
    return d;
}

static struct h1x *h1x_of(struct list *l)
{
    return list_entry(l, struct h1x, link);
}

static struct h1conn *h1conn_of_idle(struct list *l)
{
    return list_entry(l, struct h1conn, idle_link);
}

/* ---- exchanges ---------------------------------------------------------- */

static struct h1x *h1x_get(struct h1client *c)
{
    struct list *l = list_pop_head(&c->spare);
    struct h1x *x;
    if (l) {
        x = h1x_of(l);
    } else {
        x = xcalloc(1, sizeof(*x));
        x->c = c;
        x->timer = loop_timer_new(c->loop, h1x_timeout, x);
        list_init(&x->link);
    }
    x->waiting = x->deferred = x->too_large = false;
    x->conn = NULL;
    return x;
}

static void h1x_put(struct h1client *c, struct h1x *x)
{
    x->r = NULL;
    list_insert_head(&c->spare, &x->link);
}

static void h1x_unwait(struct h1x *x)
{
    if (!x->waiting)
        return;
    list_remove(&x->link);
    x->waiting = false;
}

static void h1x_undefer(struct h1x *x)
{
    if (!x->deferred)
        return;
    list_remove(&x->link);
    x->deferred = false;
}

static void h1x_deliver(struct h1x *x)
{
    struct h1client *c = x->c;
    struct upstream_req *r = x->r;
    c->active--;
    r->priv = NULL;
    r->on_own_client = false;
    h1x_put(c, x);
    r->done(r, r->arg);
}

/* The exchange is over (the connection already released): done runs now,
 * or on the next loop iteration when we are inside h1client_start(). */
void h1client_finish(struct h1x *x, enum upstream_result res,
                     const char *err, bool sync)
{
    struct upstream_req *r = x->r;
    loop_timer_stop(x->timer);
    h1x_unwait(x);
    x->conn = NULL;
    r->result = x->too_large ? UPSTREAM_TOO_LARGE : res;
    if (r->result != UPSTREAM_OK)
        r->status = 0;
    if (err && !r->error[0] && r->result != UPSTREAM_OK)
        snprintf(r->error, sizeof(r->error), "%s", err);
    r->duration_ns = util_mono_ns() - x->t0;
    if (!sync) {
        h1x_deliver(x);
        return;
    }
    struct h1client *c = x->c;
    x->deferred = true;
    list_insert_tail(&c->deferred, &x->link);
    loop_defer_schedule(c->defer);
}

static void h1_deferred(void *arg)
{
    struct h1client *c = arg;
    struct list *l;
    while ((l = list_first(&c->deferred))) {
        struct h1x *x = h1x_of(l);
        h1x_undefer(x);
        h1x_deliver(x);
    }
}

/* ---- origins and dispatch ---------------------------------------------- */

/* "host:port" with host maybe in brackets; port required. */
static bool h1_split_hostport(const char *s, size_t n, size_t *hlen,
                              unsigned *port)
{
    const char *colon = NULL;
    for (size_t i = n; i > 0; i--)
        if (s[i - 1] == ':') {
            colon = s + i - 1;
            break;
        }
    if (!colon || colon == s || colon == s + n - 1)
        return false;
    unsigned p = 0;
    for (const char *q = colon + 1; q < s + n; q++) {
        if (*q < '0' || *q > '9' || p > 65535)
            return false;
        p = p * 10 + (unsigned)(*q - '0');
    }
    if (p == 0 || p > 65535)
        return false;
    *hlen = (size_t)(colon - s);
    *port = p;
    return true;
}

static struct h1origin *h1_origin_new(struct h1client *c, const char *url,
                                      size_t key_len, bool tls,
                                      const char *connect_to)
{
    const char *auth = url + (tls ? 8 : 7);
    size_t alen = (size_t)(url + key_len - auth), hlen;
    unsigned port;
    if (!h1_split_hostport(auth, alen, &hlen, &port))
        return NULL;
    /* where to connect: connect_to's address ("name:port:addr:port")
     * when given, else the URL's host; a name is resolved */
    const char *rhost = auth;
    size_t rlen = hlen;
    unsigned rport = port;
    if (connect_to) {
        const char *a = strchr(connect_to, ':');
        a = a ? strchr(a + 1, ':') : NULL;
        if (!a || !h1_split_hostport(a + 1, strlen(a + 1), &rlen, &rport))
            return NULL;
        rhost = a + 1;
    }
    if (rlen >= 2 && rhost[0] == '[' && rhost[rlen - 1] == ']') {
        rhost++;
        rlen -= 2;
    }
    if (rlen == 0 || rlen > 253 || memchr(rhost, '\0', rlen))
        return NULL;
    if (tls && !c->tls) {
        char err[200];
        if (c->tls_failed)
            return NULL;
        c->tls = h1tls_ctx_new(c->ca_file, c->cert_file, c->key_file,
                               c->verify, err, sizeof(err));
        if (!c->tls) {
            c->tls_failed = true; /* libcurl reports it, request by request */
            return NULL;
        }
    }
    struct h1origin *o = xcalloc(1, sizeof(*o));
    o->c = c;
    o->key = h1_strndup(url, key_len);
    o->key_len = key_len;
    o->connect_to = connect_to ? xstrdup(connect_to) : NULL;
    o->tls = tls;
    bool default_port = port == (tls ? 443u : 80u);
    o->host_hdr = h1_strndup(auth, default_port ? hlen : alen);
    /* the certificate name and SNI: always the URL's host, never the
     * address connected to */
    if (hlen >= 2 && auth[0] == '[')
        o->name = h1_strndup(auth + 1, hlen - 2);
    else
        o->name = h1_strndup(auth, hlen);
    o->rname = h1_strndup(rhost, rlen);
    o->port = rport;
    h1addr_init(&o->addr, rhost, rlen, rport);
    list_init(&o->idle);
    list_init(&o->waiting);
    c->origins = xrealloc(c->origins,
                          (size_t)(c->n_origins + 1) * sizeof(*c->origins));
    c->origins[c->n_origins++] = o;
    return o;
}

/* ---- names ------------------------------------------------------------- */

/* The waiting exchanges of o, which has no address: each fails as a
 * connect failure of its controller (nothing was written). */
static void h1_origin_fail_waiting(struct h1origin *o, bool sync)
{
    struct list *l;
    while ((l = list_first(&o->waiting))) {
        struct h1x *x = h1x_of(l);
        h1x_unwait(x);
        x->r->unreachable = true;
        h1client_finish(x, UPSTREAM_CONNECT_ERROR, o->res_err, sync);
    }
}

static void h1_resolve_failed(struct h1origin *o, const char *err, bool sync)
{
    struct h1client *c = o->c;
    snprintf(o->res_err, sizeof(o->res_err), "resolve %s: %s", o->rname,
             err);
    if (h1addr_failed(&o->addr, loop_now_ms(c->loop)) && c->log)
        log_warn(c->log,
                 "controller host %s does not resolve (%s); %s",
                 o->rname, err,
                 o->addr.n ? "its last known addresses are still used"
                           : "requests for it fail as connect errors");
    if (o->addr.n == 0)
        h1_origin_fail_waiting(o, sync);
}

static void h1_resolved(void *arg, const struct addrinfo *ai,
                        const char *err)
{
    struct h1origin *o = arg;
    struct h1client *c = o->c;
    bool recovered;
    o->res = NULL;
    if (!ai) {
        h1_resolve_failed(o, err, false);
        return;
    }
    if (h1addr_resolved(&o->addr, ai, o->port, loop_now_ms(c->loop),
                        &recovered) == 0) {
        h1_resolve_failed(o, "no IPv4 or IPv6 address", false);
        return;
    }
    if (recovered && c->log)
        log_info(c->log, "controller host %s resolves again", o->rname);
    h1client_serve(o, false);
}

static void h1_resolve(struct h1origin *o, bool sync)
{
    struct h1client *c = o->c;
    char port[8];
    h1addr_begin(&o->addr);
    if (h1addr_never_resolves(o->rname, strlen(o->rname))) {
        h1_resolve_failed(o, "RFC 6761: .invalid never resolves", sync);
        return;
    }
    snprintf(port, sizeof(port), "%u", o->port);
    o->res = loop_resolve(c->loop, o->rname, port, h1_resolved, o);
    if (!o->res)
        h1_resolve_failed(o, "the resolver refused the name", sync);
}

void h1client_unreachable(struct h1origin *o)
{
    h1addr_unreachable(&o->addr);
    if (h1addr_check(&o->addr, loop_now_ms(o->c->loop)) == H1ADDR_REFRESH)
        h1_resolve(o, false);
}

static struct h1origin *h1_origin(struct h1client *c,
                                  const struct upstream_req *r,
                                  const char **target)
{
    const char *url = r->url;
    bool tls;
    if (strncmp(url, "https://", 8) == 0)
        tls = true;
    else if (strncmp(url, "http://", 7) == 0)
        tls = false;
    else
        return NULL;
    const char *slash = strchr(url + (tls ? 8 : 7), '/');
    if (!slash)
        return NULL;
    size_t key_len = (size_t)(slash - url);
    if (memchr(url, '?', key_len) || memchr(url, '@', key_len))
        return NULL;
    *target = slash;
    for (int i = 0; i < c->n_origins; i++) {
        struct h1origin *o = c->origins[i];
        if (o->key_len == key_len && memcmp(o->key, url, key_len) == 0 &&
            (o->connect_to ? r->connect_to &&
                                 strcmp(o->connect_to, r->connect_to) == 0
                           : !r->connect_to))
            return o;
    }
    return h1_origin_new(c, url, key_len, tls, r->connect_to);
}

/* An idle connection young enough to reuse, or NULL. */
static struct h1conn *h1origin_idle(struct h1origin *o)
{
    struct list *l;
    while ((l = list_first(&o->idle))) {
        struct h1conn *k = h1conn_of_idle(l);
        struct h1client *c = k->c;
        if (loop_now_ms(c->loop) - k->idle_since < c->idle_timeout_ms) {
            list_remove(l);
            return k;
        }
        h1conn_close(k);
    }
    return NULL;
}

/* Starts x now if a connection can carry it; false = it must wait. */
static bool h1x_dispatch(struct h1x *x, bool sync)
{
    struct h1origin *o = x->o;
    struct h1client *c = x->c;
    if (o->addr.n == 0)
        return false; /* its name is being resolved */
    if (!x->r->fresh_connection) {
        struct h1conn *k = h1origin_idle(o);
        if (k) {
            h1conn_begin(k, x, sync);
            return true;
        }
    } else if (o->n_conns >= c->max_conns && !list_empty(&o->idle)) {
        /* make room for the fresh one */
        h1conn_close(h1conn_of_idle(list_first(&o->idle)));
    }
    if (o->n_conns < c->max_conns) {
        h1conn_open(c, o, x, sync);
        return true;
    }
    return false;
}

void h1client_serve(struct h1origin *o, bool sync)
{
    struct list *l;
    while ((l = list_first(&o->waiting))) {
        struct h1x *x = h1x_of(l);
        h1x_unwait(x);
        if (!h1x_dispatch(x, sync)) {
            /* back at the head, in order */
            x->waiting = true;
            list_insert_head(&o->waiting, &x->link);
            return;
        }
    }
}

static void h1x_timeout(void *arg)
{
    struct h1x *x = arg;
    struct h1conn *k = x->conn;
    if (!k) { /* still waiting for a connection, or for its name */
        if (!x->o->addr.n) /* not a pooled connection: the name */
            x->r->unreachable = true;
        h1client_finish(x, UPSTREAM_CONNECT_TIMEOUT,
                        x->o->addr.n ? "no connection to the controller "
                                       "in time"
                                     : "the controller's name did not "
                                       "resolve in time",
                        false);
        return;
    }
    bool connecting = k->state == C_CONNECTING || k->state == C_HANDSHAKE;
    /* the attempt's time (what was left of the request's deadline, maybe a
     * few ms) ended before the connection's own connect timeout: that is
     * no proof the controller is gone (bench/soak.py, 30-minute run: legacy
     * sessions ended with 401 while their home answered everything else) */
    k->cut_short = connecting;
    h1conn_fail(k, connecting || !x->r->sent ? UPSTREAM_CONNECT_TIMEOUT
                                              : UPSTREAM_TIMEOUT,
                "timed out", false);
}

/* ---- public ------------------------------------------------------------ */

static char *h1_dup(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

static void h1client_batch_start(struct h1client *c);

struct h1client *h1client_new(struct loop *loop,
                              const struct upstream_settings *s)
{
    struct h1client *c = xcalloc(1, sizeof(*c));
    c->loop = loop;
    list_init(&c->conns);
    list_init(&c->spare);
    list_init(&c->deferred);
    c->ca_file = h1_dup(s->ca_file);
    c->cert_file = h1_dup(s->cert_file);
    c->key_file = h1_dup(s->key_file);
    c->verify = s->verify;
    c->log = s->log;
    c->defer = loop_defer_new(loop, h1_deferred, c);
    list_init(&c->queue);
    h1client_set_settings(c, s);
    return c;
}

void h1client_set_settings(struct h1client *c,
                           const struct upstream_settings *s)
{
    /* TLS material is restart-only, as for libcurl */
    c->connect_timeout_ms = s->connect_timeout_ms;
    c->idle_timeout_ms = s->idle_timeout_ms;
    c->max_conns = s->max_host_connections ? (int)s->max_host_connections
                                           : 64;
    c->batch = s->batch_sends;
    if (c->batch && !c->uring && !c->uring_failed)
        h1client_batch_start(c);
}

static void h1client_send_now(void *arg)
{
    struct h1client *c = arg;
    if (!list_empty(&c->queue))
        h1conn_send_queue(c); /* until the queue is empty */
    loop_defer_cancel(c->send_late); /* the loop may block: nothing waits */
}

/* The ring for batch_sends, and the two calls that send its queue. */
static void h1client_batch_start(struct h1client *c)
{
    const char *why = NULL;
    c->uring = uring_new(H1_BATCH, &why);
    if (!c->uring) {
        c->uring_failed = true;
        if (c->log)
            log_info(c->log, "upstream.batch_sends: %s; one send per "
                             "request", why);
        return;
    }
    c->send = loop_prepare_new(c->loop, h1client_send_now, c);
    c->send_late = loop_defer_new(c->loop, h1client_send_now, c);
}

static void h1x_destroy(struct h1x *x)
{
    loop_timer_free(x->timer);
    free(x);
}

void h1client_free(struct h1client *c)
{
    if (!c)
        return;
    struct list *l;
    while ((l = list_first(&c->conns))) {
        struct h1conn *k = list_entry(l, struct h1conn, link);
        if (k->x) {
            h1x_destroy(k->x);
            k->x = NULL;
        }
        h1conn_close(k);
    }
    while ((l = list_first(&c->deferred))) {
        struct h1x *x = h1x_of(l);
        h1x_undefer(x);
        h1x_destroy(x);
    }
    for (int i = 0; i < c->n_origins; i++) {
        struct h1origin *o = c->origins[i];
        while ((l = list_first(&o->waiting))) {
            struct h1x *x = h1x_of(l);
            h1x_unwait(x);
            h1x_destroy(x);
        }
        loop_resolve_cancel(o->res);
        h1tls_session_free(&o->session);
        free(o->rname);
        free(o->key);
        free(o->connect_to);
        free(o->host_hdr);
        free(o->name);
        free(o);
    }
    while ((l = list_pop_head(&c->spare)))
        h1x_destroy(h1x_of(l));
    free(c->origins);
    loop_defer_free(c->defer);
    loop_prepare_free(c->send);
    loop_defer_free(c->send_late);
    uring_free(c->uring);
    h1tls_ctx_free(c->tls);
    free(c->ca_file);
    free(c->cert_file);
    free(c->key_file);
    free(c);
}

bool h1client_start(struct h1client *c, struct upstream_req *r)
{
    const char *target;
    struct h1origin *o = h1_origin(c, r, &target);
    if (!o)
        return false;
    upstream_req_reset(r);
    r->via_own_client = true;
    struct h1x *x = h1x_get(c);
    x->r = r;
    x->o = o;
    x->target = target;
    x->t0 = util_mono_ns();
    r->priv = x;
    r->on_own_client = true;
    c->active++;
    enum h1addr_next next = h1addr_check(&o->addr, loop_now_ms(c->loop));
    if (next == H1ADDR_FAILED) { /* resolved in vain a moment ago */
        r->unreachable = true;
        h1client_finish(x, UPSTREAM_CONNECT_ERROR, o->res_err, true);
        return true;
    }
    if (r->timeout_ms)
        loop_timer_start(x->timer, r->timeout_ms, 0);
    if (!list_empty(&o->waiting) || !h1x_dispatch(x, true)) {
        x->waiting = true; /* behind the others, in order */
        list_insert_tail(&o->waiting, &x->link);
    }
    if (next == H1ADDR_REFRESH || next == H1ADDR_RESOLVE)
        h1_resolve(o, true);
    return true;
}

void h1client_cancel(struct h1client *c, struct upstream_req *r)
{
    struct h1x *x = r->priv;
    if (!x || !r->on_own_client)
        return;
    loop_timer_stop(x->timer);
    h1x_unwait(x);
    h1x_undefer(x);
    if (x->conn) {
        struct h1origin *o = x->o;
        x->conn->x = NULL;
        h1conn_close(x->conn); /* mid-exchange: it cannot be reused */
        x->conn = NULL;
        h1client_serve(o, true);
    }
    c->active--;
    r->priv = NULL;
    r->on_own_client = false;
    h1x_put(c, x);
}

int h1client_active(const struct h1client *c)
{
    return c->active;
}

