/* h1req.h - an HTTP/1.1 request parser for a native client front: request
 * line (origin-form only), header fields, Content-Length and chunked bodies
 * (extensions and trailers checked and dropped), with the framing rules
 * that keep two parsers from reading one message two ways (request
 * smuggling, RFC 9112 6.1, 6.3, 11.2): every ambiguity is an error.  Pure:
 * no I/O, no allocation; every size is bounded.
 *
 * Feeding: h1req_feed() is given every byte the caller holds that it has
 * not consumed yet (split anywhere).  It consumes whole lines in the head,
 * chunk-size and trailer parts (a partial line is left for the next call,
 * with the bytes after it) and any number of body bytes, and reports the
 * request through the callbacks, pointing into the caller's bytes (valid
 * during the callback only).  One parser reads one request: on H1REQ_DONE,
 * *used says where it ended, and what follows (a pipelined request) is for
 * a parser h1req_init() again.  On H1REQ_ERROR the connection cannot be
 * read further: answer h1req_status(p->error_kind) and close it.
 *
 * Ownership: a struct h1req is a plain value owned by its caller; it
 * borrows ops and arg. */
#ifndef QG_H1REQ_H
#define QG_H1REQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define H1REQ_MAX_METHOD 32 /* bytes of a method */

struct h1req;

/* Ownership: a table of functions, borrowed by the parser. */
struct h1req_ops {
    /* the request line, the method and the target as received, as soon
     * as it splits into those and a supported version: the target is
     * checked after this call (origin-form; raw bytes above 0x7f let
     * through) and may still be refused; p->method and p->minor are set;
     * false = stop */
    bool (*request_line)(void *arg, const char *method, size_t method_len,
                         const char *target, size_t target_len);
    /* a field of the head (never a trailer), value without surrounding
     * whitespace, after its framing checks; false = stop */
    bool (*header)(void *arg, const char *name, size_t name_len,
                   const char *value, size_t value_len);
    /* the head is complete and checked (p's head state is final), before
     * any body byte; false = stop */
    bool (*head)(void *arg, const struct h1req *p);
    /* body bytes, de-chunked; false = stop */
    bool (*body)(void *arg, const char *p, size_t n);
};

/* Ownership: plain values, copied by h1req_init. */
struct h1req_limits {
    size_t max_head;     /* request line + fields with their line ends (and
                          * leading empty lines); trailers on their own */
    int max_headers;     /* fields in the head; trailer fields on their own */
    uint64_t max_body;   /* body bytes (Content-Length or de-chunked) */
};

enum h1req_result {
    H1REQ_MORE = 0,  /* everything given was used or kept: give more */
    H1REQ_DONE,      /* the request is complete; *used says where it ended */
    H1REQ_ERROR,     /* see p->error_kind and p->error */
};

/* What an error calls for (h1req_status gives the answer's status). */
enum h1req_error {
    H1REQ_E_NONE = 0,
    H1REQ_E_BAD,            /* 400: malformed or ambiguous framing */
    H1REQ_E_URI_TOO_LONG,   /* 414: the request line is over max_head */
    H1REQ_E_TOO_LARGE,      /* 431: head or trailers over the limits */
    H1REQ_E_BODY_TOO_LARGE, /* 413: body over max_body */
    H1REQ_E_EXPECT,         /* 417: an Expect other than 100-continue */
    H1REQ_E_VERSION,        /* 505: HTTP/x.y other than 1.0 and 1.1 */
    H1REQ_E_STOPPED,        /* a callback returned false: caller's call */
};

/* Ownership: a plain value owned by its caller (see the top). */
struct h1req {
    const struct h1req_ops *ops;   /* borrowed */
    void *arg;                     /* borrowed */
    struct h1req_limits lim;
    int state;
    /* the request, set by the request line and the head */
    char method[H1REQ_MAX_METHOD + 1]; /* NUL-terminated */
    int minor;                     /* HTTP/1.<minor> */
    bool keep_alive;               /* another request may follow */
    bool expect_continue;          /* Expect: 100-continue (HTTP/1.1) */
    bool chunked;                  /* Transfer-Encoding: chunked */
    bool have_length;              /* Content-Length given */
    uint64_t length;               /* its value */
    /* parsing */
    bool have_host;
    bool conn_close;               /* Connection: close seen */
    bool conn_keep_alive;          /* Connection: keep-alive seen */
    uint64_t remaining;            /* of the length or of this chunk */
    uint64_t body_len;             /* chunk sizes announced so far */
    size_t head_bytes;             /* of the head (or trailers) so far */
    size_t ext_bytes;              /* chunk-size lines past the digits */
    int n_headers;
    int empty_lines;               /* before the request line */
    enum h1req_error error_kind;   /* set with H1REQ_ERROR */
    const char *error;             /* static text, names the header */
};

void h1req_init(struct h1req *p, const struct h1req_ops *ops, void *arg,
                const struct h1req_limits *lim);
/* Parses from data[0..len): *used = bytes consumed (always set). */
enum h1req_result h1req_feed(struct h1req *p, const char *data, size_t len,
                             size_t *used);
/* The answer's status for an error kind (0 for NONE and STOPPED). */
int h1req_status(enum h1req_error kind);

#endif
