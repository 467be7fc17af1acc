/* listener_impl.h - what the files of the listener share of its insides
 * (listener.c: sockets, the listener's life; listener_native.c: the
 * server, connection by connection; listener_request.c: the exchange and
 * the checks of a request; listener_respond.c: local errors and reason
 * phrases).  Nothing else includes it: the interface is listener.h. */
#ifndef QG_LISTENER_IMPL_H
#define QG_LISTENER_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <time.h>

#include "base/buf.h"
#include "base/errcodes.h"
#include "base/list.h"
#include "io/listener.h"

struct h1tls_ctx;

/* Buffers a listener keeps for its connections' reads and request
 * heads: a connection holds them only while it reads or handles a
 * request, so an idle one costs a few hundred bytes. */
#define LISTENER_POOL 128

/* Owned by the worker; lives on one loop.  fd < 0: a listener without a
 * socket of its own, whose connections come through listener_adopt() (the
 * passthrough's SNI split). */
struct listener {
    struct loop *loop;             /* borrowed */
    struct loop_io *io;            /* owned: the listening socket */
    struct loop_timer *resume;     /* owned: accepting again after a
                                      failed accept() */
    struct loop_defer *soon;       /* owned: ends the answered exchanges */
    bool closing;                  /* being freed */
    int fd;                        /* the listening socket, or -1 */
    struct list conns;             /* its connections (owned) */
    struct list done;              /* those whose answer is sent */
    uint32_t n_conns;
    time_t date_at;                /* the Date field's second */
    char date[40];
    struct buf pool[LISTENER_POOL]; /* spare buffers (owned) */
    int n_pool;
    const struct listener_ops *ops;/* borrowed */
    void *ctx;                     /* borrowed */
    struct listener_limits limits;
    int index;
    bool tls;
    struct h1tls_ctx *tls_ctx;     /* owned when tls */
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

/* What the listener's shared code knows of a connection; the first member
 * of listener_native.c's struct native_conn, which owns it. */
struct listener_conn {
    struct listener *l;            /* borrowed */
    int fd;
    struct loop_timer *deadline;   /* owned */
    struct listener_exchange *ex;  /* borrowed: the request in progress */
    struct listener_exchange_alloc *spare; /* owned: the last exchange's
                                      memory, for the next request */
    unsigned served;               /* requests completed on it */
    uint64_t start_ns;             /* accepted (monotonic) */
    char client_addr[64];          /* the peer's address as text */
    uint16_t client_port;
};

/* Private part of an exchange, allocated with it. */
struct listener_xpriv {
    struct listener_conn *conn;    /* borrowed */
    enum listener_phase phase;
    bool in_handler;               /* inside on_request */
    bool discarding;               /* body over the limit: read and drop */
    bool over_budget;              /* body refused: the budget is spent */
    uint64_t charged;              /* bytes counted in limits.budget */
    uint64_t discarded;
    int hdr_cap;                   /* allocated entries of ex->headers */
    struct buf body;               /* owned */
    struct buf text;               /* owned: the head's text */
};

struct listener_exchange_alloc {
    struct listener_exchange ex;
    struct listener_xpriv p;
};

#define XP(ex) ((struct listener_xpriv *)(ex)->priv)

/* listener_request.c */
void listener_request_set_id(struct listener *l, struct listener_exchange *ex);
/* The peer's address as text (a connection's, found once at accept). */
void listener_request_peer_text(const struct sockaddr *sa, char *text,
                                size_t len, uint16_t *port);
void listener_request_free(struct listener_exchange_alloc *a);
/* A zeroed exchange; on a kept-alive connection the previous one's memory
 * (conn->spare) is reused. */
struct listener_exchange_alloc *listener_request_reuse(
    struct listener_conn *conn);
/* The checks made once the head is in (framing, limits, method, target,
 * budget, admission).  false when answered already (a local error). */
bool listener_request_check(struct listener *l, struct listener_exchange *ex,
                            size_t head_bytes);
/* n body bytes arrived: kept, or dropped (over the body limit or the
 * budget, answered once the body is over).  false: so far over the limit
 * that the connection is to be closed without reading more. */
bool listener_request_body(struct listener *l, struct listener_exchange *ex,
                           const char *p, size_t n);

/* Answers 503 PROXY_BUFFER_BUDGET (and tells the owner). */
void listener_request_budget_spent(struct listener *l,
                                   struct listener_exchange *ex);
/* Count n more bytes of this exchange in the budget; false (nothing
 * counted) when that would go over it. */
bool listener_request_charge(struct listener *l, struct listener_exchange *ex,
                             uint64_t n, bool force);
/* Give back everything this exchange counted. */
void listener_request_uncharge(struct listener *l,
                               struct listener_exchange *ex);

/* listener_respond.c */
/* An error the listener answers itself, in the OpenZiti envelope: e's
 * code and status, message (NULL: the table's, base/errcodes.def). */
void listener_respond_error(struct listener_exchange *ex, struct listener *l,
                            enum errcode e, const char *message, bool close);
/* The Content-Length value among answer headers, if a plain number. */
bool listener_respond_given_length(const struct http_field *fields, int n,
                                   uint64_t *out);
/* The reason phrase of a status ("Not Found"). */
const char *listener_respond_reason(int status);

/* listener_native.c */
/* The listening socket is readable (the listener's io). */
void listener_native_accept(void *arg, int events);
/* Accepting again after a pause (the listener's resume timer). */
void listener_native_resume(void *arg);
/* End the exchanges whose answer is sent (the listener's soon). */
void listener_native_finish_all(void *arg);
void listener_native_respond(struct listener_exchange *ex, int status,
                             const struct http_field *fields, int n,
                             char *body, size_t len, bool close);
/* A connection accepted elsewhere (the passthrough's SNI split). */
void listener_native_adopt(struct listener *l, int fd,
                           const struct sockaddr_storage *peer,
                           socklen_t len);
void listener_native_quiesce(struct listener *l);
void listener_native_free(struct listener *l);

#endif
