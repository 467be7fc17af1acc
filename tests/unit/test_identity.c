/* test_identity.c - what a request says about who it is and which login
 * state it refers to: the Authorization header, at most one credential per
 * request (test_jwks.c: whose token it is), the zt-session header, query parameters (percent-decoding, '+',
 * names that contain other names, fragments, limits), form and JSON body
 * fields (bodies that are not NUL-terminated), the auth request id of an
 * OIDC login step, the code of a token request, and Location values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "io/listener.h"
#include "routing/identity.h"

static struct listener_header H(const char *name, const char *value)
{
    return (struct listener_header){name, strlen(name), value, strlen(value)};
}

static void test_authorization(void **state)
{
    (void)state;
    size_t len = 0;
    char raw[] = "Bearer abc.def.ghiXXXX";
    struct listener_header h[2] = {H("Accept", "*/*"),
                                   {"authorization", 13, raw, strlen(raw) - 4}};
    const char *v = identity_authorization(h, 2, &len);
    assert_non_null(v);
    assert_int_equal(len, strlen(raw) - 4);
    assert_null(identity_authorization(h, 1, &len));
    assert_null(identity_authorization(NULL, 0, &len));
}

/* One credential at most: a controller and quorumgate must read the same. */
static void test_credentials_check(void **state)
{
    (void)state;
    struct listener_header one[2] = {H("Accept", "*/*"), H("Authorization", "Bearer a.b.c")};
    assert_null(identity_credentials_check(one, 2));
    struct listener_header sess[1] = {H("zt-session", "s")};
    assert_null(identity_credentials_check(sess, 1));
    assert_null(identity_credentials_check(NULL, 0));
    struct listener_header two[3] = {H("Authorization", "Bearer forged.x.y"),
                                     H("X-Other", "1"),
                                     H("AUTHORIZATION", "Bearer real.x.y")};
    assert_string_equal(identity_credentials_check(two, 3),
                        "more than one Authorization header");
    struct listener_header both[2] = {H("ZT-Session", "s"),
                                      H("authorization", "Bearer a.b.c")};
    assert_string_equal(identity_credentials_check(both, 2),
                        "both a zt-session and an Authorization header");
    struct listener_header two_sess[2] = {H("zt-session", "a"), H("zt-session", "b")};
    assert_string_equal(identity_credentials_check(two_sess, 2),
                        "more than one zt-session header");
}

static void test_session_header(void **state)
{
    (void)state;
    struct listener_header h[2] = {H("Accept", "*/*"), H("ZT-Session", "abc-123")};
    const char *v = identity_session(h, 2);
    assert_non_null(v);
    assert_memory_equal(v, "abc-123", 7);
    struct listener_header e[1] = {H("zt-session", "")};
    assert_null(identity_session(e, 1));
    struct listener_header o[1] = {H("zt-sessions", "x")};
    assert_null(identity_session(o, 1));
    assert_null(identity_session(NULL, 0));
}

