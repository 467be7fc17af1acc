/* test_h1parse.c - the upstream answer parser (base/h1parse.c) at the byte
 * level: every answer is also fed split at every offset and one byte at a
 * time, the way a socket may deliver it, and must give the same fields,
 * body and end; malformed and oversized answers are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "base/h1parse.h"

struct got {
    char fields[4096];   /* "name=value\n"... */
    size_t fields_len;
    char body[8192];
    size_t body_len;
    int stop_at_field;   /* refuse the n-th field (1-based), 0 = never */
    int n_fields;
};

static bool got_header(void *arg, const char *n, size_t nl, const char *v,
                       size_t vl)
{
    struct got *g = arg;
    if (++g->n_fields == g->stop_at_field)
        return false;
    int w = snprintf(g->fields + g->fields_len,
                     sizeof(g->fields) - g->fields_len, "%.*s=%.*s\n",
                     (int)nl, n, (int)vl, v);
    g->fields_len += (size_t)w;
    return true;
}

static bool got_body(void *arg, const char *p, size_t n)
{
    struct got *g = arg;
    if (g->body_len + n > sizeof(g->body))
        return false;
    memcpy(g->body + g->body_len, p, n);
    g->body_len += n;
    g->body[g->body_len] = '\0';
    return true;
}

static const struct h1parse_ops ops = {got_header, got_body};
static const struct h1parse_limits lim = {1024, 16};

struct run {
    enum h1parse_result res;
    size_t end;          /* offset in the message where the answer ended */
    struct h1parse p;
    struct got g;
};

/* Feeds msg in pieces of the given sizes (the last piece takes the rest),
 * keeping unconsumed bytes like a client's read buffer; then the end of
 * the stream when eof is set and the answer is not complete. */
static void feed(struct run *r, const char *msg, size_t len,
                 const size_t *cuts, int n_cuts, bool head, bool eof)
{
    char held[8192];
    size_t held_len = 0, off = 0, total_used = 0;
    memset(r, 0, sizeof(*r));
    h1parse_init(&r->p, &ops, &r->g, &lim, head);
    r->res = H1P_MORE;
    for (int i = 0; i <= n_cuts && r->res == H1P_MORE; i++) {
        size_t upto = i < n_cuts ? cuts[i] : len;
        if (upto < off)
            continue;
        memcpy(held + held_len, msg + off, upto - off);
        held_len += upto - off;
        off = upto;
        size_t used;
        r->res = h1parse_feed(&r->p, held, held_len, &used);
        assert_true(used <= held_len);
        total_used += used;
        memmove(held, held + used, held_len - used);
        held_len -= used;
    }
    if (r->res == H1P_MORE && eof)
        r->res = h1parse_eof(&r->p);
    r->end = total_used;
}

static void feed_whole(struct run *r, const char *msg, bool head, bool eof)
{
    feed(r, msg, strlen(msg), NULL, 0, head, eof);
}

/* The same outcome for the whole message, for every split in two and for
 * one byte at a time. */
static void check_all_splits(const char *msg, bool head, bool eof,
                             enum h1parse_result want_res,
                             const char *want_fields, const char *want_body)
{
    static struct run whole, r;
    size_t len = strlen(msg);
    feed_whole(&whole, msg, head, eof);
    assert_int_equal(whole.res, want_res);
    if (want_fields)
        assert_string_equal(whole.g.fields, want_fields);
    if (want_body)
        assert_string_equal(whole.g.body, want_body);
    for (size_t k = 0; k <= len; k++) {
        feed(&r, msg, len, &k, 1, head, eof);
        assert_int_equal(r.res, whole.res);
        assert_string_equal(r.g.fields, whole.g.fields);
        assert_int_equal(r.g.body_len, whole.g.body_len);
        assert_memory_equal(r.g.body, whole.g.body, whole.g.body_len);
        if (r.res == H1P_DONE) {
            assert_int_equal(r.end, whole.end);
            assert_int_equal(r.p.keep_alive, whole.p.keep_alive);
            assert_int_equal(r.p.status, whole.p.status);
        }
    }
    static size_t bytes[4096];
    assert_true(len < 4096);
    for (size_t i = 0; i < len; i++)
        bytes[i] = i + 1;
    feed(&r, msg, len, bytes, (int)len, head, eof);
    assert_int_equal(r.res, whole.res);
    assert_string_equal(r.g.fields, whole.g.fields);
    assert_memory_equal(r.g.body, whole.g.body, whole.g.body_len);
    if (r.res == H1P_DONE)
        assert_int_equal(r.end, whole.end);
}

