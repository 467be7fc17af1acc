/* test_headers.c - the header list and the proxy's header rules
 * (io/headers.c): hop-by-hop fields and every field named in
 * Connection dropped both ways, X-Forwarded-* and Forwarded added (and
 * appended to only when trusted), the request id replaced, framing fields
 * left to the transport except the length of a HEAD answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <cmocka.h>

#include "io/headers.h"
#include "io/listener.h"
#include "io/upstream.h"

/* ---- helpers -------------------------------------------------------------- */

#define H(n, v) {n, sizeof(n) - 1, v, sizeof(v) - 1}

static const struct headers_up_ctx ctx_plain = {
    .client_addr = "192.0.2.7",
    .tls = false,
    .request_id = "rid-1",
    .request_id_header = "X-Request-Id",
    .trust_forwarded = false,
};

/* Every value of name in h, joined with '|' (static buffer). */
static const char *all(const struct headers *h, const char *name)
{
    static char out[1024];
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < h->n; i++) {
        if (strcasecmp(headers_name(h, i), name) != 0)
            continue;
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%s", o ? "|" : "",
                              headers_value(h, i));
    }
    return out;
}

static int count(const struct headers *h, const char *name)
{
    int n = 0;
    for (int i = 0; i < h->n; i++)
        n += strcasecmp(headers_name(h, i), name) == 0;
    return n;
}

/* all() and count() on a field list (the answer's fields). */
static const char *fall(const struct http_fields *f, const char *name)
{
    static char out[1024];
    size_t o = 0;
    out[0] = '\0';
    for (int i = 0; i < f->n; i++) {
        if (strlen(name) != f->f[i].name_len ||
            strncasecmp(f->f[i].name, name, f->f[i].name_len) != 0)
            continue;
        o += (size_t)snprintf(out + o, sizeof(out) - o, "%s%.*s",
                              o ? "|" : "", (int)f->f[i].value_len,
                              f->f[i].value);
    }
    return out;
}

static int fcount(const struct http_fields *f, const char *name)
{
    int n = 0;
    for (int i = 0; i < f->n; i++)
        n += strlen(name) == f->f[i].name_len &&
             strncasecmp(f->f[i].name, name, f->f[i].name_len) == 0;
    return n;
}

/* An upstream answer with these "Name: value" fields, as the upstream
 * engine stores them. */
static void resp_add(struct upstream_req *r, const char *name,
                     const char *value)
{
    if (r->n_resp_hdrs == r->cap_resp_hdrs) {
        r->cap_resp_hdrs = r->cap_resp_hdrs ? 2 * r->cap_resp_hdrs : 8;
        r->resp_hdrs = realloc(r->resp_hdrs, (size_t)r->cap_resp_hdrs *
                                                 sizeof(*r->resp_hdrs));
    }
    struct upstream_header *h = &r->resp_hdrs[r->n_resp_hdrs++];
    h->name_off = (uint32_t)r->resp_hdr_data.len;
    h->name_len = (uint32_t)strlen(name);
    buf_puts(&r->resp_hdr_data, name);
    buf_putc(&r->resp_hdr_data, '\0');
    h->value_off = (uint32_t)r->resp_hdr_data.len;
    h->value_len = (uint32_t)strlen(value);
    buf_puts(&r->resp_hdr_data, value);
    buf_putc(&r->resp_hdr_data, '\0');
}

/* ---- the list ---------------------------------------------------------------- */

static void test_list_basics(void **state)
{
    (void)state;
    struct headers h = {0};
    assert_null(headers_get(&h, "A"));
    headers_adds(&h, "Accept", "a/b");
    headers_adds(&h, "X-Two", "1");
    headers_adds(&h, "x-two", "2");
    headers_add(&h, "Cut-Here", 3, "value-cut", 5);
    assert_int_equal(h.n, 4);
    assert_string_equal(headers_name(&h, 3), "Cut");
    assert_string_equal(headers_value(&h, 3), "value");
    assert_string_equal(headers_get(&h, "ACCEPT"), "a/b");
    assert_string_equal(headers_get(&h, "X-TWO"), "1"); /* the first */
    assert_null(headers_get(&h, "X-Tw"));

    const char *const *lines = headers_lines(&h);
    assert_string_equal(lines[0], "Accept: a/b");
    assert_string_equal(lines[2], "x-two: 2");
    assert_string_equal(lines[3], "Cut: value");

    assert_int_equal(headers_remove(&h, "X-TWO"), 2);
    assert_int_equal(headers_remove(&h, "nothing"), 0);
    assert_int_equal(h.n, 2);
    assert_string_equal(headers_name(&h, 0), "Accept");
    assert_string_equal(headers_value(&h, 0), "a/b");
    assert_string_equal(headers_name(&h, 1), "Cut");
    assert_string_equal(headers_value(&h, 1), "value");
    /* a list rebuilt after a change */
    headers_adds(&h, "Late", "x");
    lines = headers_lines(&h);
    assert_string_equal(lines[2], "Late: x");

    headers_reset(&h);
    assert_int_equal(h.n, 0);
    headers_adds(&h, "After-Reset", "y");
    assert_string_equal(headers_get(&h, "after-reset"), "y");
    headers_free(&h);
    assert_int_equal(h.n, 0);
    assert_null(h.off);
    headers_free(&h); /* twice is harmless */
}

