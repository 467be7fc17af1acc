/* test_certfront.c - which requests the HTTP front refuses as certificate
 * logins (proxy/certfront.c): authenticate?method=cert, /oidc/login/cert,
 * and authentication requests from a client that presented a certificate;
 * nothing else. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "proxy/certfront.h"

static void test_cert_logins(void **state)
{
    (void)state;
    assert_true(certfront_is_cert_login(
        "/edge/client/v1/authenticate?method=cert", false));
    assert_true(certfront_is_cert_login(
        "/edge/management/v1/authenticate?configTypes=all&method=cert",
        false));
    assert_true(certfront_is_cert_login("/oidc/login/cert", false));
    assert_true(certfront_is_cert_login(
        "/oidc/login/cert?authRequestID=abc", false));
    assert_true(certfront_is_cert_login("/oidc/login/cert/x", false));
}

static void test_not_cert_logins(void **state)
{
    (void)state;
    assert_false(certfront_is_cert_login(
        "/edge/client/v1/authenticate?method=password", false));
    assert_false(certfront_is_cert_login(
        "/edge/client/v1/authenticate?method=certificate", false));
    assert_false(certfront_is_cert_login(
        "/edge/client/v1/authenticate?xmethod=cert", false));
    assert_false(certfront_is_cert_login(
        "/edge/client/v1/services?method=cert", false));
    assert_false(certfront_is_cert_login("/oidc/login/certx", false));
    assert_false(certfront_is_cert_login("/oidc/login/username", false));
    assert_false(certfront_is_cert_login("/oidc/authorize?x=1", false));
    assert_false(certfront_is_cert_login("/edge/client/v1/version", true));
    assert_false(certfront_is_cert_login(
        "/edge/client/v1/current-identity/mfa", true));
}

static void test_presented_certificate(void **state)
{
    (void)state;
    assert_true(certfront_is_cert_login(
        "/edge/client/v1/authenticate?method=password", true));
    assert_true(certfront_is_cert_login("/oidc/authorize?client_id=x", true));
    assert_true(certfront_is_cert_login("/oidc/login/username", true));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cert_logins),
        cmocka_unit_test(test_not_cert_logins),
        cmocka_unit_test(test_presented_certificate),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
