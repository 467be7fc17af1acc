/* test_rewrite.c - keeping clients on the proxy: origins replaced by the
 * public URL, /controllers and /version bodies (only the URLs change),
 * bodies of other shapes left alone, and rewrite_response on a whole
 * answer: Location headers that point at a controller (by its address,
 * by the server name sent to it, with the default port left out, in any
 * letter case, IPv6) and the ones that do not, ziti-ctrl-address. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config_fixture.h"
#include "base/buf.h"
#include "io/headers.h"
#include "base/json.h"
#include "routing/classify.h"
#include "routing/rewrite.h"

static const char *PUB = "https://ziti.example.com:8443";

static void test_origin(void **state)
{
    (void)state;
    char *s = rewrite_origin("https://10.0.0.1:1280/edge/client/v1", PUB);
    assert_string_equal(s, "https://ziti.example.com:8443/edge/client/v1");
    free(s);
    s = rewrite_origin("https://10.0.0.1:1280", PUB);
    assert_string_equal(s, PUB);
    free(s);
    s = rewrite_origin("https://[::1]:1280/oidc?x=1#f", "http://proxy:80/");
    assert_string_equal(s, "http://proxy:80/oidc?x=1#f");
    free(s);
    s = rewrite_origin("https://h:1?q", "http://p///");
    assert_string_equal(s, "http://p?q");
    free(s);
    assert_null(rewrite_origin("/edge/client/v1", PUB));
    assert_null(rewrite_origin("", PUB));
}

static const char *CONTROLLERS =
    "{\"data\":[{\"id\":\"c1\",\"name\":\"c1\",\"apiAddresses\":{"
    "\"edge-client\":[{\"url\":\"https://10.0.0.1:1280/edge/client/v1\",\"version\":\"v1\"}],"
    "\"edge-oidc\":[{\"url\":\"https://10.0.0.1:1280/oidc\",\"version\":\"v1\"}]},"
    "\"certPem\":\"-----BEGIN-----\",\"isOnline\":true},"
    "{\"id\":\"c2\",\"apiAddresses\":{\"edge-client\":["
    "{\"url\":\"https://10.0.0.2:1280/edge/client/v1\",\"version\":\"v1\"},"
    "{\"url\":\"https://c2.internal:1280/edge/client/v1\",\"version\":\"v1\"}]},"
    "\"isOnline\":false},"
    "{\"id\":\"c3\",\"apiAddresses\":{}}],"
    "\"meta\":{\"pagination\":{\"limit\":10,\"offset\":0,\"totalCount\":3}}}";

static void test_controllers_body(void **state)
{
    (void)state;
    size_t n = 0;
    char *out = rewrite_controllers_body(CONTROLLERS, strlen(CONTROLLERS), PUB, &n);
    assert_non_null(out);
    assert_int_equal(n, strlen(out));
    assert_null(strstr(out, "10.0.0."));
    assert_null(strstr(out, "c2.internal"));
    struct json *j = json_parse(out, n);
    assert_non_null(json_path(j, "meta.pagination.totalCount"));  /* meta kept */
    struct json *d = json_get(j, "data");
    struct json *c1 = json_first(d);
    assert_string_equal(json_string(json_get(json_first(json_get(json_get(c1, "apiAddresses"), "edge-client")),
                                             "url")),
                        "https://ziti.example.com:8443/edge/client/v1");
    assert_string_equal(json_string(json_get(json_first(json_get(json_get(c1, "apiAddresses"), "edge-oidc")),
                                             "url")),
                        "https://ziti.example.com:8443/oidc");
    /* everything else as it was */
    assert_string_equal(json_string(json_get(c1, "certPem")), "-----BEGIN-----");
    assert_string_equal(json_string(json_get(json_first(json_get(json_get(c1, "apiAddresses"), "edge-client")),
                                             "version")),
                        "v1");
    struct json *c2 = json_next(c1);
    struct json *l2 = json_get(json_get(c2, "apiAddresses"), "edge-client");
    assert_string_equal(json_string(json_get(json_next(json_first(l2)), "url")),
                        "https://ziti.example.com:8443/edge/client/v1");
    json_free(j);
    free(out);
    /* other shapes: not ours to touch */
    const char *errbody = "{\"error\":{\"code\":\"UNAUTHORIZED\"},\"meta\":{}}";
    assert_null(rewrite_controllers_body(errbody, strlen(errbody), PUB, &n));
    assert_null(rewrite_controllers_body("not json", 8, PUB, &n));
    assert_null(rewrite_controllers_body("{\"data\":{}}", 11, PUB, &n));
}

