/* h1req.c - see h1req.h.  RFC 9112 (request line 3, fields 5, body length
 * 6.3, chunked coding 7.1, smuggling 11.2), RFC 9110 (Host 7.2, Connection
 * 7.6.1, Expect 10.1.1).  Where the RFCs allow leniency (bare LF, obs-fold,
 * a Transfer-Encoding list, repeated equal lengths) this parser refuses. */
#include "base/h1req.h"

#include <string.h>

#include "base/http.h"
#include "base/util.h"

enum {
    ST_LINE = 0,     /* request line, after optional empty lines */
    ST_FIELDS,       /* header field lines */
    ST_BODY_LENGTH,  /* Content-Length bytes */
    ST_CHUNK_SIZE,   /* chunk-size [ext] line */
    ST_CHUNK_DATA,   /* chunk bytes */
    ST_CHUNK_END,    /* the CRLF after a chunk's bytes */
    ST_TRAILERS,     /* trailer field lines */
    ST_DONE,
    ST_ERROR,
};

#define H1REQ_MAX_EMPTY_LINES 4    /* before the request line (2.2) */
#define H1REQ_MAX_CHUNK_LINE 1024  /* one chunk-size line */
#define H1REQ_MAX_CHUNK_EXT 4096   /* extension bytes of a whole body */
#define H1REQ_MAX_CHUNK_DIGITS 16  /* hex digits of a chunk size */

void h1req_init(struct h1req *p, const struct h1req_ops *ops, void *arg,
                const struct h1req_limits *lim)
{
    memset(p, 0, sizeof(*p));
    p->ops = ops;
    p->arg = arg;
    p->lim = *lim;
    p->state = ST_LINE;
}

int h1req_status(enum h1req_error kind)
{
    static const int status[] = {
        [H1REQ_E_BAD] = 400,       [H1REQ_E_URI_TOO_LONG] = 414,
        [H1REQ_E_TOO_LARGE] = 431, [H1REQ_E_BODY_TOO_LARGE] = 413,
        [H1REQ_E_EXPECT] = 417,    [H1REQ_E_VERSION] = 505,
        [H1REQ_E_STOPPED] = 0,
    };
    return (unsigned)kind < ARRAY_LEN(status) ? status[kind] : 0;
}

static enum h1req_result h1req_fail(struct h1req *p, enum h1req_error kind,
                                    const char *why)
{
    p->state = ST_ERROR;
    p->error_kind = kind;
    p->error = why;
    return H1REQ_ERROR;
}

static enum h1req_result h1req_bad(struct h1req *p, const char *why)
{
    return h1req_fail(p, H1REQ_E_BAD, why);
}

static size_t h1req_bws(const char *s, size_t n, size_t i)
{
    while (i < n && http_ows(s[i]))
        i++;
    return i;
}

static enum h1req_result h1req_request_line(struct h1req *p, const char *s,
                                            size_t n)
{
    const char *sp1 = memchr(s, ' ', n);
    if (!sp1 || sp1 == s)
        return h1req_bad(p, "malformed request line");
    size_t mlen = (size_t)(sp1 - s);
    if (!http_token(s, mlen))
        return h1req_bad(p, "malformed request method");
    if (mlen > H1REQ_MAX_METHOD)
        return h1req_bad(p, "request method too long");
    const char *t = sp1 + 1;
    const char *sp2 = memchr(t, ' ', n - mlen - 1);
    if (!sp2)
        return h1req_bad(p, "malformed request line");
    size_t tlen = (size_t)(sp2 - t);
    const char *v = sp2 + 1;
    size_t vlen = n - (size_t)(v - s);
    /* the version first: "PRI * HTTP/2.0" is a 505, not a bad target */
    if (vlen != 8 || memcmp(v, "HTTP/", 5) != 0 || v[5] < '0' ||
        v[5] > '9' || v[6] != '.' || v[7] < '0' || v[7] > '9')
        return h1req_bad(p, "malformed HTTP version");
    if (v[5] != '1' || v[7] > '1')
        return h1req_fail(p, H1REQ_E_VERSION, "unsupported HTTP version");
    memcpy(p->method, s, mlen);
    p->method[mlen] = '\0';
    p->minor = v[7] - '0';
    /* reported before the target is checked: a refused request is still
     * logged with what it asked for */
    if (p->ops->request_line &&
        !p->ops->request_line(p->arg, s, mlen, t, tlen))
        return h1req_fail(p, H1REQ_E_STOPPED, "stopped at the request line");
    /* origin-form only (3.2.1): no absolute-form, no '*'; no control
     * bytes (a bare CR included), spaces or fragment; raw bytes above 0x7f
     * are let through */
    if (tlen == 0 || t[0] != '/')
        return h1req_bad(p, "request target must be an absolute path");
    for (size_t i = 0; i < tlen; i++) {
        unsigned char c = (unsigned char)t[i];
        if (c <= 0x20 || c == 0x7f || c == '#')
            return h1req_bad(p, "invalid character in the request target");
    }
    p->state = ST_FIELDS;
    return H1REQ_MORE;
}

