/* test_accesslog.c - the request target as it is written to the access log
 * (proxy/accesslog.c): query values redacted unless the parameter is known
 * harmless, names kept, everything JSON-escaped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proxy/accesslog.h"
#include "base/buf.h"

static char *redact(const char *target)
{
    struct buf b = {0};
    buf_puts(&b, "<");
    accesslog_redact_target(&b, target);
    buf_puts(&b, ">");
    return buf_steal(&b, NULL);
}

static void expect(const char *target, const char *logged)
{
    char *got = redact(target);
    char *want = malloc(strlen(logged) + 3);
    strcpy(want, "<");
    strcat(want, logged);
    strcat(want, ">");
    assert_string_equal(got, want);
    free(got);
    free(want);
}

static void test_paths_are_kept(void **state)
{
    (void)state;
    expect("/", "/");
    expect("/edge/client/v1/identities/abc", "/edge/client/v1/identities/abc");
    expect("/a%20b/%2F", "/a%20b/%2F");
    expect("", "");
}

static void test_query_values_are_redacted(void **state)
{
    (void)state;
    expect("/x?token=abc", "/x?token=REDACTED");
    expect("/oidc/login/username?authRequestID=r1&id=r2",
           "/oidc/login/username?authRequestID=REDACTED&id=REDACTED");
    expect("/oidc/authorize?client_id=openziti&code_challenge=abc&"
           "code_challenge_method=S256&state=s&redirect_uri=http://x/cb",
           "/oidc/authorize?client_id=openziti&code_challenge=REDACTED&"
           "code_challenge_method=S256&state=REDACTED&redirect_uri=REDACTED");
    /* known harmless values stay */
    expect("/edge/client/v1/authenticate?method=password",
           "/edge/client/v1/authenticate?method=password");
    expect("/x?limit=10&offset=20&sort=name&type=a",
           "/x?limit=10&offset=20&sort=name&type=a");
    /* names are compared exactly */
    expect("/x?LIMIT=10&limits=1&Method=x",
           "/x?LIMIT=REDACTED&limits=REDACTED&Method=REDACTED");
    expect("/x?%6cimit=1", "/x?%6cimit=REDACTED");
}

static void test_odd_queries(void **state)
{
    (void)state;
    expect("/x?", "/x?");
    /* a bare parameter may be the secret itself (issue 17) */
    expect("/x?flag", "/x?REDACTED");
    expect("/x?eyJhbGciOiJFUzI1NiJ9.e30.sig", "/x?REDACTED");
    expect("/x?limit", "/x?limit");
    expect("/x?a=&b", "/x?a=REDACTED&REDACTED");
    expect("/x?&&a=1&", "/x?&&a=REDACTED&");
    expect("/x?a==b=c", "/x?a=REDACTED");
    expect("/x?limit=1?token=t", "/x?limit=REDACTED");
}

static void test_harmless_names_do_not_carry_secrets(void **state)
{
    (void)state;
    /* a separator some servers accept must not smuggle a secret into a
     * value that is logged */
    char *got = redact("/x?limit=5;token=secret&method=a;code=c0de");
    assert_null(strstr(got, "secret"));
    assert_null(strstr(got, "c0de"));
    free(got);
    got = redact("/x?method=password%26token%3Dsecret");
    assert_null(strstr(got, "secret"));
    free(got);
    /* plain values, and the spaces of a scope list, are logged */
    expect("/x?scope=openid%20offline_access+x&grant_type=refresh_token",
           "/x?scope=openid%20offline_access+x&grant_type=refresh_token");
    expect("/x?limit=" "0123456789012345678901234567890123456789"
           "0123456789012345678901234567890123456789",
           "/x?limit=REDACTED");
}

static void test_json_escaping(void **state)
{
    (void)state;
    expect("/a\"b\\c", "/a\\\"b\\\\c");
    expect("/x?na\"me=v", "/x?na\\\"me=REDACTED");
    expect("/x?type=a\"b", "/x?type=REDACTED"); /* not a plain value */
    char *got = redact("/a\x01\x1f");
    assert_string_equal(got, "</a\\u0001\\u001f>");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths_are_kept),
        cmocka_unit_test(test_query_values_are_redacted),
        cmocka_unit_test(test_odd_queries),
        cmocka_unit_test(test_harmless_names_do_not_carry_secrets),
        cmocka_unit_test(test_json_escaping),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
