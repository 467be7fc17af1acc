/* splice.c - see splice.h. */
#include "io/splice.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/list.h"
#include "base/loop.h"
#include "base/tls_sni.h"
#include "base/util.h"

#define SPLICE_SCRATCH (64 * 1024)
#define SPLICE_ACCEPT_BATCH 64
#define SPLICE_READS_PER_EVENT 8
#define SPLICE_ACCEPT_PAUSE_MS 100
#define SPLICE_PEEK_MAX 16384     /* a ClientHello must fit */

/* One direction of a connection.  Owned by its connection. */
struct splice_dir {
    char *pending;          /* owned: bytes the destination did not take */
    size_t pending_len;
    size_t pending_off;
    bool eof;               /* the source sent its EOF */
    bool shut;              /* ... and it was passed on (SHUT_WR) */
};

/* One spliced connection.  Owned by its splice (in its list). */
struct splice_conn {
    struct splice *s;               /* borrowed: the owner */
    struct list link;               /* in the splice's conns */
    int cfd, ufd;                   /* owned sockets; -1 when closed */
    struct loop_io *cio, *uio;      /* owned watchers */
    int cev, uev;                   /* events watched on each */
    struct loop_timer *timer;       /* owned: connect, idle, retire */
    struct splice_dir up;           /* client -> upstream */
    struct splice_dir down;         /* upstream -> client */
    bool peeking;                   /* SNI mode: ClientHello not read yet */
    bool connecting;
    bool up_last;                   /* the last bytes moved went upstream:
                                       an exchange is in flight */
    uint64_t last_ms;               /* loop clock: last byte either way */
    uint64_t connect_deadline_ms;
    uint64_t peek_deadline_ms;
    struct sockaddr_storage peer;   /* the client's address (hand-off) */
    socklen_t peer_len;
    uint64_t idle_ms;
    bool retiring;
    uint64_t retire_deadline_ms;
    uint64_t retire_quiet_ms;
    int retire_why;
    enum splice_end first_eof;      /* CLIENT_CLOSED or UPSTREAM_CLOSED */
    struct splice_result r;
};

struct splice {
    struct loop *loop;              /* borrowed */
    int fd;                         /* owned listening socket; -1 quiesced */
    struct loop_io *lio;            /* owned */
    struct loop_timer *resume;      /* owned: accept paused (EMFILE) */
    struct splice_limits lim;
    const struct splice_ops *ops;   /* borrowed */
    void *ctx;                      /* borrowed */
    struct list conns;              /* owned splice_conns */
    int n;
    char *scratch;                  /* owned, SPLICE_SCRATCH bytes */
    bool sni;                       /* peek ClientHellos (splice_new_sni) */
};

const char *splice_end_name(enum splice_end e)
{
    static const char *const names[] = {
        [SPLICE_END_CLIENT_CLOSED] = "client_closed",
        [SPLICE_END_UPSTREAM_CLOSED] = "controller_closed",
        [SPLICE_END_IDLE] = "idle_timeout",
        [SPLICE_END_RETIRED] = "retired",
        [SPLICE_END_ERROR] = "error",
        [SPLICE_END_REFUSED] = "refused",
        [SPLICE_END_LIMIT] = "max_connections",
        [SPLICE_END_CONNECT_FAILED] = "connect_failed",
        [SPLICE_END_CONNECT_TIMEOUT] = "connect_timeout",
        [SPLICE_END_SHUTDOWN] = "shutdown",
    };
    return (unsigned)e < ARRAY_LEN(names) ? names[e] : "unknown";
}

static void splice_conn_peek(struct splice_conn *c);

/* ---- closing ------------------------------------------------------------ */

static void splice_report(struct splice *s, struct splice_result *r,
                          enum splice_end end)
{
    r->end = end;
    r->end_ns = util_mono_ns();
    s->ops->on_end(s->ctx, r);
}

static void splice_conn_close(struct splice_conn *c, enum splice_end end,
                              int err)
{
    struct splice *s = c->s;
    loop_io_free(c->cio);
    loop_io_free(c->uio);
    loop_timer_free(c->timer);
    if (c->cfd >= 0)
        close(c->cfd);
    if (c->ufd >= 0)
        close(c->ufd);
    free(c->up.pending);
    free(c->down.pending);
    list_remove(&c->link);
    s->n--;
    c->r.err = err;
    if (end == SPLICE_END_RETIRED)
        c->r.reason = c->retire_why;
    splice_report(s, &c->r, end);
    free(c);
}

