/* h1conn.c - one connection of the controller client (see h1client.h,
 * h1client_impl.h): connect, TLS handshake, the request's bytes, the
 * answer read and parsed, back to its origin's idle pool or closed. */
#include "io/h1client_impl.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"
#include "base/loop.h"
#include "base/uring.h"
#include "base/util.h"
#include "io/h1tls.h"
#include "io/headers.h"

static const struct h1parse_ops h1conn_parse_ops;
static void h1conn_io(void *arg, int events);
static void h1conn_connect_timeout(void *arg);
static void h1conn_next(struct h1conn *k, enum upstream_result res,
                        const char *why, bool sync, bool first);

static void h1conn_want(struct h1conn *k, int events)
{
    if (k->events != events) { /* an unchanged set costs no system call */
        k->events = events;
        loop_io_set(k->io, events);
    }
}

void h1conn_close(struct h1conn *k)
{
    struct h1origin *o = k->o;
    list_remove(&k->idle_link); /* if it is idle */
    list_remove(&k->link);
    list_remove(&k->queue_link); /* if it is queued */
    o->n_conns--;
    h1tls_free(k->tls);
    loop_io_free(k->io);
    loop_timer_free(k->timer);
    if (k->fd >= 0)
        close(k->fd);
    buf_free(&k->out);
    buf_free(&k->ctext);
    free(k->rbuf);
    free(k);
}

