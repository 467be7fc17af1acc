/* h1client.c - see h1client.h.  Sockets and system calls directly; TLS in
 * h1tls.c; the answer parser in base/h1parse.c. */
#include "io/h1client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/h1parse.h"
#include "base/list.h"
#include "base/loop.h"
#include "base/util.h"
#include "io/h1tls.h"

#define H1_RBUF 16384          /* read buffer of a connection, to start */
#define H1_MAX_HEAD 65536      /* an answer's head (and its trailers) */
#define H1_MAX_HEADERS 256
#define H1_INLINE_BODY 16384   /* bodies up to this go in the head's write */

enum h1_state { C_CONNECTING, C_HANDSHAKE, C_IDLE, C_SENDING, C_READING };

struct h1conn;

/* One running request.  Recycled through the client's spare list. */
struct h1x {
    struct h1client *c;          /* borrowed */
    struct upstream_req *r;      /* borrowed */
    struct h1origin *o;          /* borrowed */
    struct h1conn *conn;         /* borrowed: the connection carrying it */
    struct loop_timer *timer;    /* owned: the attempt's timeout */
    const char *target;          /* borrowed: into r->url */
    uint64_t t0;
    bool waiting, deferred, too_large;
    struct list link;            /* in its origin's waiting, the client's
                                    deferred or spare list */
};

/* One controller address (scheme, authority and connect_to). */
struct h1origin {
    char *key;                   /* owned: "scheme://authority" */
    size_t key_len;
    char *connect_to;            /* owned, or NULL */
    bool tls;
    char *host_hdr;              /* owned: the Host value */
    char *name;                  /* owned: certificate name / SNI */
    struct sockaddr_storage addr;
    socklen_t addr_len;
    struct list idle;            /* owned h1conns: kept-alive, last used
                                    first */
    int n_conns;                 /* open, idle or busy */
    struct list waiting;         /* borrowed h1xs, first come first */
    void *session;               /* owned TLS session */
};

/* One connection to a controller. */
struct h1conn {
    struct h1client *c;          /* borrowed */
    struct h1origin *o;          /* borrowed */
    int fd;                      /* owned */
    struct loop_io *io;          /* owned */
    int events;
    struct h1tls *tls;           /* owned, or NULL */
    enum h1_state state;
    struct h1x *x;               /* borrowed: the exchange in progress */
    struct buf out;              /* owned: request bytes */
    size_t out_off;
    const char *body;            /* borrowed: a large body, after out */
    size_t body_len, body_off;
    char *rbuf;                  /* owned */
    size_t rlen, rcap;
    struct h1parse p;
    struct loop_timer *timer;    /* owned: connect + handshake timeout */
    uint64_t idle_since;
    struct list idle_link;       /* in the origin's idle list, if idle */
    struct list link;            /* in the client's conns */
};

struct h1client {
    struct loop *loop;           /* borrowed */
    uint64_t connect_timeout_ms, idle_timeout_ms;
    int max_conns;
    char *ca_file, *cert_file, *key_file; /* owned */
    bool verify;
    struct h1tls_ctx *tls;       /* owned, made at the first https origin */
    bool tls_failed;
    struct h1origin **origins;   /* owned */
    int n_origins;
    struct list conns;           /* owned h1conns: every connection */
    struct list spare;           /* owned h1xs */
    struct list deferred;        /* borrowed h1xs (live ones) */
    struct loop_defer *defer;    /* owned */
    int active;
};

static const struct h1parse_ops h1_parse_ops;
static void h1x_timeout(void *arg);
static void h1conn_io(void *arg, int events);
static void h1conn_connect_timeout(void *arg);
static void h1origin_serve(struct h1origin *o, bool sync);

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

