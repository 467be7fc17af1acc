/* h1client_impl.h - what the two halves of the controller client share:
 * h1client.c (exchanges, origins, the pools and their dispatch, the public
 * calls) and h1conn.c (one connection: connect, TLS, send, read, parse).
 * Nothing else includes it.
 *
 * Ownership is written next to each field. */
#ifndef QG_H1CLIENT_IMPL_H
#define QG_H1CLIENT_IMPL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/buf.h"
#include "base/h1parse.h"
#include "base/list.h"
#include "io/h1addr.h"
#include "io/h1client.h"
#include "io/upstream.h"

struct h1tls;
struct h1tls_ctx;
struct loop_io;
struct loop_timer;
struct loop_defer;
struct loop_prepare;
struct uring;
struct loop_resolve;
struct log;

#define H1_RBUF 16384          /* read buffer of a connection, to start */
#define H1_MAX_HEAD 65536      /* an answer's head (and its trailers) */
#define H1_MAX_HEADERS 256
#define H1_INLINE_BODY 16384   /* bodies up to this go in the head's write */

/* C_QUEUED: the request is built and waits in the client's queue for the
 * loop turn's batch of sends (h1conn_send_queue); nothing is written. */
enum h1_state {
    C_CONNECTING, C_HANDSHAKE, C_IDLE, C_QUEUED, C_SENDING, C_READING
};

#define H1_BATCH 256           /* sends in one io_uring submission */

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
    struct h1client *c;          /* borrowed */
    char *key;                   /* owned: "scheme://authority" */
    size_t key_len;
    char *connect_to;            /* owned, or NULL */
    bool tls;
    char *host_hdr;              /* owned: the Host value */
    char *name;                  /* owned: certificate name / SNI */
    char *rname;                 /* owned: the host connected to (the URL's
                                    or connect_to's), without brackets */
    unsigned port;               /* the port connected to */
    struct h1addr addr;          /* where rname is */
    struct loop_resolve *res;    /* the resolution running, or NULL */
    char res_err[160];           /* why the last resolution failed */
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
    int fd;                      /* owned; -1 between addresses */
    struct loop_io *io;          /* owned */
    int events;
    struct h1tls *tls;           /* owned, or NULL */
    enum h1_state state;
    int tries;                   /* addresses tried (connecting) */
    int ai;                      /* index of the address connected to */
    bool cut_short;              /* the exchange's own time ran out while
                                  * connecting: says nothing of the
                                  * controller (not unreachable) */
    bool local_error;            /* an address failed on this machine's
                                    side (descriptors, memory, ports): the
                                    controller is not known unreachable */
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
    struct list queue_link;      /* in the client's queue, if C_QUEUED */
    long queued_result;          /* the batch's result for this one */
    struct buf ctext;            /* owned: TLS records of the request, made
                                    for a batch (h1tls_seal) */
    size_t ctext_off;
    bool sealed;                 /* ctext holds records not all sent */
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
    bool batch;                  /* upstream_settings.batch_sends */
    struct uring *uring;         /* owned; NULL: not asked for, refused by
                                    the kernel (uring_failed) or broken */
    bool uring_failed;
    struct list queue;           /* borrowed h1conns in C_QUEUED, in order */
    struct loop_prepare *send;   /* owned: sends the queue before the loop
                                    waits for I/O */
    struct loop_defer *send_late;/* owned: the same when a request was
                                    queued after that (the loop must not
                                    block with a queue) */
    struct log *log;             /* borrowed, or NULL */
    int active;
};

/* h1client.c: the exchange is over (its connection already released):
 * done runs now, or on the next loop iteration when sync (inside
 * h1client_start()). */
void h1client_finish(struct h1x *x, enum upstream_result res, const char *err,
                     bool sync);
/* h1client.c: start the origin's waiting exchanges that a connection can
 * now carry. */
void h1client_serve(struct h1origin *o, bool sync);

/* h1client.c: a new connection reached none of o's addresses: they are
 * resolved again (in the background). */
void h1client_unreachable(struct h1origin *o);

/* h1conn.c: a new connection to o for x (o has addresses). */
void h1conn_open(struct h1client *c, struct h1origin *o, struct h1x *x,
                 bool sync);
/* h1conn.c: x goes out on k (idle, connected). */
void h1conn_begin(struct h1conn *k, struct h1x *x, bool sync);
/* h1conn.c: the exchange on k failed: k is closed, the exchange finished. */
void h1conn_fail(struct h1conn *k, enum upstream_result res, const char *err,
                 bool sync);
/* h1conn.c: closes k and frees it (off every list). */
void h1conn_close(struct h1conn *k);
/* h1conn.c: writes every queued request: one io_uring submission per
 * H1_BATCH, the rest of each (a large body, a partial write, an error)
 * as without a batch. */
void h1conn_send_queue(struct h1client *c);

#endif
