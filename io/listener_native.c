/* listener_native.c - the listener's HTTP/1.1 server (see
 * listener_impl.h), plain or over TLS (io/h1tls.c), on the worker's loop:
 * framing checks, limits, deadlines, the budget, 408s, request ids and
 * exchange reuse as the rest of the listener defines them.  A connection
 * stays in the loop's epoll set with the same events from one request to
 * the next, nothing per request is zeroed, and the answer is written with
 * one writev() (one TLS record for a small answer) from the call that
 * makes it.
 *
 * A connection reads one request at a time (base/h1req.c parses it); bytes
 * of a pipelined next request wait in its input buffer until the current
 * exchange is over.  Exchanges end (on_complete) from the listener's
 * deferred callback (l->soon, before the loop next waits), never from
 * inside listener_respond(): the owner may still use its state after
 * answering.  An answer the listener gives before the request was handed
 * over (a local error) closes the connection: what is left of the request
 * is not read. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "base/envelope.h"
#include "base/h1req.h"
#include "base/list.h"
#include "base/loop.h"
#include "base/util.h"
#include "io/framing.h"
#include "io/h1tls.h"
#include "io/listener_impl.h"

/* Bytes read ahead beyond the current request (a pipelined next one) before
 * the connection stops reading until the exchange is over. */
#define NATIVE_READ_AHEAD (64 * 1024)
#define NATIVE_READ_CHUNK (16 * 1024)
/* A connection closed with request bytes maybe still coming (a refused
 * request) first drains them, at most this long and this much: closing a
 * socket with unread bytes resets it, and the client may lose the answer
 * (nginx's lingering_close). */
#define NATIVE_LINGER_MS 2000
#define NATIVE_LINGER_BYTES (1024 * 1024)
/* Over TLS, a body up to this size is copied behind the answer's head so
 * that both go in one record and one system call. */
#define NATIVE_TLS_MERGE (12 * 1024)

enum native_state {
    NS_IDLE = 0,      /* between requests: nothing of the next one yet */
    NS_HEAD,          /* request line and fields coming */
    NS_BODY,          /* head accepted, body coming */
    NS_WAITING,       /* handed to the owner */
    NS_SENDING,       /* answer written, partly */
    NS_DONE,          /* answer sent (or the connection lost): to finish */
    NS_LINGER,        /* closing: our side shut, the client's bytes
                       * drained so that the answer is not reset away */
};

/* Owned by its listener (l->conns), one per client connection; base is
 * what the listener's shared code knows of a connection. */
struct native_conn {
    struct listener_conn base;     /* first: xp->conn points here */
    struct list link;              /* in l->conns */
    struct list done_link;         /* in l->done while NS_DONE */
    struct loop_io *io;            /* owned */
    int events;                    /* what io watches */
    enum native_state st;
    struct h1req parser;
    struct buf in;                 /* owned: received bytes */
    size_t in_off;                 /* of them, parsed */
    struct buf out;                /* owned: the answer's head */
    char *body;                    /* owned: the answer's body */
    size_t body_len;
    size_t sent;                   /* of head + body */
    bool eof;                      /* the client closed its side */
    bool lost;                     /* cannot write any more */
    bool close_after;              /* close once this answer is sent */
    bool head_only;                /* HEAD: the body is not sent */
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct listener_clients *clients; /* borrowed: peer is counted there
                                         (dropped at close); or NULL */
    struct h1tls *tls;             /* owned; NULL on plain HTTP */
    bool handshaking;              /* TLS handshake not done yet */
    bool client_cert;              /* the client presented a certificate */
};

#define NC(conn) ((struct native_conn *)(void *)(conn))

static void native_process(struct native_conn *nc);
static void native_close(struct native_conn *nc);
static void native_io(void *arg, int events);

/* ---- small helpers ----------------------------------------------------- */

/* b (empty) gets room for at least n bytes, from the pool if it can. */
static void native_buf_get(struct listener *l, struct buf *b, size_t n)
{
    if (!b->data && l->n_pool > 0)
        *b = l->pool[--l->n_pool];
    if (b->cap < n + 1)
        buf_reserve(b, n);
}

