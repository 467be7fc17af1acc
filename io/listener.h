/* listener.h - the HTTP/1.1 front end: one listener per listening socket
 * per worker loop, plain HTTP or TLS, served on that loop by quorumgate's
 * own server (io/listener_native.c).
 *
 * The listener parses and bounds requests (431, 413, 414, 408, 400 for
 * smuggling-shaped framing) and hands each complete request to its owner as
 * a struct listener_exchange.  The owner answers at once or later with
 * listener_respond(); meanwhile the connection reads nothing more, so no
 * thread waits.  When the exchange ends (answer sent, or connection lost) the owner
 * is told through on_complete and must forget the exchange.
 *
 * Ownership: a listener is owned by its worker and lives on that worker's
 * loop; every exchange is owned by the listener.  The owner may hang its own
 * state on ex->user and must release it in on_complete. */
#ifndef QG_LISTENER_H
#define QG_LISTENER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/http.h"

struct loop;
struct listener;

struct listener_header {
    const char *name;    /* borrowed from the listener, valid until complete */
    size_t name_len;
    const char *value;
    size_t value_len;
};

struct listener_exchange {
    /* request, valid until on_complete */
    enum http_method method;
    const char *method_name;             /* as received */
    const char *url;                     /* path and query as received */
    const char *version;                 /* "HTTP/1.1" */
    struct listener_header *headers;     /* owned by the listener */
    int n_headers;
    const char *body;                    /* owned by the listener */
    size_t body_len;
    char client_addr[64];                /* "127.0.0.1" / "::1" */
    uint16_t client_port;
    bool tls;                            /* arrived on an HTTPS listener */
    bool client_cert;                    /* the client presented a TLS
                                            certificate (tls.client_ca) */
    uint64_t start_ns;                   /* monotonic, request line seen */
    char request_id[80];                 /* passed through or generated */
    int listener_index;                  /* which configured listener */

    /* response as sent (for logging in on_complete) */
    int status;
    uint64_t bytes_out;                  /* body bytes */
    bool local_error;                    /* answered by the listener itself */
    bool admitted;                       /* admit() accepted it */
    bool send_timed_out;                 /* the client did not take the
                                            answer within the send timeout:
                                            the connection was closed */
    const char *error_code;              /* its envelope code, static */

    void *user;                          /* owner's state */
    void *priv;                          /* listener's state */
};

/* What the listener tells its owner about its own limits. */
enum listener_event {
    LISTENER_SEND_TIMEOUT,   /* an answer not taken in time: closed */
    LISTENER_BUDGET_SPENT,   /* a request refused: buffer budget spent */
    LISTENER_ACCEPT_FAILED,  /* accept() found no descriptor or memory
                                (errno says which): accepting pauses
                                LISTENER_ACCEPT_PAUSE_MS */
    LISTENER_TLS_FAILED,     /* a TLS handshake failed or timed out */
    LISTENER_REFUSED_MAX_CONNECTIONS, /* closed at accept: the daemon's
                                         max_connections are open */
    LISTENER_REFUSED_PER_CLIENT,      /* closed at accept: that address
                                         has max_per_client open */
};

#define LISTENER_ACCEPT_PAUSE_MS 100

/* Bytes of request bodies and answers held by listeners, counted across
 * every listener that shares it (all workers): a request that would take
 * more than limit gets 503 PROXY_BUFFER_BUDGET.  Request bodies count
 * while they arrive and until the exchange ends, answers from
 * listener_respond() until their last byte is sent.  Owned by the process
 * (the app); limit 0 = no budget; limit may change at any time. */
struct listener_budget {
    atomic_uint_fast64_t used;
    atomic_uint_fast64_t limit;
};

/* Open connections per client address across every listener that shares
 * it (all workers), for limits.max_per_client: exact however SO_REUSEPORT
 * spreads a client's connections.  Owned by the process (the app);
 * thread-safe.  seed keys its hash. */
struct listener_clients;
enum listener_clients_result {
    LISTENER_CLIENT_COUNTED,     /* counted: drop it when it closes */
    LISTENER_CLIENT_NOT_COUNTED, /* not an IP peer: nothing to drop */
    LISTENER_CLIENT_REFUSED,     /* limit reached: not counted */
};
struct listener_clients *listener_clients_new(uint64_t seed);
void listener_clients_free(struct listener_clients *c);
/* Counts one more connection of peer unless it has limit open (0 = no
 * limit). */