/* ---- watching and timing ------------------------------------------------ */

static int splice_watch(struct loop_io *io, int *cur, int want)
{
    if (*cur == want)
        return 0;
    *cur = want;
    return loop_io_set(io, want);
}

/* Watch what each side can make progress on: read a source only when
 * nothing of it is waiting for the destination, write a destination only
 * when something is waiting for it. */
static int splice_conn_watch(struct splice_conn *c)
{
    int cw = 0, uw = 0;
    if (c->connecting)
        return splice_watch(c->uio, &c->uev, LOOP_WRITE);
    if (!c->up.eof && !c->up.pending_len)
        cw |= LOOP_READ;
    if (c->down.pending_len)
        cw |= LOOP_WRITE;
    if (!c->down.eof && !c->down.pending_len)
        uw |= LOOP_READ;
    if (c->up.pending_len)
        uw |= LOOP_WRITE;
    if (splice_watch(c->cio, &c->cev, cw) != 0)
        return -1;
    return splice_watch(c->uio, &c->uev, uw);
}

static bool splice_conn_quiet(const struct splice_conn *c, uint64_t now)
{
    return !c->up_last && !c->up.pending_len && !c->down.pending_len &&
           now >= c->last_ms + c->retire_quiet_ms;
}

static uint64_t splice_min(uint64_t a, uint64_t b)
{
    return a < b ? a : b;
}

static void splice_conn_arm(struct splice_conn *c)
{
    uint64_t now = loop_now_ms(c->s->loop);
    uint64_t at;
    if (c->peeking) {
        at = c->peek_deadline_ms;
    } else if (c->connecting) {
        at = c->connect_deadline_ms;
    } else {
        at = c->last_ms + c->idle_ms;
        if (c->retiring)
            at = splice_min(at, splice_min(c->retire_deadline_ms,
                                           c->last_ms + c->retire_quiet_ms));
    }
    loop_timer_start(c->timer, at > now ? at - now : 1, 0);
}

static void splice_conn_timer(void *arg)
{
    struct splice_conn *c = arg;
    uint64_t now = loop_now_ms(c->s->loop);
    if (c->peeking) {
        if (now >= c->peek_deadline_ms) {
            splice_conn_close(c, SPLICE_END_IDLE, 0);
            return;
        }
    } else if (c->connecting) {
        if (now >= c->connect_deadline_ms) {
            splice_conn_close(c, SPLICE_END_CONNECT_TIMEOUT, ETIMEDOUT);
            return;
        }
    } else if (c->retiring && (now >= c->retire_deadline_ms ||
                               splice_conn_quiet(c, now))) {
        splice_conn_close(c, SPLICE_END_RETIRED, 0);
        return;
    } else if (now >= c->last_ms + c->idle_ms) {
        splice_conn_close(c, SPLICE_END_IDLE, 0);
        return;
    }
    splice_conn_arm(c);
}

/* ---- the data path ------------------------------------------------------ */

static bool splice_again(int e)
{
    return e == EAGAIN || e == EWOULDBLOCK;
}

/* Moves what src has to dst.  Returns the bytes delivered, or -1 with
 * *err set on a socket error. */
static ssize_t splice_pump(struct splice *s, struct splice_dir *d,
                           const struct splice_dir *other, int src, int dst,
                           int *err)
{
    ssize_t total = 0;
    if (d->pending_len) {
        ssize_t w = send(dst, d->pending + d->pending_off,
                         d->pending_len - d->pending_off, MSG_NOSIGNAL);
        if (w < 0) {
            if (splice_again(errno) || errno == EINTR)
                return 0;
            *err = errno;
            return -1;
        }
        d->pending_off += (size_t)w;
        total += w;
        if (d->pending_off < d->pending_len)
            return total;
        free(d->pending);
        d->pending = NULL;
        d->pending_len = d->pending_off = 0;
    }
    for (int i = 0; i < SPLICE_READS_PER_EVENT && !d->eof; i++) {
        ssize_t n = recv(src, s->scratch, SPLICE_SCRATCH, 0);
        if (n == 0) {
            d->eof = true;
            break;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (splice_again(errno))
                break;
            *err = errno;
            return -1;
        }
        ssize_t w = send(dst, s->scratch, (size_t)n, MSG_NOSIGNAL);
        if (w < 0) {
            if (!splice_again(errno) && errno != EINTR) {
                *err = errno;
                return -1;
            }
            w = 0;
        }
        total += w;
        if (w < n) {
            d->pending_len = (size_t)(n - w);
            d->pending = xmalloc(d->pending_len);
            memcpy(d->pending, s->scratch + w, d->pending_len);
            break;
        }
        if (n < SPLICE_SCRATCH)
            break; /* most likely drained; level-triggered: more wakes us */
    }
    if (d->eof && !d->pending_len && !d->shut) {
        /* when the other way is over too the connection closes now, and
         * close() sends the FIN: no shutdown of its own */
        if (!other->shut)
            shutdown(dst, SHUT_WR);
        d->shut = true;
    }
    return total;
}

