/* test_config_addr.c - addresses, URLs and CIDR blocks of the
 * configuration. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "config/config_addr.h"

static void test_addr_ok(void **state)
{
    (void)state;
    struct config_addr a;
    const char *why = NULL;
    assert_true(config_addr_parse("0.0.0.0:8443", false, &a, &why));
    assert_string_equal(a.text, "0.0.0.0:8443");
    assert_string_equal(a.host, "0.0.0.0");
    assert_int_equal(a.port, 8443);
    assert_null(a.unix_path);
    config_addr_free(&a);

    assert_true(config_addr_parse("[::]:80", false, &a, &why));
    assert_string_equal(a.host, "::");
    assert_int_equal(a.port, 80);
    config_addr_free(&a);

    assert_true(config_addr_parse("redis.internal:6379", false, &a, &why));
    assert_string_equal(a.host, "redis.internal");
    config_addr_free(&a);

    assert_true(config_addr_parse("localhost:0", false, &a, &why));
    assert_int_equal(a.port, 0);
    config_addr_free(&a);

    assert_true(config_addr_parse("unix:/run/redis.sock", true, &a, &why));
    assert_string_equal(a.host, "");
    assert_string_equal(a.unix_path, "/run/redis.sock");
    config_addr_free(&a);
}

static void expect_addr_bad(const char *text, bool unix_ok, const char *msg)
{
    struct config_addr a;
    const char *why = NULL;
    assert_false(config_addr_parse(text, unix_ok, &a, &why));
    assert_string_equal(why, msg);
    assert_null(a.text);
}

static void test_addr_bad(void **state)
{
    (void)state;
    expect_addr_bad("8080", false, "the port is missing");
    expect_addr_bad(":8080", false, "the host is not a valid name or address");
    expect_addr_bad("host:80x", false, "the port is not a number from 0 to 65535");
    expect_addr_bad("host:65536", false,
                    "the port is not a number from 0 to 65535");
    expect_addr_bad("::1:80", false,
                    "write IPv6 addresses in brackets: [::1]:port");
    expect_addr_bad("[::1:80", false, "an IPv6 address needs a closing ']'");
    expect_addr_bad("[zz]:80", false,
                    "not a valid IPv6 address between '[' and ']'");
    expect_addr_bad("[::1]80", false, "expected ':' after ']'");
    expect_addr_bad("999.1.1.1:80", false,
                    "the host is not a valid name or address");
    expect_addr_bad("a b:80", false, "the host is not a valid name or address");
    expect_addr_bad("unix:/x", false, "a unix socket is not supported here");
    expect_addr_bad("unix:", true, "write unix:/path/to/socket");
}

static void test_addr_same(void **state)
{
    (void)state;
    struct config_addr a, b;
    const char *why;
    assert_true(config_addr_parse("LocalHost:80", false, &a, &why));
    assert_true(config_addr_parse("localhost:80", false, &b, &why));
    assert_true(config_addr_same(&a, &b));
    config_addr_free(&b);
    assert_true(config_addr_parse("localhost:81", false, &b, &why));
    assert_false(config_addr_same(&a, &b));
    config_addr_free(&a);
    config_addr_free(&b);
}

static void test_url(void **state)
{
    (void)state;
    char *norm, *scheme, *host;
    uint16_t port;
    const char *why = NULL;
    assert_true(config_addr_parse_url("HTTPS://10.0.0.11:1280/", &norm, &scheme,
                                      &host, &port, &why));
    assert_string_equal(norm, "https://10.0.0.11:1280");
    assert_string_equal(scheme, "https");
    assert_string_equal(host, "10.0.0.11");
    assert_int_equal(port, 1280);
    free(norm), free(scheme), free(host);

    assert_true(config_addr_parse_url("http://[fd00::1]", &norm, &scheme, &host,
                                      &port, &why));
    assert_string_equal(host, "fd00::1");
    assert_int_equal(port, 80);
    free(norm), free(scheme), free(host);

    assert_true(config_addr_parse_url("https://ctrl.example.com", &norm,
                                      &scheme, &host, &port, &why));
    assert_int_equal(port, 443);
    free(norm), free(scheme), free(host);

    static const struct { const char *url, *why; } bad[] = {
        {"ftp://x", "not an http:// or https:// URL"},
        {"10.0.0.1:1280", "not an http:// or https:// URL"},
        {"https://", "the URL has no host"},
        {"https:///x", "a path, query or fragment is not allowed here"},
        {"https://h/edge", "a path, query or fragment is not allowed here"},
        {"https://h?x=1", "a path, query or fragment is not allowed here"},
        {"https://u:p@h", "credentials in the URL are not allowed"},
        {"https://h:0", "the port is not a number from 1 to 65535"},
        {"https://h:99999", "the port is not a number from 1 to 65535"},
        {"https://bad_host!:1", "the host is not a valid name or address"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        why = NULL;
        assert_false(config_addr_parse_url(bad[i].url, &norm, &scheme, &host,
                                           &port, &why));
        assert_string_equal(why, bad[i].why);
    }
}

static void test_cidr(void **state)
{
    (void)state;
    struct config_cidr c;
    const char *why = NULL;
    assert_true(config_addr_parse_cidr("127.0.0.0/8", &c, &why));
    assert_int_equal(c.family, AF_INET);
    assert_int_equal(c.prefix, 8);
    assert_int_equal(c.addr[0], 127);

    assert_true(config_addr_parse_cidr("10.1.2.3/16", &c, &why));
    assert_int_equal(c.prefix, 16);
    assert_int_equal(c.addr[1], 1);
    assert_int_equal(c.addr[2], 0); /* host bits cleared */
    assert_int_equal(c.addr[3], 0);

    assert_true(config_addr_parse_cidr("10.1.2.3/13", &c, &why));
    assert_int_equal(c.addr[1], 0); /* 1 = 00000001: cleared past bit 13 */

    assert_true(config_addr_parse_cidr("::1", &c, &why));
    assert_int_equal(c.family, AF_INET6);
    assert_int_equal(c.prefix, 128);
    assert_int_equal(c.addr[15], 1);

    assert_false(config_addr_parse_cidr("10.0.0.0/33", &c, &why));
    assert_string_equal(why, "an IPv4 prefix is at most /32");
    assert_false(config_addr_parse_cidr("::/129", &c, &why));
    assert_string_equal(why, "an IPv6 prefix is at most /128");
    assert_false(config_addr_parse_cidr("10.0.0.0/", &c, &why));
    assert_string_equal(why, "the prefix length is not a number");
    assert_false(config_addr_parse_cidr("10.0.0.0/x", &c, &why));
    assert_string_equal(why, "the prefix length is not a number");
    assert_false(config_addr_parse_cidr("localhost", &c, &why));
    assert_string_equal(why, "not an IPv4 or IPv6 address");
}