/* 1*DIGIT, nothing else (no sign, no list, no hex), without overflow. */
static bool h1req_decimal(const char *v, size_t n, uint64_t *out)
{
    uint64_t x = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        uint64_t d = (uint64_t)(v[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *out = x;
    return true;
}

/* uri-host [":" port] characters (RFC 3986: reg-name, IP literal). */
static bool h1req_host_ok(const char *v, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)v[i];
        if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
            (c >= 'A' && c <= 'Z') || c == '.' || c == ':' || c == '-')
            continue; /* the usual ones without a strchr */
        if (!strchr("-._~!$&'()*+,;=:[]%", c))
            return false;
    }
    return true;
}

static void h1req_connection(struct h1req *p, const char *v, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && v[i] != ',')
            continue;
        const char *e = v + start;
        size_t len = i - start;
        http_trim(&e, &len);
        if (util_strncaseeq(e, len, "close"))
            p->conn_close = true;
        else if (util_strncaseeq(e, len, "keep-alive"))
            p->conn_keep_alive = true;
        start = i + 1;
    }
}

/* The fields that decide framing and the connection (6.1, 6.3). */
static enum h1req_result h1req_framing(struct h1req *p, const char *name,
                                       size_t nlen, const char *v,
                                       size_t vlen)
{
    if (util_strncaseeq(name, nlen, "content-length")) {
        if (p->have_length)
            return h1req_bad(p, "repeated Content-Length header");
        if (p->chunked)
            return h1req_bad(p, "both Content-Length and Transfer-Encoding");
        if (!h1req_decimal(v, vlen, &p->length))
            return h1req_bad(p, "invalid Content-Length");
        p->have_length = true;
    } else if (util_strncaseeq(name, nlen, "transfer-encoding")) {
        if (p->chunked)
            return h1req_bad(p, "repeated Transfer-Encoding header");
        if (p->have_length)
            return h1req_bad(p, "both Content-Length and Transfer-Encoding");
        if (p->minor == 0)
            return h1req_bad(p, "Transfer-Encoding in an HTTP/1.0 request");
        if (!util_strncaseeq(v, vlen, "chunked"))
            return h1req_bad(p, "unsupported Transfer-Encoding "
                                "(only chunked)");
        p->chunked = true;
    } else if (util_strncaseeq(name, nlen, "host")) {
        if (p->have_host)
            return h1req_bad(p, "more than one Host header");
        if (!h1req_host_ok(v, vlen))
            return h1req_bad(p, "invalid Host header");
        p->have_host = true;
    } else if (util_strncaseeq(name, nlen, "connection")) {
        h1req_connection(p, v, vlen);
    } else if (util_strncaseeq(name, nlen, "expect")) {
        if (!util_strncaseeq(v, vlen, "100-continue"))
            return h1req_fail(p, H1REQ_E_EXPECT,
                              "unsupported Expect (only 100-continue)");
        /* an HTTP/1.0 client never waits for 100 (10.1.1: ignored) */
        p->expect_continue = p->minor >= 1;
    }
    return H1REQ_MORE;
}