static void test_is_hop(void **state)
{
    (void)state;
    static const char *const hop[] = {
        "Connection", "keep-alive", "Proxy-Connection", "TE",
        "Transfer-Encoding", "UPGRADE", "Trailer", "Proxy-Authenticate",
        "Proxy-Authorization", "Content-Length",
    };
    for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
        assert_true(headers_is_hop(hop[i], strlen(hop[i]), NULL));
    assert_false(headers_is_hop("Authorization", 13, NULL));
    assert_false(headers_is_hop("Trailers", 8, NULL));
    assert_false(headers_is_hop("TE2", 3, NULL));
    assert_false(headers_is_hop("X-A", 3, NULL));
    /* named in Connection: any spacing, any case, any position */
    assert_true(headers_is_hop("X-A", 3, "close, x-a"));
    assert_true(headers_is_hop("X-A", 3, "  X-A  ,keep-alive"));
    assert_true(headers_is_hop("X-A", 3, "a,,\tx-a\t,"));
    assert_false(headers_is_hop("X-A", 3, "x-ab, xx-a, x-"));
    assert_false(headers_is_hop("X-A", 3, ""));
}

/* ---- towards the controller ---------------------------------------------------- */

static void test_upstream_drops_hop_by_hop(void **state)
{
    (void)state;
    struct listener_header in[] = {
        H("Host", "proxy.example:8443"),
        H("Connection", "keep-alive, X-Hop-A"),
        H("connection", "x-hop-b"), /* a second Connection line */
        H("X-Hop-A", "a"),
        H("X-Hop-B", "b"),
        H("Keep-Alive", "timeout=5"),
        H("Proxy-Connection", "keep-alive"),
        H("TE", "trailers"),
        H("Trailer", "X-T"),
        H("Upgrade", "h2c"),
        H("Proxy-Authorization", "Basic eA=="),
        H("Transfer-Encoding", "chunked"),
        H("Content-Length", "12"),
        H("Expect", "100-continue"),
        H("X-Client-CertPem", "forged"),
        H("Authorization", "Bearer t"),
        H("Accept", "application/json"),
        H("Content-Type", "application/json"),
        H("zt-session", "s"),
    };
    struct headers out = {0};
    headers_for_upstream(&out, in, (int)(sizeof(in) / sizeof(in[0])),
                         &ctx_plain);
    static const char *const gone[] = {
        "Connection", "X-Hop-A", "X-Hop-B", "Keep-Alive", "Proxy-Connection",
        "TE", "Trailer", "Upgrade", "Proxy-Authorization",
        "Transfer-Encoding", "Content-Length", "X-Client-CertPem",
    };
    for (size_t i = 0; i < sizeof(gone) / sizeof(gone[0]); i++)
        assert_int_equal(count(&out, gone[i]), 0);
    /* the client's Host is the controller's business no more */
    assert_int_equal(count(&out, "Host"), 0);
    assert_string_equal(all(&out, "Authorization"), "Bearer t");
    assert_string_equal(all(&out, "Accept"), "application/json");
    assert_string_equal(all(&out, "Content-Type"), "application/json");
    assert_string_equal(all(&out, "zt-session"), "s");
    /* Expect is the transport's */
    assert_int_equal(count(&out, "Expect"), 0);
    headers_free(&out);
}

