/* listener.c - see listener.h.  Wraps libmicrohttpd 0.9.75, with
 * listener_request.c (reading a request) and listener_respond.c (answers
 * and deadlines); their shared insides are in listener_impl.h.  This file:
 * the listening socket, the daemon driven by the loop, and the library's
 * connection and request callbacks. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/loop.h"
#include "base/util.h"
#include "io/h1tls.h"
#include "io/listener_impl.h"

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
        conn->deadline =
            loop_timer_new(l->loop, listener_respond_deadline, conn);
        conn->start_ns = util_mono_ns();
        /* the first request line and its headers are due within the
         * header timeout from the connection's start */
        listener_respond_arm(conn, l->limits.header_timeout_ms);
        *socket_context = conn;
        if (l->ops->on_connection)
            l->ops->on_connection(l->ctx, +1);
    } else if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
        struct listener_conn *conn = *socket_context;
        if (conn) {
            loop_timer_free(conn->deadline);
            listener_request_free(conn->spare);
            free(conn);
        }
        *socket_context = NULL;
        if (l->ops->on_connection)
            l->ops->on_connection(l->ctx, -1);
    }
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
        if (!listener_request_headers(l, ex, c, method, version)) {
            listener_respond_arm(xp->conn, 0);
            return listener_respond_queue(ex);
        }
        listener_respond_arm(xp->conn, l->limits.body_timeout_ms);
        return MHD_YES;
    case PHASE_BODY:
        if (*upload_data_size) {
            size_t n = *upload_data_size;
            *upload_data_size = 0;
            return listener_request_body(l, ex, upload_data, n) ? MHD_YES
                                                                : MHD_NO;
        }
        listener_respond_arm(xp->conn, 0);
        if (xp->over_budget) {
            listener_request_budget_spent(l, ex);
            return listener_respond_queue(ex);
        }
        if (xp->discarding) {
            listener_respond_error(ex, l, ERR_REQUEST_ENTITY_TOO_LARGE, NULL,
                                   true);
            return listener_respond_queue(ex);
        }
        ex->body = xp->body.data ? xp->body.data : "";
        ex->body_len = xp->body.len;
        xp->phase = PHASE_WAITING;
        xp->in_handler = true;
        l->ops->on_request(l->ctx, ex);
        xp->in_handler = false;
        if (xp->resp)
            return listener_respond_queue(ex);
        xp->suspended = true;
        MHD_suspend_connection(c);
        return MHD_YES;
    case PHASE_WAITING:
        if (xp->resp)
            return listener_respond_queue(ex);
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
        listener_respond_arm(xp->conn, l->limits.idle_timeout_ms +
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
            ex->error_code = errcode_name(
                ex->status == 431   ? ERR_REQUEST_HEADER_FIELDS_TOO_LARGE
                : ex->status == 413 ? ERR_REQUEST_ENTITY_TOO_LARGE
                                    : ERR_BAD_REQUEST);
        }
    }
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK &&
        xp->phase != PHASE_ANSWERED && ex->status != 408 &&
        !ex->local_error)
        ex->status = 0; /* nothing reached the client */
    if (!ex->method_name[0])
        ex->method_name = "-";
    l->ops->on_complete(l->ctx, ex);
    listener_request_uncharge(l, ex);
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
    listener_request_free(a);
}

/* Before anything is read from a new connection. */
static enum MHD_Result listener_accept(void *cls, const struct sockaddr *sa,
                                       socklen_t len)
{
    struct listener *l = cls;
    if (!l->ops->accept)
        return MHD_YES;
    return l->ops->accept(l->ctx, sa, len) ? MHD_YES : MHD_NO;
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

void listener_run(struct listener *l)
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
    l->fd = -1;
    list_init(&l->conns);
    list_init(&l->done);
    if (l->tls) {
        char e[256];
        l->tls_ctx = h1tls_server_ctx_new(tls->cert_pem, tls->key_pem,
                                          tls->client_ca_pem, e, sizeof(e));
        if (!l->tls_ctx) {
            *err = xasprintf("cannot start the HTTPS listener: %s", e);
            if (fd >= 0)
                close(fd);
            free(l->request_id_header);
            free(l);
            return NULL;
        }
    }
    if (l->tls || fd >= 0) {
        /* the native server; fd < 0: connections come through
         * listener_adopt() (the passthrough's SNI split) */
        l->native = true;
        l->fd = fd;
        if (fd >= 0) {
            l->io = loop_io_new(loop, fd, listener_native_accept, l);
            loop_io_set(l->io, LOOP_READ);
        }
        l->soon = loop_defer_new(loop, listener_native_finish_all, l);
        return l;
    }
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
                                        (intptr_t)listener_request_begin, l};
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

    l->d = MHD_start_daemon(flags, 0, listener_accept, l, listener_access, l,
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
    if (l->native) {
        listener_native_adopt(l, fd, peer, len);
        return;
    }
    /* libmicrohttpd closes the socket itself when it cannot take it */
    MHD_add_connection(l->d, fd, (const struct sockaddr *)peer, len);
    listener_run(l);
}

void listener_quiesce(struct listener *l)
{
    if (l->quiesced)
        return;
    l->quiesced = true;
    if (l->native) {
        listener_native_quiesce(l);
        return;
    }
    MHD_socket fd = MHD_quiesce_daemon(l->d);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    listener_run(l);
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    if (l->native)
        listener_native_free(l);
    else
        MHD_stop_daemon(l->d);
    loop_io_free(l->io);
    loop_timer_free(l->timer);
    loop_defer_free(l->soon);
    h1tls_ctx_free(l->tls_ctx);
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
