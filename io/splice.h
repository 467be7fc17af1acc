/* splice.h - TCP passthrough: accept client connections on a listening
 * socket and copy every byte, untouched, between each one and an upstream
 * address its owner picks.  Plain non-blocking sockets driven by the
 * worker's event loop (base/loop.h); no TLS and no parsing here: what the
 * client sends is what the upstream receives, in both directions, with
 * half-closes passed on (a client's shutdown(SHUT_WR) reaches the upstream
 * as one, and the other direction keeps flowing).
 *
 * Data path: a read goes into the splice's scratch buffer and is written
 * to the other side at once; only bytes the other side would not take are
 * copied into a buffer of the connection (and reading from that side stops
 * until they are written).  An idle connection therefore holds no buffer.
 *
 * Ownership: the owner (a worker) owns the struct splice; the splice owns
 * its listening socket and every connection on it.  Everything runs on the
 * loop's thread.  The owner learns what happened through struct splice_ops
 * (a lower layer reports upward; it never calls into the owner's code). */
#ifndef QG_SPLICE_H
#define QG_SPLICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct loop;
struct splice;

/* How a connection ended. */
enum splice_end {
    SPLICE_END_CLIENT_CLOSED = 0, /* the client closed first, both flushed */
    SPLICE_END_UPSTREAM_CLOSED,   /* the upstream closed first */
    SPLICE_END_IDLE,              /* no byte either way for idle_timeout */
    SPLICE_END_RETIRED,           /* splice_retire(): .reason says why */
    SPLICE_END_ERROR,             /* reset or I/O error on either side */
    SPLICE_END_REFUSED,           /* pick() refused: .reason says why */
    SPLICE_END_LIMIT,             /* max_connections reached */
    SPLICE_END_CONNECT_FAILED,    /* the upstream refused or failed */
    SPLICE_END_CONNECT_TIMEOUT,   /* no upstream connection in time */
    SPLICE_END_SHUTDOWN           /* splice_free() while it was open */
};

struct splice_limits {
    uint32_t max_connections;     /* open at once on this splice; >= 1 */
    uint64_t idle_timeout_ms;     /* no byte either way: close */
    uint64_t connect_timeout_ms;  /* upstream connect bound */
    uint64_t peek_timeout_ms;     /* SNI mode: the ClientHello's bound */
};

/* What the owner is told when a connection ends (also refused ones). */
struct splice_result {
    int target;                   /* pick()'s answer; -1 when none */
    enum splice_end end;
    int reason;                   /* REFUSED: pick's *reason; RETIRED: the
                                     why given to splice_retire(); else 0 */
    int err;                      /* errno for ERROR / CONNECT_FAILED */
    char client_addr[64];         /* "127.0.0.1" / "::1" */
    uint16_t client_port;
    uint64_t bytes_up;            /* client -> upstream, delivered */
    uint64_t bytes_down;          /* upstream -> client, delivered */
    uint64_t start_ns;            /* monotonic: accepted */
    uint64_t connected_ns;        /* monotonic: upstream connected; 0 never */
    uint64_t end_ns;              /* monotonic: closed */
};

struct splice_ops {
    /* A client connected: fill *addr / *len with the upstream and return a
     * target id >= 0 (reported back in results), or return -1 with
     * *reason set to refuse the connection (it is closed at once). */
    int (*pick)(void *ctx, struct sockaddr_storage *addr, socklen_t *len,
                int *reason);
    /* n bytes were delivered to the upstream (up) or to the client. */
    void (*on_bytes)(void *ctx, int target, bool up, size_t n);
    /* The upstream connection is established. */
    void (*on_connected)(void *ctx, int target);
    /* The connection is closed; r is valid during the call only. */
    void (*on_end)(void *ctx, const struct splice_result *r);
    /* SNI mode only: is this ClientHello server name (lower case) one to
     * splice?  If not (or the hello has no name, or is not TLS), the
     * accepted socket is handed to the owner with hand_off (taken over:
     * nothing of it has been read). */
    bool (*sni_match)(void *ctx, const char *name);
    void (*hand_off)(void *ctx, int fd, const struct sockaddr_storage *peer,
                     socklen_t len);
};

/* Serves the listening socket fd (taken over; non-blocking) on loop.
 * Returns NULL with *err (malloc'ed) on failure. */
struct splice *splice_new(struct loop *loop, int fd,
                          const struct splice_limits *lim,
                          const struct splice_ops *ops, void *ctx,
                          char **err);
/* The same in SNI mode: each connection's TLS ClientHello is peeked at
 * (not consumed) and the connection spliced only when sni_match accepts
 * its server name; otherwise the socket goes to hand_off. */
struct splice *splice_new_sni(struct loop *loop, int fd,
                              const struct splice_limits *lim,
                              const struct splice_ops *ops, void *ctx,
                              char **err);
/* Limits for connections from now on (reload); open ones keep theirs. */
void splice_set_limits(struct splice *s, const struct splice_limits *lim);
/* Stop accepting: the listening socket is closed.  Open connections go on. */
void splice_quiesce(struct splice *s);
/* Every open connection whose target is not keep_target (-1: every one)
 * is closed once no exchange is in flight on it (the last bytes went to
 * the client, nothing is buffered, and no byte has moved for quiet_ms),
 * and at the latest grace_ms from now.  why is reported in the result.
 * A connection already retiring keeps its earlier deadline; one to
 * keep_target that was retiring for the same why stays open again. */
void splice_retire(struct splice *s, int keep_target, uint64_t grace_ms,
                   uint64_t quiet_ms, int why);
/* Connections open now (connecting ones included). */
int splice_count(const struct splice *s);
/* Closes every connection (on_end: SPLICE_END_SHUTDOWN) and the socket. */
void splice_free(struct splice *s);

const char *splice_end_name(enum splice_end e);

#endif
