/* test_http.c - HTTP vocabulary (base/http.c): methods as received and as
 * configured, idempotency (RFC 9110 9.2.2), status classes, hop-by-hop
 * names (RFC 9110 7.6.1), the tokens of a Connection value, and the
 * field lists answers are sent with (http_fields). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "base/http.h"

static void test_methods(void **state)
{
    (void)state;
    static const char *const names[] = {"GET",   "HEAD",   "POST",   "PUT",
                                        "PATCH", "DELETE", "OPTIONS"};
    for (int m = 0; m < 7; m++) {
        assert_int_equal(http_method_parse(names[m]), m);
        assert_string_equal(http_method_name((enum http_method)m), names[m]);
        assert_int_equal(http_method_from_config(names[m]), m);
    }
    /* on the wire methods are case-sensitive (RFC 9110 9.1) */
    assert_int_equal(http_method_parse("get"), HTTP_OTHER);
    assert_int_equal(http_method_parse("TRACE"), HTTP_OTHER);
    assert_int_equal(http_method_parse("GETX"), HTTP_OTHER);
    assert_int_equal(http_method_parse(""), HTTP_OTHER);
    assert_string_equal(http_method_name(HTTP_OTHER), "OTHER");
    assert_string_equal(http_method_name((enum http_method)42), "OTHER");
    /* in the configuration they are not */
    assert_int_equal(http_method_from_config("post"), HTTP_POST);
    assert_int_equal(http_method_from_config("Delete"), HTTP_DELETE);
    assert_int_equal(http_method_from_config("OTHER"), -1);
    assert_int_equal(http_method_from_config("TRACE"), -1);
    assert_int_equal(HTTP_M(HTTP_POST), 1u << HTTP_POST);
}

static void test_idempotent(void **state)
{
    (void)state;
    assert_true(http_method_idempotent(HTTP_GET));
    assert_true(http_method_idempotent(HTTP_HEAD));
    assert_true(http_method_idempotent(HTTP_OPTIONS));
    assert_true(http_method_idempotent(HTTP_PUT));
    assert_true(http_method_idempotent(HTTP_DELETE));
    assert_false(http_method_idempotent(HTTP_POST));
    assert_false(http_method_idempotent(HTTP_PATCH));
    assert_false(http_method_idempotent(HTTP_OTHER));
}

static void test_status_class(void **state)
{
    (void)state;
    assert_string_equal(http_status_class(100), "1xx");
    assert_string_equal(http_status_class(200), "2xx");
    assert_string_equal(http_status_class(304), "3xx");
    assert_string_equal(http_status_class(431), "4xx");
    assert_string_equal(http_status_class(599), "5xx");
    assert_string_equal(http_status_class(99), "other");
    assert_string_equal(http_status_class(600), "other");
    assert_string_equal(http_status_class(0), "other");
    assert_string_equal(http_status_class(-1), "other");
}

static bool hop(const char *n)
{
    return http_is_hop_by_hop(n, strlen(n));
}

static void test_hop_by_hop(void **state)
{
    (void)state;
    assert_true(hop("Connection"));
    assert_true(hop("connection"));
    assert_true(hop("Keep-Alive"));
    assert_true(hop("Proxy-Connection"));
    assert_true(hop("te"));
    assert_true(hop("Transfer-Encoding"));
    assert_true(hop("Upgrade"));
    assert_true(hop("Trailer"));
    assert_true(hop("Proxy-Authenticate"));
    assert_true(hop("PROXY-AUTHORIZATION"));
    assert_false(hop("Authorization"));
    assert_false(hop("Content-Length")); /* framing, not hop-by-hop */
    assert_false(hop("Keep-Alive2"));
    assert_false(hop("T"));
    assert_false(hop(""));
    /* the length is what counts, not a NUL */
    assert_true(http_is_hop_by_hop("TEXT", 2));
    assert_false(http_is_hop_by_hop("Upgrade", 6));
}

