/* listener.c - see listener.h.  This file: the listening sockets and a
 * listener's life (made, quiesced, freed); the server itself is
 * listener_native.c, with listener_request.c (the exchange, the checks of
 * a request) and listener_respond.c (local errors); their shared insides
 * are in listener_impl.h. */
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

_Static_assert(LISTENER_TICKET_KEYS == H1TLS_TICKET_KEYS,
               "the ticket keys are handed through as they are");

/* ---- a listener's life ------------------------------------------------ */

struct listener *listener_new(struct loop *loop, int fd, int index,
                              const struct listener_tls *tls,
                              const struct listener_limits *limits,
                              const char *request_id_header,
                              const struct listener_ops *ops, void *ctx,
                              char **err)
{
    struct listener *l = xcalloc(1, sizeof(*l));
    l->loop = loop;
    l->ops = ops;
    l->ctx = ctx;
    l->limits = *limits;
    l->index = index;
    l->tls = tls && tls->cert_pem;
    l->request_id_header = xstrdup(request_id_header);
    l->rng = (util_mono_ns() ^ ((uint64_t)(uintptr_t)l << 17) ^
              ((uint64_t)fd << 40)) | 1;
    l->fd = fd;
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
        if (tls->ticket_keys)
            h1tls_server_ticket_keys(l->tls_ctx, tls->ticket_keys);
    }
    if (fd >= 0) {
        l->io = loop_io_new(loop, fd, listener_native_accept, l);
        loop_io_set(l->io, LOOP_READ);
        l->resume = loop_timer_new(loop, listener_native_resume, l);
    }
    l->soon = loop_defer_new(loop, listener_native_finish_all, l);
    return l;
}

void listener_adopt(struct listener *l, int fd,
                    const struct sockaddr_storage *peer, socklen_t len)
{
    listener_native_adopt(l, fd, peer, len);
}

void listener_quiesce(struct listener *l)
{
    if (l->quiesced)
        return;
    l->quiesced = true;
    listener_native_quiesce(l);
}

void listener_free(struct listener *l)
{
    if (!l)
        return;
    listener_native_free(l);
    loop_io_free(l->io);
    loop_timer_free(l->resume);
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