static enum h1req_result h1req_field(struct h1req *p, const char *s,
                                     size_t n, bool trailer)
{
    if (s[0] == ' ' || s[0] == '\t')
        return h1req_bad(p, "obsolete line folding in a header field");
    const char *colon = memchr(s, ':', n);
    if (!colon || colon == s)
        return h1req_bad(p, "malformed header field");
    size_t nlen = (size_t)(colon - s);
    if (!http_token(s, nlen)) /* no whitespace before the colon */
        return h1req_bad(p, "invalid character in a header field name");
    const char *v = colon + 1;
    size_t vlen = n - nlen - 1;
    if (!http_field_value(v, vlen))
        return h1req_bad(p, "control character in a header field value");
    http_trim(&v, &vlen);
    if (++p->n_headers > p->lim.max_headers)
        return h1req_fail(p, H1REQ_E_TOO_LARGE,
                          trailer ? "too many trailer fields"
                                  : "too many header fields");
    if (trailer)
        return H1REQ_MORE; /* checked, dropped */
    enum h1req_result res = h1req_framing(p, s, nlen, v, vlen);
    if (res != H1REQ_MORE)
        return res;
    if (p->ops->header && !p->ops->header(p->arg, s, nlen, v, vlen))
        return h1req_fail(p, H1REQ_E_STOPPED, "stopped at a header field");
    return H1REQ_MORE;
}

/* The empty line after the fields: the last checks, then the body. */
static enum h1req_result h1req_head_end(struct h1req *p)
{
    if (p->minor == 1 && !p->have_host)
        return h1req_bad(p, "missing Host header"); /* 3.2 */
    p->keep_alive = !p->conn_close && (p->minor == 1 || p->conn_keep_alive);
    if (p->have_length && p->length > p->lim.max_body)
        return h1req_fail(p, H1REQ_E_BODY_TOO_LARGE,
                          "Content-Length over the body limit");
    if (p->ops->head && !p->ops->head(p->arg, p))
        return h1req_fail(p, H1REQ_E_STOPPED, "stopped at the head");
    if (p->chunked) {
        p->state = ST_CHUNK_SIZE;
        return H1REQ_MORE;
    }
    if (p->have_length && p->length) {
        p->remaining = p->length;
        p->state = ST_BODY_LENGTH;
        return H1REQ_MORE;
    }
    p->state = ST_DONE; /* no body: ends at the empty line */
    return H1REQ_DONE;
}

/* chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] )
 * from s[0] (just after the size); NULL when well formed, else why not. */
static const char *h1req_chunk_ext(const char *s, size_t n)
{
    size_t i = 0;
    for (bool first = true; i < n; first = false) {
        i = h1req_bws(s, n, i);
        if (i == n || s[i] != ';') /* e.g. "1 x", or space at the end */
            return first ? "malformed chunk size"
                         : "malformed chunk extension";
        size_t start = i = h1req_bws(s, n, i + 1);
        while (i < n && http_tchar((unsigned char)s[i]))
            i++;
        if (i == start)
            return "malformed chunk extension";
        size_t j = h1req_bws(s, n, i);
        if (j == n || s[j] != '=')
            continue; /* a name alone; whitespace must lead to a ';' */
        start = i = h1req_bws(s, n, j + 1);
        if (i < n && s[i] == '"') { /* quoted-string, quoted-pairs */
            for (i++; i < n && s[i] != '"'; i++) {
                if (s[i] == '\\' && ++i == n)
                    break;
                if (!http_vchar((unsigned char)s[i]))
                    return "malformed chunk extension";
            }
            if (i >= n)
                return "malformed chunk extension";
            i++;
        } else {
            while (i < n && http_tchar((unsigned char)s[i]))
                i++;
            if (i == start)
                return "malformed chunk extension";
        }
    }
    return NULL;
}

static enum h1req_result h1req_chunk_size(struct h1req *p, const char *s,
                                          size_t n)
{
    uint64_t v = 0;
    size_t i = 0;
    for (; i < n; i++) {
        int d = util_hexval(s[i]);
        if (d < 0)
            break;
        if (i == H1REQ_MAX_CHUNK_DIGITS) /* 16 digits cannot overflow */
            return h1req_bad(p, "malformed chunk size");
        v = (v << 4) | (uint64_t)d;
    }
    if (i == 0)
        return h1req_bad(p, "malformed chunk size");
    p->ext_bytes += n - i;
    if (p->ext_bytes > H1REQ_MAX_CHUNK_EXT)
        return h1req_bad(p, "chunk extensions too long");
    const char *why = h1req_chunk_ext(s + i, n - i);
    if (why)
        return h1req_bad(p, why);
    if (v > p->lim.max_body - p->body_len)
        return h1req_fail(p, H1REQ_E_BODY_TOO_LARGE,
                          "chunked body over the body limit");
    p->body_len += v;
    if (v == 0) {
        p->state = ST_TRAILERS;
        p->head_bytes = 0;
        p->n_headers = 0;
        return H1REQ_MORE;
    }
    p->remaining = v;
    p->state = ST_CHUNK_DATA;
    return H1REQ_MORE;
}

