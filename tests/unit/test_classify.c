/* test_classify.c - route classes from the built-in OpenZiti table (each
 * row, the row that matched, first match wins), tables from the
 * configuration (path, methods, header rows; no row matching), path
 * normalisation (percent-encoded unreserved characters, repeated
 * slashes, dot segments and a trailing slash), and the OpenZiti calls that
 * need special handling. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config_fixture.h"
#include "io/listener.h"
#include "routing/classify.h"

#define MIN_YAML                                                             \
    "listeners:\n"                                                           \
    "  - address: 127.0.0.1:8080\n"                                          \
    "controllers:\n"                                                         \
    "  - {id: c1, url: \"http://127.0.0.1:1280\"}\n"                         \
    "secrets: {hmac_key_file: hmac.key}\n"

struct fx {
    char *dir;
    struct config *builtin;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    f->dir = fixture_make();
    f->builtin = fixture_load(f->dir, MIN_YAML);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    config_unref(f->builtin);
    fixture_remove(f->dir);
    free(f);
    return 0;
}

static struct classify_result cls(const struct config *cfg, enum http_method m, const char *target,
                                  const char *hname, const char *hvalue)
{
    struct listener_header h[2] = {
        {"Accept", 6, "*/*", 3},
        {hname ? hname : "X-None", strlen(hname ? hname : "X-None"), hvalue ? hvalue : "",
         strlen(hvalue ? hvalue : "")},
    };
    struct classify_result r;
    memset(&r, 0xff, sizeof(r));
    classify_request(&cfg->routing, m, target, strcspn(target, "?"), h, 2, &r);
    return r;
}

#define ASSERT_CLS(cfg, m, path, hn, hv, want_cls, want_call)                \
    do {                                                                     \
        struct classify_result r_ = cls(cfg, m, path, hn, hv);               \
        if (r_.cls != (want_cls) || r_.call != (want_call))                  \
            fprintf(stderr, "%s %s -> class %s call %s\n",                   \
                    http_method_name(m), path,                               \
                    config_route_class_name(r_.cls),                         \
                    classify_call_name(r_.call));                            \
        assert_int_equal(r_.cls, want_cls);                                  \
        assert_int_equal(r_.call, want_call);                                \
    } while (0)

