/* h1parse.h - an HTTP/1.x response parser for the upstream client: status
 * line, header fields, Content-Length, chunked (extensions and trailers
 * checked and dropped) and read-until-close bodies, interim 1xx answers
 * skipped, no body for HEAD/1xx/204/304, Connection: close.  Pure: no I/O,
 * no allocation; every size is bounded.
 *
 * Feeding: h1parse_feed() is given every byte the caller holds that it has
 * not consumed yet (split anywhere).  It consumes whole lines in the head,
 * chunk-size and trailer parts (a partial line is left for the next call,
 * with the bytes after it) and any number of body bytes, and reports
 * fields and body bytes through the callbacks, pointing into the caller's
 * bytes (valid during the callback only).
 *
 * Ownership: a struct h1parse is a plain value owned by its caller; it
 * borrows ops and arg. */
#ifndef QG_H1PARSE_H
#define QG_H1PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct h1parse_ops {
    /* a field of the final answer's head (never of a 1xx, never a
     * trailer), value without surrounding whitespace; false = stop */
    bool (*header)(void *arg, const char *name, size_t name_len,
                   const char *value, size_t value_len);
    /* body bytes, de-chunked; false = stop */
    bool (*body)(void *arg, const char *p, size_t n);
};

struct h1parse_limits {
    size_t max_head;      /* status line + fields of one head; also trailers */
    int max_headers;      /* fields in one head */
};

enum h1parse_result {
    H1P_MORE = 0,   /* everything given was used or kept: give more */
    H1P_DONE,       /* the answer is complete; *used says where it ended */
    H1P_ERROR,      /* malformed, too large or stopped: see p->error */
};

struct h1parse {
    const struct h1parse_ops *ops;   /* borrowed */
    void *arg;                       /* borrowed */
    struct h1parse_limits lim;
    int state;
    bool head_request;               /* the request was a HEAD */
    /* the final answer's head, once parsed */
    int status;                      /* 0 until the final status line */
    int minor;                       /* HTTP/1.<minor> */
    bool keep_alive;                 /* the connection may carry another */
    bool chunked;
    bool until_close;                /* body delimited by the end of stream */
    bool have_length;
    bool te_seen;
    bool te_last_chunked;
    uint64_t length;                 /* Content-Length */
    uint64_t remaining;              /* of the length or of this chunk */
    size_t head_bytes;               /* of the head (or trailers) so far */
    int n_headers;
    int interim;                     /* 1xx answers skipped */
    const char *error;               /* static text, set with H1P_ERROR */
};

void h1parse_init(struct h1parse *p, const struct h1parse_ops *ops, void *arg,
                  const struct h1parse_limits *lim, bool head_request);
/* Parses from data[0..len): *used = bytes consumed (always set). */
enum h1parse_result h1parse_feed(struct h1parse *p, const char *data,
                                 size_t len, size_t *used);
/* The stream ended: H1P_DONE when that completes a read-until-close body,
 * else H1P_ERROR ("truncated"). */
enum h1parse_result h1parse_eof(struct h1parse *p);

#endif