/* One complete line (without its CRLF) in a line-based state. */
static enum h1req_result h1req_line(struct h1req *p, const char *s, size_t n)
{
    switch (p->state) {
    case ST_LINE:
        if (n > 0)
            return h1req_request_line(p, s, n);
        if (++p->empty_lines > H1REQ_MAX_EMPTY_LINES)
            return h1req_bad(p, "too many empty lines before the request");
        return H1REQ_MORE;
    case ST_FIELDS:
        return n ? h1req_field(p, s, n, false) : h1req_head_end(p);
    case ST_CHUNK_SIZE:
        return h1req_chunk_size(p, s, n);
    case ST_TRAILERS:
        if (n)
            return h1req_field(p, s, n, true);
        p->state = ST_DONE;
        return H1REQ_DONE;
    default:
        return h1req_bad(p, "internal state");
    }
}

/* A line that cannot fit: which error that is depends on where. */
static enum h1req_result h1req_too_long(struct h1req *p)
{
    if (p->state == ST_LINE)
        return h1req_fail(p, H1REQ_E_URI_TOO_LONG, "request line too long");
    if (p->state == ST_CHUNK_SIZE)
        return h1req_bad(p, "chunk size line too long");
    return h1req_fail(p, H1REQ_E_TOO_LARGE,
                      p->state == ST_FIELDS ? "request head too large"
                                            : "trailer section too large");
}

enum h1req_result h1req_feed(struct h1req *p, const char *data, size_t len,
                             size_t *used)
{
    size_t pos = 0;
    enum h1req_result res = H1REQ_MORE;
    *used = 0;
    if (p->state == ST_ERROR)
        return H1REQ_ERROR;
    if (p->state == ST_DONE)
        return H1REQ_DONE;
    while (res == H1REQ_MORE && pos < len) {
        if (p->state == ST_BODY_LENGTH || p->state == ST_CHUNK_DATA) {
            size_t n = len - pos;
            if (n > p->remaining)
                n = (size_t)p->remaining;
            if (p->ops->body && !p->ops->body(p->arg, data + pos, n)) {
                res = h1req_fail(p, H1REQ_E_STOPPED, "stopped in the body");
                break;
            }
            pos += n;
            p->remaining -= n;
            if (p->remaining == 0 && p->state == ST_BODY_LENGTH) {
                p->state = ST_DONE;
                res = H1REQ_DONE;
            } else if (p->remaining == 0) {
                p->state = ST_CHUNK_END;
            }
            continue;
        }
        /* the CRLF after a chunk, checked as each byte comes: a chunk
         * longer than its size fails at its first extra byte */
        if (p->state == ST_CHUNK_END) {
            bool two = len - pos > 1;
            if (data[pos] != '\r' || (two && data[pos + 1] != '\n'))
                res = h1req_bad(p, "chunk data not followed by CRLF");
            if (res != H1REQ_MORE || !two)
                break;
            pos += 2;
            p->state = ST_CHUNK_SIZE;
            continue;
        }
        const char *nl = memchr(data + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (data + pos)) : len - pos;
        bool chunk_line = p->state == ST_CHUNK_SIZE;
        size_t limit = chunk_line ? H1REQ_MAX_CHUNK_LINE
                       : p->lim.max_head > p->head_bytes
                           ? p->lim.max_head - p->head_bytes
                           : 0;
        if (n >= limit) { /* with its LF it would be over (or it is) */
            res = h1req_too_long(p);
            break;
        }
        if (!nl)
            break; /* a partial line: kept for the next call */
        if (n == 0 || data[pos + n - 1] != '\r') {
            res = h1req_bad(p, "bare LF as a line end");
            break;
        }
        /* (in the request line: a CR is a bad method, target or version,
         * found once the line is split, so that its target is reported) */
        if (p->state != ST_LINE && memchr(data + pos, '\r', n - 1)) {
            res = h1req_bad(p, "bare CR in a line");
            break;
        }
        if (!chunk_line)
            p->head_bytes += n + 1;
        res = h1req_line(p, data + pos, n - 1);
        if (res != H1REQ_ERROR)
            pos += n + 1;
    }
    *used = pos;
    return res;
}
