/* listener_impl.h - what the files of the listener share of its insides
 * (listener.c: the daemon and its callbacks; listener_request.c: reading a
 * request; listener_respond.c: answers, deadlines).  Nothing else includes
 * it: the interface is listener.h, and these three files are the only ones
 * that include microhttpd.h (together, the one wrapper of libmicrohttpd). */
#ifndef QG_LISTENER_IMPL_H
#define QG_LISTENER_IMPL_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "base/buf.h"
#include "base/errcodes.h"
#include "base/list.h"
#include "io/listener.h"

struct h1tls_ctx;


/* Buffers a native listener keeps for its connections' reads and request
 * heads: a connection holds them only while it reads or handles a
 * request, so an idle one costs a few hundred bytes. */
#define LISTENER_POOL 128

/* Owned by the worker; lives on one loop.  A plain-HTTP listener with a
 * socket of its own is native (listener_native.c, no daemon); the others
 * run a libmicrohttpd daemon. */
struct listener {
    struct loop *loop;             /* borrowed */
    struct MHD_Daemon *d;          /* owned; NULL when native */
    struct loop_io *io;            /* owned: watches the daemon's epoll fd;
                                      native: the listening socket */
    struct loop_timer *timer;      /* owned: the daemon's own timeouts */
    struct loop_defer *soon;       /* owned: run the daemon next iteration;
                                      native: end the answered exchanges */
    bool native;
    bool closing;                  /* native: being freed */
    int fd;                        /* native: the listening socket, or -1 */
    struct list conns;             /* native: its connections (owned) */
    struct list done;              /* native: those whose answer is sent */
    uint32_t n_conns;
    time_t date_at;                /* native: the Date field's second */
    char date[40];
    struct buf pool[LISTENER_POOL]; /* native: spare buffers (owned) */
    int n_pool;
    const struct listener_ops *ops;/* borrowed */
    void *ctx;                     /* borrowed */
    struct listener_limits limits;
    int index;
    bool tls;
    struct h1tls_ctx *tls_ctx;     /* owned: native HTTPS */
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
    struct MHD_Connection *c;      /* borrowed; NULL when native */
    bool native;                   /* a struct native_conn's first member */
    int fd;
    struct loop_timer *deadline;   /* owned */
    struct listener_exchange *ex;  /* borrowed: the request in progress */
    struct listener_exchange_alloc *spare; /* owned: the last exchange's
                                      memory, for the next request */
    unsigned served;               /* requests completed on it */
    uint64_t start_ns;             /* accepted (monotonic) */
    char client_addr[64];          /* the peer's address as text, found at
                                      its first request (empty until then:
                                      a connection's peer never changes) */
    uint16_t client_port;
};

/* Private part of an exchange, allocated with it. */
struct listener_xpriv {
    struct listener_conn *conn;    /* borrowed */
    struct MHD_Response *resp;     /* owned until queued */
    enum listener_phase phase;
    bool in_handler;               /* inside on_request */
    bool suspended;
    bool discarding;               /* body over the limit: read and drop */
    bool over_budget;              /* body refused: the budget is spent */
    uint64_t charged;              /* bytes counted in limits.budget */
    uint64_t discarded;
    char *raw_url;                 /* owned */
    size_t url_cap;
    int hdr_cap;                   /* allocated entries of ex->headers */
    struct buf body;               /* owned */
    struct buf text;               /* owned: native: the head's text */
};

struct listener_exchange_alloc {
    struct listener_exchange ex;
    struct listener_xpriv p;
};

#define XP(ex) ((struct listener_xpriv *)(ex)->priv)

/* listener.c */
/* Runs the daemon and re-arms its timer (any loop callback may call it). */
void listener_run(struct listener *l);

/* listener_request.c */
/* The URI log callback: a request line has arrived; returns its exchange
 * (on a kept-alive connection, made from the previous one's memory). */
void *listener_request_begin(void *cls, const char *uri,
                             struct MHD_Connection *c);
/* The headers are in: collect and check them.  false when answered
 * already (a local error is queued). */
bool listener_request_headers(struct listener *l,
                              struct listener_exchange *ex,
                              struct MHD_Connection *c, const char *method,
                              const char *version);
void listener_request_set_id(struct listener *l, struct listener_exchange *ex);
void listener_request_client_addr(struct listener_exchange *ex,
                                  struct MHD_Connection *c);
void listener_request_free(struct listener_exchange_alloc *a);
/* A zeroed exchange; on a kept-alive connection the previous one's memory
 * (conn->spare) is reused. */
struct listener_exchange_alloc *listener_request_reuse(
    struct listener_conn *conn);
/* The checks made once the head is in (framing, limits, method, target,
 * budget, admission); bad: a field-syntax fault found by the caller's
 * parser (NULL: none).  false when answered already (a local error). */
bool listener_request_check(struct listener *l, struct listener_exchange *ex,
                            const char *bad, size_t head_bytes);
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
bool listener_respond_given_length(const char *const *headers, int n,
                                   uint64_t *out);
/* The reason phrase of a status ("Not Found"). */
const char *listener_respond_reason(int status);
/* Queue the prepared response from inside the access handler. */
enum MHD_Result listener_respond_queue(struct listener_exchange *ex);
/* Per-connection deadline: (re)arm for ms (0 = stop); on expiry. */
void listener_respond_arm(struct listener_conn *conn, uint64_t ms);
void listener_respond_deadline(void *arg);

/* listener_native.c */
/* The listening socket is readable. */
void listener_native_accept(void *arg, int events);
/* End the exchanges whose answer is sent (the listener's soon). */
void listener_native_finish_all(void *arg);
void listener_native_respond(struct listener_exchange *ex, int status,
                             const char *const *headers, int n, char *body,
                             size_t len, bool close);
/* A connection accepted elsewhere (the passthrough's SNI split). */
void listener_native_adopt(struct listener *l, int fd,
                           const struct sockaddr_storage *peer,
                           socklen_t len);
void listener_native_quiesce(struct listener *l);
void listener_native_free(struct listener *l);

#endif