static void test_query_params(void **state)
{
    (void)state;
    char out[64];
    assert_true(identity_query_param("/oidc/login/username?authRequestID=abc", "authRequestID", out, sizeof(out)));
    assert_string_equal(out, "abc");
    /* percent-decoding and '+' */
    assert_true(identity_query_param("/x?id=a%2Bb%20c+d%2fe%41", "id", out, sizeof(out)));
    assert_string_equal(out, "a+b c d/eA");
    /* a name inside another name does not count */
    assert_true(identity_query_param("/x?xid=1&idx=2&id=3", "id", out, sizeof(out)));
    assert_string_equal(out, "3");
    assert_false(identity_query_param("/x?xid=1&idx=2", "id", out, sizeof(out)));
    /* names are case-sensitive */
    assert_false(identity_query_param("/x?authrequestid=1", "authRequestID", out, sizeof(out)));
    /* the fragment is not part of the query */
    assert_true(identity_query_param("/cb?code=XYZ#state=1", "code", out, sizeof(out)));
    assert_string_equal(out, "XYZ");
    assert_false(identity_query_param("/cb?a=1#code=XYZ", "code", out, sizeof(out)));
    /* empty, missing, no query, a flag without '=' */
    assert_false(identity_query_param("/x?id=&y=1", "id", out, sizeof(out)));
    assert_false(identity_query_param("/x", "id", out, sizeof(out)));
    assert_false(identity_query_param("/x?id", "id", out, sizeof(out)));
    assert_true(identity_query_param("/x?id&id=2", "id", out, sizeof(out)));
    assert_string_equal(out, "2");
    /* malformed escapes stay as they are */
    assert_true(identity_query_param("/x?id=%zz%4", "id", out, sizeof(out)));
    assert_string_equal(out, "%zz%4");
    assert_true(identity_query_param("/x?id=%41%4", "id", out, sizeof(out)));
    assert_string_equal(out, "A%4");
    /* too long for out */
    assert_false(identity_query_param("/x?id=0123456789", "id", out, 10));
    assert_true(identity_query_param("/x?id=012345678", "id", out, 10));
    assert_string_equal(out, "012345678");
    /* the first occurrence wins */
    assert_true(identity_query_param("/x?id=1&id=2", "id", out, sizeof(out)));
    assert_string_equal(out, "1");
}

static void test_body_fields(void **state)
{
    (void)state;
    char out[64];
    /* JSON, with whitespace first */
    const char *j = " \n\t{\"username\":\"alice\",\"id\":\"r-1\",\"n\":5}";
    assert_true(identity_body_field(j, strlen(j), "id", out, sizeof(out)));
    assert_string_equal(out, "r-1");
    assert_false(identity_body_field(j, strlen(j), "n", out, sizeof(out)));      /* not a string */
    assert_false(identity_body_field(j, strlen(j), "ID", out, sizeof(out)));     /* case-sensitive */
    assert_false(identity_body_field(j, strlen(j), "missing", out, sizeof(out)));
    const char *je = "{\"id\":\"\"}";
    assert_false(identity_body_field(je, strlen(je), "id", out, sizeof(out)));
    const char *ja = "[{\"id\":\"x\"}]";
    assert_false(identity_body_field(ja, strlen(ja), "id", out, sizeof(out)));
    const char *jb = "{\"id\":\"x\"";                                           /* broken */
    assert_false(identity_body_field(jb, strlen(jb), "id", out, sizeof(out)));
    /* JSON escapes are decoded */
    const char *jx = "{\"id\":\"a\\u0041\\/b\"}";
    assert_true(identity_body_field(jx, strlen(jx), "id", out, sizeof(out)));
    assert_string_equal(out, "aA/b");
    /* form, percent-encoded */
    const char *f = "username=alice&password=p%26w&id=r%2D2";
    assert_true(identity_body_field(f, strlen(f), "id", out, sizeof(out)));
    assert_string_equal(out, "r-2");
    assert_true(identity_body_field(f, strlen(f), "password", out, sizeof(out)));
    assert_string_equal(out, "p&w");
    /* only len bytes are read (bodies are not NUL-terminated) */
    char buf[] = "{\"id\":\"r-3\"}garbage";
    assert_true(identity_body_field(buf, 12, "id", out, sizeof(out)));
    assert_string_equal(out, "r-3");
    char fb[] = "id=r-4&id2=zzzz";
    assert_true(identity_body_field(fb, 6, "id", out, sizeof(out)));
    assert_string_equal(out, "r-4");
    assert_false(identity_body_field(fb, 2, "id", out, sizeof(out)));
    /* nothing */
    assert_false(identity_body_field(NULL, 0, "id", out, sizeof(out)));
    assert_false(identity_body_field("", 0, "id", out, sizeof(out)));
    assert_false(identity_body_field("   ", 3, "id", out, sizeof(out)));
    /* too long for out */
    const char *jl = "{\"id\":\"0123456789\"}";
    assert_false(identity_body_field(jl, strlen(jl), "id", out, 10));
}