/* The exchange on k failed: k is closed, the exchange reported. */
void h1conn_fail(struct h1conn *k, enum upstream_result res,
                 const char *err, bool sync)
{
    struct h1x *x = k->x;
    struct h1origin *o = k->o;
    /* a connection that could not be made (not a TLS error: that one
     * answered, with something else than the controller expected).  A
     * connect timeout says so only while TCP was not established: a
     * handshake the controller is slow to answer comes from a live process
     * its kernel accepted for (bench/soak.py, 30-minute v1.5.4 run: 401s
     * after full connect timeouts of an overloaded home that answered
     * everything else) */
    bool opening = k->state == C_CONNECTING ||
                   (k->state == C_HANDSHAKE && res != UPSTREAM_CONNECT_TIMEOUT);
    bool local = k->local_error || k->cut_short; /* read before
                                                   * h1conn_close frees k */
    k->x = NULL;
    h1conn_close(k);
    if (x && opening && !local &&
        (res == UPSTREAM_CONNECT_ERROR || res == UPSTREAM_CONNECT_TIMEOUT))
        x->r->unreachable = true;
    if (x)
        h1client_finish(x, res, err, sync);
    h1client_serve(o, sync);
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
    int n = r->headers ? r->n_headers : r->fields ? r->fields->n : 0;
    for (int i = 0; i < n; i++) {
        /* "Name: value" lines, or the pairs they would be made of */
        const char *name, *v;
        size_t nlen;
        if (r->headers) {
            const char *colon = strchr(r->headers[i], ':');
            if (!colon)
                continue;
            name = r->headers[i];
            nlen = (size_t)(colon - name);
            v = colon + 1;
        } else {
            name = headers_name(r->fields, i);
            nlen = headers_name_len(r->fields, i);
            v = headers_value(r->fields, i);
        }
        const char *raw = v;
        while (*v == ' ' || *v == '\t')
            v++;
        if (!*v) /* "Name:" asks libcurl to leave a field out: so do we */
            continue;
        if (util_strncaseeq(name, nlen, "Host")) {
            host = v;
            host_len = strlen(v);
            continue;
        }
        if (util_strncaseeq(name, nlen, "Content-Length") ||
            util_strncaseeq(name, nlen, "Transfer-Encoding") ||
            util_strncaseeq(name, nlen, "Connection") ||
            util_strncaseeq(name, nlen, "Keep-Alive"))
            continue; /* the framing and the connection are ours */
        if (r->headers) {
            buf_puts(b, name); /* the line as given */
        } else {
            buf_append(b, name, nlen);
            buf_append(b, ": ", 2);
            buf_puts(b, raw);
        }
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

/* After a send on k's socket that returned n (errno err): true = go on;
 * false = k waits to write again (a full socket) or failed (closed,
 * reported). */
static bool h1conn_sent(struct h1conn *k, ssize_t n, int err, bool sync)
{
    if (n < 0 && (err == EAGAIN || err == EWOULDBLOCK)) {
        h1conn_want(k, LOOP_READ | LOOP_WRITE);
        return false;
    }
    if (n < 0) {
        char msg[96];
        snprintf(msg, sizeof(msg), "send: %s", strerror(err));
        h1conn_fail(k, UPSTREAM_RESET, msg, sync);
        return false;
    }
    return true;
}

/* Writes what is left of the request.  One sendmsg in the usual case. */
static void h1conn_flush(struct h1conn *k, bool sync)
{
    struct upstream_req *r = k->x->r;
    while (k->sealed) { /* TLS records made for a batch: the rest, as is */
        size_t left = k->ctext.len - k->ctext_off;
        if (!left) {
            k->sealed = false;
            break;
        }
        ssize_t n = send(k->fd, k->ctext.data + k->ctext_off, left,
                         MSG_NOSIGNAL);
        if (!h1conn_sent(k, n, errno, sync))
            return;
        r->sent = true;
        k->ctext_off += (size_t)n;
    }
    for (;;) {
        size_t left = k->out.len - k->out_off;
        if (!left && k->body_off == k->body_len)
            break;
        ssize_t n;
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
            if (!h1conn_sent(k, n, errno, sync))
                return;
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
void h1conn_begin(struct h1conn *k, struct h1x *x, bool sync)
{
    static const struct h1parse_limits lim = {H1_MAX_HEAD, H1_MAX_HEADERS};
    k->x = x;
    x->conn = k;
    k->state = C_SENDING;
    k->rlen = 0;
    h1parse_init(&k->p, &h1conn_parse_ops, x, &lim,
                 x->r->method == HTTP_HEAD);
    h1conn_build(k, x);
    if (k->c->batch && k->c->uring) {
        /* written with the loop turn's other requests: the queue is sent
         * before the loop next waits for I/O.  Over TLS the request is
         * encrypted now and its records go in the batch. */
        if (k->tls) {
            buf_reset(&k->ctext);
            k->ctext_off = 0;
            if (!h1tls_seal(k->tls, k->out.data, k->out.len, &k->ctext)) {
                h1conn_fail(k, UPSTREAM_TLS_ERROR,
                            "TLS: the request could not be encrypted", sync);
                return;
            }
            k->out_off = k->out.len;
            k->sealed = true;
        }
        k->state = C_QUEUED;
        list_insert_tail(&k->c->queue, &k->queue_link);
        loop_defer_schedule(k->c->send_late);
        return;
    }
    h1conn_flush(k, sync);
}

/* The batch has written k's request, some of it, or none. */
static void h1conn_queued_sent(struct h1conn *k)
{
    long res = k->queued_result;
    k->state = C_SENDING;
    if (res == -EINPROGRESS) {
        /* taken by the kernel, its outcome lost with the ring: it may
         * have gone, so it is never written again */
        k->x->r->sent = true;
        h1conn_fail(k, UPSTREAM_RESET, "send: the batch's outcome is unknown",
                    false);
        return;
    }
    if (res > 0) {
        k->x->r->sent = true;
        k->x->r->batched = true;
        if (k->sealed)
            k->ctext_off += (size_t)res;
        else
            k->out_off += (size_t)res;
    }
    /* the rest as without a batch: a large body, what did not fit (want
     * to write), or the error, which the socket says again (nothing was
     * written) */
    h1conn_flush(k, false);
}

void h1conn_send_queue(struct h1client *c)
{
    struct uring_send s[H1_BATCH];
    struct h1conn *ks[H1_BATCH];
    while (!list_empty(&c->queue)) {
        /* this batch's connections move to a list of their own: a callback
         * that closes one of them (h1conn_close) takes it out of it */
        struct list batch, *l;
        unsigned n = 0;
        list_init(&batch);
        while (n < H1_BATCH && (l = list_first(&c->queue))) {
            struct h1conn *k = list_entry(l, struct h1conn, queue_link);
            list_remove(l);
            list_insert_tail(&batch, l);
            ks[n] = k;
            const struct buf *b = k->sealed ? &k->ctext : &k->out;
            size_t off = k->sealed ? k->ctext_off : k->out_off;
            s[n] = (struct uring_send){.fd = k->fd, .data = b->data + off,
                                       .len = b->len - off};
            n++;
        }
        bool ok = c->uring && uring_send_all(c->uring, s, n);
        for (unsigned i = 0; i < n; i++)
            ks[i]->queued_result = c->uring ? s[i].result : -ECANCELED;
        if (c->uring && !ok) {
            if (c->log)
                log_error(c->log, "upstream.batch_sends: io_uring failed; "
                                  "one send per request from now on");
            uring_free(c->uring);
            c->uring = NULL;
            c->uring_failed = true;
        }
        while ((l = list_first(&batch))) {
            struct h1conn *k = list_entry(l, struct h1conn, queue_link);
            list_remove(l);
            h1conn_queued_sent(k);
        }
    }
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

/* Connects k to the next of its origin's addresses not tried yet.  When
 * every one was tried, the connection fails with res/msg (the last try's):
 * nothing was written.  first: inside h1conn_open(), where the caller
 * serves the origin's waiting exchanges itself. */
static void h1conn_next(struct h1conn *k, enum upstream_result res,
                        const char *why, bool sync, bool first)
{
    struct h1origin *o = k->o;
    struct h1client *c = k->c;
    char msg[128];
    snprintf(msg, sizeof(msg), "%s", why);
    if (k->io) {
        loop_io_free(k->io);
        k->io = NULL;
        k->events = 0;
    }
    if (k->fd >= 0) {
        close(k->fd);
        k->fd = -1;
    }
    int i;
    while ((i = h1addr_pick(&o->addr, k->tries)) >= 0) {
        const struct sockaddr *sa = (const struct sockaddr *)&o->addr.a[i];
        socklen_t salen = o->addr.len[i];
        k->tries++;
        k->ai = i;
        int fd = socket(sa->sa_family,
                        SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            res = UPSTREAM_CONNECT_ERROR;
            k->local_error = true;
            snprintf(msg, sizeof(msg), "socket: %s", strerror(errno));
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(fd, sa, salen) < 0 && errno != EINPROGRESS) {
            res = UPSTREAM_CONNECT_ERROR;
            k->local_error = k->local_error || util_errno_is_local(errno);
            snprintf(msg, sizeof(msg), "connect: %s", strerror(errno));
            close(fd);
            continue;
        }
        k->io = loop_io_new(c->loop, fd, h1conn_io, k);
        if (!k->io) {
            res = UPSTREAM_CONNECT_ERROR;
            k->local_error = true;
            snprintf(msg, sizeof(msg), "connect: cannot watch the socket");
            close(fd);
            continue;
        }
        k->fd = fd;
        if (c->connect_timeout_ms)
            loop_timer_start(k->timer, c->connect_timeout_ms, 0);
        h1conn_want(k, LOOP_WRITE);
        return;
    }
    /* none answered: resolve the name again (in the background) */
    h1client_unreachable(o);
    if (!first) {
        h1conn_fail(k, res, msg, sync);
        return;
    }
    struct h1x *x = k->x;
    k->x = NULL;
    bool local = k->local_error;
    h1conn_close(k);
    /* the 401 that ends a session must mean the controller, not this
     * machine's descriptors, memory or ports */
    x->r->unreachable = !local;
    h1client_finish(x, res, msg, sync);
}

void h1conn_open(struct h1client *c, struct h1origin *o, struct h1x *x,
                 bool sync)
{
    struct h1conn *k = xcalloc(1, sizeof(*k));
    k->c = c;
    k->o = o;
    k->fd = -1;
    k->timer = loop_timer_new(c->loop, h1conn_connect_timeout, k);
    k->rcap = H1_RBUF;
    k->rbuf = xmalloc(k->rcap);
    k->state = C_CONNECTING;
    k->x = x;
    x->conn = k;
    list_init(&k->idle_link);
    list_init(&k->queue_link);
    list_insert_head(&c->conns, &k->link);
    o->n_conns++;
    h1conn_next(k, UPSTREAM_CONNECT_ERROR, "no address", sync, true);
}

static void h1conn_connected(struct h1conn *k)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(k->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) { /* refused, unreachable: nothing was written */
        char msg[96];
        snprintf(msg, sizeof(msg), "connect: %s", strerror(err));
        h1conn_next(k, UPSTREAM_CONNECT_ERROR, msg, false, false);
        return;
    }
    h1addr_connected(&k->o->addr, k->ai);
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
    h1client_finish(x, UPSTREAM_OK, NULL, false);
    h1client_serve(o, false);
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
    case C_QUEUED:
        /* nothing written yet: the batch writes it before the loop polls
         * again, and what the socket says now (the controller closed it
         * while idle, say) is read after that, as without a batch */
        return;
    }
}

static void h1conn_connect_timeout(void *arg)
{
    struct h1conn *k = arg;
    if (k->state == C_CONNECTING) /* the next address, if any */
        h1conn_next(k, UPSTREAM_CONNECT_TIMEOUT, "connect timeout", false,
                    false);
    else
        h1conn_fail(k, UPSTREAM_CONNECT_TIMEOUT, "connect timeout", false);
}

/* ---- answer capture ---------------------------------------------------- */

static bool h1conn_on_header(void *arg, const char *n, size_t nl,
                             const char *v, size_t vl)
{
    struct h1x *x = arg;
    upstream_resp_header_addn(x->r, n, nl, v, vl);
    return true;
}

static bool h1conn_on_body(void *arg, const char *p, size_t n)
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

static const struct h1parse_ops h1conn_parse_ops = {h1conn_on_header,
                                                    h1conn_on_body};