/* b goes back to the pool (or is freed); b is left empty. */
static void native_buf_put(struct listener *l, struct buf *b)
{
    if (b->data && l->n_pool < LISTENER_POOL && b->cap <= 256 * 1024) {
        buf_reset(b);
        l->pool[l->n_pool++] = *b;
    } else {
        buf_free(b);
    }
    *b = (struct buf){0};
}

static void native_watch(struct native_conn *nc, int events)
{
    if (nc->events == events)
        return;
    nc->events = events;
    loop_io_set(nc->io, events);
}

static void native_arm(struct native_conn *nc, uint64_t ms)
{
    if (ms)
        loop_timer_start(nc->base.deadline, ms, 0);
    else
        loop_timer_stop(nc->base.deadline);
}

/* ---- the exchange of a request ----------------------------------------- */

/* A new exchange, the previous one's memory reused. */
static struct listener_exchange *native_exchange(struct native_conn *nc)
{
    struct listener *l = nc->base.l;
    struct listener_exchange_alloc *a = listener_request_reuse(&nc->base);
    struct listener_exchange *ex = &a->ex;
    struct listener_xpriv *xp = &a->p;
    size_t need = l->limits.max_header_bytes + 256;
    ex->priv = xp;
    xp->conn = &nc->base;
    /* field text is copied here as it is parsed; room for the whole head
     * up front, so that pointers into it stay valid */
    native_buf_get(l, &xp->text, need);
    ex->url = "";
    ex->method_name = "";
    ex->method = HTTP_OTHER;
    ex->version = "";
    ex->start_ns = util_mono_ns();
    ex->tls = l->tls;
    ex->client_cert = nc->client_cert;
    ex->listener_index = l->index;
    memcpy(ex->client_addr, nc->base.client_addr, sizeof(ex->client_addr));
    ex->client_port = nc->base.client_port;
    nc->base.ex = ex;
    return ex;
}

/* Copies [p, p+n) and a NUL into the exchange's text; NULL when the head
 * outgrows the room made for it (the parser bounds it first). */
static const char *native_keep(struct listener_xpriv *xp, const char *p,
                               size_t n)
{
    if (xp->text.len + n + 1 >= xp->text.cap)
        return NULL;
    char *at = xp->text.data + xp->text.len;
    memcpy(at, p, n);
    at[n] = '\0';
    xp->text.len += n + 1;
    return at;
}

static bool native_on_line(void *arg, const char *method, size_t method_len,
                           const char *target, size_t target_len)
{
    struct native_conn *nc = arg;
    struct listener_exchange *ex = nc->base.ex;
    struct listener_xpriv *xp = XP(ex);
    const char *m = native_keep(xp, method, method_len);
    const char *t = native_keep(xp, target, target_len);
    if (!m || !t)
        return false;
    ex->method_name = m;
    ex->method = http_method_parse(m);
    ex->url = t;
    ex->version = nc->parser.minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
    return true;
}

static bool native_on_header(void *arg, const char *name, size_t name_len,
                             const char *value, size_t value_len)
{
    struct native_conn *nc = arg;
    struct listener_exchange *ex = nc->base.ex;
    struct listener_xpriv *xp = XP(ex);
    const char *n = native_keep(xp, name, name_len);
    const char *v = native_keep(xp, value, value_len);
    if (!n || !v)
        return false;
    if (ex->n_headers == xp->hdr_cap) {
        xp->hdr_cap = xp->hdr_cap ? 2 * xp->hdr_cap : 16;
        ex->headers = xrealloc(ex->headers,
                               (size_t)xp->hdr_cap * sizeof(*ex->headers));
    }
    ex->headers[ex->n_headers++] =
        (struct listener_header){n, name_len, v, value_len};
    return true;
}

static bool native_on_head(void *arg, const struct h1req *p)
{
    struct native_conn *nc = arg;
    struct listener *l = nc->base.l;
    struct listener_exchange *ex = nc->base.ex;
    listener_request_set_id(l, ex);
    if (!listener_request_check(l, ex, p->head_bytes))
        return false; /* answered: a local error */
    nc->st = NS_BODY;
    native_arm(nc, l->limits.body_timeout_ms);
    if (p->expect_continue && (p->chunked || p->length > 0)) {
        /* the client waits for this before it sends the body */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        uint64_t wire;
        if (nc->tls)
            (void)h1tls_write(nc->tls, cont, sizeof(cont) - 1, &wire);
        else
            (void)!send(nc->base.fd, cont, sizeof(cont) - 1,
                        MSG_NOSIGNAL | MSG_DONTWAIT);
    }
    return true;
}