static void test_content_length(void **state)
{
    (void)state;
    const char *m = "HTTP/1.1 200 OK\r\n"
                    "Content-Type: application/json\r\n"
                    "Content-Length:  21 \r\n"
                    "X-Empty:\r\n"
                    "\r\n"
                    "{\"data\":{},\"meta\":{}}";
    check_all_splits(m, false, false, H1P_DONE,
                     "Content-Type=application/json\nContent-Length=21\n"
                     "X-Empty=\n",
                     "{\"data\":{},\"meta\":{}}");
    struct run r;
    feed_whole(&r, m, false, false);
    assert_int_equal(r.p.status, 200);
    assert_true(r.p.keep_alive);
    assert_int_equal(r.end, strlen(m));
    /* bytes after the answer are not consumed */
    char two[512];
    snprintf(two, sizeof(two), "%sHTTP/1.1 200 OK\r\n", m);
    feed_whole(&r, two, false, false);
    assert_int_equal(r.res, H1P_DONE);
    assert_int_equal(r.end, strlen(m));
    /* a repeated identical length is one length; a zero length is done */
    check_all_splits("HTTP/1.1 201 Created\r\nContent-Length: 3, 3\r\n"
                     "Content-Length: 3\r\n\r\nabc",
                     false, false, H1P_DONE, NULL, "abc");
    check_all_splits("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false,
                     false, H1P_DONE, "Content-Length=0\n", "");
    /* bare LF line ends are accepted */
    check_all_splits("HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", false, false,
                     H1P_DONE, "Content-Length=2\n", "hi");
    /* cut short: an error at the end of the stream, never a success */
    const char *cut = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
    check_all_splits(cut, false, true, H1P_ERROR, NULL, "abc");
    feed_whole(&r, cut, false, true);
    assert_string_equal(r.p.error, "the answer was cut short");
    feed_whole(&r, "HTTP/1.1 200 OK\r\nContent-Le", false, true);
    assert_int_equal(r.res, H1P_ERROR);
    feed_whole(&r, "", false, true);
    assert_int_equal(r.res, H1P_ERROR);
}

static void test_chunked(void **state)
{
    (void)state;
    const char *m = "HTTP/1.1 200 OK\r\n"
                    "Transfer-Encoding: chunked\r\n"
                    "\r\n"
                    "5;name=value;quoted=\"a;b\"\r\nhello\r\n"
                    "1 ; ext\r\n,\r\n"
                    "A\r\n 012345678\r\n"
                    "000\r\n"
                    "Trailer-One: 1\r\n"
                    "Trailer-Two: 2\r\n"
                    "\r\n";
    check_all_splits(m, false, false, H1P_DONE,
                     "Transfer-Encoding=chunked\n", "hello, 012345678");
    struct run r;
    feed_whole(&r, m, false, false);
    assert_true(r.p.chunked);
    assert_true(r.p.keep_alive);
    assert_int_equal(r.end, strlen(m));
    /* no trailers, upper-case hex, codings listed before chunked */
    check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
                     "Transfer-Encoding: Chunked\r\n\r\n"
                     "1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n",
                     false, false, H1P_DONE, NULL,
                     "0123456789abcdef0123456789abcde");
    /* Transfer-Encoding wins over Content-Length; the connection closes */
    const char *both = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n";
    check_all_splits(both, false, false, H1P_DONE, NULL, "ok");
    feed_whole(&r, both, false, false);
    assert_false(r.p.keep_alive);
    /* a coding other than chunked last: the body runs to the end */
    check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n"
                     "\r\nraw bytes",
                     false, true, H1P_DONE, NULL, "raw bytes");
    /* cut inside a chunk, inside the trailers */
    check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "5\r\nhel",
                     false, true, H1P_ERROR, NULL, "hel");
    check_all_splits("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                     "0\r\nTrailer: x\r\n",
                     false, true, H1P_ERROR, NULL, "");
}