static void splice_conn_service(struct splice_conn *c, bool up_ready,
                                bool down_ready)
{
    struct splice *s = c->s;
    int err = 0;
    if (up_ready) {
        bool was_eof = c->up.eof;
        ssize_t n = splice_pump(s, &c->up, &c->down, c->cfd, c->ufd, &err);
        if (n < 0) {
            splice_conn_close(c, SPLICE_END_ERROR, err);
            return;
        }
        if (n > 0) {
            c->r.bytes_up += (uint64_t)n;
            c->up_last = true;
            c->last_ms = loop_now_ms(s->loop);
            s->ops->on_bytes(s->ctx, c->r.target, true, (size_t)n);
        }
        if (!was_eof && c->up.eof && !c->down.eof)
            c->first_eof = SPLICE_END_CLIENT_CLOSED;
    }
    if (down_ready) {
        bool was_eof = c->down.eof;
        ssize_t n = splice_pump(s, &c->down, &c->up, c->ufd, c->cfd, &err);
        if (n < 0) {
            splice_conn_close(c, SPLICE_END_ERROR, err);
            return;
        }
        if (n > 0) {
            c->r.bytes_down += (uint64_t)n;
            c->up_last = false;
            c->last_ms = loop_now_ms(s->loop);
            s->ops->on_bytes(s->ctx, c->r.target, false, (size_t)n);
        }
        if (!was_eof && c->down.eof && !c->up.eof)
            c->first_eof = SPLICE_END_UPSTREAM_CLOSED;
    }
    if (c->up.shut && c->down.shut) {
        splice_conn_close(c, c->first_eof, 0);
        return;
    }
    if (splice_conn_watch(c) != 0)
        splice_conn_close(c, SPLICE_END_ERROR, EBADF);
}

static void splice_conn_connected(struct splice_conn *c)
{
    c->connecting = false;
    c->r.connected_ns = util_mono_ns();
    c->last_ms = loop_now_ms(c->s->loop);
    c->s->ops->on_connected(c->s->ctx, c->r.target);
    splice_conn_arm(c);
    /* Bytes the client sent while we connected are waiting: read them. */
    splice_conn_service(c, true, false);
}

static void splice_client_cb(void *arg, int events)
{
    struct splice_conn *c = arg;
    if (c->peeking) {
        splice_conn_peek(c);
        return;
    }
    bool err = (events & LOOP_ERROR) != 0;
    splice_conn_service(c, err || (events & LOOP_READ),
                        err || (events & LOOP_WRITE));
}

static void splice_upstream_cb(void *arg, int events)
{
    struct splice_conn *c = arg;
    if (c->connecting) {
        /* writable without an error: connected (a failed connect polls
         * as an error; only then is SO_ERROR worth a system call) */
        int soerr = 0;
        socklen_t len = sizeof(soerr);
        if ((events & LOOP_ERROR) &&
            getsockopt(c->ufd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0)
            soerr = errno;
        if (soerr == 0 && (events & LOOP_ERROR))
            soerr = ECONNREFUSED;
        if (soerr != 0) {
            splice_conn_close(c, SPLICE_END_CONNECT_FAILED, soerr);
            return;
        }
        splice_conn_connected(c); /* may close (and free) c */
        return;
    }
    bool err = (events & LOOP_ERROR) != 0;
    splice_conn_service(c, err || (events & LOOP_WRITE),
                        err || (events & LOOP_READ));
}

/* ---- accepting ---------------------------------------------------------- */

static void splice_peer(struct splice_result *r,
                        const struct sockaddr_storage *ss)
{
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, r->client_addr,
                  sizeof(r->client_addr));
        r->client_port = ntohs(a->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, r->client_addr,
                  sizeof(r->client_addr));
        r->client_port = ntohs(a->sin6_port);
    }
}

static void splice_refuse(struct splice *s, int fd, struct splice_result *r,
                          enum splice_end end)
{
    close(fd);
    splice_report(s, r, end);
}