static const char *VERSION =
    "{\"data\":{\"apiVersions\":{"
    "\"edge\":{\"v1\":{\"apiBaseUrls\":[\"https://10.0.0.1:1280/edge/client/v1\"],\"path\":\"/edge/client/v1\"}},"
    "\"edge-client\":{\"v1\":{\"apiBaseUrls\":[\"https://10.0.0.1:1280/edge/client/v1\"],"
    "\"path\":\"/edge/client/v1\"}},"
    "\"edge-oidc\":{\"v1\":{\"apiBaseUrls\":[],\"path\":\"/oidc\"}},"
    "\"health-checks\":{\"v1\":{\"apiBaseUrls\":[\"https://10.0.0.1:1280\"],\"path\":\"/health-checks/v1\"}}},"
    "\"capabilities\":[\"OIDC_AUTH\",\"HA_CONTROLLER\"],\"version\":\"v1.5.4\"},\"meta\":{}}";

static void test_version_body(void **state)
{
    (void)state;
    size_t n = 0;
    char *out = rewrite_version_body(VERSION, strlen(VERSION), PUB, &n);
    assert_non_null(out);
    assert_null(strstr(out, "10.0.0.1"));
    struct json *j = json_parse(out, n);
    struct json *ec = json_path(j, "data.apiVersions.edge-client.v1");
    assert_string_equal(json_string(json_first(json_get(ec, "apiBaseUrls"))),
                        "https://ziti.example.com:8443/edge/client/v1");
    assert_string_equal(json_string(json_get(ec, "path")), "/edge/client/v1");   /* a path, not a URL */
    struct json *hc = json_path(j, "data.apiVersions.health-checks.v1");
    assert_string_equal(json_string(json_first(json_get(hc, "apiBaseUrls"))), PUB);
    assert_string_equal(json_path_string(j, "data.version"), "v1.5.4");
    json_free(j);
    free(out);
    assert_null(rewrite_version_body("{\"data\":{}}", 11, PUB, &n));
    assert_null(rewrite_version_body("", 0, PUB, &n));
}

/* ---- rewrite_response -------------------------------------------------- */

struct fx {
    char *dir;
    struct config *cfg;
};

#define YAML_BASE                                                            \
    "listeners:\n"                                                           \
    "  - address: 127.0.0.1:8443\n"                                          \
    "secrets: {hmac_key_file: hmac.key}\n"                                   \
    "gate: {legacy_sessions: unconfirmed}\n"                                \
    "public_url: https://ziti.example.com:8443\n"

/* Run rewrite_response on an answer with the given Location and body. */
static char *answer(struct config *cfg, enum classify_call call, int status,
                    const char *location, const char *body, char **loc_out,
                    bool *had_ctrl_addr)
{
    struct buf resp_body = {0};
    buf_puts(&resp_body, body ? body : "");
    struct http_fields h = {0};
    char *keep;
    http_fields_adds(&h, "Content-Type", "application/json");
    http_fields_adds(&h, "ziti-ctrl-address", "https://10.0.0.1:1280");
    if (location)
        http_fields_adds(&h, "Location", location);
    rewrite_response(cfg, call, status, &resp_body, &h, &keep);
    *had_ctrl_addr = http_fields_get(&h, "ziti-ctrl-address") != NULL;
    const struct http_field *l = http_fields_get(&h, "Location");
    *loc_out = l ? xstrndup(l->value, l->value_len) : NULL;
    assert_non_null(http_fields_get(&h, "Content-Type"));
    http_fields_free(&h);
    free(keep);
    size_t n;
    char *b = buf_steal(&resp_body, &n);
    return b;
}

static char *loc(struct config *cfg, const char *location)
{
    char *out;
    bool ca;
    free(answer(cfg, CALL_OIDC_LOGIN, 302, location, "", &out, &ca));
    assert_false(ca);
    return out;
}

#define ASSERT_LOC(cfg, in, want)                                            \
    do {                                                                     \
        char *got_ = loc(cfg, in);                                           \
        assert_string_equal(got_, want);                                     \
        free(got_);                                                          \
    } while (0)