static void test_no_body(void **state)
{
    (void)state;
    struct run r;
    /* HEAD: the length describes what a GET would get */
    const char *head = "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n";
    check_all_splits(head, true, false, H1P_DONE, "Content-Length=50\n", "");
    feed_whole(&r, head, true, false);
    assert_true(r.p.keep_alive);
    /* 204 and 304 end at the head, whatever they announce */
    check_all_splits("HTTP/1.1 204 No Content\r\nContent-Length: 9\r\n\r\n",
                     false, false, H1P_DONE, NULL, "");
    check_all_splits("HTTP/1.1 304 Not Modified\r\n"
                     "Transfer-Encoding: chunked\r\n\r\n",
                     false, false, H1P_DONE, NULL, "");
    /* read until close: no length, no coding */
    const char *close = "HTTP/1.1 200 OK\r\nX: y\r\n\r\nuntil the end";
    check_all_splits(close, false, true, H1P_DONE, "X=y\n", "until the end");
    feed_whole(&r, close, false, false);
    assert_int_equal(r.res, H1P_MORE);
    assert_true(r.p.until_close);
    assert_false(r.p.keep_alive);
}

static void test_interim(void **state)
{
    (void)state;
    const char *m = "HTTP/1.1 100 Continue\r\n\r\n"
                    "HTTP/1.1 103 Early Hints\r\nLink: </a>; rel=preload\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    check_all_splits(m, false, false, H1P_DONE, "Content-Length=2\n", "ok");
    struct run r;
    feed_whole(&r, m, false, false);
    assert_int_equal(r.p.interim, 2);
    assert_int_equal(r.p.status, 200);
    /* a protocol switch was never asked for */
    feed_whole(&r, "HTTP/1.1 101 Switching Protocols\r\n\r\n", false, false);
    assert_int_equal(r.res, H1P_ERROR);
}

static void test_connection(void **state)
{
    (void)state;
    struct run r;
    feed_whole(&r, "HTTP/1.1 200 OK\r\nConnection: Keep-Alive, CLOSE\r\n"
                   "Content-Length: 0\r\n\r\n",
               false, false);
    assert_int_equal(r.res, H1P_DONE);
    assert_false(r.p.keep_alive);
    feed_whole(&r, "HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", false,
               false);
    assert_int_equal(r.res, H1P_DONE);
    assert_false(r.p.keep_alive);
    feed_whole(&r, "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n"
                   "Content-Length: 0\r\n\r\n",
               false, false);
    assert_true(r.p.keep_alive);
    feed_whole(&r, "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, false);
    assert_int_equal(r.res, H1P_DONE);
    assert_true(r.p.keep_alive);
}

static void expect_error(const char *msg, const char *why)
{
    struct run r;
    check_all_splits(msg, false, true, H1P_ERROR, NULL, NULL);
    feed_whole(&r, msg, false, true);
    assert_non_null(r.p.error);
    if (why)
        assert_string_equal(r.p.error, why);
    /* once failed, it stays failed */
    size_t used;
    assert_int_equal(h1parse_feed(&r.p, "x", 1, &used), H1P_ERROR);
    assert_int_equal(used, 0);
}

static void test_malformed(void **state)
{
    (void)state;
    expect_error("HTTP/2 200 OK\r\n\r\n", "malformed status line");
    expect_error("HTTP/1.1 20 OK\r\n\r\n", "malformed status code");
    expect_error("HTTP/1.1 20\r\n\r\n", "malformed status line");
    expect_error("HTTP/1.1 2x0 OK\r\n\r\n", "malformed status code");
    expect_error("HTTP/1.1 600 Odd\r\n\r\n", "status code out of range");
    expect_error("HTTP/1.1 200OK\r\n\r\n", "malformed status line");
    expect_error("ICY 200 OK\r\n\r\n", "malformed status line");
    expect_error("\r\nHTTP/1.1 200 OK\r\n\r\n", "malformed status line");
    expect_error("HTTP/1.1 200 O\001K\r\n\r\n",
                 "control character in the reason");
    expect_error("HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
                 "obsolete line folding");
    expect_error("HTTP/1.1 200 OK\r\nX : a\r\n\r\n", "malformed header name");
    expect_error("HTTP/1.1 200 OK\r\n: a\r\n\r\n", "malformed header field");
    expect_error("HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
                 "malformed header field");
    expect_error("HTTP/1.1 200 OK\r\nX: a\rb\r\n\r\n", "bare CR in a line");
    expect_error("HTTP/1.1 200 OK\r\nX: a\001b\r\n\r\n",
                 "control character in a header value");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
                 "Content-Length: 2\r\n\r\nab",
                 "invalid Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\nabc",
                 "invalid Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                 "invalid Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length: 0x10\r\n\r\n",
                 "invalid Content-Length");
    expect_error("HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
                 "invalid Content-Length");
    expect_error("HTTP/1.1 200 OK\r\n"
                 "Content-Length: 99999999999999999999999\r\n\r\n",
                 "invalid Content-Length");
    const char *te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    char m[512];
    snprintf(m, sizeof(m), "%sg\r\n", te);
    expect_error(m, "malformed chunk size");
    snprintf(m, sizeof(m), "%s\r\n", te);
    expect_error(m, "malformed chunk size");
    snprintf(m, sizeof(m), "%s-1\r\n", te);
    expect_error(m, "malformed chunk size");
    snprintf(m, sizeof(m), "%s1 x\r\na\r\n0\r\n\r\n", te);
    expect_error(m, "malformed chunk size");
    snprintf(m, sizeof(m), "%s1;a\001\r\na\r\n0\r\n\r\n", te);
    expect_error(m, "control character in a chunk extension");
    snprintf(m, sizeof(m), "%s10000000000000000\r\n", te);
    expect_error(m, "chunk size overflows");
    snprintf(m, sizeof(m), "%s2\r\nabc\r\n0\r\n\r\n", te);
    expect_error(m, "chunk data longer than its size");
    snprintf(m, sizeof(m), "%s0\r\nbad trailer\r\n\r\n", te);
    expect_error(m, "malformed header field");
}