/* Pick the upstream and connect to it (the client is already accepted,
 * and, with SNI, its ClientHello named a passthrough name). */
static void splice_conn_upstream(struct splice_conn *c)
{
    struct splice *s = c->s;
    struct sockaddr_storage to;
    socklen_t to_len = sizeof(to);
    int one = 1;
    memset(&to, 0, sizeof(to));
    c->r.target = s->ops->pick(s->ctx, &to, &to_len, &c->r.reason);
    if (c->r.target < 0) {
        c->r.target = -1;
        splice_conn_close(c, SPLICE_END_REFUSED, 0);
        return;
    }
    c->ufd = socket(to.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    0);
    c->uio = c->ufd >= 0 ? loop_io_new(s->loop, c->ufd, splice_upstream_cb, c)
                         : NULL;
    if (!c->uio) {
        splice_conn_close(c, SPLICE_END_CONNECT_FAILED,
                          c->ufd < 0 ? errno : EBADF);
        return;
    }
    /* the client's socket inherited TCP_NODELAY from the listening one */
    setsockopt(c->ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->peeking = false;
    c->connecting = true;
    c->connect_deadline_ms = loop_now_ms(s->loop) + s->lim.connect_timeout_ms;
    if (connect(c->ufd, (struct sockaddr *)&to, to_len) != 0 &&
        errno != EINPROGRESS) {
        splice_conn_close(c, SPLICE_END_CONNECT_FAILED, errno);
        return;
    }
    /* Connected or in progress: either way writability tells. */
    if (splice_conn_watch(c) != 0) {
        splice_conn_close(c, SPLICE_END_CONNECT_FAILED, EBADF);
        return;
    }
    splice_conn_arm(c);
}

/* The client's socket goes to the owner (not a passthrough name). */
static void splice_conn_hand_off(struct splice_conn *c)
{
    struct splice *s = c->s;
    int fd = c->cfd;
    struct sockaddr_storage peer = c->peer;
    socklen_t len = c->peer_len;
    loop_io_free(c->cio);
    loop_timer_free(c->timer);
    list_remove(&c->link);
    s->n--;
    free(c);
    s->ops->hand_off(s->ctx, fd, &peer, len);
}

/* SNI mode: look at the ClientHello without taking it off the socket. */
static void splice_conn_peek(struct splice_conn *c)
{
    struct splice *s = c->s;
    char name[256];
    ssize_t n = recv(c->cfd, s->scratch, SPLICE_PEEK_MAX, MSG_PEEK);
    if (n == 0 || (n < 0 && !splice_again(errno) && errno != EINTR)) {
        splice_conn_close(c, SPLICE_END_CLIENT_CLOSED, n < 0 ? errno : 0);
        return;
    }
    if (n < 0)
        return;
    enum tls_sni_result r = tls_sni_parse((const uint8_t *)s->scratch,
                                          (size_t)n, name, sizeof(name));
    if (r == TLS_SNI_MORE && n < SPLICE_PEEK_MAX)
        return; /* level-triggered: the rest wakes us */
    if (r == TLS_SNI_FOUND && s->ops->sni_match(s->ctx, name))
        splice_conn_upstream(c);
    else
        splice_conn_hand_off(c);
}

static void splice_start(struct splice *s, int cfd,
                         const struct sockaddr_storage *peer,
                         socklen_t peer_len)
{
    struct splice_result r = {.target = -1};
    r.start_ns = util_mono_ns();
    splice_peer(&r, peer);
    if (s->n >= (int)s->lim.max_connections) {
        splice_refuse(s, cfd, &r, SPLICE_END_LIMIT);
        return;
    }
    struct splice_conn *c = xcalloc(1, sizeof(*c));
    c->s = s;
    c->r = r;
    c->cfd = cfd;
    c->ufd = -1;
    c->peer = *peer;
    c->peer_len = peer_len;
    c->idle_ms = s->lim.idle_timeout_ms;
    c->first_eof = SPLICE_END_CLIENT_CLOSED;
    list_insert_head(&s->conns, &c->link);
    s->n++;
    c->timer = loop_timer_new(s->loop, splice_conn_timer, c);
    c->cio = loop_io_new(s->loop, cfd, splice_client_cb, c);
    if (!c->cio) {
        splice_conn_close(c, SPLICE_END_ERROR, EBADF);
        return;
    }
    if (!s->sni) {
        splice_conn_upstream(c);
        return;
    }
    c->peeking = true;
    c->peek_deadline_ms = loop_now_ms(s->loop) + s->lim.peek_timeout_ms;
    if (splice_watch(c->cio, &c->cev, LOOP_READ) != 0) {
        splice_conn_close(c, SPLICE_END_ERROR, EBADF);
        return;
    }
    splice_conn_arm(c);
}

static void splice_listen_watch(struct splice *s, bool on)
{
    if (s->lio)
        loop_io_set(s->lio, on ? LOOP_READ : 0);
}

static void splice_resume_cb(void *arg)
{
    splice_listen_watch(arg, true);
}

static void splice_accept_cb(void *arg, int events)
{
    struct splice *s = arg;
    for (int i = 0; i < SPLICE_ACCEPT_BATCH && s->fd >= 0; i++) {
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);
        memset(&ss, 0, sizeof(ss));
        int fd = accept4(s->fd, (struct sockaddr *)&ss, &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
                errno == ENOMEM) {
                /* level-triggered: the waiting connection would wake us
                 * at once again; pause instead of spinning */
                splice_listen_watch(s, false);
                loop_timer_start(s->resume, SPLICE_ACCEPT_PAUSE_MS, 0);
            }
            return;
        }
        splice_start(s, fd, &ss, len);
    }
}

