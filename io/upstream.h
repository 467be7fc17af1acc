/* upstream.h - HTTP requests to the controllers: a libcurl multi handle
 * driven by one event loop through the socket API, keep-alive connection
 * pools, TLS verification against the configured CA, optional client
 * certificate, Host/SNI kept while connecting to a controller's own address.
 * The only interface to libcurl; nothing else includes curl/curl.h.
 *
 * Ownership: a struct upstream belongs to one loop (one worker, or the
 * control thread) and owns its easy-handle pool.  A struct upstream_req is
 * owned by the caller; everything it points to (url, headers, body) must
 * stay valid until its done callback runs or upstream_cancel() returns.  The
 * response buffers inside it are owned by it and released by
 * upstream_req_reset()/upstream_req_free(). */
#ifndef QG_UPSTREAM_H
#define QG_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "base/http.h"

struct loop;
struct log;
struct upstream;
struct headers;

struct upstream_settings {
    const char *ca_file;             /* NULL = system store */
    const char *cert_file;           /* optional client certificate */
    const char *key_file;
    bool verify;
    uint64_t connect_timeout_ms;
    uint64_t idle_timeout_ms;        /* keep-alive connections older: closed */
    uint32_t max_host_connections;   /* per controller */
    bool batch_sends;                /* the requests of a loop turn go out in
                                        one io_uring submission, where the
                                        kernel allows it (base/uring.h) */
    struct log *log;                 /* borrowed: why a controller's name
                                        does not resolve; NULL = quiet */
};

enum upstream_result {
    UPSTREAM_OK = 0,          /* an HTTP answer arrived, whatever its status */
    UPSTREAM_CONNECT_ERROR,   /* refused, unreachable, resolve: never sent */
    UPSTREAM_TLS_ERROR,       /* handshake or verification: never sent */
    UPSTREAM_CONNECT_TIMEOUT, /* never sent */
    UPSTREAM_TIMEOUT,         /* sent; no complete answer in time */
    UPSTREAM_RESET,           /* sent; the connection broke */
    UPSTREAM_TOO_LARGE,       /* the answer is larger than allowed */
    UPSTREAM_ERROR,           /* anything else */
    UPSTREAM__COUNT
};

struct upstream_header {
    uint32_t name_off, name_len;     /* into resp_hdr_data */
    uint32_t value_off, value_len;
};

struct upstream_req {
    /* request: set by the caller, borrowed until done */
    enum http_method method;
    const char *method_name;         /* used for HTTP_OTHER */
    const char *url;                 /* full URL */
    const char *connect_to;          /* "name:port:addr:port" or NULL */
    const char *const *headers;      /* "Name: value" lines */
    int n_headers;
    struct headers *fields;          /* or, when headers is NULL: the
                                        fields as pairs (borrowed); the own
                                        client writes them from there, the
                                        lines are made only for libcurl */
    const char *body;
    size_t body_len;
    uint64_t timeout_ms;             /* whole attempt; 0 = none */
    size_t max_response;             /* body bytes; 0 = unlimited */
    bool fresh_connection;           /* never reuse a pooled connection */
    bool own_client;                 /* the request path: quorumgate's own
                                        HTTP/1.1 client (h1client.h) runs
                                        it when it can, else libcurl */
    void (*done)(struct upstream_req *r, void *arg);
    void *arg;

    /* response: filled in before done runs */
    enum upstream_result result;
    int status;                      /* 0 unless UPSTREAM_OK */
    bool sent;                       /* request bytes went out */
    bool via_own_client;             /* h1client.h ran it, not libcurl */
    bool batched;                    /* its request went out in a batch of
                                        sends (upstream.batch_sends) */
    bool unreachable;                /* no connection to the controller
                                        could be made: refused or
                                        unreachable, or the connection (TLS
                                        handshake included) not complete
                                        within the connect timeout; false
                                        when the attempt's own time ended
                                        first (a few ms left of a deadline
                                        prove nothing), and when the
                                        request only waited for a pooled
                                        connection (the controller holds
                                        them all: it is there) */
    struct buf resp_hdr_data;        /* owned: header names and values */
    struct upstream_header *resp_hdrs;/* owned */
    int n_resp_hdrs, cap_resp_hdrs;
    struct buf resp_body;            /* owned */
    uint64_t duration_ns;
    char error[128];                 /* libcurl's explanation, if any */

    void *priv;                      /* upstream's: the easy handle */
    bool on_own_client;              /* upstream's: priv is h1client's */
};

struct upstream *upstream_new(struct loop *loop,
                              const struct upstream_settings *s);
/* Cancels every request still running (no done callbacks). */
void upstream_free(struct upstream *u);
/* Timeouts and limits for requests started from now on. */
void upstream_set_settings(struct upstream *u,
                           const struct upstream_settings *s);

/* Starts r; done runs later on the loop, never from inside this call. */
void upstream_start(struct upstream *u, struct upstream_req *r);
/* Stops r if running; its done callback will not run. */
void upstream_cancel(struct upstream *u, struct upstream_req *r);
/* Number of requests in flight. */
int upstream_active(const struct upstream *u);

/* Clears the response part so r can be started again. */
void upstream_req_reset(struct upstream_req *r);
void upstream_req_free(struct upstream_req *r);
/* First response header value with that name (case-insensitive), copied
 * into out; false when absent. */
bool upstream_resp_header(const struct upstream_req *r, const char *name,
                          const char **value, size_t *len);
/* Appends a response header (for answers quorumgate composes itself). */
void upstream_resp_header_add(struct upstream_req *r, const char *name,
                              const char *value);
void upstream_resp_header_addn(struct upstream_req *r, const char *name,
                               size_t name_len, const char *value,
                               size_t value_len);
const char *upstream_result_name(enum upstream_result res);
/* true when nothing of the request can have reached the controller */
bool upstream_result_never_sent(const struct upstream_req *r);

#endif
