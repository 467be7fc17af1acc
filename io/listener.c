/* listener.c - see listener.h.  Wraps libmicrohttpd 0.9.75.
 *
 * Per connection (struct listener_conn, the MHD socket context) we keep a
 * deadline timer: armed with the header timeout when the connection is
 * accepted (the first request line and headers, and a TLS handshake, are
 * due by then) or, on a kept-alive connection, when a later request line is
 * seen (the URI log callback); re-armed with the body timeout once the
 * headers are in; stopped while the request is handled; after an answer,
 * a backstop of idle + header timeout closes a connection whose next
 * request never completes its line.  libmicrohttpd has no 408 of its own,
 * so on expiry we write the 408 ourselves (plain HTTP only: a TLS stream
 * cannot be written behind the library's back) and shut the socket down;
 * the library then sees the end of the stream and cleans up. */
#include "io/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <gnutls/gnutls.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/envelope.h"
#include "io/framing.h"
#include "base/loop.h"
#include "base/util.h"

/* Owned by the worker; lives on one loop. */
struct listener {
    struct loop *loop;             /* borrowed */
    struct MHD_Daemon *d;          /* owned */
    struct loop_io *io;            /* owned: watches the daemon's epoll fd */
    struct loop_timer *timer;      /* owned: the daemon's own timeouts */
    struct loop_defer *soon;       /* owned: run the daemon next iteration */
    const struct listener_ops *ops;/* borrowed */
    void *ctx;                     /* borrowed */
    struct listener_limits limits;
    int index;
    bool tls;
    bool quiesced;
    char *request_id_header;       /* owned */
    uint64_t rng;                  /* request id generator state */
};

enum listener_phase {
    PHASE_HEADERS = 0,             /* request line seen, headers coming */
    PHASE_BODY,                    /* headers accepted, body coming */
    PHASE_WAITING,                 /* handed to the owner */
    PHASE_ANSWERED,                /* response queued */
};

/* Owned by the listener, one per client connection (MHD socket context). */
struct listener_conn {
    struct listener *l;            /* borrowed */
    struct MHD_Connection *c;      /* borrowed */
    int fd;
    struct loop_timer *deadline;   /* owned */
    struct listener_exchange *ex;  /* borrowed: the request in progress */
    struct listener_exchange_alloc *spare; /* owned: the last exchange's
                                      memory, for the next request */
    unsigned served;               /* requests completed on it */
    uint64_t start_ns;             /* accepted (monotonic) */
};

/* Private part of an exchange, allocated with it. */
struct listener_xpriv {
    struct listener_conn *conn;    /* borrowed */
    struct MHD_Response *resp;     /* owned until queued */
    enum listener_phase phase;
    bool in_handler;               /* inside on_request */
    bool suspended;
    bool discarding;               /* body over the limit: read and drop */
    uint64_t discarded;
    char *raw_url;                 /* owned */
    size_t url_cap;
    int hdr_cap;                   /* allocated entries of ex->headers */
    struct buf body;               /* owned */
};

struct listener_exchange_alloc {
    struct listener_exchange ex;
    struct listener_xpriv p;
};

#define XP(ex) ((struct listener_xpriv *)(ex)->priv)

static void listener_run(struct listener *l);
static void listener_exchange_free(struct listener_exchange_alloc *a);
static bool listener_peer_has_cert(struct MHD_Connection *c);
static void listener_client_addr(struct listener_exchange *ex,
                                 struct MHD_Connection *c);

/* ---- request ids ---------------------------------------------------- */