static bool native_on_body(void *arg, const char *p, size_t n)
{
    struct native_conn *nc = arg;
    return listener_request_body(nc->base.l, nc->base.ex, p, n);
}

static const struct h1req_ops native_parse_ops = {
    native_on_line, native_on_header, native_on_head, native_on_body};

static void native_parser_init(struct native_conn *nc)
{
    struct listener *l = nc->base.l;
    struct h1req_limits lim = {
        .max_head = l->limits.max_header_bytes,
        .max_headers = (int)l->limits.max_headers,
        /* over the limit: read and dropped, then 413 (listener_request_body) */
        .max_body = UINT64_MAX,
    };
    h1req_init(&nc->parser, &native_parse_ops, nc, &lim);
}

/* The parser refused the request: answer it and close. */
static void native_refuse(struct native_conn *nc)
{
    struct listener *l = nc->base.l;
    struct listener_exchange *ex = nc->base.ex;
    enum errcode e = ERR_BAD_REQUEST;
    switch (nc->parser.error_kind) {
    case H1REQ_E_URI_TOO_LONG: e = ERR_URI_TOO_LONG; break;
    case H1REQ_E_TOO_LARGE: e = ERR_REQUEST_HEADER_FIELDS_TOO_LARGE; break;
    case H1REQ_E_BODY_TOO_LARGE: e = ERR_REQUEST_ENTITY_TOO_LARGE; break;
    case H1REQ_E_EXPECT: e = ERR_EXPECTATION_FAILED; break;
    case H1REQ_E_VERSION: e = ERR_HTTP_VERSION_NOT_SUPPORTED; break;
    case H1REQ_E_STOPPED:
        /* a body far over the limit (listener_request_body) */
        if (XP(ex)->discarding)
            e = ERR_REQUEST_ENTITY_TOO_LARGE;
        break;
    default: break;
    }
    if (!ex->request_id[0])
        listener_request_set_id(l, ex);
    if (!ex->method_name[0])
        ex->method_name = "-";
    listener_respond_error(ex, l, e,
                           e == ERR_BAD_REQUEST ? nc->parser.error : NULL,
                           true);
}

/* The request is in: to the owner, or answered by the listener itself. */
static void native_dispatch(struct native_conn *nc)
{
    struct listener *l = nc->base.l;
    struct listener_exchange *ex = nc->base.ex;
    struct listener_xpriv *xp = XP(ex);
    native_arm(nc, 0);
    if (xp->over_budget) {
        listener_request_budget_spent(l, ex);
        return;
    }
    if (xp->discarding) {
        listener_respond_error(ex, l, ERR_REQUEST_ENTITY_TOO_LARGE, NULL,
                               true);
        return;
    }
    ex->body = xp->body.data ? xp->body.data : "";
    ex->body_len = xp->body.len;
    nc->st = NS_WAITING;
    xp->phase = PHASE_WAITING;
    xp->in_handler = true;
    l->ops->on_request(l->ctx, ex);
    xp->in_handler = false;
}

/* ---- answers ------------------------------------------------------------ */