static void test_bounds(void **state)
{
    (void)state;
    /* a head larger than max_head, with or without its line end */
    char m[4096];
    int n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\nBig: ");
    memset(m + n, 'a', 1100);
    m[n + 1100] = '\0';
    expect_error(m, "answer head too large");
    strcat(m, "\r\n\r\n");
    expect_error(m, "answer head too large");
    /* many small fields: more than max_headers */
    n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 17; i++)
        n += snprintf(m + n, sizeof(m) - (size_t)n, "F%d: v\r\n", i);
    snprintf(m + n, sizeof(m) - (size_t)n, "\r\n");
    expect_error(m, "too many header fields");
    /* 16 are fine */
    n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < 15; i++)
        n += snprintf(m + n, sizeof(m) - (size_t)n, "F%d: v\r\n", i);
    snprintf(m + n, sizeof(m) - (size_t)n, "Content-Length: 0\r\n\r\n");
    struct run r;
    feed_whole(&r, m, false, false);
    assert_int_equal(r.res, H1P_DONE);
    /* the head limit counts each interim head on its own */
    n = 0;
    for (int i = 0; i < 3; i++)
        n += snprintf(m + n, sizeof(m) - (size_t)n,
                      "HTTP/1.1 100 Continue\r\nPad: %0600d\r\n\r\n", 0);
    snprintf(m + n, sizeof(m) - (size_t)n,
             "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n");
    feed_whole(&r, m, false, false);
    assert_int_equal(r.res, H1P_DONE);
    /* a chunk-size line with endless extensions */
    n = snprintf(m, sizeof(m),
                 "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(m + n, 'e', 1500);
    m[n + 1500] = '\0';
    expect_error(m, "chunk size line too long");
    /* trailers are bounded like a head */
    n = snprintf(m, sizeof(m), "HTTP/1.1 200 OK\r\nTransfer-Encoding: "
                               "chunked\r\n\r\n0\r\nT: ");
    memset(m + n, 't', 1100);
    strcpy(m + n + 1100, "\r\n\r\n");
    expect_error(m, "answer head too large");
}

static void test_callbacks_stop(void **state)
{
    (void)state;
    struct run r;
    memset(&r, 0, sizeof(r));
    r.g.stop_at_field = 2;
    h1parse_init(&r.p, &ops, &r.g, &lim, false);
    const char *m = "HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n";
    size_t used;
    assert_int_equal(h1parse_feed(&r.p, m, strlen(m), &used), H1P_ERROR);
    assert_string_equal(r.p.error, "stopped at a header field");
    /* a body larger than the collector takes */
    static char big[10000];
    int n = snprintf(big, sizeof(big),
                     "HTTP/1.1 200 OK\r\nContent-Length: 9000\r\n\r\n");
    memset(big + n, 'b', 9000);
    memset(&r, 0, sizeof(r));
    h1parse_init(&r.p, &ops, &r.g, &lim, false);
    assert_int_equal(h1parse_feed(&r.p, big, (size_t)n + 9000, &used),
                     H1P_ERROR);
    assert_string_equal(r.p.error, "stopped in the body");
    assert_int_equal(h1parse_eof(&r.p), H1P_ERROR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_no_body),
        cmocka_unit_test(test_interim),
        cmocka_unit_test(test_connection),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_callbacks_stop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
