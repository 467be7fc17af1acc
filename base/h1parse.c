/* h1parse.c - see h1parse.h.  RFC 9112 (message syntax, body length 6.3,
 * chunked coding 7.1), RFC 9110 (fields 5.5, 1xx 15.2, 204/304 6.4.1). */
#include "base/h1parse.h"

#include <string.h>

#include "base/http.h"
#include "base/util.h"

enum {
    ST_STATUS = 0,   /* status line */
    ST_FIELDS,       /* header field lines */
    ST_BODY_LENGTH,  /* Content-Length bytes */
    ST_CHUNK_SIZE,   /* chunk-size [ext] line */
    ST_CHUNK_DATA,   /* chunk bytes */
    ST_CHUNK_END,    /* the CRLF after a chunk's bytes */
    ST_TRAILERS,     /* trailer field lines */
    ST_BODY_CLOSE,   /* everything until the end of the stream */
    ST_DONE,
    ST_ERROR,
};

#define H1P_MAX_CHUNK_LINE 1024 /* chunk-size and extensions */

void h1parse_init(struct h1parse *p, const struct h1parse_ops *ops, void *arg,
                  const struct h1parse_limits *lim, bool head_request)
{
    memset(p, 0, sizeof(*p));
    p->ops = ops;
    p->arg = arg;
    p->lim = *lim;
    p->head_request = head_request;
    p->state = ST_STATUS;
}

static enum h1parse_result h1parse_fail(struct h1parse *p, const char *why)
{
    p->state = ST_ERROR;
    p->error = why;
    return H1P_ERROR;
}

/* a[0..n) equals b, a lower-case literal, but for case. */
static bool h1parse_ieq(const char *a, size_t n, const char *b)
{
    return util_strncaseeq(a, n, b);
}

/* Calls fn for each comma-separated, trimmed, non-empty element. */
static bool h1parse_list(const char *v, size_t n,
                         bool (*fn)(struct h1parse *p, const char *e,
                                    size_t len),
                         struct h1parse *p)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && v[i] != ',')
            continue;
        const char *e = v + start;
        size_t len = i - start;
        http_trim(&e, &len);
        if (len && !fn(p, e, len))
            return false;
        start = i + 1;
    }
    return true;
}

static bool h1parse_length_elem(struct h1parse *p, const char *e, size_t len)
{
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (e[i] < '0' || e[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(e[i] - '0');
    }
    if (p->have_length && v != p->length)
        return false; /* differing lengths (RFC 9112 6.3 item 5) */
    p->have_length = true;
    p->length = v;
    return true;
}

static bool h1parse_te_elem(struct h1parse *p, const char *e, size_t len)
{
    size_t n = 0;
    while (n < len && e[n] != ';' && e[n] != ' ' && e[n] != '\t')
        n++;
    p->te_seen = true;
    p->te_last_chunked = h1parse_ieq(e, n, "chunked");
    return true;
}

static bool h1parse_conn_elem(struct h1parse *p, const char *e, size_t len)
{
    if (h1parse_ieq(e, len, "close"))
        p->keep_alive = false;
    else if (h1parse_ieq(e, len, "keep-alive") && p->minor == 0)
        p->keep_alive = true;
    return true;
}

static enum h1parse_result h1parse_status_line(struct h1parse *p,
                                               const char *s, size_t n)
{
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || s[7] < '0' || s[7] > '9' ||
        s[8] != ' ')
        return h1parse_fail(p, "malformed status line");
    int status = 0;
    for (int i = 9; i < 12; i++) {
        if (s[i] < '0' || s[i] > '9')
            return h1parse_fail(p, "malformed status code");
        status = status * 10 + (s[i] - '0');
    }
    /* 600..999 are outside RFC 9110's classes but real: OpenZiti controllers
     * answer go-openapi validation failures with 602/606 (and an error
     * envelope).  They are passed through, not turned into a 502. */
    if (status < 100)
        return h1parse_fail(p, "status code out of range");
    if (n > 12 && s[12] != ' ')
        return h1parse_fail(p, "malformed status line");
    if (n > 13 && !http_field_value(s + 13, n - 13))
        return h1parse_fail(p, "control character in the reason");
    if (status == 101)
        return h1parse_fail(p, "unexpected protocol switch");
    p->minor = s[7] - '0';
    p->keep_alive = p->minor >= 1;
    p->status = status;
    p->state = ST_FIELDS;
    return H1P_MORE;
}