static void test_upstream_blanks_what_libcurl_would_add(void **state)
{
    (void)state;
    struct listener_header in[] = {H("Host", "h")};
    struct headers out = {0};
    headers_for_upstream(&out, in, 1, &ctx_plain);
    /* the own client sends what the client sent, no blanks */
    assert_int_equal(count(&out, "Accept"), 0);
    assert_int_equal(count(&out, "Content-Type"), 0);
    assert_int_equal(count(&out, "Expect"), 0);
    /* for libcurl, empty values make it leave the field out */
    headers_blank_for_libcurl(&out);
    assert_int_equal(count(&out, "Accept"), 1);
    assert_string_equal(all(&out, "Accept"), "");
    assert_string_equal(all(&out, "Content-Type"), "");
    assert_string_equal(all(&out, "Expect"), "");
    /* once: a retry on libcurl adds nothing more */
    headers_blank_for_libcurl(&out);
    assert_int_equal(count(&out, "Accept"), 1);
    assert_int_equal(count(&out, "Expect"), 1);
    headers_free(&out);
    /* the client's own Accept is kept as it is */
    struct listener_header in2[] = {H("Accept", "application/json")};
    out = (struct headers){0};
    headers_for_upstream(&out, in2, 1, &ctx_plain);
    headers_blank_for_libcurl(&out);
    assert_string_equal(all(&out, "Accept"), "application/json");
    assert_string_equal(all(&out, "Content-Type"), "");
    headers_free(&out);
}

static void test_upstream_forwarded_fields(void **state)
{
    (void)state;
    struct listener_header in[] = {
        H("Host", "ziti.example.com:8443"),
        H("X-Forwarded-For", "6.6.6.6"),
        H("X-Forwarded-Proto", "https"),
        H("X-Forwarded-Host", "evil"),
        H("Forwarded", "for=6.6.6.6"),
        H("X-Request-Id", "client-sent-this"),
        H("x-request-id", "and-this"),
    };
    struct headers out = {0};
    headers_for_upstream(&out, in, (int)(sizeof(in) / sizeof(in[0])),
                         &ctx_plain);
    assert_string_equal(all(&out, "X-Forwarded-For"), "192.0.2.7");
    assert_string_equal(all(&out, "X-Forwarded-Proto"), "http");
    assert_string_equal(all(&out, "X-Forwarded-Host"), "ziti.example.com:8443");
    assert_string_equal(all(&out, "Forwarded"),
                        "for=192.0.2.7;proto=http;host=\"ziti.example.com:8443\"");
    /* the request id the listener settled on, once */
    assert_string_equal(all(&out, "X-Request-Id"), "rid-1");
    headers_free(&out);

    /* trusted: appended to; HTTPS; IPv6 quoted; a Host that is not a
     * host[:port] is not passed on (issue 17) */
    struct headers_up_ctx t = ctx_plain;
    t.trust_forwarded = true;
    t.tls = true;
    t.client_addr = "2001:db8::1";
    struct listener_header in2[] = {
        H("Host", "we\"ird"),
        H("X-Forwarded-For", "10.0.0.1, 10.0.0.2"),
        H("Forwarded", "for=10.0.0.1"),
    };
    headers_for_upstream(&out, in2, 3, &t);
    assert_string_equal(all(&out, "X-Forwarded-For"),
                        "10.0.0.1, 10.0.0.2, 2001:db8::1");
    assert_string_equal(all(&out, "X-Forwarded-Proto"), "https");
    assert_string_equal(all(&out, "Forwarded"),
                        "for=10.0.0.1, for=\"[2001:db8::1]\";proto=https");
    assert_int_equal(count(&out, "X-Forwarded-Host"), 0);
    headers_free(&out);

    /* hosts that are not a host[:port] */
    const char *bad[] = {"evil.example/x", "a@b", "a b", "a,b", "a;b",
                         "x\"y", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct listener_header hb[] = {{"Host", 4, bad[i], strlen(bad[i])}};
        headers_for_upstream(&out, hb, 1, &ctx_plain);
        assert_int_equal(count(&out, "X-Forwarded-Host"), 0);
        assert_string_equal(all(&out, "Forwarded"), "for=192.0.2.7;proto=http");
        headers_free(&out);
    }
    const char *good[] = {"[2001:db8::1]:443", "10.0.0.1", "ctrl_1.example:1280"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct listener_header hg[] = {{"Host", 4, good[i], strlen(good[i])}};
        headers_for_upstream(&out, hg, 1, &ctx_plain);
        assert_string_equal(all(&out, "X-Forwarded-Host"), good[i]);
        headers_free(&out);
    }

    /* no Host (HTTP/1.0): no X-Forwarded-Host, no host= */
    struct listener_header in3[] = {H("Accept", "*/*")};
    headers_for_upstream(&out, in3, 1, &ctx_plain);
    assert_int_equal(count(&out, "X-Forwarded-Host"), 0);
    assert_string_equal(all(&out, "Forwarded"), "for=192.0.2.7;proto=http");
    headers_free(&out);
}