static void test_builtin_table(void **state)
{
    struct fx *f = *state;
    const struct config *c = f->builtin;
    const char *zs = "zt-session", *tok = "0f3c-tok";
    /* the table is data: six rows, OpenZiti's */
    assert_int_equal(c->routing.n_routes, 6);
    /* MFA enrollment, both APIs, every method, whatever else is there */
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/current-identity/mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_READ);
    ASSERT_CLS(c, HTTP_DELETE, "/edge/client/v1/current-identity/mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_DELETE);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/mfa/verify", NULL, NULL, ROUTE_MFA,
               CALL_MFA_VERIFY);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/current-identity/mfa/qr-code", NULL, NULL, ROUTE_MFA,
               CALL_MFA_READ);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/mfa/recovery-codes", NULL, NULL, ROUTE_MFA,
               CALL_MFA_READ);
    ASSERT_CLS(c, HTTP_POST, "/edge/management/v1/current-identity/mfa/verify?x=1", NULL, NULL, ROUTE_MFA,
               CALL_MFA_VERIFY);
    ASSERT_CLS(c, HTTP_DELETE, "/edge/management/v1/current-identity/mfa", NULL, NULL, ROUTE_MFA,
               CALL_MFA_DELETE);
    /* ... also with a legacy session (precedence is routing's business) */
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/mfa", zs, tok, ROUTE_MFA, CALL_MFA_CREATE);
    /* OIDC */
    ASSERT_CLS(c, HTTP_GET, "/oidc/authorize?client_id=openziti", NULL, NULL, ROUTE_OIDC, CALL_OIDC_AUTHORIZE);
    ASSERT_CLS(c, HTTP_GET, "/oidc/login/username?authRequestID=x", NULL, NULL, ROUTE_OIDC, CALL_OIDC_LOGIN);
    ASSERT_CLS(c, HTTP_POST, "/oidc/login/password", NULL, NULL, ROUTE_OIDC, CALL_OIDC_LOGIN);
    ASSERT_CLS(c, HTTP_POST, "/oidc/login/totp", NULL, NULL, ROUTE_OIDC, CALL_OIDC_LOGIN);
    ASSERT_CLS(c, HTTP_GET, "/oidc/authorize/callback?id=x", NULL, NULL, ROUTE_OIDC, CALL_OIDC_LOGIN);
    ASSERT_CLS(c, HTTP_POST, "/oidc/oauth/token", NULL, NULL, ROUTE_OIDC, CALL_OIDC_TOKEN);
    ASSERT_CLS(c, HTTP_POST, "/oidc/oauth/token", zs, tok, ROUTE_OIDC, CALL_OIDC_TOKEN);
    /* legacy sessions: the header, whatever the method */
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/services", zs, tok, ROUTE_SESSION, CALL_OTHER);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/sessions", "ZT-SESSION", tok, ROUTE_SESSION, CALL_OTHER);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/authenticate/mfa", zs, tok, ROUTE_SESSION, CALL_OTHER);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/controllers", zs, tok, ROUTE_SESSION, CALL_CONTROLLERS);
    /* writes */
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/authenticate?method=password", NULL, NULL, ROUTE_WRITE,
               CALL_AUTHENTICATE);
    ASSERT_CLS(c, HTTP_PUT, "/edge/management/v1/services/x", NULL, NULL, ROUTE_WRITE, CALL_OTHER);
    ASSERT_CLS(c, HTTP_PATCH, "/edge/management/v1/services/x", NULL, NULL, ROUTE_WRITE, CALL_OTHER);
    ASSERT_CLS(c, HTTP_DELETE, "/edge/management/v1/identities/x/mfa", NULL, NULL, ROUTE_WRITE, CALL_OTHER);
    /* reads */
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/services", NULL, NULL, ROUTE_READ, CALL_OTHER);
    ASSERT_CLS(c, HTTP_HEAD, "/edge/client/v1/services", NULL, NULL, ROUTE_READ, CALL_OTHER);
    ASSERT_CLS(c, HTTP_OPTIONS, "/edge/client/v1/services", NULL, NULL, ROUTE_READ, CALL_OTHER);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/controllers", NULL, NULL, ROUTE_READ, CALL_CONTROLLERS);
    ASSERT_CLS(c, HTTP_GET, "/edge/management/v1/controllers", NULL, NULL, ROUTE_READ, CALL_CONTROLLERS);
    ASSERT_CLS(c, HTTP_GET, "/version", NULL, NULL, ROUTE_READ, CALL_VERSION);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/version", NULL, NULL, ROUTE_READ, CALL_VERSION);
    ASSERT_CLS(c, HTTP_GET, "/edge/management/v1/version", NULL, NULL, ROUTE_READ, CALL_VERSION);
    ASSERT_CLS(c, HTTP_GET, "/health-checks/controller/raft", NULL, NULL, ROUTE_READ, CALL_OTHER);
    /* near misses */
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/current-identity", NULL, NULL, ROUTE_READ, CALL_OTHER);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v2/current-identity/mfa", NULL, NULL, ROUTE_READ, CALL_OTHER);
    ASSERT_CLS(c, HTTP_GET, "/oidcx/authorize", NULL, NULL, ROUTE_READ, CALL_OTHER);
    ASSERT_CLS(c, HTTP_POST, "/edge/management/v1/authenticate", NULL, NULL, ROUTE_WRITE, CALL_OTHER);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/authenticate", NULL, NULL, ROUTE_READ, CALL_OTHER);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/controllers", NULL, NULL, ROUTE_WRITE, CALL_OTHER);
    /* which row matched */
    assert_int_equal(cls(c, HTTP_GET, "/edge/management/v1/current-identity/mfa", NULL, NULL).row, 1);
    assert_int_equal(cls(c, HTTP_GET, "/oidc/x", NULL, NULL).row, 2);
    assert_int_equal(cls(c, HTTP_GET, "/x", zs, tok).row, 3);
    assert_int_equal(cls(c, HTTP_DELETE, "/x", NULL, NULL).row, 4);
    assert_int_equal(cls(c, HTTP_GET, "/x", NULL, NULL).row, 5);
}