static enum h1parse_result h1parse_field(struct h1parse *p, const char *s,
                                         size_t n, bool trailer)
{
    if (s[0] == ' ' || s[0] == '\t')
        return h1parse_fail(p, "obsolete line folding");
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return h1parse_fail(p, "malformed header field");
    size_t nlen = (size_t)(colon - s);
    if (!http_token(s, nlen))
        return h1parse_fail(p, "malformed header name");
    const char *v = colon + 1;
    size_t vlen = n - nlen - 1;
    if (!http_field_value(v, vlen))
        return h1parse_fail(p, "control character in a header value");
    http_trim(&v, &vlen);
    if (++p->n_headers > p->lim.max_headers)
        return h1parse_fail(p, "too many header fields");
    if (trailer || p->status < 200)
        return H1P_MORE; /* checked, not reported */
    if (h1parse_ieq(s, nlen, "content-length")) {
        if (!h1parse_list(v, vlen, h1parse_length_elem, p) ||
            !p->have_length)
            return h1parse_fail(p, "invalid Content-Length");
    } else if (h1parse_ieq(s, nlen, "transfer-encoding")) {
        h1parse_list(v, vlen, h1parse_te_elem, p);
    } else if (h1parse_ieq(s, nlen, "connection")) {
        h1parse_list(v, vlen, h1parse_conn_elem, p);
    }
    if (p->ops->header && !p->ops->header(p->arg, s, nlen, v, vlen))
        return h1parse_fail(p, "stopped at a header field");
    return H1P_MORE;
}

/* The empty line after the fields: decide how the body is delimited. */
static enum h1parse_result h1parse_head_end(struct h1parse *p)
{
    if (p->status < 200) { /* interim answer: the real one follows */
        p->interim++;
        p->status = 0;
        p->n_headers = 0;
        p->head_bytes = 0;
        p->state = ST_STATUS;
        return H1P_MORE;
    }
    if (p->head_request || p->status == 204 || p->status == 304) {
        p->state = ST_DONE;
        return H1P_DONE;
    }
    if (p->te_seen) {
        /* Transfer-Encoding overrides Content-Length, and such a message
         * must not be followed by another on the connection (6.3 item 3) */
        if (p->have_length)
            p->keep_alive = false;
        if (p->te_last_chunked) {
            p->chunked = true;
            p->state = ST_CHUNK_SIZE;
            p->head_bytes = 0;
            return H1P_MORE;
        }
        p->until_close = true;
        p->keep_alive = false;
        p->state = ST_BODY_CLOSE;
        return H1P_MORE;
    }
    if (p->have_length) {
        p->remaining = p->length;
        p->state = p->length ? ST_BODY_LENGTH : ST_DONE;
        return p->length ? H1P_MORE : H1P_DONE;
    }
    p->until_close = true;
    p->keep_alive = false;
    p->state = ST_BODY_CLOSE;
    return H1P_MORE;
}

static enum h1parse_result h1parse_chunk_size(struct h1parse *p,
                                              const char *s, size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n; i++) {
        char c = s[i];
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            break;
        if (v > (UINT64_MAX >> 4))
            return h1parse_fail(p, "chunk size overflows");
        v = (v << 4) | (uint64_t)d;
    }
    if (i == 0)
        return h1parse_fail(p, "malformed chunk size");
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++; /* BWS before an extension */
    if (i < n && s[i] != ';')
        return h1parse_fail(p, "malformed chunk size");
    for (; i < n; i++) /* chunk extensions: checked for controls, ignored */
        if (!http_vchar((unsigned char)s[i]))
            return h1parse_fail(p, "control character in a chunk extension");
    if (v == 0) {
        p->state = ST_TRAILERS;
        p->head_bytes = 0;
        p->n_headers = 0;
        return H1P_MORE;
    }
    p->remaining = v;
    p->state = ST_CHUNK_DATA;
    return H1P_MORE;
}