static uint64_t listener_rand(struct listener *l)
{
    /* xorshift64*: request ids need to be unique, not unpredictable */
    uint64_t x = l->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    l->rng = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static bool listener_id_ok(const char *v)
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

static void listener_set_request_id(struct listener *l,
                                    struct listener_exchange *ex)
{
    const char *in = listener_header(ex, l->request_id_header);
    if (in && listener_id_ok(in)) {
        snprintf(ex->request_id, sizeof(ex->request_id), "%s", in);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    for (int k = 0; k < 2; k++) {
        uint64_t x = listener_rand(l);
        for (int i = 15; i >= 0; i--, x >>= 4)
            ex->request_id[16 * k + i] = hex[x & 15];
    }
    ex->request_id[32] = '\0';
}

/* ---- sockets ---------------------------------------------------------- */

int listener_bind(const char *host, uint16_t port, int backlog, char **err)
{
    struct addrinfo hints = {0}, *res = NULL;
    char portstr[8];
    int fd = -1, one = 1;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV;
    snprintf(portstr, sizeof(portstr), "%u", port);
    int rc = getaddrinfo(host && *host ? host : NULL, portstr, &hints, &res);
    if (rc != 0) {
        *err = xasprintf("cannot use address '%s': %s", host,
                         gai_strerror(rc));
        goto out;
    }
    fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        *err = xasprintf("socket: %s", strerror(errno));
        goto out;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (res->ai_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    if (bind(fd, res->ai_addr, res->ai_addrlen) != 0 ||
        listen(fd, backlog) != 0) {
        *err = xasprintf("cannot listen on %s:%u: %s", host, port,
                         strerror(errno));
        close(fd);
        fd = -1;
    }
out:
    if (res)
        freeaddrinfo(res);
    return fd;
}

uint16_t listener_bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return 0;
    if (ss.ss_family == AF_INET)
        return ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
}

/* ---- responses ------------------------------------------------------- */

/* Never called: the library sends no body in answer to HEAD. */
static ssize_t listener_no_body(void *cls, uint64_t pos, char *buf,
                                size_t max)
{
    return MHD_CONTENT_READER_END_OF_STREAM;
}

/* The Content-Length value among headers, if it is a plain number. */
static bool listener_given_length(const char *const *headers, int n,
                                  uint64_t *out)
{
    for (int i = 0; i < n; i++) {
        if (!util_strcaseeq(headers[2 * i], MHD_HTTP_HEADER_CONTENT_LENGTH))
            continue;
        const char *v = headers[2 * i + 1];
        uint64_t x = 0;
        if (!*v)
            return false;
        for (; *v; v++) {
            if (*v < '0' || *v > '9' || x > UINT64_MAX / 10 - 10)
                return false;
            x = x * 10 + (uint64_t)(*v - '0');
        }
        *out = x;
        return true;
    }
    return false;
}

static struct MHD_Response *listener_make_response(
    struct listener_exchange *ex, const char *const *headers, int n,
    char *body, size_t len, bool close)
{
    struct MHD_Response *r;
    uint64_t head_len;
    if (ex->method == HTTP_HEAD && listener_given_length(headers, n,
                                                         &head_len)) {
        /* A HEAD answer states the length of the body a GET would get
         * (RFC 9110 8.6): a response of that size whose body is never
         * read, since the library sends none for HEAD. */
        free(body);
        r = MHD_create_response_from_callback(head_len, 4096,
                                              listener_no_body, NULL, NULL);
    } else {
        r = MHD_create_response_from_buffer(
            len, body ? body : (char *)"",
            body ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
    }
    if (!r)
        abort();
    for (int i = 0; i < n; i++) {
        /* framing is the library's */
        if (util_strcaseeq(headers[2 * i], MHD_HTTP_HEADER_CONTENT_LENGTH))
            continue;
        MHD_add_response_header(r, headers[2 * i], headers[2 * i + 1]);
    }
    if (close)
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONNECTION, "close");
    return r;
}

/* An error the listener answers itself, in the OpenZiti envelope. */
static void listener_local_error(struct listener_exchange *ex,
                                 struct listener *l, int status,
                                 const char *code, const char *message,
                                 bool close)
{
    size_t len;
    char *body = envelope_error(code, message, ex->request_id, NULL, &len);
    const char *hdrs[] = {
        MHD_HTTP_HEADER_CONTENT_TYPE, ENVELOPE_CONTENT_TYPE,
        l->request_id_header, ex->request_id,
        MHD_HTTP_HEADER_ALLOW, "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS",
    };
    ex->local_error = true;
    ex->error_code = code;
    /* a 405 names the methods that are allowed (RFC 9110 15.5.6) */
    listener_respond(ex, status, hdrs, status == 405 ? 3 : 2, body, len,
                     close);
}

void listener_respond(struct listener_exchange *ex, int status,
                      const char *const *headers, int n_header_pairs,
                      char *body, size_t body_len, bool close)
{
    struct listener_xpriv *xp = XP(ex);
    if (xp->resp || xp->phase == PHASE_ANSWERED) {
        free(body); /* answered twice: keep the first */
        return;
    }
    ex->status = status;
    ex->bytes_out = body_len;
    xp->resp = listener_make_response(ex, headers, n_header_pairs, body,
                                      body_len, close);
    if (xp->suspended) {
        /* In external-epoll mode the library has no wakeup channel: run
         * it on the next loop iteration (one run serves every resume). */
        xp->suspended = false;
        MHD_resume_connection(xp->conn->c);
        loop_defer_schedule(xp->conn->l->soon);
    }
}

/* Queue a prepared response from inside the access handler. */
static enum MHD_Result listener_queue(struct listener_exchange *ex)
{
    struct listener_xpriv *xp = XP(ex);
    enum MHD_Result rc = MHD_queue_response(xp->conn->c,
                                            (unsigned int)ex->status,
                                            xp->resp);
    MHD_destroy_response(xp->resp);
    xp->resp = NULL;
    xp->phase = PHASE_ANSWERED;
    return rc;
}

/* ---- the 408 path ----------------------------------------------------- */

/* Writes the 408 behind the library's back (plain HTTP only: a TLS stream
 * cannot be written to from here) and shuts the socket down; the library
 * then sees the end of the stream and cleans up. */
static void listener_timeout_close(struct listener_conn *conn,
                                   struct listener_exchange *ex)
{
    struct listener *l = conn->l;
    if (!ex->request_id[0])
        listener_set_request_id(l, ex);
    ex->status = 408;
    ex->local_error = true;
    ex->error_code = "REQUEST_TIMEOUT";
    if (!l->tls) {
        size_t len;
        char *body = envelope_error("REQUEST_TIMEOUT",
                                    "the request was not received in time",
                                    ex->request_id, NULL, &len);
        struct buf b = {0};
        buf_printf(&b,
                   "HTTP/1.1 408 Request Timeout\r\nContent-Type: %s\r\n"
                   "Content-Length: %zu\r\n%s: %s\r\nConnection: close\r\n\r\n",
                   ENVELOPE_CONTENT_TYPE, len, l->request_id_header,
                   ex->request_id);
        buf_append(&b, body, len);
        ssize_t w = send(conn->fd, b.data, b.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        ex->bytes_out = w > 0 ? len : 0;
        free(body);
        buf_free(&b);
    }
    shutdown(conn->fd, SHUT_RDWR);
}

static void listener_deadline(void *arg)
{
    struct listener_conn *conn = arg;
    struct listener *l = conn->l;
    struct listener_exchange *ex = conn->ex;
    if (ex && XP(ex)->phase >= PHASE_WAITING)
        return;
    if (ex) {
        listener_timeout_close(conn, ex);
    } else if (conn->served == 0) {
        /* The first request line did not arrive in time (the library
         * reports a request only once its line is complete): answer 408
         * for a request that has no exchange yet, and log it. */
        struct listener_exchange_alloc *a = xcalloc(1, sizeof(*a));
        struct listener_exchange *orphan = &a->ex;
        orphan->priv = &a->p;
        orphan->url = "";
        orphan->method_name = "-";
        orphan->method = HTTP_OTHER;
        orphan->version = "";
        orphan->start_ns = conn->start_ns;
        orphan->tls = l->tls;
        orphan->listener_index = l->index;
        listener_client_addr(orphan, conn->c);
        listener_timeout_close(conn, orphan);
        l->ops->on_complete(l->ctx, orphan);
        free(a);
    } else {
        /* idle keep-alive time and a header deadline are over, and no
         * request line came (or it is still trickling in): close */
        shutdown(conn->fd, SHUT_RDWR);
    }
    listener_run(l); /* let the library notice the closed stream */
}

static void listener_arm(struct listener_conn *conn, uint64_t ms)
{
    if (ms)
        loop_timer_start(conn->deadline, ms, 0);
    else
        loop_timer_stop(conn->deadline);
}

/* ---- MHD callbacks --------------------------------------------------- */

static void listener_notify_connection(void *cls, struct MHD_Connection *c,
                                       void **socket_context,
                                       enum MHD_ConnectionNotificationCode toe)
{
    struct listener *l = cls;
    if (toe == MHD_CONNECTION_NOTIFY_STARTED) {
        struct listener_conn *conn = xcalloc(1, sizeof(*conn));
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
        conn->l = l;
        conn->c = c;
        conn->fd = ci ? ci->connect_fd : -1;
        conn->deadline = loop_timer_new(l->loop, listener_deadline, conn);
        conn->start_ns = util_mono_ns();
        /* the first request line and its headers are due within the
         * header timeout from the connection's start */
        listener_arm(conn, l->limits.header_timeout_ms);
        *socket_context = conn;
        if (l->ops->on_connection)
            l->ops->on_connection(l->ctx, +1);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct listener_conn *conn = *socket_context;
        if (conn) {
            loop_timer_free(conn->deadline);
            listener_exchange_free(conn->spare);
            free(conn);
        }
        *socket_context = NULL;
        if (l->ops->on_connection)
            l->ops->on_connection(l->ctx, -1);
    }
}

static void listener_exchange_free(struct listener_exchange_alloc *a)
{
    if (!a)
        return;
    buf_free(&a->p.body);
    free(a->p.raw_url);
    free(a->ex.headers);
    free(a);
}

/* A zeroed exchange; on a keep-alive connection the previous one's memory
 * (header index, URL and body buffers) is reused. */
static struct listener_exchange_alloc *listener_exchange_new(
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
    memset(a, 0, sizeof(*a));
    a->ex.headers = hdrs;
    a->p.hdr_cap = hdr_cap;
    a->p.raw_url = url;
    a->p.url_cap = url_cap;
    buf_reset(&body);
    a->p.body = body;
    return a;
}

static void *listener_uri_log(void *cls, const char *uri,
                              struct MHD_Connection *c)
{
    struct listener *l = cls;
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
    struct listener_conn *conn = ci ? ci->socket_context : NULL;
    struct listener_exchange_alloc *a = listener_exchange_new(conn);
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
    listener_client_addr(ex, c);
    ex->client_cert = l->tls && listener_peer_has_cert(c);
    if (conn) {
        conn->ex = ex;
        /* a later request on a kept-alive connection: its own deadline
         * (the first one's runs from the connection's start) */
        if (conn->served > 0)
            listener_arm(conn, l->limits.header_timeout_ms);
    }
    return ex;
}

/* Did the client present a certificate in the TLS handshake?  Only asked
 * for when the listener has tls.client_ca.  libmicrohttpd 0.9.75 hands out
 * its GnuTLS session (the certificate query it had is gone), so this one
 * GnuTLS call belongs to this wrapper of libmicrohttpd. */
static bool listener_peer_has_cert(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_GNUTLS_SESSION);
    unsigned int n = 0;
    if (!ci || !ci->tls_session)
        return false;
    return gnutls_certificate_get_peers((gnutls_session_t)ci->tls_session,
                                        &n) != NULL && n > 0;
}

static void listener_client_addr(struct listener_exchange *ex,
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

struct listener_hdr_walk {
    struct listener_header *items;
    int n, cap;
};

static enum MHD_Result listener_collect(void *cls, enum MHD_ValueKind kind,
                                        const char *key, size_t key_size,
                                        const char *value, size_t value_size)
{
    struct listener_hdr_walk *w = cls;
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
static bool listener_headers_in(struct listener *l,
                                struct listener_exchange *ex,
                                struct MHD_Connection *c, const char *method,
                                const char *version)
{
    struct listener_xpriv *xp = XP(ex);
    struct listener_hdr_walk w = {ex->headers, 0, xp->hdr_cap};
    uint64_t clen = 0;
    bool has_clen;
    ex->method_name = method;
    ex->method = http_method_parse(method);
    ex->version = version;
    MHD_get_connection_values_n(c, MHD_HEADER_KIND, listener_collect, &w);
    ex->headers = w.items;
    ex->n_headers = w.n;
    xp->hdr_cap = w.cap;
    listener_set_request_id(l, ex);

    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    size_t hsize = ci ? ci->header_size : 0;
    const char *bad = framing_fields(ex->headers, ex->n_headers, method,
                                     hsize);
    if (!bad)
        bad = framing_check(ex->headers, ex->n_headers, ex->version, &clen,
                            &has_clen);
    if (bad) {
        listener_local_error(ex, l, 400, "BAD_REQUEST", bad, true);
    } else if ((uint64_t)ex->n_headers > l->limits.max_headers ||
               hsize > l->limits.max_header_bytes) {
        listener_local_error(ex, l, 431, "REQUEST_HEADER_FIELDS_TOO_LARGE",
                             "request headers too large or too many", true);
    } else if ((bad = framing_target(ex->url, method, version))) {
        listener_local_error(ex, l, 400, "BAD_REQUEST", bad, true);
    } else if (strcmp(method, "TRACE") == 0 || strcmp(method, "TRACK") == 0) {
        /* it would echo the request, credentials and all, back */
        listener_local_error(ex, l, 405, "METHOD_NOT_ALLOWED",
                             "TRACE is not allowed", false);
    } else if (ex->method == HTTP_OTHER) {
        /* the controllers' APIs use none other (CONNECT included): an
         * unknown method would go up as a custom request */
        listener_local_error(ex, l, 501, "NOT_IMPLEMENTED",
                             "method not implemented", false);
    } else if (has_clen && clen > l->limits.max_body_bytes) {
        listener_local_error(ex, l, 413, "REQUEST_ENTITY_TOO_LARGE",
                             "request body too large", true);
    } else if (!(ex->admitted = l->ops->admit(l->ctx))) {
        listener_local_error(ex, l, 503, "PROXY_OVERLOADED",
                             "too many requests in flight, retry later",
                             false);
    }
    return xp->resp == NULL;
}

static enum MHD_Result listener_access(void *cls, struct MHD_Connection *c,
                                       const char *url, const char *method,
                                       const char *version,
                                       const char *upload_data,
                                       size_t *upload_data_size,
                                       void **con_cls)
{
    struct listener *l = cls;
    struct listener_exchange *ex = *con_cls;
    struct listener_xpriv *xp;
    if (!ex) /* cannot happen: the URI log callback always runs first */
        return MHD_NO;
    xp = XP(ex);

    switch (xp->phase) {
    case PHASE_HEADERS:
        xp->phase = PHASE_BODY;
        if (!listener_headers_in(l, ex, c, method, version)) {
            listener_arm(xp->conn, 0);
            return listener_queue(ex);
        }
        listener_arm(xp->conn, l->limits.body_timeout_ms);
        return MHD_YES;
    case PHASE_BODY:
        if (*upload_data_size) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            if (xp->discarding || xp->body.len + n > l->limits.max_body_bytes) {
                xp->discarding = true;
                xp->discarded += n;
                /* drop bodies that keep coming long after the limit */
                return xp->discarded > 4 * l->limits.max_body_bytes + 65536
                           ? MHD_NO
                           : MHD_YES;
            }
            buf_append(&xp->body, upload_data, n);
            return MHD_YES;
        }
        listener_arm(xp->conn, 0);
        if (xp->discarding) {
            listener_local_error(ex, l, 413, "REQUEST_ENTITY_TOO_LARGE",
                                 "request body too large", true);
            return listener_queue(ex);
        }
        ex->body = xp->body.data ? xp->body.data : "";
        ex->body_len = xp->body.len;
        xp->phase = PHASE_WAITING;
        xp->in_handler = true;
        l->ops->on_request(l->ctx, ex);
        xp->in_handler = false;
        if (xp->resp)
            return listener_queue(ex);
        xp->suspended = true;
        MHD_suspend_connection(c);
        return MHD_YES;
    case PHASE_WAITING:
        if (xp->resp)
            return listener_queue(ex);
        return MHD_YES; /* spurious call while suspended work runs */
    case PHASE_ANSWERED:
    default:
        return MHD_YES;
    }
}

static void listener_completed(void *cls, struct MHD_Connection *c,
                               void **con_cls,
                               enum MHD_RequestTerminationCode toe)
{
    struct listener *l = cls;
    struct listener_exchange *ex = *con_cls;
    if (!ex)
        return;
    struct listener_xpriv *xp = XP(ex);
    if (xp->conn) {
        if (xp->conn->ex == ex)
            xp->conn->ex = NULL;
        xp->conn->served++;
        /* Idle connections are the library's to close (client_idle); a
         * next request line that trickles in without ever completing is
         * bounded by this backstop. */
        listener_arm(xp->conn, l->limits.idle_timeout_ms +
                                   l->limits.header_timeout_ms);
    }
    if (ex->status == 0 && xp->phase <= PHASE_BODY) {
        /* the library answered by itself (malformed request or chunk,
         * headers larger than its buffer ...) */
        const union MHD_ConnectionInfo *ci =
            MHD_get_connection_info(c, MHD_CONNECTION_INFO_HTTP_STATUS);
        if (ci && ci->http_status) {
            ex->status = (int)ci->http_status;
            ex->local_error = true;
            ex->error_code =
                ex->status == 431   ? "REQUEST_HEADER_FIELDS_TOO_LARGE"
                : ex->status == 413 ? "REQUEST_ENTITY_TOO_LARGE"
                                    : "BAD_REQUEST";
        }
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK &&
        xp->phase != PHASE_ANSWERED && ex->status != 408 &&
        !ex->local_error)
        ex->status = 0; /* nothing reached the client */
    if (!ex->method_name[0])
        ex->method_name = "-";
    l->ops->on_complete(l->ctx, ex);
    if (xp->resp)
        MHD_destroy_response(xp->resp);
    *con_cls = NULL;
    struct listener_exchange_alloc *a = (struct listener_exchange_alloc *)ex;
    if (xp->conn && !xp->conn->spare && xp->hdr_cap <= 256) {
        /* the connection's next request reuses it; an idle connection
         * keeps no more than a few KiB */
        if (xp->body.cap > 4096)
            buf_free(&xp->body);
        xp->conn->spare = a;
        return;
    }
    listener_exchange_free(a);
}

static size_t listener_unescape(void *cls, struct MHD_Connection *c, char *s)
{
    return strlen(s); /* keep the request target exactly as received */
}

static void listener_mhd_log(void *cls, const char *fmt, va_list ap)
{
    /* libmicrohttpd's own diagnostics are about broken clients; the
     * access log already shows what matters. */
}

/* ---- driving the daemon from the loop -------------------------------- */

static void listener_run(struct listener *l)
{
    MHD_UNSIGNED_LONG_LONG to;
    MHD_run(l->d);
    if (MHD_get_timeout(l->d, &to) != MHD_YES) {
        loop_timer_stop(l->timer);
    } else if (to == 0) {
        /* work left (data already read, resumed connections): once per
         * loop iteration, so that the loop keeps polling for I/O */
        loop_timer_stop(l->timer);
        loop_defer_schedule(l->soon);
    } else {
        loop_timer_start(l->timer, to, 0);
    }
}

static void listener_io(void *arg, int events)
{
    listener_run(arg);
}

static void listener_timer(void *arg)
{
    listener_run(arg);
}

struct listener *listener_new(struct loop *loop, int fd, int index,
                              const struct listener_tls *tls,
                              const struct listener_limits *limits,
                              const char *request_id_header,
                              const struct listener_ops *ops, void *ctx,
                              char **err)
{
    struct listener *l = xcalloc(1, sizeof(*l));
    unsigned int flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                         MHD_USE_ERROR_LOG | MHD_USE_TURBO;
    struct MHD_OptionItem opts[18];
    int n = 0;
    l->loop = loop;
    l->ops = ops;
    l->ctx = ctx;
    l->limits = *limits;
    l->index = index;
    l->tls = tls && tls->cert_pem;
    l->request_id_header = xstrdup(request_id_header);
    l->rng = (util_mono_ns() ^ ((uint64_t)(uintptr_t)l << 17) ^
              ((uint64_t)fd << 40)) | 1;
    /* Opportunistic reads and writes (MHD_USE_TURBO, above) for plain HTTP
     * and TLS alike.  A TLS handshake stalled half-way makes libmicrohttpd
     * 0.9.75 poll it until the header deadline closes the connection (a
     * third of a core or so, measured the same with and without TURBO);
     * the worker's other clients are still served (test_core_limits.py,
     * "a handshake stalled half-way"). */
    if (l->tls)
        flags |= MHD_USE_TLS;
    /* The per-connection pool holds the request head (up to
     * max_header_bytes, parsed in place), the header index and the
     * response head.  libmicrohttpd 0.9.75 zeroes the whole pool when a
     * keep-alive connection starts its next request and the freed half
     * when it shrinks the read buffer, so every byte here is paid for on
     * every request: keep it to the head limit plus room for the answer's
     * head (controllers send well under 4 KiB of headers).  Measured with
     * bench/run.sh --only cost / --only idle (bench/RESULTS.md): 36 KiB
     * pools (mmapped by the library above 32 KiB) cost 101k instructions
     * per request and 0.8 KiB per idle connection; 20 KiB pools (malloc'ed)
     * 77k and 4.8 KiB: the request path wins. */
    uint64_t mem = limits->max_header_bytes + 4 * 1024;
    if (mem < 16 * 1024)
        mem = 16 * 1024;
    if (fd >= 0)
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_LISTEN_SOCKET, fd, NULL};
    else
        flags |= MHD_USE_NO_LISTEN_SOCKET;
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_CONNECTION,
                                        (intptr_t)listener_notify_connection, l};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_NOTIFY_COMPLETED,
                                        (intptr_t)listener_completed, l};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_URI_LOG_CALLBACK,
                                        (intptr_t)listener_uri_log, l};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_UNESCAPE_CALLBACK,
                                        (intptr_t)listener_unescape, l};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_LIMIT,
                                        (intptr_t)limits->max_connections, NULL};
    if (limits->max_per_client) /* more from one address: closed at accept */
        opts[n++] = (struct MHD_OptionItem){
            MHD_OPTION_PER_IP_CONNECTION_LIMIT,
            (intptr_t)limits->max_per_client, NULL};
    opts[n++] = (struct MHD_OptionItem){
        MHD_OPTION_CONNECTION_TIMEOUT,
        (intptr_t)((limits->idle_timeout_ms + 999) / 1000), NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_CONNECTION_MEMORY_LIMIT,
                                        (intptr_t)mem, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_STRICT_FOR_CLIENT, 1, NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_SIGPIPE_HANDLED_BY_APP, 1,
                                        NULL};
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_EXTERNAL_LOGGER,
                                        (intptr_t)listener_mhd_log, l};
    if (l->tls) {
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_CERT, 0,
                                            (void *)tls->cert_pem};
        opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_KEY, 0,
                                            (void *)tls->key_pem};
        if (tls->client_ca_pem)
            opts[n++] = (struct MHD_OptionItem){MHD_OPTION_HTTPS_MEM_TRUST, 0,
                                                (void *)tls->client_ca_pem};
    }
    opts[n++] = (struct MHD_OptionItem){MHD_OPTION_END, 0, NULL};

    l->d = MHD_start_daemon(flags, 0, NULL, NULL, listener_access, l,
                            MHD_OPTION_ARRAY, opts, MHD_OPTION_END);
    if (!l->d) {
        *err = xstrdup(l->tls ? "cannot start the HTTPS listener (check the "
                                "certificate and key)"
                              : "cannot start the HTTP listener");
        if (fd >= 0)
            close(fd);
        free(l->request_id_header);
        free(l);
        return NULL;
    }
    const union MHD_DaemonInfo *di =
        MHD_get_daemon_info(l->d, MHD_DAEMON_INFO_EPOLL_FD);
    l->io = loop_io_new(loop, di->epoll_fd, listener_io, l);
    loop_io_set(l->io, LOOP_READ);
    l->timer = loop_timer_new(loop, listener_timer, l);
    l->soon = loop_defer_new(loop, listener_timer, l);
    /* The daemon first runs when its loop does (on the loop's own thread),
     * never here: the listener may be built on another thread before its
     * owner is complete. */
    loop_defer_schedule(l->soon);
    return l;
}

void listener_adopt(struct listener *l, int fd,
                    const struct sockaddr_storage *peer, socklen_t len)
{
    /* libmicrohttpd closes the socket itself when it cannot take it */
    MHD_add_connection(l->d, fd, (const struct sockaddr *)peer, len);
    listener_run(l);
}

void listener_quiesce(struct listener *l)
{
    if (l->quiesced)
        return;
    l->quiesced = true;
    MHD_socket fd = MHD_quiesce_daemon(l->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    listener_run(l);
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    MHD_stop_daemon(l->d);
    loop_io_free(l->io);
    loop_timer_free(l->timer);
    loop_defer_free(l->soon);
    free(l->request_id_header);
    free(l);
}

void listener_set_limits(struct listener *l,
                         const struct listener_limits *limits)
{
    l->limits = *limits;
}

const char *listener_header(const struct listener_exchange *ex,
                            const char *name)
{
    size_t n = strlen(name);
    for (int i = 0; i < ex->n_headers; i++)
        if (util_strncaseeq(ex->headers[i].name, ex->headers[i].name_len,
                            name) &&
            n == ex->headers[i].name_len)
            return ex->headers[i].value;
    return NULL;
}