static void h1conn_want(struct h1conn *k, int events)
{
    if (k->events != events) { /* an unchanged set costs no system call */
        k->events = events;
        loop_io_set(k->io, events);
    }
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
static void h1x_finish(struct h1x *x, enum upstream_result res,
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

/* ---- connections -------------------------------------------------------- */

static void h1conn_close(struct h1conn *k)
{
    struct h1origin *o = k->o;
    list_remove(&k->idle_link); /* if it is idle */
    list_remove(&k->link);
    o->n_conns--;
    h1tls_free(k->tls);
    loop_io_free(k->io);
    loop_timer_free(k->timer);
    close(k->fd);
    buf_free(&k->out);
    free(k->rbuf);
    free(k);
}

/* The exchange on k failed: k is closed, the exchange reported. */
static void h1conn_fail(struct h1conn *k, enum upstream_result res,
                        const char *err, bool sync)
{
    struct h1x *x = k->x;
    struct h1origin *o = k->o;
    k->x = NULL;
    h1conn_close(k);
    if (x)
        h1x_finish(x, res, err, sync);
    h1origin_serve(o, sync);
}

static void h1conn_build(struct h1conn *k, struct h1x *x)
{
    struct upstream_req *r = x->r;
    struct buf *b = &k->out;
    const char *host = NULL;
    size_t host_len = 0;
    buf_reset(b);
    k->out_off = 0;
    k->body = NULL;
    k->body_len = k->body_off = 0;
    buf_puts(b, r->method == HTTP_OTHER ? r->method_name
                                        : http_method_name(r->method));
    buf_putc(b, ' ');
    buf_puts(b, x->target);
    buf_append(b, " HTTP/1.1\r\n", 11);
    for (int i = 0; i < r->n_headers; i++) {
        const char *line = r->headers[i];
        const char *colon = strchr(line, ':');
        if (!colon)
            continue;
        size_t nlen = (size_t)(colon - line);
        const char *v = colon + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        if (!*v) /* "Name:" asks libcurl to leave a field out: so do we */
            continue;
        if (util_strncaseeq(line, nlen, "Host")) {
            host = v;
            host_len = strlen(v);
            continue;
        }
        if (util_strncaseeq(line, nlen, "Content-Length") ||
            util_strncaseeq(line, nlen, "Transfer-Encoding") ||
            util_strncaseeq(line, nlen, "Connection") ||
            util_strncaseeq(line, nlen, "Keep-Alive"))
            continue; /* the framing and the connection are ours */
        buf_puts(b, line);
        buf_append(b, "\r\n", 2);
    }
    buf_append(b, "Host: ", 6);
    if (host)
        buf_append(b, host, host_len);
    else
        buf_puts(b, x->o->host_hdr);
    buf_append(b, "\r\n", 2);
    if (r->body_len || r->method == HTTP_POST)
        buf_printf(b, "Content-Length: %zu\r\n", r->body_len);
    buf_append(b, "\r\n", 2);
    if (r->body_len && (k->tls || r->body_len <= H1_INLINE_BODY)) {
        buf_append(b, r->body, r->body_len);
    } else if (r->body_len) {
        k->body = r->body;
        k->body_len = r->body_len;
    }
}

static void h1conn_read(struct h1conn *k);

/* Writes what is left of the request.  One sendmsg in the usual case. */
static void h1conn_flush(struct h1conn *k, bool sync)
{
    struct upstream_req *r = k->x->r;
    for (;;) {
        size_t left = k->out.len - k->out_off;
        if (!left && k->body_off == k->body_len)
            break;
        ssize_t n;
        int err = 0;
        if (k->tls) {
            uint64_t wire = 0;
            n = h1tls_write(k->tls, k->out.data + k->out_off, left, &wire);
            if (wire)
                r->sent = true;
            if (n == H1TLS_WANT_WRITE || n == H1TLS_WANT_READ) {
                h1conn_want(k, LOOP_READ |
                                   (n == H1TLS_WANT_WRITE ? LOOP_WRITE : 0));
                return;
            }
            if (n <= 0) {
                h1conn_fail(k, UPSTREAM_RESET,
                            "TLS: the connection broke while sending", sync);
                return;
            }
        } else {
            struct iovec iov[2];
            int cnt = 0;
            if (left)
                iov[cnt++] = (struct iovec){k->out.data + k->out_off, left};
            if (k->body_off < k->body_len)
                iov[cnt++] = (struct iovec){(char *)k->body + k->body_off,
                                            k->body_len - k->body_off};
            struct msghdr mh = {.msg_iov = iov, .msg_iovlen = (size_t)cnt};
            n = sendmsg(k->fd, &mh, MSG_NOSIGNAL);
            err = errno;
            if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
                h1conn_want(k, LOOP_READ | LOOP_WRITE);
                return;
            }
            if (n < 0) {
                char msg[96];
                snprintf(msg, sizeof(msg), "send: %s", strerror(err));
                h1conn_fail(k, UPSTREAM_RESET, msg, sync);
                return;
            }
            r->sent = true;
        }
        size_t m = (size_t)n;
        size_t a = m < left ? m : left;
        k->out_off += a;
        k->body_off += m - a;
    }
    k->state = C_READING;
    h1conn_want(k, LOOP_READ);
    /* an answer that came while we were still sending is already here */
    if (k->rlen)
        h1conn_read(k);
}

/* Starts exchange x on the established, unused connection k. */
static void h1conn_begin(struct h1conn *k, struct h1x *x, bool sync)
{
    static const struct h1parse_limits lim = {H1_MAX_HEAD, H1_MAX_HEADERS};
    k->x = x;
    x->conn = k;
    k->state = C_SENDING;
    k->rlen = 0;
    h1parse_init(&k->p, &h1_parse_ops, x, &lim,
                 x->r->method == HTTP_HEAD);
    h1conn_build(k, x);
    h1conn_flush(k, sync);
}

/* Connected (and TLS done): the waiting exchange goes. */
static void h1conn_ready(struct h1conn *k)
{
    loop_timer_stop(k->timer);
    h1conn_begin(k, k->x, false);
}

static void h1conn_handshake(struct h1conn *k)
{
    char err[200];
    int rc = h1tls_handshake(k->tls, err, sizeof(err));
    if (rc == 1)
        h1conn_ready(k);
    else if (rc == H1TLS_WANT_READ)
        h1conn_want(k, LOOP_READ);
    else if (rc == H1TLS_WANT_WRITE)
        h1conn_want(k, LOOP_WRITE);
    else
        h1conn_fail(k, UPSTREAM_TLS_ERROR, err, false);
}

static void h1conn_open(struct h1client *c, struct h1origin *o, struct h1x *x,
                        bool sync)
{
    int fd = socket(o->addr.ss_family,
                    SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    char msg[96];
    if (fd < 0) {
        snprintf(msg, sizeof(msg), "socket: %s", strerror(errno));
        h1x_finish(x, UPSTREAM_CONNECT_ERROR, msg, sync);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&o->addr, o->addr_len) < 0 &&
        errno != EINPROGRESS) {
        snprintf(msg, sizeof(msg), "connect: %s", strerror(errno));
        close(fd);
        h1x_finish(x, UPSTREAM_CONNECT_ERROR, msg, sync);
        return;
    }
    struct h1conn *k = xcalloc(1, sizeof(*k));
    k->c = c;
    k->o = o;
    k->fd = fd;
    k->io = loop_io_new(c->loop, fd, h1conn_io, k);
    k->timer = loop_timer_new(c->loop, h1conn_connect_timeout, k);
    k->rcap = H1_RBUF;
    k->rbuf = xmalloc(k->rcap);
    k->state = C_CONNECTING;
    k->x = x;
    x->conn = k;
    list_init(&k->idle_link);
    list_insert_head(&c->conns, &k->link);
    o->n_conns++;
    if (c->connect_timeout_ms)
        loop_timer_start(k->timer, c->connect_timeout_ms, 0);
    h1conn_want(k, LOOP_WRITE);
}

static void h1conn_connected(struct h1conn *k)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        char msg[96];
        snprintf(msg, sizeof(msg), "connect: %s", strerror(err));
        h1conn_fail(k, UPSTREAM_CONNECT_ERROR, msg, false);
        return;
    }
    if (!k->o->tls) {
        h1conn_ready(k);
        return;
    }
    k->tls = h1tls_new(k->c->tls, k->fd, k->o->name, &k->o->session);
    if (!k->tls) {
        h1conn_fail(k, UPSTREAM_TLS_ERROR, "TLS: cannot start", false);
        return;
    }
    k->state = C_HANDSHAKE;
    h1conn_handshake(k);
}