/* The Date field, made once a second per listener. */
static const char *native_date(struct listener *l)
{
    time_t now = time(NULL);
    if (now != l->date_at) {
        struct tm tm;
        gmtime_r(&now, &tm);
        strftime(l->date, sizeof(l->date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
        l->date_at = now;
    }
    return l->date;
}

/* native_write over TLS: the head, then the body (a small body is in the
 * head's buffer already: one record). */
static bool native_write_tls(struct native_conn *nc, size_t head, size_t body)
{
    while (nc->sent < head + body) {
        const char *p = nc->sent < head ? nc->out.data + nc->sent
                                        : nc->body + (nc->sent - head);
        size_t n = nc->sent < head ? head - nc->sent : head + body - nc->sent;
        uint64_t wire;
        ssize_t w = h1tls_write(nc->tls, p, n, &wire);
        if (w > 0) {
            nc->sent += (size_t)w;
            continue;
        }
        if (w == H1TLS_WANT_WRITE)
            return false; /* retried with the same bytes, as TLS needs */
        nc->lost = true; /* reset, or a protocol failure */
        return true;
    }
    return true;
}

/* Sends what is left of the answer; true when all of it went. */
static bool native_write(struct native_conn *nc)
{
    size_t head = nc->out.len;
    size_t body = nc->head_only ? 0 : nc->body_len;
    if (nc->tls)
        return native_write_tls(nc, head, body);
    while (nc->sent < head + body) {
        struct iovec iov[2];
        int n = 0;
        if (nc->sent < head)
            iov[n++] = (struct iovec){nc->out.data + nc->sent,
                                      head - nc->sent};
        if (body) {
            size_t off = nc->sent > head ? nc->sent - head : 0;
            iov[n++] = (struct iovec){nc->body + off, body - off};
        }
        ssize_t w = writev(nc->base.fd, iov, n);
        if (w > 0) {
            nc->sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        nc->lost = true; /* reset, broken pipe: nothing more goes out */
        return true;
    }
    return true;
}

static void native_finish_later(struct native_conn *nc)
{
    nc->st = NS_DONE;
    native_arm(nc, 0);
    if (!list_linked(&nc->done_link))
        list_insert_tail(&nc->base.l->done, &nc->done_link);
    loop_defer_schedule(nc->base.l->soon);
}

static void native_send(struct native_conn *nc)
{
    if (native_write(nc)) {
        native_watch(nc, nc->eof ? 0 : LOOP_READ);
        native_finish_later(nc);
    } else {
        native_watch(nc, LOOP_WRITE);
    }
}

/* "HTTP/1.1 200 OK\r\n" (the answer's first line, on every request:
 * no printf). */
static void native_status_line(struct buf *out, int status)
{
    char code[4];
    if (status < 100 || status > 999)
        status = 500;
    code[0] = (char)('0' + status / 100);
    code[1] = (char)('0' + status / 10 % 10);
    code[2] = (char)('0' + status % 10);
    code[3] = ' ';
    buf_append(out, "HTTP/1.1 ", 9);
    buf_append(out, code, 4);
    buf_puts(out, listener_respond_reason(status));
    buf_append(out, "\r\n", 2);
}

static void native_content_length(struct buf *out, uint64_t n)
{
    buf_append(out, "Content-Length: ", 16);
    buf_put_u64(out, n);
    buf_append(out, "\r\n", 2);
}

void listener_native_respond(struct listener_exchange *ex, int status,
                             const struct http_field *fields, int n,
                             char *body, size_t len, bool close)
{
    struct listener_xpriv *xp = XP(ex);
    struct native_conn *nc = NC(xp->conn);
    struct listener *l = nc->base.l;
    bool date = false, no_body = status < 200 || status == 204 ||
                                 status == 304;
    uint64_t head_len = len;
    if (xp->phase == PHASE_ANSWERED) {
        free(body); /* answered twice: keep the first */
        return;
    }
    xp->phase = PHASE_ANSWERED;
    ex->status = status;
    ex->bytes_out = len;
    listener_request_charge(l, ex, len, true);
    nc->head_only = ex->method == HTTP_HEAD || no_body;
    if (ex->method == HTTP_HEAD &&
        !listener_respond_given_length(fields, n, &head_len))
        head_len = len;
    if (close || nc->st != NS_WAITING || !nc->parser.keep_alive ||
        l->quiesced)
        nc->close_after = true;
    buf_reset(&nc->out);
    native_status_line(&nc->out, status);
    for (int i = 0; i < n; i++) {
        const struct http_field *f = &fields[i];
        const char *name = f->name;
        size_t nl = f->name_len;
        char c0 = nl ? (char)(name[0] | 0x20) : 0;
        if ((c0 == 'c' && (util_strncaseeq(name, nl, "Content-Length") ||
                           util_strncaseeq(name, nl, "Connection"))) ||
            (c0 == 't' && util_strncaseeq(name, nl, "Transfer-Encoding")))
            continue; /* framing is the listener's */
        date |= c0 == 'd' && util_strncaseeq(name, nl, "Date");
        buf_append(&nc->out, name, nl);
        buf_append(&nc->out, ": ", 2);
        buf_append(&nc->out, f->value, f->value_len);
        buf_append(&nc->out, "\r\n", 2);
    }
    if (!date) {
        buf_puts(&nc->out, "Date: ");
        buf_puts(&nc->out, native_date(l));
        buf_append(&nc->out, "\r\n", 2);
    }
    if (nc->close_after)
        buf_puts(&nc->out, "Connection: close\r\n");
    else if (nc->parser.minor == 0)
        buf_puts(&nc->out, "Connection: Keep-Alive\r\n");
    if (!no_body)
        native_content_length(&nc->out, ex->method == HTTP_HEAD ? head_len
                                                                 : len);
    buf_append(&nc->out, "\r\n", 2);
    free(nc->body);
    if (nc->tls && !nc->head_only && len <= NATIVE_TLS_MERGE) {
        /* one TLS record for head and body (TLS has no writev) */
        buf_append(&nc->out, body, len);
        free(body);
        body = NULL;
        len = 0;
    }
    nc->body = body;
    nc->body_len = len;
    nc->sent = 0;
    nc->st = NS_SENDING;
    /* the whole answer is due within the send timeout */
    native_arm(nc, l->limits.send_timeout_ms);
    native_send(nc);
}

/* ---- ending an exchange ------------------------------------------------ */

static void native_end_exchange(struct native_conn *nc)
{
    struct listener *l = nc->base.l;
    struct listener_exchange *ex = nc->base.ex;
    if (!ex)
        return;
    struct listener_xpriv *xp = XP(ex);
    nc->base.ex = NULL;
    nc->base.served++;
    if (xp->phase != PHASE_ANSWERED)
        ex->status = 0; /* nothing reached the client */
    if (ex->method_name[0] || xp->phase == PHASE_ANSWERED)
        l->ops->on_complete(l->ctx, ex); /* not for a partial line */
    listener_request_uncharge(l, ex);
    struct listener_exchange_alloc *a = (struct listener_exchange_alloc *)ex;
    native_buf_put(l, &xp->text);
    if (!nc->base.spare && xp->hdr_cap <= 256) {
        if (xp->body.cap > 4096)
            buf_free(&xp->body);
        nc->base.spare = a;
    } else {
        listener_request_free(a);
    }
    free(nc->body);
    nc->body = NULL;
    nc->body_len = 0;
}

/* An answered exchange ends; the connection closes or takes the next
 * request (already read, maybe). */
static void native_finish(struct native_conn *nc)
{
    struct listener *l = nc->base.l;
    native_end_exchange(nc);
    if (nc->close_after && !nc->lost && !nc->eof && !l->closing) {
        nc->st = NS_LINGER;
        nc->sent = 0; /* counts the bytes drained */
        if (nc->tls)
            h1tls_close_notify(nc->tls);
        shutdown(nc->base.fd, SHUT_WR);
        native_arm(nc, NATIVE_LINGER_MS);
        native_watch(nc, LOOP_READ);
        return;
    }
    if (nc->close_after || nc->lost || nc->eof || l->closing ||
        l->quiesced) {
        native_close(nc);
        return;
    }
    nc->st = NS_IDLE;
    native_parser_init(nc);
    /* idle keep-alive time, then closed without a word */
    native_arm(nc, l->limits.idle_timeout_ms);
    native_watch(nc, LOOP_READ);
    if (nc->tls && h1tls_pending(nc->tls)) {
        /* read ahead by TLS: the socket will not say so again */
        native_io(nc, LOOP_READ);
        return;
    }
    if (nc->in_off < nc->in.len)
        native_process(nc);
}

void listener_native_finish_all(void *arg)
{
    struct listener *l = arg;
    while (!list_empty(&l->done)) {
        struct native_conn *nc =
            list_entry(l->done.next, struct native_conn, done_link);
        list_remove(&nc->done_link);
        native_finish(nc);
    }
}

static void native_close(struct native_conn *nc)
{
    struct listener *l = nc->base.l;
    native_end_exchange(nc);
    list_remove(&nc->link);
    list_remove(&nc->done_link);
    loop_io_free(nc->io);
    loop_timer_free(nc->base.deadline);
    if (nc->tls && !nc->lost && !nc->handshaking && nc->st != NS_LINGER)
        h1tls_close_notify(nc->tls);
    h1tls_free(nc->tls);
    close(nc->base.fd);
    listener_request_free(nc->base.spare);
    native_buf_put(l, &nc->in);
    buf_free(&nc->out);
    free(nc->body);
    if (nc->clients)
        listener_clients_drop(nc->clients, &nc->peer);
    l->n_conns--;
    free(nc);
    if (l->ops->on_connection)
        l->ops->on_connection(l->ctx, -1);
}

/* ---- reading ------------------------------------------------------------ */

/* Parses what has been read, as far as the current exchange allows. */
static void native_process(struct native_conn *nc)
{
    struct listener *l = nc->base.l;
    while ((nc->st == NS_IDLE || nc->st == NS_HEAD || nc->st == NS_BODY) &&
           nc->in_off < nc->in.len) {
        if (nc->st == NS_IDLE) {
            native_exchange(nc);
            nc->st = NS_HEAD;
            /* a later request: its own deadline (the first one's runs
             * from the connection's start) */
            if (nc->base.served > 0)
                native_arm(nc, l->limits.header_timeout_ms);
        }
        size_t used = 0;
        enum h1req_result r = h1req_feed(&nc->parser, nc->in.data + nc->in_off,
                                         nc->in.len - nc->in_off, &used);
        nc->in_off += used;
        if (nc->base.ex && XP(nc->base.ex)->phase == PHASE_ANSWERED)
            break; /* answered from the head (a local error) */
        if (r == H1REQ_ERROR) {
            native_refuse(nc);
            break;
        }
        if (r == H1REQ_DONE) {
            native_dispatch(nc);
            break;
        }
        break; /* more bytes needed */
    }
    if (nc->in_off == nc->in.len) {
        native_buf_put(l, &nc->in); /* nothing held while idle */
        nc->in_off = 0;
    }
}

/* native_read over TLS: records already read ahead are decrypted in the
 * same call, up to the read-ahead bound (native_finish reads the rest). */
static void native_read_tls(struct native_conn *nc)
{
    for (;;) {
        ssize_t r = h1tls_read(nc->tls, nc->in.data + nc->in.len,
                               nc->in.cap - nc->in.len - 1);
        if (r > 0) {
            nc->in.len += (size_t)r;
            nc->in.data[nc->in.len] = '\0';
            if (!h1tls_pending(nc->tls) ||
                nc->in.len - nc->in_off > NATIVE_READ_AHEAD)
                return;
            if (nc->in.cap - nc->in.len < NATIVE_READ_CHUNK + 1)
                buf_reserve(&nc->in, NATIVE_READ_CHUNK);
            continue;
        }
        if (r == H1TLS_WANT_READ || r == H1TLS_WANT_WRITE)
            return;
        nc->eof = true; /* close_notify, a reset or a protocol failure */
        if (r != H1TLS_CLOSED)
            nc->lost = true;
        return;
    }
}

static void native_read(struct native_conn *nc)
{
    if (nc->in_off > 0 && nc->in_off * 2 > nc->in.len) {
        /* keep the unparsed tail at the front */
        memmove(nc->in.data, nc->in.data + nc->in_off,
                nc->in.len - nc->in_off);
        nc->in.len -= nc->in_off;
        nc->in_off = 0;
    }
    native_buf_get(nc->base.l, &nc->in, NATIVE_READ_CHUNK);
    if (nc->in.cap - nc->in.len < NATIVE_READ_CHUNK + 1)
        buf_reserve(&nc->in, NATIVE_READ_CHUNK);
    if (nc->tls) {
        native_read_tls(nc);
        return;
    }
    ssize_t r = recv(nc->base.fd, nc->in.data + nc->in.len,
                     nc->in.cap - nc->in.len - 1, 0);
    if (r > 0) {
        nc->in.len += (size_t)r;
        nc->in.data[nc->in.len] = '\0';
    } else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK &&
                          errno != EINTR)) {
        nc->eof = true;
        if (r < 0)
            nc->lost = true;
    }
}

/* Reads and drops what the client still sends; closes at its end. */
static void native_linger(struct native_conn *nc)
{
    char scratch[4096];
    ssize_t r = recv(nc->base.fd, scratch, sizeof(scratch), 0);
    if (r > 0 && (nc->sent += (size_t)r) < NATIVE_LINGER_BYTES)
        return;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    native_close(nc);
}

/* Not TLS, no common cipher, a refused client certificate, no handshake in
 * time: there is no HTTP to answer in.  Closed, and the owner told why. */
static void native_tls_failed(struct native_conn *nc, const char *why)
{
    struct listener *l = nc->base.l;
    char detail[256];
    snprintf(detail, sizeof(detail), "%s port %u: %s", nc->base.client_addr,
             (unsigned)nc->base.client_port, why[0] ? why : "handshake failed");
    nc->lost = true;
    native_close(nc);
    if (l->ops->on_event)
        l->ops->on_event(l->ctx, LISTENER_TLS_FAILED, detail);
}

/* Moves the TLS handshake on; true once it is done. */
static bool native_handshake(struct native_conn *nc)
{
    char err[160];
    int rc = h1tls_handshake(nc->tls, err, sizeof(err));
    if (rc == 1) {
        nc->handshaking = false;
        nc->client_cert = h1tls_peer_cert(nc->tls);
        native_watch(nc, LOOP_READ);
        return true;
    }
    if (rc == H1TLS_WANT_READ || rc == H1TLS_WANT_WRITE) {
        native_watch(nc, rc == H1TLS_WANT_READ ? LOOP_READ : LOOP_WRITE);
        return false;
    }
    native_tls_failed(nc, err);
    return false;
}

static void native_io(void *arg, int events)
{
    struct native_conn *nc = arg;
    if (nc->st == NS_LINGER) {
        native_linger(nc);
        return;
    }
    if (nc->handshaking) {
        if (!native_handshake(nc))
            return;
        events = LOOP_READ; /* a request may have come with it */
    }
    if (events & (LOOP_WRITE | LOOP_ERROR) && nc->st == NS_SENDING) {
        native_send(nc);
        return;
    }
    if (!(events & (LOOP_READ | LOOP_ERROR)))
        return;
    native_read(nc);
    if (nc->st == NS_WAITING || nc->st == NS_SENDING || nc->st == NS_DONE) {
        /* the exchange goes on; bytes of the next request wait */
        if (nc->eof || nc->in.len - nc->in_off > NATIVE_READ_AHEAD)
            native_watch(nc, nc->st == NS_SENDING ? LOOP_WRITE : 0);
        return;
    }
    native_process(nc);
    if (nc->eof && (nc->st == NS_IDLE || nc->st == NS_HEAD ||
                    nc->st == NS_BODY)) {
        /* gone before a whole request: nothing to answer */
        if (nc->base.ex)
            nc->lost = true;
        native_close(nc);
    }
}

/* ---- deadlines ------------------------------------------------------------ */

static void native_deadline(void *arg)
{
    struct native_conn *nc = arg;
    struct listener *l = nc->base.l;
    struct listener_exchange *ex = nc->base.ex;
    if (nc->handshaking) {
        native_tls_failed(nc, "no handshake within the header timeout");
        return;
    }
    switch (nc->st) {
    case NS_LINGER:
        native_close(nc);
        return;
    case NS_SENDING:
        /* the answer was not taken within the send timeout */
        ex->send_timed_out = true;
        if (l->ops->on_event)
            l->ops->on_event(l->ctx, LISTENER_SEND_TIMEOUT, NULL);
        nc->lost = true;
        native_close(nc);
        return;
    case NS_IDLE:
        if (nc->base.served > 0) {
            native_close(nc); /* idle keep-alive time is over */
            return;
        }
        ex = native_exchange(nc); /* a first request that never came */
        ex->start_ns = nc->base.start_ns;
        break;
    case NS_HEAD:
    case NS_BODY:
        break;
    default:
        return;
    }
    /* a request line, headers or body too slow: 408, then closed */
    if (!ex->request_id[0])
        listener_request_set_id(l, ex);
    if (!ex->method_name[0])
        ex->method_name = "-";
    listener_respond_error(ex, l, ERR_REQUEST_TIMEOUT, NULL, true);
}

/* ---- accepting ------------------------------------------------------------ */

static void native_refused(struct listener *l, enum listener_event ev)
{
    if (l->ops->on_event)
        l->ops->on_event(l->ctx, ev, NULL);
}

static void native_add(struct listener *l, int fd,
                       const struct sockaddr_storage *peer, socklen_t len)
{
    int one = 1;
    struct listener_clients *clients = l->limits.clients;
    enum listener_clients_result counted = LISTENER_CLIENT_NOT_COUNTED;
    struct h1tls *tls = NULL;
    if (l->n_conns >= l->limits.max_connections) {
        native_refused(l, LISTENER_REFUSED_MAX_CONNECTIONS);
        goto refuse;
    }
    if (clients)
        counted = listener_clients_take(clients, peer,
                                        l->limits.max_per_client);
    if (counted == LISTENER_CLIENT_REFUSED) {
        native_refused(l, LISTENER_REFUSED_PER_CLIENT);
        goto refuse;
    }
    if (l->ops->accept &&
        !l->ops->accept(l->ctx, (const struct sockaddr *)peer, len))
        goto refuse;
    if (l->tls_ctx && !(tls = h1tls_accept_new(l->tls_ctx, fd)))
        goto refuse;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct native_conn *nc = xcalloc(1, sizeof(*nc));
    nc->tls = tls;
    nc->handshaking = tls != NULL;
    if (counted == LISTENER_CLIENT_COUNTED)
        nc->clients = clients;
    nc->base.l = l;
    nc->base.fd = fd;
    nc->base.start_ns = util_mono_ns();
    nc->base.deadline = loop_timer_new(l->loop, native_deadline, nc);
    memcpy(&nc->peer, peer, len);
    nc->peer_len = len;
    listener_request_peer_text((const struct sockaddr *)peer,
                               nc->base.client_addr,
                               sizeof(nc->base.client_addr),
                               &nc->base.client_port);
    list_init(&nc->done_link);
    list_insert_tail(&l->conns, &nc->link);
    l->n_conns++;
    nc->io = loop_io_new(l->loop, fd, native_io, nc);
    native_parser_init(nc);
    /* the first request line and its headers are due within the header
     * timeout from the connection's start */
    native_arm(nc, l->limits.header_timeout_ms);
    native_watch(nc, LOOP_READ);
    if (l->ops->on_connection)
        l->ops->on_connection(l->ctx, +1);
    return;
refuse:
    if (counted == LISTENER_CLIENT_COUNTED)
        listener_clients_drop(clients, peer);
    close(fd);
}

void listener_native_accept(void *arg, int events)
{
    struct listener *l = arg;
    for (int i = 0; i < 64 && l->fd >= 0; i++) {
        struct sockaddr_storage peer;
        socklen_t len = sizeof(peer);
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            native_add(l, fd, &peer, len);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue; /* that one connection is gone */
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        /* EMFILE, ENFILE, ENOBUFS, ENOMEM: the connection stays queued and
         * the socket readable, so polling on would spin; pause instead
         * (as nginx does), until descriptors or memory may be back */
        int e = errno;
        loop_io_set(l->io, 0);
        loop_timer_start(l->resume, LISTENER_ACCEPT_PAUSE_MS, 0);
        errno = e; /* the owner may name it */
        if (l->ops->on_event)
            l->ops->on_event(l->ctx, LISTENER_ACCEPT_FAILED, NULL);
        return;
    }
}

void listener_native_resume(void *arg)
{
    struct listener *l = arg;
    if (l->fd < 0)
        return;
    loop_io_set(l->io, LOOP_READ);
    listener_native_accept(l, LOOP_READ);
}

void listener_native_adopt(struct listener *l, int fd,
                           const struct sockaddr_storage *peer,
                           socklen_t len)
{
    if (l->quiesced) {
        close(fd);
        return;
    }
    native_add(l, fd, peer, len);
}

void listener_native_quiesce(struct listener *l)
{
    loop_io_free(l->io);
    l->io = NULL;
    if (l->resume)
        loop_timer_stop(l->resume);
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    /* idle connections close now; busy ones after their answer */
    struct list *it, *next;
    list_foreach_safe(it, next, &l->conns) {
        struct native_conn *nc = list_entry(it, struct native_conn, link);
        if (nc->st == NS_IDLE)
            native_close(nc);
    }
}

void listener_native_free(struct listener *l)
{
    l->closing = true;
    while (!list_empty(&l->conns)) {
        struct native_conn *nc =
            list_entry(l->conns.next, struct native_conn, link);
        native_close(nc); /* its exchange's on_complete runs */
    }
    if (l->fd >= 0)
        close(l->fd);
    l->fd = -1;
    while (l->n_pool > 0)
        buf_free(&l->pool[--l->n_pool]);
}