enum listener_clients_result listener_clients_take(
    struct listener_clients *c, const struct sockaddr_storage *peer,
    uint32_t limit);
void listener_clients_drop(struct listener_clients *c,
                           const struct sockaddr_storage *peer);
/* Open connections of peer's address (tests, diagnostics). */
uint32_t listener_clients_count(struct listener_clients *c,
                                const struct sockaddr_storage *peer);

struct listener_ops {
    /* A whole request has arrived (body included).  Answer with
     * listener_respond(), now or later on the same loop. */
    void (*on_request)(void *ctx, struct listener_exchange *ex);
    /* The exchange is over: answered, or the client went away (status 0
     * when nothing could be sent).  ex is freed after this returns. */
    void (*on_complete)(void *ctx, struct listener_exchange *ex);
    /* May a new request start?  false answers 503 PROXY_OVERLOADED. */
    bool (*admit)(void *ctx);
    /* Connection opened (+1) or closed (-1), for the connection gauge. */
    void (*on_connection)(void *ctx, int delta);
    /* Optional: may this peer connect at all?  Asked right after accept;
     * false closes the connection before anything is read from it. */
    bool (*accept)(void *ctx, const struct sockaddr *peer, socklen_t len);
    /* Optional: one of the listener's limits was applied.  detail, when
     * not NULL, says more for a debug line (LISTENER_TLS_FAILED: the peer
     * and OpenSSL's reason); it lives until the call returns. */
    void (*on_event)(void *ctx, enum listener_event ev, const char *detail);
};

struct listener_limits {
    uint64_t max_header_bytes;
    uint32_t max_headers;
    uint64_t max_body_bytes;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t idle_timeout_ms;
    uint32_t max_connections;            /* for this daemon */
    uint32_t max_per_client;             /* per client address, counted in
                                            clients; 0 = none */
    struct listener_clients *clients;    /* borrowed; NULL = not counted
                                            (and max_per_client unused) */
    uint64_t send_timeout_ms;            /* an answer's last byte is sent
                                            within this, or the connection
                                            is closed; 0 = none */
    struct listener_budget *budget;      /* borrowed; NULL = none */
};

struct listener_tls {
    const char *cert_pem;                /* PEM text, not a path */
    const char *key_pem;
    const char *client_ca_pem;           /* NULL = do not ask for certs */
    const unsigned char *ticket_keys;    /* LISTENER_TICKET_KEYS bytes
                                            shared by every worker (a
                                            session resumes on any); NULL
                                            = the listener's own */
};

#define LISTENER_TICKET_KEYS 80

/* Creates a listening socket for host:port (port 0 = any free port) with
 * SO_REUSEPORT, so several workers can bind the same address.  Returns the
 * fd or -1 with *err set (malloc'ed). */
int listener_bind(const char *host, uint16_t port, int backlog, char **err);
/* The port a bound socket got. */
uint16_t listener_bound_port(int fd);

/* Starts serving fd (taken over) on loop.  request_id_header names the
 * header to pass through or generate.  Returns NULL with *err on failure. */
struct listener *listener_new(struct loop *loop, int fd, int index,
                              const struct listener_tls *tls,
                              const struct listener_limits *limits,
                              const char *request_id_header,
                              const struct listener_ops *ops, void *ctx,
                              char **err);
/* fd < 0 in listener_new: a listener without a listening socket of its
 * own, fed with listener_adopt() (the SNI split of the passthrough
 * listener hands it the connections it does not splice). */
/* Serve an accepted connection (taken over; nothing read from it yet). */
void listener_adopt(struct listener *l, int fd,
                    const struct sockaddr_storage *peer, socklen_t len);
/* Stop accepting new connections (SIGTERM); in-flight exchanges go on. */
void listener_quiesce(struct listener *l);
/* Close everything, abandoning exchanges (their on_complete still runs). */
void listener_free(struct listener *l);
/* Limits for new requests (reload). */
void listener_set_limits(struct listener *l,
                         const struct listener_limits *limits);

/* Answer an exchange.  The n fields are copied before the call returns.
 * The body is taken over (malloc'ed, freed by the listener); close asks for
 * the connection to be closed after the answer. */
void listener_respond(struct listener_exchange *ex, int status,
                      const struct http_field *fields, int n, char *body,
                      size_t body_len, bool close);

/* Case-insensitive header lookup on a request: first value or NULL. */
const char *listener_header(const struct listener_exchange *ex,
                            const char *name);

#endif