/* The answer is complete: k goes back to its pool (or is closed) before
 * done runs, so a retry started from done can use it. */
static void h1conn_complete(struct h1conn *k)
{
    struct h1x *x = k->x;
    struct h1origin *o = k->o;
    struct h1client *c = k->c;
    bool keep = k->p.keep_alive && k->rlen == 0;
    x->r->status = k->p.status;
    k->x = NULL;
    if (keep) {
        k->state = C_IDLE;
        k->idle_since = loop_now_ms(c->loop);
        list_insert_head(&o->idle, &k->idle_link);
    } else {
        h1conn_close(k);
    }
    h1x_finish(x, UPSTREAM_OK, NULL, false);
    h1origin_serve(o, false);
}

static void h1conn_read(struct h1conn *k)
{
    for (;;) {
        if (k->rlen == k->rcap) {
            k->rcap *= 2; /* a long head line: the parser bounds it */
            k->rbuf = xrealloc(k->rbuf, k->rcap);
        }
        size_t room = k->rcap - k->rlen;
        ssize_t n;
        int err = 0;
        if (k->tls) {
            n = h1tls_read(k->tls, k->rbuf + k->rlen, room);
            if (n == H1TLS_WANT_READ)
                return;
            if (n == H1TLS_WANT_WRITE) {
                h1conn_want(k, LOOP_READ | LOOP_WRITE);
                return;
            }
            if (n == H1TLS_FAIL)
                n = -1, err = ECONNRESET;
        } else {
            n = recv(k->fd, k->rbuf + k->rlen, room, 0);
            err = errno;
            if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK))
                return;
        }
        if (k->state == C_IDLE) { /* closed, or bytes nobody asked for */
            h1conn_close(k);
            return;
        }
        if (n <= 0) {
            char msg[96];
            if (n < 0)
                snprintf(msg, sizeof(msg), "recv: %s", strerror(err));
            else if (h1parse_eof(&k->p) == H1P_DONE) {
                k->p.keep_alive = false;
                h1conn_complete(k);
                return;
            } else
                snprintf(msg, sizeof(msg), "connection closed: %s",
                         k->p.error);
            h1conn_fail(k, UPSTREAM_RESET, msg, false);
            return;
        }
        k->rlen += (size_t)n;
        size_t used;
        enum h1parse_result res = h1parse_feed(&k->p, k->rbuf, k->rlen,
                                               &used);
        memmove(k->rbuf, k->rbuf + used, k->rlen - used);
        k->rlen -= used;
        if (res == H1P_DONE) {
            if (k->state != C_READING) /* answered before it was all sent */
                k->p.keep_alive = false;
            h1conn_complete(k);
            return;
        }
        if (res == H1P_ERROR) {
            char msg[96];
            snprintf(msg, sizeof(msg), "malformed answer: %s", k->p.error);
            h1conn_fail(k, UPSTREAM_RESET, msg, false);
            return;
        }
        if ((!k->tls && (size_t)n < room) ||
            (k->tls && !h1tls_pending(k->tls)))
            return; /* the socket is drained: wait for the loop */
    }
}