static void test_connection_lists(void **state)
{
    (void)state;
    assert_true(http_connection_lists("close", "close", 5));
    assert_true(http_connection_lists("keep-alive, X-Foo", "x-foo", 5));
    assert_true(http_connection_lists("X-Foo ,keep-alive", "X-FOO", 5));
    assert_true(http_connection_lists(" ,, \tX-Foo\t ,", "x-foo", 5));
    assert_false(http_connection_lists("X-Foobar", "x-foo", 5));
    assert_false(http_connection_lists("X-Fo", "x-foo", 5));
    assert_false(http_connection_lists("a-X-Foo", "x-foo", 5));
    assert_false(http_connection_lists("", "x-foo", 5));
    assert_false(http_connection_lists(",,,", "x-foo", 5));
    /* the name is compared by its length */
    assert_true(http_connection_lists("x-foo", "x-foo-longer", 5));
}

/* The table and the eight-bytes-at-a-time test against their definitions
 * (RFC 9110 5.6.2 tchar; VCHAR, obs-text, SP, HTAB). */
static void test_char_classes(void **state)
{
    (void)state;
    for (int c = 0; c < 256; c++) {
        bool t = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
                 (c >= 'A' && c <= 'Z') ||
                 (c && strchr("!#$%&'*+-.^_`|~", c) != NULL);
        assert_int_equal(http_tchar((unsigned char)c), t);
        char one = (char)c;
        assert_int_equal(http_token(&one, 1), t);
    }
    char v[40];
    for (size_t n = 0; n <= sizeof(v); n++) {
        memset(v, 'a', sizeof(v));
        assert_true(http_field_value(v, n));
        for (size_t i = 0; i < n; i++) {
            static const unsigned char probe[] = {0x00, 0x01, '\t', '\n',
                                                  '\r', 0x1f, ' ', 0x7e,
                                                  0x7f, 0x80, 0xff};
            for (size_t k = 0; k < sizeof(probe); k++) {
                v[i] = (char)probe[k];
                bool ok = probe[k] == '\t' ||
                          (probe[k] >= 0x20 && probe[k] != 0x7f);
                assert_int_equal(http_field_value(v, n), ok);
            }
            v[i] = 'a';
        }
    }
    assert_true(http_token("X-Request-Id", 12));
    assert_false(http_token("X Request", 9));
    assert_false(http_token("Name:", 5));
}

/* Names and values are read by their lengths: a list may point into the
 * middle of a buffer, with no NUL after a name or a value. */
static void test_fields(void **state)
{
    (void)state;
    static const char raw[] = "Content-TypeXapplication/jsonLocationY";
    struct http_fields l = {0};
    http_fields_add(&l, raw, 12, raw + 13, 16);
    http_fields_add(&l, raw + 29, 8, "/a", 2);
    http_fields_adds(&l, "content-type", "text/plain");
    const struct http_field *f = http_fields_get(&l, "CONTENT-TYPE");
    assert_non_null(f);
    assert_ptr_equal(f, &l.f[0]); /* the first */
    assert_int_equal(f->value_len, 16);
    assert_memory_equal(f->value, "application/json", 16);
    f = http_fields_get(&l, "location");
    assert_non_null(f);
    assert_memory_equal(f->value, "/a", 2);
    /* a name's prefix is another name */
    assert_null(http_fields_get(&l, "Content"));
    assert_null(http_fields_get(&l, "Content-Type2"));
    assert_null(http_fields_get(&l, ""));
    assert_int_equal(http_fields_remove(&l, "Content-Type"), 2);
    assert_int_equal(http_fields_remove(&l, "Content-Type"), 0);
    assert_int_equal(l.n, 1);
    assert_memory_equal(l.f[0].name, "Location", 8);
    /* growth past the first allocation keeps order */
    char names[40][8];
    for (int i = 0; i < 40; i++) {
        snprintf(names[i], sizeof(names[i]), "X-%d", i);
        http_fields_adds(&l, names[i], i % 2 ? "odd" : "even");
    }
    assert_int_equal(l.n, 41);
    assert_int_equal(http_fields_remove(&l, "x-7"), 1);
    assert_int_equal(l.n, 40);
    assert_memory_equal(l.f[7].name, "X-6", 3);
    assert_memory_equal(l.f[8].name, "X-8", 3);
    http_fields_reset(&l);
    assert_int_equal(l.n, 0);
    assert_null(http_fields_get(&l, "Location"));
    http_fields_free(&l);
    assert_null(l.f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_methods),
        cmocka_unit_test(test_idempotent),
        cmocka_unit_test(test_status_class),
        cmocka_unit_test(test_hop_by_hop),
        cmocka_unit_test(test_connection_lists),
        cmocka_unit_test(test_char_classes),
        cmocka_unit_test(test_fields),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