static void test_oidc_request_id(void **state)
{
    (void)state;
    char out[64];
    const char *body = "{\"id\":\"from-body\",\"authRequestID\":\"from-body-2\"}";
    /* query authRequestID first, then query id, then the body */
    assert_true(identity_oidc_request_id("/oidc/login/password?authRequestID=q1&id=q2", body, strlen(body),
                                         out, sizeof(out)));
    assert_string_equal(out, "q1");
    assert_true(identity_oidc_request_id("/oidc/authorize/callback?id=q2", body, strlen(body), out,
                                         sizeof(out)));
    assert_string_equal(out, "q2");
    assert_true(identity_oidc_request_id("/oidc/login/password", body, strlen(body), out, sizeof(out)));
    assert_string_equal(out, "from-body");
    const char *b2 = "{\"authRequestID\":\"only\"}";
    assert_true(identity_oidc_request_id("/oidc/login/totp", b2, strlen(b2), out, sizeof(out)));
    assert_string_equal(out, "only");
    const char *form = "username=a&password=b&id=form-id";
    assert_true(identity_oidc_request_id("/oidc/login/password", form, strlen(form), out, sizeof(out)));
    assert_string_equal(out, "form-id");
    assert_false(identity_oidc_request_id("/oidc/login/password", NULL, 0, out, sizeof(out)));
    assert_false(identity_oidc_request_id("/oidc/login/password?x=1", "{}", 2, out, sizeof(out)));
}

static void test_oidc_code(void **state)
{
    (void)state;
    char out[64];
    const char *f = "grant_type=authorization_code&code=c%2Dde_1&code_verifier=v&client_id=openziti";
    assert_true(identity_oidc_code(f, strlen(f), out, sizeof(out)));
    assert_string_equal(out, "c-de_1");
    const char *j = "{\"grant_type\":\"authorization_code\",\"code\":\"jc\"}";
    assert_true(identity_oidc_code(j, strlen(j), out, sizeof(out)));
    assert_string_equal(out, "jc");
    /* a refresh has no code to follow, even if it carries one */
    const char *r = "grant_type=refresh_token&refresh_token=x&code=c";
    assert_false(identity_oidc_code(r, strlen(r), out, sizeof(out)));
    const char *n = "code=c";
    assert_false(identity_oidc_code(n, strlen(n), out, sizeof(out)));
    const char *g = "grant_type=authorization_code_x&code=c";
    assert_false(identity_oidc_code(g, strlen(g), out, sizeof(out)));
    const char *nc = "grant_type=authorization_code&code=";
    assert_false(identity_oidc_code(nc, strlen(nc), out, sizeof(out)));
}

static void test_location(void **state)
{
    (void)state;
    char out[128];
    const char *cb = "http://127.0.0.1:20202/auth/callback?code=AbC-_9&state=s1";
    assert_true(identity_location_param(cb, "code", out, sizeof(out)));
    assert_string_equal(out, "AbC-_9");
    assert_true(identity_location_param("/oidc/login/username?authRequestID=e0f1-2", "authRequestID", out,
                                        sizeof(out)));
    assert_string_equal(out, "e0f1-2");
    assert_true(identity_location_param("https://ctrl:1280/oidc/authorize/callback?id=a%3Ab", "id", out,
                                        sizeof(out)));
    assert_string_equal(out, "a:b");
    assert_false(identity_location_param("openziti://auth/callback?error=server_error", "code", out,
                                         sizeof(out)));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authorization),
        cmocka_unit_test(test_credentials_check),
        cmocka_unit_test(test_session_header),
        cmocka_unit_test(test_query_params),
        cmocka_unit_test(test_body_fields),
        cmocka_unit_test(test_oidc_request_id),
        cmocka_unit_test(test_oidc_code),
        cmocka_unit_test(test_location),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