/* ---- the splice --------------------------------------------------------- */

struct splice *splice_new(struct loop *loop, int fd,
                          const struct splice_limits *lim,
                          const struct splice_ops *ops, void *ctx,
                          char **err)
{
    struct splice *s = xcalloc(1, sizeof(*s));
    list_init(&s->conns);
    int one = 1;
    s->loop = loop;
    s->fd = fd;
    /* accepted sockets inherit it: one call here instead of one each */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    s->ops = ops;
    s->ctx = ctx;
    s->lim = *lim;
    s->scratch = xmalloc(SPLICE_SCRATCH);
    s->resume = loop_timer_new(loop, splice_resume_cb, s);
    s->lio = loop_io_new(loop, fd, splice_accept_cb, s);
    if (!s->lio || loop_io_set(s->lio, LOOP_READ) != 0) {
        *err = xasprintf("passthrough: cannot watch the listening socket");
        splice_free(s);
        return NULL;
    }
    return s;
}

struct splice *splice_new_sni(struct loop *loop, int fd,
                              const struct splice_limits *lim,
                              const struct splice_ops *ops, void *ctx,
                              char **err)
{
    struct splice *s = splice_new(loop, fd, lim, ops, ctx, err);
    if (s)
        s->sni = true;
    return s;
}

void splice_set_limits(struct splice *s, const struct splice_limits *lim)
{
    s->lim = *lim;
}

void splice_quiesce(struct splice *s)
{
    if (s->fd < 0)
        return;
    loop_io_free(s->lio);
    s->lio = NULL;
    loop_timer_stop(s->resume);
    close(s->fd);
    s->fd = -1;
}

void splice_retire(struct splice *s, int keep_target, uint64_t grace_ms,
                   uint64_t quiet_ms, int why)
{
    uint64_t now = loop_now_ms(s->loop);
    struct list *l, *tmp;
    list_foreach_safe(l, tmp, &s->conns) {
        struct splice_conn *c = list_entry(l, struct splice_conn, link);
        if (keep_target >= 0 && c->r.target == keep_target) {
            /* its target is wanted again (a leader that came back before
             * its connections were closed): they stay */
            if (c->retiring && c->retire_why == why)
                c->retiring = false;
            continue;
        }
        if (c->peeking) {
            /* not ours yet: undecided connections are left alone */
        } else if (c->connecting) {
            /* nothing has reached the upstream yet: no exchange to wait for */
            c->retire_why = why;
            splice_conn_close(c, SPLICE_END_RETIRED, 0);
        } else if (!c->retiring || now + grace_ms < c->retire_deadline_ms) {
            c->retiring = true;
            c->retire_why = why;
            c->retire_deadline_ms = now + grace_ms;
            c->retire_quiet_ms = quiet_ms;
            splice_conn_arm(c);
        }
    }
}

int splice_count(const struct splice *s)
{
    return s ? s->n : 0;
}

void splice_free(struct splice *s)
{
    if (!s)
        return;
    while (!list_empty(&s->conns))
        splice_conn_close(list_entry(list_first(&s->conns),
                                     struct splice_conn, link),
                          SPLICE_END_SHUTDOWN, 0);
    splice_quiesce(s);
    loop_io_free(s->lio);
    loop_timer_free(s->resume);
    free(s->scratch);
    free(s);
}