static void test_cidr_match(void **state)
{
    (void)state;
    struct config_cidr l[4];
    const char *why = NULL;
    assert_true(config_addr_parse_cidr("10.0.0.0/8", &l[0], &why));
    assert_true(config_addr_parse_cidr("192.168.1.0/25", &l[1], &why));
    assert_true(config_addr_parse_cidr("fd00::/8", &l[2], &why));
    assert_true(config_addr_parse_cidr("::1", &l[3], &why));
    assert_true(config_addr_cidr_match_text(l, 4, "10.255.0.1"));
    assert_false(config_addr_cidr_match_text(l, 4, "11.0.0.1"));
    assert_true(config_addr_cidr_match_text(l, 4, "192.168.1.127"));
    assert_false(config_addr_cidr_match_text(l, 4, "192.168.1.128"));
    assert_true(config_addr_cidr_match_text(l, 4, "fd12:3456::7"));
    assert_false(config_addr_cidr_match_text(l, 4, "fe80::1"));
    assert_true(config_addr_cidr_match_text(l, 4, "::1"));
    assert_false(config_addr_cidr_match_text(l, 4, "::2"));
    /* an IPv4-mapped IPv6 address is its IPv4 address */
    assert_true(config_addr_cidr_match_text(l, 4, "::ffff:10.1.2.3"));
    assert_false(config_addr_cidr_match_text(l, 4, "::ffff:11.1.2.3"));
    /* families never match each other; no list, no text: nothing */
    assert_false(config_addr_cidr_match_text(l, 2, "fd00::1"));
    assert_false(config_addr_cidr_match_text(l, 0, "10.0.0.1"));
    assert_false(config_addr_cidr_match_text(l, 4, "not-an-address"));
    /* /0 matches every address of its family */
    assert_true(config_addr_parse_cidr("0.0.0.0/0", &l[0], &why));
    assert_true(config_addr_cidr_match_text(l, 1, "203.0.113.9"));
    assert_false(config_addr_cidr_match_text(l, 1, "2001:db8::1"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_addr_ok),
        cmocka_unit_test(test_addr_bad),
        cmocka_unit_test(test_addr_same),
        cmocka_unit_test(test_url),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_cidr_match),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