/* One complete line (without its end) in a line-based state. */
static enum h1parse_result h1parse_line(struct h1parse *p, const char *s,
                                        size_t n)
{
    switch (p->state) {
    case ST_STATUS:
        return h1parse_status_line(p, s, n);
    case ST_FIELDS:
        if (n == 0)
            return h1parse_head_end(p);
        return h1parse_field(p, s, n, false);
    case ST_CHUNK_SIZE:
        return h1parse_chunk_size(p, s, n);
    case ST_CHUNK_END:
        if (n != 0)
            return h1parse_fail(p, "chunk data longer than its size");
        p->state = ST_CHUNK_SIZE;
        return H1P_MORE;
    case ST_TRAILERS:
        if (n == 0) {
            p->state = ST_DONE;
            return H1P_DONE;
        }
        return h1parse_field(p, s, n, true);
    default:
        return h1parse_fail(p, "internal state");
    }
}

static size_t h1parse_line_limit(const struct h1parse *p)
{
    if (p->state == ST_CHUNK_SIZE || p->state == ST_CHUNK_END)
        return H1P_MAX_CHUNK_LINE;
    return p->lim.max_head > p->head_bytes ? p->lim.max_head - p->head_bytes
                                           : 0;
}

enum h1parse_result h1parse_feed(struct h1parse *p, const char *data,
                                 size_t len, size_t *used)
{
    size_t pos = 0;
    enum h1parse_result res = H1P_MORE;
    *used = 0;
    if (p->state == ST_ERROR)
        return H1P_ERROR;
    if (p->state == ST_DONE)
        return H1P_DONE;
    while (res == H1P_MORE && p->state != ST_DONE) {
        if (p->state == ST_BODY_LENGTH || p->state == ST_CHUNK_DATA ||
            p->state == ST_BODY_CLOSE) {
            size_t n = len - pos;
            if (p->state != ST_BODY_CLOSE && n > p->remaining)
                n = (size_t)p->remaining;
            if (n == 0)
                break;
            if (p->ops->body && !p->ops->body(p->arg, data + pos, n)) {
                res = h1parse_fail(p, "stopped in the body");
                break;
            }
            pos += n;
            if (p->state == ST_BODY_CLOSE)
                continue;
            p->remaining -= n;
            if (p->remaining == 0) {
                if (p->state == ST_BODY_LENGTH) {
                    p->state = ST_DONE;
                    res = H1P_DONE;
                } else {
                    p->state = ST_CHUNK_END;
                }
            }
            continue;
        }
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t limit = h1parse_line_limit(p);
        if (!nl) {
            if (len - pos > limit)
                res = h1parse_fail(p, p->state == ST_CHUNK_SIZE
                                          ? "chunk size line too long"
                                          : "answer head too large");
            break;
        }
        size_t n = (size_t)(nl - (data + pos)); /* without the LF */
        if (n + 1 > limit) {
            res = h1parse_fail(p, p->state == ST_CHUNK_SIZE ||
                                          p->state == ST_CHUNK_END
                                      ? "chunk size line too long"
                                      : "answer head too large");
            break;
        }
        if (p->state != ST_CHUNK_SIZE && p->state != ST_CHUNK_END)
            p->head_bytes += n + 1;
        size_t linelen = n && data[pos + n - 1] == '\r' ? n - 1 : n;
        if (memchr(data + pos, '\r', linelen)) {
            res = h1parse_fail(p, "bare CR in a line");
            break;
        }
        res = h1parse_line(p, data + pos, linelen);
        if (res != H1P_ERROR)
            pos += n + 1;
    }
    *used = pos;
    return res;
}

enum h1parse_result h1parse_eof(struct h1parse *p)
{
    if (p->state == ST_DONE)
        return H1P_DONE;
    if (p->state == ST_BODY_CLOSE) {
        p->state = ST_DONE;
        return H1P_DONE;
    }
    return h1parse_fail(p, "the answer was cut short");
}