static void test_upstream_custom_request_id_header(void **state)
{
    (void)state;
    struct headers_up_ctx c = ctx_plain;
    c.request_id_header = "X-Correlation-Id";
    struct listener_header in[] = {
        H("X-Correlation-Id", "theirs"),
        H("X-Request-Id", "not-ours-to-touch"),
    };
    struct headers out = {0};
    headers_for_upstream(&out, in, 2, &c);
    assert_string_equal(all(&out, "X-Correlation-Id"), "rid-1");
    assert_string_equal(all(&out, "X-Request-Id"), "not-ours-to-touch");
    headers_free(&out);
}

/* ---- towards the client ------------------------------------------------------------ */

static void test_client_drops_hop_by_hop(void **state)
{
    (void)state;
    struct upstream_req r = {0};
    r.method = HTTP_GET;
    resp_add(&r, "Content-Type", "application/json");
    resp_add(&r, "Content-Length", "42");
    resp_add(&r, "Transfer-Encoding", "chunked");
    resp_add(&r, "Connection", "X-Internal");
    resp_add(&r, "Connection", "x-internal-2, keep-alive");
    resp_add(&r, "X-Internal", "1");
    resp_add(&r, "X-Internal-2", "2");
    resp_add(&r, "Keep-Alive", "timeout=5");
    resp_add(&r, "Proxy-Authenticate", "Basic");
    resp_add(&r, "Trailer", "X-T");
    resp_add(&r, "Upgrade", "h2c");
    resp_add(&r, "Set-Cookie", "a=1");
    resp_add(&r, "Set-Cookie", "b=2");
    resp_add(&r, "X-Kept", "yes");
    struct http_fields out = {0};
    headers_for_client(&out, &r);
    assert_int_equal(out.n, 4);
    assert_string_equal(fall(&out, "Content-Type"), "application/json");
    assert_string_equal(fall(&out, "Set-Cookie"), "a=1|b=2");
    assert_string_equal(fall(&out, "X-Kept"), "yes");
    http_fields_free(&out);
    upstream_req_free(&r);
}

static void test_client_head_keeps_content_length(void **state)
{
    (void)state;
    struct upstream_req r = {0};
    r.method = HTTP_HEAD;
    resp_add(&r, "Content-Length", "1234");
    resp_add(&r, "Transfer-Encoding", "chunked");
    struct http_fields out = {0};
    headers_for_client(&out, &r);
    assert_string_equal(fall(&out, "Content-Length"), "1234");
    assert_int_equal(fcount(&out, "Transfer-Encoding"), 0);
    http_fields_free(&out);
    upstream_req_free(&r);
}

/* A spare request keeps its header storage, not the credentials in it
 * (issue 17). */
static void test_wipe_leaves_no_credential(void **state)
{
    (void)state;
    struct headers h = {0};
    headers_adds(&h, "Authorization", "Bearer secret-token-value");
    headers_adds(&h, "zt-session", "secret-session");
    char *data = h.data.data;
    size_t cap = h.data.cap;
    assert_non_null(memmem(data, cap, "secret-token-value", 18));
    headers_wipe(&h);
    assert_int_equal(h.n, 0);
    assert_ptr_equal(h.data.data, data); /* storage kept */
    for (size_t i = 0; i < cap; i++)
        assert_int_equal(data[i], 0);
    headers_adds(&h, "Accept", "*/*");
    assert_string_equal(headers_get(&h, "Accept"), "*/*");
    headers_free(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_list_basics),
        cmocka_unit_test(test_is_hop),
        cmocka_unit_test(test_upstream_drops_hop_by_hop),
        cmocka_unit_test(test_upstream_blanks_what_libcurl_would_add),
        cmocka_unit_test(test_upstream_forwarded_fields),
        cmocka_unit_test(test_upstream_custom_request_id_header),
        cmocka_unit_test(test_client_drops_hop_by_hop),
        cmocka_unit_test(test_client_head_keeps_content_length),
        cmocka_unit_test(test_wipe_leaves_no_credential),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
