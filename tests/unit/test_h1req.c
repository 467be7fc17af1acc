/* test_h1req.c - the request parser (base/h1req.c) at the byte level.
 * Every request is also fed split at every offset and one byte at a time,
 * the way a socket may deliver it, and must give the same request lines,
 * fields, bodies, ends and errors; pipelined requests are read one after
 * the other by fresh parsers, as a connection would.  The smuggling
 * tests' requests (tests/integration/test_core_smuggling.py CASES, byte
 * for byte) are refused and the request hidden behind each is never
 * reported.  Limits are checked at max-1, max and max+1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "base/h1req.h"

#define S(lit) lit, sizeof(lit) - 1 /* a literal with its NULs */

struct got {
    char log[8192];      /* request lines, fields, heads */
    size_t log_len;
    char body[16384];    /* every request's body, one after the other */
    size_t body_len;
    int calls;           /* callbacks so far */
    int stop_at;         /* refuse the n-th callback (1-based), 0 = never */
};

static void got_log(struct got *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void got_log(struct got *g, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int w = vsnprintf(g->log + g->log_len, sizeof(g->log) - g->log_len, fmt,
                      ap);
    va_end(ap);
    assert_true(w >= 0 && (size_t)w < sizeof(g->log) - g->log_len);
    g->log_len += (size_t)w;
}

static bool got_line(void *arg, const char *m, size_t ml, const char *t,
                     size_t tl)
{
    struct got *g = arg;
    got_log(g, "%.*s %.*s\n", (int)ml, m, (int)tl, t);
    return ++g->calls != g->stop_at;
}

static bool got_header(void *arg, const char *n, size_t nl, const char *v,
                       size_t vl)
{
    struct got *g = arg;
    got_log(g, "%.*s=%.*s\n", (int)nl, n, (int)vl, v);
    return ++g->calls != g->stop_at;
}

static bool got_head(void *arg, const struct h1req *p)
{
    struct got *g = arg;
    got_log(g, "head %s 1.%d ka=%d ec=%d ", p->method, p->minor,
            p->keep_alive, p->expect_continue);
    if (p->chunked)
        got_log(g, "chunked\n");
    else if (p->have_length)
        got_log(g, "len=%llu\n", (unsigned long long)p->length);
    else
        got_log(g, "no body\n");
    return ++g->calls != g->stop_at;
}

static bool got_body(void *arg, const char *p, size_t n)
{
    struct got *g = arg;
    assert_true(g->body_len + n <= sizeof(g->body));
    memcpy(g->body + g->body_len, p, n);
    g->body_len += n;
    return ++g->calls != g->stop_at;
}

static const struct h1req_ops ops = {got_line, got_header, got_head,
                                     got_body};
static const struct h1req_limits lim = {1024, 16, 4096};
static const struct h1req_limits small = {256, 4, 64};

struct run {
    enum h1req_result res;  /* of the last call */
    int n_done;             /* requests completed */
    size_t ends[8];         /* where each ended, in the whole message */
    struct h1req p;         /* the parser of the request being read */
    struct h1req done;      /* the last completed request's */
    struct got g;
};

/* Feeds msg in pieces ending at the given offsets (the last piece takes
 * the rest), keeping unconsumed bytes like a connection's read buffer; a
 * completed request is followed by a fresh parser for what remains. */
static void feed(struct run *r, const char *msg, size_t len,
                 const size_t *cuts, int n_cuts, const struct h1req_limits *l)
{
    static char held[32768];
    size_t held_len = 0, off = 0, total = 0;
    assert_true(len <= sizeof(held));
    memset(r, 0, sizeof(*r));
    h1req_init(&r->p, &ops, &r->g, l);
    r->res = H1REQ_MORE;
    for (int i = 0; i <= n_cuts && r->res != H1REQ_ERROR; i++) {
        size_t upto = i < n_cuts ? cuts[i] : len;
        if (upto < off)
            continue;
        memcpy(held + held_len, msg + off, upto - off);
        held_len += upto - off;
        off = upto;
        while (held_len > 0) {
            size_t used;
            r->res = h1req_feed(&r->p, held, held_len, &used);
            assert_true(used <= held_len);
            total += used;
            memmove(held, held + used, held_len - used);
            held_len -= used;
            if (r->res != H1REQ_DONE)
                break;
            assert_true(r->n_done < 8);
            r->ends[r->n_done++] = total;
            r->done = r->p;
            h1req_init(&r->p, &ops, &r->g, l);
        }
    }
}

static void same(const struct run *a, const struct run *b)
{
    assert_int_equal(a->res, b->res);
    assert_int_equal(a->n_done, b->n_done);
    assert_memory_equal(a->ends, b->ends, sizeof(a->ends));
    assert_string_equal(a->g.log, b->g.log);
    assert_int_equal(a->g.body_len, b->g.body_len);
    if (a->g.body_len)
        assert_memory_equal(a->g.body, b->g.body, a->g.body_len);
    assert_int_equal(a->p.error_kind, b->p.error_kind);
    assert_ptr_equal(a->p.error, b->p.error);
    assert_int_equal(a->done.keep_alive, b->done.keep_alive);
}

/* Whole, split in two at every offset, one byte at a time: all the same. */
static void splits(struct run *whole, const char *msg, size_t len,
                   const struct h1req_limits *l)
{
    static struct run r;
    static size_t bytes[32768];
    feed(whole, msg, len, NULL, 0, l);
    for (size_t k = 0; k <= len; k++) {
        feed(&r, msg, len, &k, 1, l);
        same(whole, &r);
    }
    for (size_t i = 0; i < len; i++)
        bytes[i] = i + 1;
    feed(&r, msg, len, bytes, (int)len, l);
    same(whole, &r);
}

/* One good request: its log (request line, fields, head) and body. */
static void ok_lim(const char *msg, const struct h1req_limits *l,
                   const char *want_log, const char *want_body)
{
    static struct run r;
    splits(&r, msg, strlen(msg), l);
    if (r.res != H1REQ_DONE)
        fail_msg("%s: %s", msg, r.p.error ? r.p.error : "not done");
    assert_int_equal(r.n_done, 1);
    assert_int_equal(r.ends[0], strlen(msg));
    if (want_log)
        assert_string_equal(r.g.log, want_log);
    assert_int_equal(r.g.body_len, strlen(want_body));
    assert_memory_equal(r.g.body, want_body, r.g.body_len);
}

static void ok(const char *msg, const char *want_log, const char *want_body)
{
    ok_lim(msg, &lim, want_log, want_body);
}

/* A refused request: the same error however it is split, and it stays. */
static void bad_lim(const char *msg, size_t len, const struct h1req_limits *l,
                    enum h1req_error kind, const char *why)
{
    static struct run r;
    splits(&r, msg, len, l);
    if (r.res != H1REQ_ERROR)
        fail_msg("%.*s: not refused", (int)len, msg);
    assert_int_equal(r.n_done, 0);
    assert_string_equal(r.p.error, why);
    assert_int_equal(r.p.error_kind, kind);
    size_t used = 1;
    assert_int_equal(h1req_feed(&r.p, "x", 1, &used), H1REQ_ERROR);
    assert_int_equal(used, 0);
}

static void bad(const char *msg, enum h1req_error kind, const char *why)
{
    bad_lim(msg, strlen(msg), &lim, kind, why);
}

static void test_get(void **state)
{
    (void)state;
    ok("GET /edge/client/v1/version?x=1 HTTP/1.1\r\n"
       "Host: ctrl.example:1280\r\n"
       "Accept: */*\r\n"
       "X-Empty:\r\n"
       "X-Space: \t a \t b \t\r\n"
       "X-Raw: caf\xc3\xa9\r\n"
       "\r\n",
       "GET /edge/client/v1/version?x=1\n"
       "Host=ctrl.example:1280\nAccept=*/*\nX-Empty=\nX-Space=a \t b\n"
       "X-Raw=caf\xc3\xa9\n"
       "head GET 1.1 ka=1 ec=0 no body\n",
       "");
    /* raw UTF-8 in the target; an empty Host; leading empty lines */
    ok("\r\n\r\nGET /edge/caf\xc3\xa9 HTTP/1.1\r\nHost:\r\n\r\n",
       "GET /edge/caf\xc3\xa9\nHost=\nhead GET 1.1 ka=1 ec=0 no body\n", "");
    ok("\r\n\r\n\r\n\r\nDELETE /a HTTP/1.1\r\nHost: [::1]:8443\r\n\r\n",
       NULL, "");
    bad("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", H1REQ_E_BAD,
        "too many empty lines before the request");
    bad("\nGET / HTTP/1.1\r\nHost: x\r\n\r\n", H1REQ_E_BAD,
        "bare LF as a line end");
    /* HTTP/1.0 needs no Host; any token is a method */
    ok("OPTIONS /x HTTP/1.0\r\n\r\n",
       "OPTIONS /x\nhead OPTIONS 1.0 ka=0 ec=0 no body\n", "");
    ok("M-SEARCH! /x HTTP/1.1\r\nhost: x\r\n\r\n", NULL, "");
    static struct run r;
    feed(&r, S("PATCH /p HTTP/1.1\r\nHost: x\r\n\r\n"), NULL, 0, &lim);
    assert_int_equal(r.res, H1REQ_DONE);
    assert_string_equal(r.done.method, "PATCH");
    assert_int_equal(r.done.minor, 1);
    assert_false(r.done.have_length);
    assert_false(r.done.chunked);
    /* a request without a length or coding ends at the empty line: what
     * follows is not its body */
    feed(&r, S("POST /p HTTP/1.1\r\nHost: x\r\n\r\nabc"), NULL, 0, &lim);
    assert_int_equal(r.n_done, 1);
    assert_int_equal(r.ends[0], 29);
    assert_int_equal(r.g.body_len, 0);
    assert_int_equal(r.res, H1REQ_MORE); /* "abc": a partial line */
}

static void test_content_length(void **state)
{
    (void)state;
    ok("POST /edge/client/v1/authenticate?method=password HTTP/1.1\r\n"
       "Host: x\r\n"
       "Content-Type: application/json\r\n"
       "Content-Length:  17 \r\n"
       "\r\n"
       "{\"username\":\"\xc3\xa9\"}",
       "POST /edge/client/v1/authenticate?method=password\nHost=x\n"
       "Content-Type=application/json\nContent-Length=17\n"
       "head POST 1.1 ka=1 ec=0 len=17\n",
       "{\"username\":\"\xc3\xa9\"}");
    ok("PUT /x HTTP/1.1\r\nContent-Length: 0\r\nHost: x\r\n\r\n",
       "PUT /x\nContent-Length=0\nHost=x\nhead PUT 1.1 ka=1 ec=0 len=0\n", "");
    ok("PUT /x HTTP/1.0\r\ncontent-length: 007\r\n\r\n1234567",
       "PUT /x\ncontent-length=007\nhead PUT 1.0 ka=0 ec=0 len=7\n",
       "1234567");
    /* body bytes are bytes */
    static struct run r;
    splits(&r, S("PUT /x HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\n"
                 "\0\r\n"),
           &lim);
    assert_int_equal(r.res, H1REQ_DONE);
    assert_int_equal(r.g.body_len, 3);
    assert_memory_equal(r.g.body, "\0\r\n", 3);
}

static void test_chunked(void **state)
{
    (void)state;
    ok("POST /c HTTP/1.1\r\n"
       "Host: x\r\n"
       "Transfer-Encoding:  Chunked \r\n"
       "\r\n"
       "5;name=value;quoted=\"a;b\\\"c\"\r\nhello\r\n"
       "1 ; ext ;e2 = v2\t;e3=\"\"\r\n,\r\n"
       "A\r\n 012345678\r\n"
       "1f\r\n0123456789abcdef0123456789abcde\r\n"
       "000;last\r\n"
       "Trailer-One: 1\r\n"
       "Content-Length: 99\r\n"
       "\r\n",
       "POST /c\nHost=x\nTransfer-Encoding=Chunked\n"
       "head POST 1.1 ka=1 ec=0 chunked\n",
       "hello, 0123456780123456789abcdef0123456789abcde");
    /* no trailers; a chunk holding CR LF bytes */
    ok("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "4\r\n\r\n\r\n\r\n0\r\n\r\n",
       NULL, "\r\n\r\n");
    ok("POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n",
       NULL, "");
}

static void test_pipelined(void **state)
{
    (void)state;
    const char *reqs[] = {
        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
        "GET /b HTTP/1.1\r\nHost: x\r\n\r\n",
        ("\r\nPOST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
         "\r\n2;x\r\nde\r\n0\r\nT: 1\r\n\r\n"),
        "GET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    };
    char m[1024] = "";
    size_t ends[4], at = 0;
    for (int i = 0; i < 4; i++) {
        strcat(m, reqs[i]);
        at += strlen(reqs[i]);
        ends[i] = at;
    }
    static struct run r;
    splits(&r, m, strlen(m), &lim);
    assert_int_equal(r.res, H1REQ_DONE);
    assert_int_equal(r.n_done, 4);
    assert_memory_equal(r.ends, ends, sizeof(ends));
    assert_string_equal(r.g.log,
                        "POST /a\nHost=x\nContent-Length=3\n"
                        "head POST 1.1 ka=1 ec=0 len=3\n"
                        "GET /b\nHost=x\nhead GET 1.1 ka=1 ec=0 no body\n"
                        "POST /c\nHost=x\nTransfer-Encoding=chunked\n"
                        "head POST 1.1 ka=1 ec=0 chunked\n"
                        "GET /d\nHost=x\nConnection=close\n"
                        "head GET 1.1 ka=0 ec=0 no body\n");
    assert_int_equal(r.g.body_len, 5);
    assert_memory_equal(r.g.body, "abcde", 5);
    assert_false(r.done.keep_alive);
    /* the next one is partial: two done, the third waits */
    strcpy(m, reqs[1]);
    strcat(m, reqs[0]);
    strcat(m, "GET /e HT");
    splits(&r, m, strlen(m), &lim);
    assert_int_equal(r.res, H1REQ_MORE);
    assert_int_equal(r.n_done, 2);
    assert_int_equal(r.ends[1], strlen(reqs[1]) + strlen(reqs[0]));
    /* a second request inside a first one's body stays body */
    ok("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 26\r\n\r\n"
       "GET /hidden HTTP/1.1\r\n\r\n\r\n",
       NULL, "GET /hidden HTTP/1.1\r\n\r\n\r\n");
}

static void test_keep_alive(void **state)
{
    (void)state;
    static const struct {
        const char *msg;
        bool ka;
    } cases[] = {
        {"GET / HTTP/1.1\r\nHost: x\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false},
        {"GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, CLOSE\r\n\r\n",
         false},
        {"GET / HTTP/1.1\r\nConnection: te\r\nHost: x\r\n"
         "Connection: x ,\t close\t\r\n\r\n",
         false},
        {"GET / HTTP/1.1\r\nHost: x\r\nConnection: closed\r\n\r\n", true},
        {"GET / HTTP/1.0\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: foo,keep-alive\r\n\r\n", true},
        {"GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", false},
        {"GET / HTTP/1.0\r\nConnection: close\r\n"
         "Connection: keep-alive\r\n\r\n",
         false},
        {"GET / HTTP/1.0\r\nKeep-Alive: timeout=5\r\n\r\n", false},
    };
    static struct run r;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        ok(cases[i].msg, NULL, "");
        feed(&r, cases[i].msg, strlen(cases[i].msg), NULL, 0, &lim);
        if (r.done.keep_alive != cases[i].ka)
            fail_msg("%s: keep_alive %d", cases[i].msg, r.done.keep_alive);
    }
}

static void test_expect(void **state)
{
    (void)state;
    ok("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-Continue\r\n"
       "Content-Length: 2\r\n\r\nhi",
       "POST /e\nHost=x\nExpect=100-Continue\nContent-Length=2\n"
       "head POST 1.1 ka=1 ec=1 len=2\n",
       "hi");
    /* HTTP/1.0: the expectation is ignored (RFC 9110 10.1.1) */
    ok("POST /e HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 2\r\n"
       "\r\nhi",
       "POST /e\nExpect=100-continue\nContent-Length=2\n"
       "head POST 1.0 ka=0 ec=0 len=2\n",
       "hi");
    /* the head is reported before the body arrives: time for a 100 */
    static struct run r;
    feed(&r, S("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
               "Transfer-Encoding: chunked\r\n\r\n"),
         NULL, 0, &lim);
    assert_int_equal(r.res, H1REQ_MORE);
    assert_non_null(strstr(r.g.log, "head POST 1.1 ka=1 ec=1 chunked\n"));
    assert_true(r.p.expect_continue);
    bad("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue, x\r\n\r\n",
        H1REQ_E_EXPECT, "unsupported Expect (only 100-continue)");
    bad("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\n\r\n",
        H1REQ_E_EXPECT, "unsupported Expect (only 100-continue)");
    bad("POST /e HTTP/1.0\r\nExpect:\r\n\r\n", H1REQ_E_EXPECT,
        "unsupported Expect (only 100-continue)");
}

/* tests/integration/test_core_smuggling.py CASES, byte for byte: each
 * hides a second request that a differently reading peer would see. */
#define SMUGGLED "GET /edge/client/v1/smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
#define TE_ONLY "unsupported Transfer-Encoding (only chunked)"
#define TARGET_CHAR "invalid character in the request target"
#define TARGET_PATH "request target must be an absolute path"
#define CASE(name, why, lit) {name, why, lit, sizeof(lit) - 1}

static const struct {
    const char *name, *why, *msg;
    size_t len;
} smuggling[] = {
    CASE("cl_and_te", "both Content-Length and Transfer-Encoding",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
         SMUGGLED),
    CASE("te_and_cl", "both Content-Length and Transfer-Encoding",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n"
         SMUGGLED),
    CASE("duplicate_differing_cl", "repeated Content-Length header",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 0\r\nContent-Length: 50\r\n\r\n" SMUGGLED),
    CASE("cl_list", "invalid Content-Length",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 0, 50\r\n\r\n" SMUGGLED),
    CASE("cl_signed", "invalid Content-Length",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: +0\r\n\r\n" SMUGGLED),
    CASE("cl_negative", "invalid Content-Length",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: -1\r\n\r\n" SMUGGLED),
    CASE("cl_hex", "invalid Content-Length",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 0x10\r\n\r\n" SMUGGLED),
    CASE("te_gzip", TE_ONLY,
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: gzip\r\n\r\n" SMUGGLED),
    CASE("te_gzip_chunked", TE_ONLY,
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" SMUGGLED),
    CASE("te_chunked_chunked", TE_ONLY,
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n" SMUGGLED),
    CASE("te_twice", "repeated Transfer-Encoding header",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"
         "0\r\n\r\n" SMUGGLED),
    CASE("te_http10", "Transfer-Encoding in an HTTP/1.0 request",
         "POST /edge/client/v1/version HTTP/1.0\r\nHost: x\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED),
    CASE("te_xchunked", TE_ONLY,
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" SMUGGLED),
    CASE("te_identity", TE_ONLY,
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: identity\r\n\r\n" SMUGGLED),
    CASE("te_empty", TE_ONLY,
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding:\r\n\r\n" SMUGGLED),
    CASE("te_space_before_colon", "invalid character in a header field name",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding : chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"
         SMUGGLED),
    CASE("te_obs_fold", TE_ONLY,
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\n0\r\n"
         "\r\n" SMUGGLED),
    CASE("bad_chunk_size", "malformed chunk size",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
         "Transfer-Encoding: chunked\r\n\r\nzz\r\n\r\n" SMUGGLED),
    CASE("bare_lf_in_headers", "bare LF as a line end",
         "POST /edge/client/v1/version HTTP/1.1\r\nHost: x\n"
         "Content-Length: 0\r\nX-A: b\rContent-Length: 5\r\n\r\n" SMUGGLED),
    CASE("duplicate_host", "more than one Host header",
         "GET /edge/client/v1/version HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"
         SMUGGLED),
    CASE("nul_in_target", TARGET_CHAR,
         "GET /edge/client/v1/version\x00" "/../../x HTTP/1.1\r\nHost: x\r\n"
         "\r\n" SMUGGLED),
    CASE("ctl_in_target", TARGET_CHAR,
         "GET /edge/client/v1/version\x01" " HTTP/1.1\r\nHost: x\r\n\r\n"
         SMUGGLED),
    CASE("bare_cr_in_target", TARGET_CHAR,
         "GET /edge/client/v1/version\rX HTTP/1.1\r\nHost: x\r\n\r\n"
         SMUGGLED),
    CASE("fragment_in_target", TARGET_CHAR,
         "POST /edge/client/v1/version#x HTTP/1.1\r\nHost: x\r\n"
         "Content-Length: 0\r\n\r\n" SMUGGLED),
    CASE("absolute_form_target", TARGET_PATH,
         "GET http://evil.example/edge/client/v1/version HTTP/1.1\r\n"
         "Host: x\r\n\r\n" SMUGGLED),
    CASE("asterisk_target", TARGET_PATH,
         "GET * HTTP/1.1\r\nHost: x\r\n\r\n" SMUGGLED),
};

static void test_smuggling(void **state)
{
    (void)state;
    static struct run r;
    size_t n = sizeof(smuggling) / sizeof(smuggling[0]);
    assert_int_equal(n, 26);
    for (size_t i = 0; i < n; i++) {
        splits(&r, smuggling[i].msg, smuggling[i].len, &lim);
        if (r.res != H1REQ_ERROR || strcmp(r.p.error, smuggling[i].why))
            fail_msg("%s: %s", smuggling[i].name,
                     r.p.error ? r.p.error : "not refused");
        assert_int_equal(r.p.error_kind, H1REQ_E_BAD);
        assert_int_equal(h1req_status(r.p.error_kind), 400);
        assert_int_equal(r.n_done, 0);
        assert_null(strstr(r.g.log, "smuggled"));
        assert_int_equal(r.g.body_len, 0);
    }
    /* the control: the same framing done right is read as two requests */
    ok("POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
       "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
       NULL, "");
    feed(&r, S("POST /edge/client/v1/version HTTP/1.1\r\nHost: x\r\n"
               "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n" SMUGGLED),
         NULL, 0, &lim);
    assert_int_equal(r.n_done, 2);
    assert_non_null(strstr(r.g.log, "GET /edge/client/v1/smuggled\n"));
}

static void test_request_line(void **state)
{
    (void)state;
    const enum h1req_error B = H1REQ_E_BAD, V = H1REQ_E_VERSION;
    bad("GET /x HTTP/2.0\r\nHost: x\r\n\r\n", V, "unsupported HTTP version");
    bad("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", V, "unsupported HTTP version");
    bad("GET /x HTTP/1.2\r\nHost: x\r\n\r\n", V, "unsupported HTTP version");
    bad("GET /x HTTP/0.9\r\n\r\n", V, "unsupported HTTP version");
    assert_int_equal(h1req_status(V), 505);
    bad("GET /x HTTP/1.1 \r\nHost: x\r\n\r\n", B, "malformed HTTP version");
    bad("GET /x http/1.1\r\nHost: x\r\n\r\n", B, "malformed HTTP version");
    bad("GET /x HTTP/1.10\r\nHost: x\r\n\r\n", B, "malformed HTTP version");
    bad("GET /x HTTP/1\r\nHost: x\r\n\r\n", B, "malformed HTTP version");
    bad("GET /x HTTP/a.b\r\nHost: x\r\n\r\n", B, "malformed HTTP version");
    bad("GET /x\r\n\r\n", B, "malformed request line");
    bad("GET\r\n\r\n", B, "malformed request line");
    bad(" GET /x HTTP/1.1\r\nHost: x\r\n\r\n", B, "malformed request line");
    bad("GET  /x HTTP/1.1\r\nHost: x\r\n\r\n", B, "malformed HTTP version");
    bad("GET /x  HTTP/1.1\r\nHost: x\r\n\r\n", B, "malformed HTTP version");
    bad("GET x HTTP/1.1\r\nHost: x\r\n\r\n", B, TARGET_PATH);
    bad("CONNECT x.example:443 HTTP/1.1\r\nHost: x\r\n\r\n", B, TARGET_PATH);
    bad("OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", B, TARGET_PATH);
    bad("G(T /x HTTP/1.1\r\nHost: x\r\n\r\n", B, "malformed request method");
    bad("G\xc3\x89T /x HTTP/1.1\r\nHost: x\r\n\r\n", B,
        "malformed request method");
    bad("GET /a\tb HTTP/1.1\r\nHost: x\r\n\r\n", B, TARGET_CHAR);
    bad("GET /a\x7f HTTP/1.1\r\nHost: x\r\n\r\n", B, TARGET_CHAR);
    bad("GET /a\x1b[0m HTTP/1.1\r\nHost: x\r\n\r\n", B, TARGET_CHAR);
    bad("GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n", B, TARGET_CHAR);
    bad("GET /a HTTP/1.1\r\r\nHost: x\r\n\r\n", B, "malformed HTTP version");
    bad("G\rT /a HTTP/1.1\r\nHost: x\r\n\r\n", B, "malformed request method");
    bad("GET /a HTTP/1.1\nHost: x\r\n\r\n", B, "bare LF as a line end");
    /* the method: H1REQ_MAX_METHOD bytes, not one more */
    char m[128];
    snprintf(m, sizeof(m), "%.*s /x HTTP/1.1\r\nHost: x\r\n\r\n",
             H1REQ_MAX_METHOD, "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKL");
    ok(m, NULL, "");
    snprintf(m, sizeof(m), "%.*s /x HTTP/1.1\r\nHost: x\r\n\r\n",
             H1REQ_MAX_METHOD + 1, "ABCDEFGHIJKLMNOPQRSTUVWXYZABCDEFGHIJKL");
    bad(m, B, "request method too long");
}

/* A request refused for its target was still reported (the front logs
 * what it asked for), and nothing after it. */
static void test_refused_target_reported(void **state)
{
    (void)state;
    static struct run r;
    const char *msg = "GET http://evil.example/x HTTP/1.1\r\nHost: x\r\n\r\n";
    splits(&r, msg, strlen(msg), &lim);
    assert_int_equal(r.res, H1REQ_ERROR);
    assert_string_equal(r.g.log, "GET http://evil.example/x\n");
    msg = "GET /a\rb HTTP/1.1\r\nHost: x\r\n\r\n";
    splits(&r, msg, strlen(msg), &lim);
    assert_int_equal(r.res, H1REQ_ERROR);
    assert_string_equal(r.g.log, "GET /a\rb\n");
    /* a line that does not split into three parts reports nothing */
    msg = "GET /a\r\nHost: x\r\n\r\n";
    splits(&r, msg, strlen(msg), &lim);
    assert_int_equal(r.res, H1REQ_ERROR);
    assert_int_equal(r.g.log_len, 0);
}

static void test_fields(void **state)
{
    (void)state;
    const enum h1req_error B = H1REQ_E_BAD;
    const char *ctl = "control character in a header field value";
    bad("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n folded\r\n\r\n", B,
        "obsolete line folding in a header field");
    bad("GET / HTTP/1.1\r\n\tHost: x\r\n\r\n", B,
        "obsolete line folding in a header field");
    bad("GET / HTTP/1.1\r\nHost: x\r\nX\t: a\r\n\r\n", B,
        "invalid character in a header field name");
    bad("GET / HTTP/1.1\r\nHost: x\r\nX(y): a\r\n\r\n", B,
        "invalid character in a header field name");
    bad("GET / HTTP/1.1\r\nHost: x\r\n: a\r\n\r\n", B,
        "malformed header field");
    bad("GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", B,
        "malformed header field");
    bad("GET / HTTP/1.1\r\nHost: x\r\nX: a\x01z\r\n\r\n", B, ctl);
    bad("GET / HTTP/1.1\r\nHost: x\r\nX: a\x7f\r\n\r\n", B, ctl);
    bad_lim(S("GET / HTTP/1.1\r\nHost: x\r\nX: a\0b\r\n\r\n"), &lim, B, ctl);
    bad("GET / HTTP/1.1\r\nHost: x\r\nX: a\rb\r\n\r\n", B,
        "bare CR in a line");
    bad("GET / HTTP/1.1\r\nHost: x\r\nX: a\r\r\n\r\n", B,
        "bare CR in a line");
    bad("GET / HTTP/1.1\r\nHost: x\r\n\n", B, "bare LF as a line end");
    bad("GET / HTTP/1.1\r\nHost: x\r\n\r\r\n", B, "bare CR in a line");
    /* Host: once, in HTTP/1.1, with host characters only */
    bad("GET / HTTP/1.1\r\nX: y\r\n\r\n", B, "missing Host header");
    bad("GET / HTTP/1.0\r\nHost: a\r\nhost: a\r\n\r\n", B,
        "more than one Host header");
    bad("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", B, "invalid Host header");
    bad("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n", B, "invalid Host header");
    bad("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", B, "invalid Host header");
}

static void test_framing(void **state)
{
    (void)state;
    const enum h1req_error B = H1REQ_E_BAD;
    const char *inv = "invalid Content-Length";
    bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        "Content-Length: 5\r\n\r\nabcde",
        B, "repeated Content-Length header");
    bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5, 5\r\n\r\nabcde", B,
        inv);
    bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length:\r\n\r\n", B, inv);
    bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1 2\r\n\r\n", B, inv);
    bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551616"
        "\r\n\r\n",
        B, inv);
    bad("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 18446744073709551615"
        "\r\n\r\n",
        H1REQ_E_BODY_TOO_LARGE, "Content-Length over the body limit");
    bad("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked;q=1\r\n"
        "\r\n0\r\n\r\n",
        B, TE_ONLY);
    bad("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked,\r\n"
        "\r\n0\r\n\r\n",
        B, TE_ONLY);
    bad("POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", B,
        "Transfer-Encoding in an HTTP/1.0 request");
    /* framing errors come before a missing Host or a body too large */
    bad("POST / HTTP/1.1\r\nContent-Length: 99999\r\nTransfer-Encoding: "
        "chunked\r\n\r\n",
        B, "both Content-Length and Transfer-Encoding");
}

static const char *chunk_head =
    "POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";

/* The chunked request's head, then the body given. */
static void bad_chunks(const char *body, enum h1req_error kind,
                       const char *why)
{
    static char m[8192];
    snprintf(m, sizeof(m), "%s%s", chunk_head, body);
    bad(m, kind, why);
}

static void test_chunk_errors(void **state)
{
    (void)state;
    const enum h1req_error B = H1REQ_E_BAD;
    const char *size = "malformed chunk size";
    const char *ext = "malformed chunk extension";
    bad_chunks("zz\r\n\r\n", B, size);
    bad_chunks("\r\n", B, size);
    bad_chunks("-1\r\n", B, size);
    bad_chunks("+1\r\na\r\n0\r\n\r\n", B, size);
    bad_chunks("0x1\r\na\r\n0\r\n\r\n", B, size);
    bad_chunks("1 x\r\na\r\n0\r\n\r\n", B, size);
    bad_chunks("1 \r\na\r\n0\r\n\r\n", B, size);
    bad_chunks("1,\r\na\r\n0\r\n\r\n", B, size);
    bad_chunks("00000000000000001\r\na\r\n0\r\n\r\n", B, size);
    bad_chunks("10000000000000000\r\n", B, size);
    bad_chunks("ffffffffffffffff\r\n", H1REQ_E_BODY_TOO_LARGE,
               "chunked body over the body limit");
    bad_chunks("1;\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;=v\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;a=\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;a \r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;a=\"x\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;a=\"x\\\"\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;a=\"x\\\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;a=\"x\x01\"\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;a=b c\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1;a=(b)\r\na\r\n0\r\n\r\n", B, ext);
    bad_chunks("1\n", B, "bare LF as a line end");
    bad_chunks("1\r\na\n0\r\n\r\n", B, "chunk data not followed by CRLF");
    bad_chunks("1\r\nab\r\n0\r\n\r\n", B, "chunk data not followed by CRLF");
    bad_chunks("1\r\na\r\r\n0\r\n\r\n", B, "chunk data not followed by CRLF");
}

/* head + "Pad: aaa...\r\n" + tail, total bytes long */
static const char *padded(char *m, size_t total, const char *head,
                          const char *tail)
{
    size_t h = strlen(head), t = strlen(tail);
    assert_true(total >= h + t + 7);
    size_t pad = total - h - t - 7;
    memcpy(m, head, h);
    memcpy(m + h, "Pad: ", 5);
    memset(m + h + 5, 'a', pad);
    memcpy(m + h + 5 + pad, "\r\n", 2);
    memcpy(m + h + 7 + pad, tail, t + 1);
    assert_int_equal(strlen(m), total);
    return m;
}

static void test_head_limits(void **state)
{
    (void)state;
    static char m[8192];
    const char *get = "GET / HTTP/1.1\r\nHost: x\r\n";
    size_t max = small.max_head;
    /* the head: max-1 and max bytes are fine, max+1 is not */
    ok_lim(padded(m, max - 1, get, "\r\n"), &small, NULL, "");
    ok_lim(padded(m, max, get, "\r\n"), &small, NULL, "");
    bad_lim(padded(m, max + 1, get, "\r\n"), max + 1, &small,
            H1REQ_E_TOO_LARGE, "request head too large");
    assert_int_equal(h1req_status(H1REQ_E_TOO_LARGE), 431);
    /* without its end in sight */
    padded(m, 600, get, "");
    bad_lim(m, strlen(m), &small, H1REQ_E_TOO_LARGE,
            "request head too large");
    /* the request line alone: a 414 when it cannot fit */
    for (size_t total = max - 1; total <= max + 3; total++) {
        int k = (int)(total - 18);
        snprintf(m, sizeof(m), "GET /%0*d HTTP/1.0\r\n\r\n", k, 0);
        if (total <= max)
            ok_lim(m, &small, NULL, "");
        else if (total <= max + 2) /* the line fits, the empty line not */
            bad_lim(m, total, &small, H1REQ_E_TOO_LARGE,
                    "request head too large");
        else
            bad_lim(m, total, &small, H1REQ_E_URI_TOO_LONG,
                    "request line too long");
    }
    snprintf(m, sizeof(m), "GET /%0900d", 0);
    bad_lim(m, strlen(m), &small, H1REQ_E_URI_TOO_LONG,
            "request line too long");
    assert_int_equal(h1req_status(H1REQ_E_URI_TOO_LONG), 414);
    /* fields: max_headers (4) and one less are fine, one more is not */
    ok_lim("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\n\r\n", &small, NULL,
           "");
    ok_lim("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n",
           &small, NULL, "");
    bad_lim(S("GET / HTTP/1.1\r\nHost: x\r\nA: 1\r\nB: 2\r\nC: 3\r\n"
              "D: 4\r\n\r\n"),
            &small, H1REQ_E_TOO_LARGE, "too many header fields");
}

static void test_trailer_limits(void **state)
{
    (void)state;
    static char m[8192], head[256];
    snprintf(head, sizeof(head), "%s1\r\na\r\n0\r\n", chunk_head);
    size_t h = strlen(head), max = small.max_head;
    /* the trailer section (with its empty line) is bounded on its own */
    ok_lim(padded(m, h + max - 1, head, "\r\n"), &small, NULL, "a");
    ok_lim(padded(m, h + max, head, "\r\n"), &small, NULL, "a");
    bad_lim(padded(m, h + max + 1, head, "\r\n"), h + max + 1, &small,
            H1REQ_E_TOO_LARGE, "trailer section too large");
    snprintf(m, sizeof(m), "%sA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", head);
    ok_lim(m, &small, NULL, "a");
    snprintf(m, sizeof(m), "%sA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE: 5\r\n\r\n",
             head);
    bad_lim(m, strlen(m), &small, H1REQ_E_TOO_LARGE,
            "too many trailer fields");
    /* trailers follow the field rules */
    bad_chunks("0\r\nbad trailer\r\n\r\n", H1REQ_E_BAD,
               "malformed header field");
    bad_chunks("0\r\nT: 1\r\n folded\r\n\r\n", H1REQ_E_BAD,
               "obsolete line folding in a header field");
    bad_chunks("0\r\nT : 1\r\n\r\n", H1REQ_E_BAD,
               "invalid character in a header field name");
    bad_chunks("0\r\nT: \x01\r\n\r\n", H1REQ_E_BAD,
               "control character in a header field value");
    bad_chunks("0\r\nT: 1\n\r\n", H1REQ_E_BAD, "bare LF as a line end");
    bad_chunks("0\r\n\n", H1REQ_E_BAD, "bare LF as a line end");
}

static void test_chunk_line_limits(void **state)
{
    (void)state;
    static char m[16384];
    /* one chunk-size line: 1023 bytes before its LF, not 1024 */
    int n = snprintf(m, sizeof(m), "%s1;%01020d\r\nx\r\n0\r\n\r\n",
                     chunk_head, 0);
    ok(m, NULL, "x");
    n = snprintf(m, sizeof(m), "%s1;%01021d\r\nx\r\n0\r\n\r\n", chunk_head,
                 0);
    bad(m, H1REQ_E_BAD, "chunk size line too long");
    /* extensions of a whole body: 4096 bytes, not 4097 */
    for (int over = 0; over <= 1; over++) {
        n = snprintf(m, sizeof(m), "%s", chunk_head);
        for (int i = 0; i < 4; i++)
            n += snprintf(m + n, sizeof(m) - (size_t)n, "1;%01000d\r\nx\r\n",
                          i);
        n += snprintf(m + n, sizeof(m) - (size_t)n,
                      "1;%0*d\r\ny\r\n0\r\n\r\n", 91 + over, 0);
        if (over)
            bad(m, H1REQ_E_BAD, "chunk extensions too long");
        else
            ok(m, NULL, "xxxxy");
    }
    (void)n;
}

static void test_body_limits(void **state)
{
    (void)state;
    static char m[1024], body[128];
    const int max = (int)small.max_body;
    /* Content-Length: max-1 and max are read, max+1 refused up front */
    for (int len = max - 1; len <= max + 1; len++) {
        memset(body, 'b', (size_t)len);
        body[len] = '\0';
        snprintf(m, sizeof(m),
                 "PUT / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n",
                 len);
        if (len > max) {
            bad_lim(m, strlen(m), &small, H1REQ_E_BODY_TOO_LARGE,
                    "Content-Length over the body limit");
            continue;
        }
        strcat(m, body);
        ok_lim(m, &small, NULL, body);
    }
    assert_int_equal(h1req_status(H1REQ_E_BODY_TOO_LARGE), 413);
    /* chunked: counted across chunks, refused at the chunk that passes */
    for (int len = max - 1; len <= max + 1; len++) {
        int second = len - 32;
        memset(body, 'b', (size_t)len);
        body[len] = '\0';
        snprintf(m, sizeof(m), "%s20\r\n%.32s\r\n%x\r\n%s\r\n0\r\n\r\n",
                 chunk_head, body, second, body + 32);
        if (len <= max)
            ok_lim(m, &small, NULL, body);
        else
            bad_lim(m, strlen(m), &small, H1REQ_E_BODY_TOO_LARGE,
                    "chunked body over the body limit");
    }
}

static void test_callbacks(void **state)
{
    (void)state;
    static const char *why[] = {
        "stopped at the request line", "stopped at a header field",
        "stopped at a header field", "stopped at the head",
        "stopped in the body",
    };
    const char *m = "POST /s HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                    "\r\nhi";
    static struct run r;
    for (int i = 0; i < 5; i++) {
        memset(&r, 0, sizeof(r));
        r.g.stop_at = i + 1;
        h1req_init(&r.p, &ops, &r.g, &lim);
        size_t used;
        assert_int_equal(h1req_feed(&r.p, m, strlen(m), &used), H1REQ_ERROR);
        assert_string_equal(r.p.error, why[i]);
        assert_int_equal(r.p.error_kind, H1REQ_E_STOPPED);
    }
    assert_int_equal(h1req_status(H1REQ_E_STOPPED), 0);
    assert_int_equal(h1req_status(H1REQ_E_NONE), 0);
    assert_int_equal(h1req_status(H1REQ_E_BAD), 400);
    assert_int_equal(h1req_status(H1REQ_E_EXPECT), 417);
    /* no callbacks at all */
    static const struct h1req_ops none = {NULL, NULL, NULL, NULL};
    struct h1req p;
    h1req_init(&p, &none, NULL, &lim);
    size_t used;
    assert_int_equal(h1req_feed(&p, m, strlen(m), &used), H1REQ_DONE);
    assert_int_equal(used, strlen(m));
    /* done stays done and takes nothing more */
    assert_int_equal(h1req_feed(&p, "GET", 3, &used), H1REQ_DONE);
    assert_int_equal(used, 0);
    /* a request cut short waits for more, whatever it is in */
    static const char *cut[] = {"GET / HTTP/1.1\r\nHost: x\r\n",
                                "PUT / HTTP/1.1\r\nHost: x\r\n"
                                "Content-Length: 5\r\n\r\nab",
                                "PUT / HTTP/1.1\r\nHost: x\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n5\r\nab",
                                "PUT / HTTP/1.1\r\nHost: x\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n2\r\nab\r",
                                "PUT / HTTP/1.1\r\nHost: x\r\n"
                                "Transfer-Encoding: chunked\r\n\r\n0\r\nT: 1"};
    for (int i = 0; i < 5; i++) {
        splits(&r, cut[i], strlen(cut[i]), &lim);
        assert_int_equal(r.res, H1REQ_MORE);
        assert_int_equal(r.n_done, 0);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_get),
        cmocka_unit_test(test_content_length),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_keep_alive),
        cmocka_unit_test(test_expect),
        cmocka_unit_test(test_smuggling),
        cmocka_unit_test(test_request_line),
        cmocka_unit_test(test_refused_target_reported),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_framing),
        cmocka_unit_test(test_chunk_errors),
        cmocka_unit_test(test_head_limits),
        cmocka_unit_test(test_trailer_limits),
        cmocka_unit_test(test_chunk_line_limits),
        cmocka_unit_test(test_body_limits),
        cmocka_unit_test(test_callbacks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