static void test_location_by_address(void **state)
{
    (void)state;
    char *dir = fixture_make();
    struct config *cfg = fixture_load(dir, YAML_BASE
                              "controllers:\n"
                              "  - {id: c1, url: \"https://10.0.0.1:1280\"}\n"
                              "  - {id: c2, url: \"https://Ctrl2.Example:1280\"}\n"
                              "  - {id: c3, url: \"https://[fd00::3]:1280\"}\n");
    ASSERT_LOC(cfg, "https://10.0.0.1:1280/oidc/authorize/callback?id=r1",
               "https://ziti.example.com:8443/oidc/authorize/callback?id=r1");
    ASSERT_LOC(cfg, "https://ctrl2.example:1280/oidc/authorize/callback?id=r2",
               "https://ziti.example.com:8443/oidc/authorize/callback?id=r2");
    ASSERT_LOC(cfg, "https://[fd00::3]:1280/x", "https://ziti.example.com:8443/x");
    /* not a controller: the client's own redirect, another port, relative */
    ASSERT_LOC(cfg, "http://127.0.0.1:20202/auth/callback?code=c&state=s",
               "http://127.0.0.1:20202/auth/callback?code=c&state=s");
    ASSERT_LOC(cfg, "https://10.0.0.1:9999/oidc", "https://10.0.0.1:9999/oidc");
    ASSERT_LOC(cfg, "https://10.0.0.10:1280/oidc", "https://10.0.0.10:1280/oidc");
    ASSERT_LOC(cfg, "/oidc/login/username?authRequestID=r", "/oidc/login/username?authRequestID=r");
    ASSERT_LOC(cfg, "openziti://auth/callback?code=c", "openziti://auth/callback?code=c");
    config_unref(cfg);
    fixture_remove(dir);
}

/* Controllers behind one name (upstream.server_name: the Host the
 * controllers see, so the one their absolute redirects carry), and
 * controllers on the scheme's default port, which the Host header and so
 * the redirect leave out. */
static void test_location_by_server_name_and_default_port(void **state)
{
    (void)state;
    char *dir = fixture_make();
    struct config *cfg = fixture_load(dir, YAML_BASE
                              "upstream: {tls: {server_name: ctrl.ziti.internal}}\n"
                              "controllers:\n"
                              "  - {id: c1, url: \"https://10.0.0.1:1280\"}\n"
                              "  - {id: c2, url: \"https://10.0.0.2\"}\n"
                              "  - {id: c3, url: \"http://10.0.0.3\"}\n");
    ASSERT_LOC(cfg, "https://ctrl.ziti.internal:1280/oidc/authorize/callback?id=r",
               "https://ziti.example.com:8443/oidc/authorize/callback?id=r");
    ASSERT_LOC(cfg, "https://ctrl.ziti.internal/oidc/authorize/callback?id=r",
               "https://ziti.example.com:8443/oidc/authorize/callback?id=r");
    ASSERT_LOC(cfg, "https://ctrl.ziti.internal:443/oidc", "https://ziti.example.com:8443/oidc");
    ASSERT_LOC(cfg, "https://10.0.0.2/oidc", "https://ziti.example.com:8443/oidc");
    ASSERT_LOC(cfg, "http://10.0.0.3/oidc", "https://ziti.example.com:8443/oidc");
    ASSERT_LOC(cfg, "http://10.0.0.3:80/oidc", "https://ziti.example.com:8443/oidc");
    /* the default port of the other scheme is another port */
    ASSERT_LOC(cfg, "http://10.0.0.2/oidc", "http://10.0.0.2/oidc");
    ASSERT_LOC(cfg, "https://ctrl.ziti.internal:8443/oidc", "https://ctrl.ziti.internal:8443/oidc");
    config_unref(cfg);
    fixture_remove(dir);
}

static void test_response_bodies(void **state)
{
    (void)state;
    char *dir = fixture_make();
    struct config *cfg = fixture_load(dir, YAML_BASE
                              "controllers:\n"
                              "  - {id: c1, url: \"https://10.0.0.1:1280\"}\n");
    char *l;
    bool ca;
    char *b = answer(cfg, CALL_CONTROLLERS, 200, NULL, CONTROLLERS, &l, &ca);
    assert_false(ca);
    assert_null(l);
    assert_null(strstr(b, "10.0.0."));
    assert_non_null(strstr(b, "https://ziti.example.com:8443/edge/client/v1"));
    free(b);
    b = answer(cfg, CALL_VERSION, 200, NULL, VERSION, &l, &ca);
    assert_null(strstr(b, "10.0.0.1"));
    free(b);
    /* an error answer, or another call, is passed as it is */
    b = answer(cfg, CALL_CONTROLLERS, 401, NULL, CONTROLLERS, &l, &ca);
    assert_string_equal(b, CONTROLLERS);
    free(b);
    b = answer(cfg, CALL_OTHER, 200, NULL, CONTROLLERS, &l, &ca);
    assert_string_equal(b, CONTROLLERS);
    assert_false(ca);
    free(b);
    config_unref(cfg);
    fixture_remove(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_origin),
        cmocka_unit_test(test_controllers_body),
        cmocka_unit_test(test_version_body),
        cmocka_unit_test(test_location_by_address),
        cmocka_unit_test(test_location_by_server_name_and_default_port),
        cmocka_unit_test(test_response_bodies),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