static void test_normalised_paths(void **state)
{
    struct fx *f = *state;
    const struct config *c = f->builtin;
    /* what the controller treats as the same path is classified the same */
    ASSERT_CLS(c, HTTP_POST, "//edge/client/v1//current-identity/mfa/verify", NULL, NULL, ROUTE_MFA,
               CALL_MFA_VERIFY);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/%6dfa/%76erify", NULL, NULL, ROUTE_MFA,
               CALL_MFA_VERIFY);
    ASSERT_CLS(c, HTTP_GET, "/%6Fidc/authorize", NULL, NULL, ROUTE_OIDC, CALL_OIDC_AUTHORIZE);
    /* every escape is decoded (Go's URL.Path): a spelling the controller
     * may 404 is classified MFA rather than one it serves being missed */
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/current-identity%2Fmfa", NULL, NULL, ROUTE_MFA, CALL_MFA_READ);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity%2Fmfa%2fverify", NULL, NULL, ROUTE_MFA,
               CALL_MFA_VERIFY);
    char out[64];
    assert_int_equal(classify_normalise("//a/%7e%41%2f%zz%4%00", 21, out, sizeof(out)), 14);
    assert_string_equal(out, "/a/~A/%zz%4%00");
    /* bounded */
    assert_int_equal(classify_normalise("/abcdefgh", 9, out, 5), 4);
    assert_string_equal(out, "/abc");
    assert_int_equal(classify_normalise("", 0, out, sizeof(out)), 0);
    assert_string_equal(out, "");
}

/* The controller's router matches routes on path.Clean(path) (go-openapi
 * runtime, middleware/router.go): dot segments and a trailing slash are
 * cleaned away, so these spellings reach the MFA handlers and must keep
 * their class and call (else no leader pinning, reconciliation or gate). */
static void test_paths_cleaned_like_the_controller(void **state)
{
    struct fx *f = *state;
    const struct config *c = f->builtin;
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/current-identity/./mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_READ);
    ASSERT_CLS(c, HTTP_DELETE, "/edge/client/v1/x/../current-identity/mfa", NULL, NULL, ROUTE_MFA,
               CALL_MFA_DELETE);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/mfa/", NULL, NULL, ROUTE_MFA, CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/mfa/verify/", NULL, NULL, ROUTE_MFA,
               CALL_MFA_VERIFY);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/%2e/mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/./controllers/", NULL, NULL, ROUTE_READ, CALL_CONTROLLERS);
    char out[64];
    static const char *const cases[][2] = {
        {"/a/./b/../c//d/", "/a/c/d"},
        {"/../../edge", "/edge"},
        {"/a/...", "/a/..."},
        {"/a/.b/..c", "/a/.b/..c"},
        {"/.", "/"},
        {"/", "/"},
        {"a/./b/", "a/b"},
        {"a/../../b", "../b"},
        {".", "."},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t n = classify_normalise(cases[i][0], strlen(cases[i][0]), out,
                                      sizeof(out));
        assert_string_equal(out, cases[i][1]);
        assert_int_equal(n, strlen(cases[i][1]));
    }
}

/* The client API is the controller's default handler: without a prefix
 * and under /edge/v1 a path is served as /edge/client/v1's (webapis/
 * client-api.go newHandler); the OIDC login's TOTP enrollment writes are
 * flagged; paths of any length are classified whole. */