static void h1conn_io(void *arg, int events)
{
    struct h1conn *k = arg;
    switch (k->state) {
    case C_CONNECTING:
        h1conn_connected(k);
        return;
    case C_HANDSHAKE:
        h1conn_handshake(k);
        return;
    case C_SENDING:
        if (events & (LOOP_WRITE | LOOP_ERROR)) {
            h1conn_flush(k, false);
            return;
        }
        h1conn_read(k); /* an early answer, or the end */
        return;
    case C_READING:
        if (k->tls && (events & LOOP_WRITE))
            h1conn_want(k, LOOP_READ);
        h1conn_read(k);
        return;
    case C_IDLE:
        h1conn_read(k);
        return;
    }
}

static void h1conn_connect_timeout(void *arg)
{
    struct h1conn *k = arg;
    h1conn_fail(k, UPSTREAM_CONNECT_TIMEOUT, "connect timeout", false);
}

/* ---- answer capture ---------------------------------------------------- */

static bool h1_on_header(void *arg, const char *n, size_t nl, const char *v,
                         size_t vl)
{
    struct h1x *x = arg;
    upstream_resp_header_addn(x->r, n, nl, v, vl);
    return true;
}

static bool h1_on_body(void *arg, const char *p, size_t n)
{
    struct h1x *x = arg;
    struct upstream_req *r = x->r;
    if (r->max_response && r->resp_body.len + n > r->max_response) {
        x->too_large = true;
        return false;
    }
    buf_append(&r->resp_body, p, n);
    return true;
}

static const struct h1parse_ops h1_parse_ops = {h1_on_header, h1_on_body};

/* ---- origins and dispatch ---------------------------------------------- */

static bool h1_parse_addr(const char *host, size_t hlen, unsigned port,
                          struct sockaddr_storage *ss, socklen_t *len)
{
    char tmp[64];
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    if (hlen >= sizeof(tmp))
        return false;
    memcpy(tmp, host, hlen);
    tmp[hlen] = '\0';
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, tmp, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
        return true;
    }
    if (inet_pton(AF_INET6, tmp, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
        return true;
    }
    return false; /* a name: libcurl resolves it without blocking */
}

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
    struct sockaddr_storage ss;
    socklen_t sslen;
    if (connect_to) { /* "name:port:addr:port" */
        const char *a = strchr(connect_to, ':');
        a = a ? strchr(a + 1, ':') : NULL;
        size_t ahlen;
        unsigned aport;
        if (!a || !h1_split_hostport(a + 1, strlen(a + 1), &ahlen, &aport) ||
            !h1_parse_addr(a + 1, ahlen, aport, &ss, &sslen))
            return NULL;
    } else if (!h1_parse_addr(auth, hlen, port, &ss, &sslen)) {
        return NULL;
    }
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
    o->key = h1_strndup(url, key_len);
    o->key_len = key_len;
    o->connect_to = connect_to ? xstrdup(connect_to) : NULL;
    o->tls = tls;
    bool default_port = port == (tls ? 443u : 80u);
    o->host_hdr = h1_strndup(auth, default_port ? hlen : alen);
    if (hlen >= 2 && auth[0] == '[')
        o->name = h1_strndup(auth + 1, hlen - 2);
    else
        o->name = h1_strndup(auth, hlen);
    o->addr = ss;
    o->addr_len = sslen;
    list_init(&o->idle);
    list_init(&o->waiting);
    c->origins = xrealloc(c->origins,
                          (size_t)(c->n_origins + 1) * sizeof(*c->origins));
    c->origins[c->n_origins++] = o;
    return o;
}

static struct h1origin *h1_origin(struct h1client *c, const struct upstream_req *r,
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

static void h1origin_serve(struct h1origin *o, bool sync)
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
    if (!k) { /* still waiting for a connection */
        h1x_finish(x, UPSTREAM_CONNECT_TIMEOUT,
                   "no connection to the controller in time", false);
        return;
    }
    bool connecting = k->state == C_CONNECTING || k->state == C_HANDSHAKE;
    h1conn_fail(k, connecting || !x->r->sent ? UPSTREAM_CONNECT_TIMEOUT
                                              : UPSTREAM_TIMEOUT,
                "timed out", false);
}

/* ---- public ------------------------------------------------------------ */

static char *h1_dup(const char *s)
{
    return s ? xstrdup(s) : NULL;
}

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
    c->defer = loop_defer_new(loop, h1_deferred, c);
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
        h1tls_session_free(&o->session);
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
    struct h1x *x = h1x_get(c);
    x->r = r;
    x->o = o;
    x->target = target;
    x->t0 = util_mono_ns();
    r->priv = x;
    r->on_own_client = true;
    c->active++;
    if (r->timeout_ms)
        loop_timer_start(x->timer, r->timeout_ms, 0);
    if (list_empty(&o->waiting) && h1x_dispatch(x, true))
        return true;
    x->waiting = true; /* behind the others, in order */
    list_insert_tail(&o->waiting, &x->link);
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
        h1origin_serve(o, true);
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