static void test_every_spelling_of_an_mfa_write(void **state)
{
    struct fx *f = *state;
    const struct config *c = f->builtin;
    ASSERT_CLS(c, HTTP_POST, "/current-identity/mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_POST, "/current-identity/mfa/verify", NULL, NULL, ROUTE_MFA, CALL_MFA_VERIFY);
    ASSERT_CLS(c, HTTP_DELETE, "/current-identity/mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_DELETE);
    ASSERT_CLS(c, HTTP_POST, "/edge/v1/current-identity/mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_POST, "/edge/v1/current-identity/mfa/verify", NULL, NULL, ROUTE_MFA, CALL_MFA_VERIFY);
    ASSERT_CLS(c, HTTP_POST, "/x/../current-identity/mfa", NULL, NULL, ROUTE_MFA, CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_POST, "/%63urrent-identity/%6D%66%61", NULL, NULL, ROUTE_MFA, CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_POST, "/edge/v1/x/../../v1/current-identity/mfa", NULL, NULL, ROUTE_MFA,
               CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_POST, "/authenticate?method=password", NULL, NULL, ROUTE_WRITE, CALL_AUTHENTICATE);
    /* other APIs keep their paths */
    ASSERT_CLS(c, HTTP_GET, "/oidc/authorize", NULL, NULL, ROUTE_OIDC, CALL_OIDC_AUTHORIZE);
    ASSERT_CLS(c, HTTP_GET, "/version", NULL, NULL, ROUTE_READ, CALL_VERSION);
    ASSERT_CLS(c, HTTP_GET, "/fabric/v1/cluster/list-members", NULL, NULL, ROUTE_READ, CALL_OTHER);
    /* the OIDC login's TOTP enrollment: the login's controller, flagged */
    static const struct { enum http_method m; const char *p; enum classify_call w; } totp[] = {
        {HTTP_POST, "/oidc/login/totp/enroll", CALL_MFA_CREATE},
        {HTTP_POST, "/oidc/login/totp/enroll/verify", CALL_MFA_VERIFY},
        {HTTP_DELETE, "/oidc/login/totp/enroll", CALL_MFA_DELETE},
        {HTTP_POST, "/oidc/login/./totp//enroll/", CALL_MFA_CREATE},
        {HTTP_POST, "/oidc/login/totp", CALL_OTHER},
        {HTTP_GET, "/oidc/login/totp/enroll", CALL_OTHER},
    };
    for (size_t i = 0; i < sizeof(totp) / sizeof(totp[0]); i++) {
        struct classify_result r = cls(c, totp[i].m, totp[i].p, NULL, NULL);
        assert_int_equal(r.cls, ROUTE_OIDC);
        assert_int_equal(r.call, CALL_OIDC_LOGIN);
        assert_int_equal(r.totp_write, totp[i].w);
    }
    /* dot segments of any length: nothing is cut at a buffer's end */
    size_t n = 20000;
    char *p = xmalloc(n + 64);
    size_t o = 0;
    while (o + 5 < n) {
        memcpy(p + o, "/a/..", 5);
        o += 5;
    }
    strcpy(p + o, "/edge/client/v1/current-identity/mfa/verify");
    ASSERT_CLS(c, HTTP_POST, p, NULL, NULL, ROUTE_MFA, CALL_MFA_VERIFY);
    o = 0;
    while (o + 3 < n) {
        memcpy(p + o, "/%2e", 4); /* "/." encoded, many times */
        o += 4;
    }
    strcpy(p + o, "/current-identity/mfa");
    ASSERT_CLS(c, HTTP_DELETE, p, NULL, NULL, ROUTE_MFA, CALL_MFA_DELETE);
    free(p);
}

/* A table from the configuration replaces the built-in one entirely. */
static void test_table_from_configuration(void **state)
{
    struct fx *f = *state;
    struct config *c = fixture_load(f->dir, MIN_YAML
        "routing:\n"
        "  classes:\n"
        "    - {path: /edge/client/v1/services, class: mfa}\n"
        "    - {header: X-Pin, methods: [GET], class: mfa}\n"
        "    - {path: /edge/management/, methods: [POST, DELETE], class: session}\n"
        "    - {path: /oidc/, class: oidc}\n");
    assert_int_equal(c->routing.n_routes, 4);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/services?limit=1", NULL, NULL, ROUTE_MFA, CALL_OTHER);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/services/abc", NULL, NULL, ROUTE_MFA, CALL_OTHER);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/identities", "x-pin", "1", ROUTE_MFA, CALL_OTHER);
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/identities", "X-Pin", "1", ROUTE_WRITE, CALL_OTHER);
    ASSERT_CLS(c, HTTP_DELETE, "/edge/management/v1/x", NULL, NULL, ROUTE_SESSION, CALL_OTHER);
    ASSERT_CLS(c, HTTP_GET, "/edge/management/v1/x", NULL, NULL, ROUTE_READ, CALL_OTHER);
    /* the built-in rows are gone: nothing matches, the method decides */
    ASSERT_CLS(c, HTTP_POST, "/edge/client/v1/current-identity/mfa", NULL, NULL, ROUTE_WRITE, CALL_MFA_CREATE);
    ASSERT_CLS(c, HTTP_GET, "/edge/client/v1/current-identity/mfa", NULL, NULL, ROUTE_READ, CALL_MFA_READ);
    ASSERT_CLS(c, HTTP_GET, "/x", "zt-session", "t", ROUTE_READ, CALL_OTHER);
    assert_int_equal(cls(c, HTTP_GET, "/x", NULL, NULL).row, -1);
    assert_int_equal(cls(c, HTTP_GET, "/oidc/authorize", NULL, NULL).row, 3);
    config_unref(c);

    /* first match wins: a catch-all first hides the rest (and is reported) */
    struct config_errors errs = {0};
    struct config *bad = config_load_string_dir("q.yaml", MIN_YAML
        "routing:\n"
        "  classes:\n"
        "    - {class: read}\n"
        "    - {path: /oidc/, class: oidc}\n", f->dir, &errs);
    assert_null(bad);
    assert_true(errs.n >= 1);
    config_errors_free(&errs);

    /* order matters */
    c = fixture_load(f->dir, MIN_YAML
        "routing:\n"
        "  classes:\n"
        "    - {path: /oidc/login/, class: write}\n"
        "    - {path: /oidc/, class: oidc}\n");
    ASSERT_CLS(c, HTTP_GET, "/oidc/login/username", NULL, NULL, ROUTE_WRITE, CALL_OIDC_LOGIN);
    ASSERT_CLS(c, HTTP_GET, "/oidc/authorize", NULL, NULL, ROUTE_OIDC, CALL_OIDC_AUTHORIZE);
    config_unref(c);
}

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(classify_call_name(CALL_MFA_VERIFY), "mfa_verify");
    assert_string_equal(classify_call_name(CALL_OIDC_LOGIN), "oidc_login");
    assert_string_equal(classify_call_name((enum classify_call)99), "other");
    assert_true(classify_is_mfa_write(CALL_MFA_CREATE));
    assert_true(classify_is_mfa_write(CALL_MFA_VERIFY));
    assert_true(classify_is_mfa_write(CALL_MFA_DELETE));
    assert_false(classify_is_mfa_write(CALL_MFA_READ));
    assert_false(classify_is_mfa_write(CALL_AUTHENTICATE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_builtin_table),
        cmocka_unit_test(test_normalised_paths),
        cmocka_unit_test(test_every_spelling_of_an_mfa_write),
        cmocka_unit_test(test_paths_cleaned_like_the_controller),
        cmocka_unit_test(test_table_from_configuration),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
