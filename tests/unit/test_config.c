/* test_config.c - loading valid configurations: the documented example
 * (as shipped and with every optional key enabled), the defaults, derived
 * values, relative paths, secrets, routing and retry tables, the
 * restart-only diff and reference counting.  Error messages are in
 * test_config_errors.c, the corpus in test_config_corpus.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config_fixture.h"
#include "base/buf.h"
#include "config/config.h"
#include "base/http.h"

/* 5 lines: the smallest valid file (fixture directory as base). */
#define MIN_YAML                                                             \
    "listeners:\n"                                                           \
    "  - address: 127.0.0.1:8080\n"                                          \
    "controllers:\n"                                                         \
    "  - {id: c1, url: \"http://127.0.0.1:1280\"}\n"                         \
    "secrets: {hmac_key_file: hmac.key}\n"

static struct config *load_ok(const char *dir, const char *yaml)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_string_dir("q.yaml", yaml, dir, &errs);
    if (!cfg)
        fixture_dump(&errs);
    assert_non_null(cfg);
    assert_int_equal(errs.n, 0);
    assert_null(errs.items);
    return cfg;
}

/* Replace the one occurrence of from in *text (it must be there). */
static void replace_once(char **text, const char *from, const char *to)
{
    char *at = strstr(*text, from);
    if (!at)
        fprintf(stderr, "example no longer contains: %s\n", from);
    assert_non_null(at);
    struct buf b = {0};
    buf_append(&b, *text, (size_t)(at - *text));
    buf_puts(&b, to);
    buf_puts(&b, at + strlen(from));
    free(*text);
    *text = buf_steal(&b, NULL);
}

static void replace_all(char **text, const char *from, const char *to)
{
    struct buf b = {0};
    const char *s = *text, *at;
    while ((at = strstr(s, from))) {
        buf_append(&b, s, (size_t)(at - s));
        buf_puts(&b, to);
        s = at + strlen(from);
    }
    buf_puts(&b, s);
    free(*text);
    *text = buf_steal(&b, NULL);
}

static char *read_example(const char *dir)
{
    const char *src = getenv("QG_SOURCE_DIR");
    assert_non_null(src);
    char *path = xasprintf("%s/examples/quorumgate.yaml", src);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct buf b = {0};
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        buf_append(&b, chunk, n);
    fclose(f);
    free(path);
    char *text = buf_steal(&b, NULL);
    char *to = xasprintf("%s/", dir);
    replace_all(&text, "/etc/quorumgate/", to);
    free(to);
    return text;
}

/* Write text as dir/name and load it with config_load. */
static struct config *load_file(const char *dir, const char *name,
                                const char *text)
{
    fixture_write(dir, name, text);
    char *path = xasprintf("%s/%s", dir, name);
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    if (!cfg)
        fixture_dump(&errs);
    assert_non_null(cfg);
    assert_int_equal(errs.n, 0);
    assert_string_equal(cfg->path, path);
    free(path);
    return cfg;
}

/* Every value the example spells out that is also the default. */
static void check_documented_values(const struct config *c)
{
    assert_string_equal(c->admin.addr.text, "127.0.0.1:9901");
    assert_string_equal(c->admin.addr.host, "127.0.0.1");
    assert_int_equal(c->admin.addr.port, 9901);
    assert_true(c->upstream.verify);
    assert_int_equal(c->upstream.connect_timeout_ms, 2000);
    assert_int_equal(c->upstream.idle_timeout_ms, 60000);
    assert_int_equal(c->upstream.max_connections, 64);
    assert_true(c->upstream.batch_sends);
    assert_string_equal(c->health.path, "/health-checks/controller/raft");
    assert_int_equal(c->health.interval_ms, 500);
    assert_int_equal(c->health.fast_interval_ms, 100);
    assert_int_equal(c->health.timeout_ms, 1000);
    assert_int_equal(c->health.rise, 2);
    assert_int_equal(c->health.fall, 2);
    assert_int_equal(c->timeouts.client_header_ms, 10000);
    assert_int_equal(c->timeouts.client_body_ms, 30000);
    assert_int_equal(c->timeouts.client_idle_ms, 75000);
    assert_int_equal(c->timeouts.client_send_ms, 60000);
    assert_true(c->limits.max_buffered_bytes == 256ull << 20);
    assert_int_equal(c->timeouts.drain_ms, 15000);
    assert_int_equal(c->limits.max_header_bytes, 16 * 1024);
    assert_int_equal(c->limits.max_headers, 100);
    assert_int_equal(c->limits.max_body_bytes, 1024 * 1024);
    assert_int_equal(c->limits.max_response_bytes, 8 * 1024 * 1024);
    assert_int_equal(c->limits.max_concurrent_requests, 4096);
    assert_int_equal(c->limits.max_connections, 16384);
    assert_string_equal(c->redis.addr.text, "127.0.0.1:6379");
    assert_int_equal(c->redis.addr.port, 6379);
    assert_null(c->redis.addr.unix_path);
    assert_int_equal(c->redis.database, 0);
    assert_string_equal(c->redis.key_prefix, "qg:");
    assert_int_equal(c->redis.connect_timeout_ms, 1000);
    assert_int_equal(c->redis.command_timeout_ms, 1000);
    assert_int_equal(c->hmac_key_len, strlen(FIXTURE_HMAC));
    assert_memory_equal(c->hmac_key, FIXTURE_HMAC, strlen(FIXTURE_HMAC));
    assert_int_equal(c->log.level, CONFIG_LOG_INFO);
    assert_string_equal(c->log.error_log, "stderr");
    assert_string_equal(c->log.access_log, "stdout");
    assert_string_equal(c->headers.request_id, "X-Request-Id");
    assert_true(c->headers.expose_controller);
    assert_int_equal(c->headers.n_trust_forwarded, 0);
    assert_int_equal(c->routing.affinity_ttl_ms, 30 * 60000);
    assert_int_equal(c->routing.leader_wait_ms, 10000);
    /* The built-in table, row by row. */
    const struct config_routing *r = &c->routing;
    assert_int_equal(r->n_routes, 6);
    assert_string_equal(r->routes[0].path_prefix,
                        "/edge/client/v1/current-identity/mfa");
    assert_string_equal(r->routes[1].path_prefix,
                        "/edge/management/v1/current-identity/mfa");
    assert_int_equal(r->routes[0].cls, ROUTE_MFA);
    assert_int_equal(r->routes[1].cls, ROUTE_MFA);
    assert_string_equal(r->routes[2].path_prefix, "/oidc/");
    assert_int_equal(r->routes[2].cls, ROUTE_OIDC);
    assert_string_equal(r->routes[3].path_prefix, "");
    assert_string_equal(r->routes[3].header, "zt-session");
    assert_int_equal(r->routes[3].cls, ROUTE_SESSION);
    assert_int_equal(r->routes[4].methods,
                     HTTP_M(HTTP_POST) | HTTP_M(HTTP_PUT) | HTTP_M(HTTP_PATCH) |
                         HTTP_M(HTTP_DELETE));
    assert_null(r->routes[4].header);
    assert_int_equal(r->routes[4].cls, ROUTE_WRITE);
    assert_string_equal(r->routes[5].path_prefix, "");
    assert_int_equal(r->routes[5].methods, 0);
    assert_null(r->routes[5].header);
    assert_int_equal(r->routes[5].cls, ROUTE_READ);
    for (int i = 0; i < 6; i++)
        if (i != 3)
            assert_null(r->routes[i].header);
    assert_true(r->routes[0].methods == 0 && r->routes[3].methods == 0);
    /* Retry. */
    assert_true(c->retry.budget_ratio == 0.2);
    assert_int_equal(c->retry.budget_min, 3);
    assert_int_equal(c->retry.clock_skew_ms, 5000);
    const uint32_t four = (1u << RETRY_NEVER_SENT) | (1u << RETRY_SENT_FAILED) |
                          (1u << RETRY_NO_LEADER) | (1u << RETRY_TOO_MANY);
    const struct config_retry_policy *p = c->retry.policy;
    assert_int_equal(p[ROUTE_MFA].on, four | (1u << RETRY_AMBIGUOUS));
    assert_int_equal(p[ROUTE_MFA].max_attempts, 6);
    assert_int_equal(p[ROUTE_MFA].per_try_timeout_ms, 6000);
    assert_int_equal(p[ROUTE_MFA].deadline_ms, 10000);
    assert_int_equal(p[ROUTE_MFA].backoff_base_ms, 50);
    assert_int_equal(p[ROUTE_MFA].backoff_cap_ms, 1000);
    assert_true(p[ROUTE_MFA].fresh_connection);
    assert_int_equal(p[ROUTE_OIDC].on, 1u << RETRY_NEVER_SENT);
    assert_int_equal(p[ROUTE_OIDC].max_attempts, 2);
    assert_int_equal(p[ROUTE_OIDC].per_try_timeout_ms, 10000);
    assert_int_equal(p[ROUTE_OIDC].deadline_ms, 15000);
    assert_int_equal(p[ROUTE_OIDC].backoff_base_ms, 25);
    assert_int_equal(p[ROUTE_OIDC].backoff_cap_ms, 250);
    assert_true(p[ROUTE_OIDC].fresh_connection);
    assert_int_equal(p[ROUTE_SESSION].on, four);
    assert_int_equal(p[ROUTE_SESSION].max_attempts, 3);
    assert_int_equal(p[ROUTE_SESSION].per_try_timeout_ms, 10000);
    assert_int_equal(p[ROUTE_SESSION].deadline_ms, 15000);
    assert_int_equal(p[ROUTE_SESSION].backoff_base_ms, 25);
    assert_int_equal(p[ROUTE_SESSION].backoff_cap_ms, 500);
    assert_true(p[ROUTE_SESSION].fresh_connection);
    assert_int_equal(p[ROUTE_WRITE].on, four);
    assert_int_equal(p[ROUTE_WRITE].max_attempts, 4);
    assert_int_equal(p[ROUTE_WRITE].per_try_timeout_ms, 10000);
    assert_int_equal(p[ROUTE_WRITE].deadline_ms, 10000);
    assert_int_equal(p[ROUTE_WRITE].backoff_base_ms, 50);
    assert_int_equal(p[ROUTE_WRITE].backoff_cap_ms, 1000);
    assert_true(p[ROUTE_WRITE].fresh_connection);
    assert_int_equal(p[ROUTE_READ].on, four);
    assert_int_equal(p[ROUTE_READ].max_attempts, 3);
    assert_int_equal(p[ROUTE_READ].per_try_timeout_ms, 10000);
    assert_int_equal(p[ROUTE_READ].deadline_ms, 15000);
    assert_int_equal(p[ROUTE_READ].backoff_base_ms, 25);
    assert_int_equal(p[ROUTE_READ].backoff_cap_ms, 250);
    assert_true(p[ROUTE_READ].fresh_connection);
    /* Gate and relay. */
    assert_true(c->gate.enabled);
    assert_int_equal(c->gate.mode, GATE_HEALTHY);
    assert_int_equal(c->gate.count, 0);
    assert_int_equal(c->gate.timeout_ms, 10000);
    assert_false(c->gate.fail_on_timeout);
    assert_int_equal(c->gate.source, GATE_SRC_PROBE);
    assert_int_equal(c->gate.probe_initial_ms, 2);
    assert_int_equal(c->gate.legacy_sessions, GATE_LEGACY_CONFIRMED);
    assert_int_equal(c->gate.max_held, 10000);
    assert_int_equal(c->gate.max_held_per_identity, 4);
    assert_int_equal(c->gate.probe_max_ms, 250);
    assert_int_equal(c->gate.poll_ms, 500);
    assert_int_equal(c->gate.fence_ttl_ms, 600000);
    assert_int_equal(c->gate.outcome_ttl_ms, 600000);
    assert_int_equal(c->relay.poll_ms, 200);
}

static void test_defaults(void **state)
{
    const char *dir = *state;
    struct config *c = load_ok(dir, MIN_YAML);
    check_documented_values(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_string_equal(c->path, "q.yaml");
    /* Defaults of the keys the example sets to something else. */
    assert_int_equal(c->admin.n_allow, 0);
    assert_null(c->admin.basic_auth_user);
    assert_null(c->admin.basic_auth_password);
    assert_null(c->upstream.ca_file);
    assert_null(c->upstream.cert_file);
    assert_null(c->upstream.key_file);
    assert_null(c->upstream.server_name);
    assert_null(c->redis.username);
    assert_null(c->redis.password);
    assert_null(c->gate.mgmt_username);
    assert_null(c->gate.mgmt_password);
    assert_int_equal(c->relay.n_sources, 0);
    assert_int_equal(c->routing.routes[0].line, 0);
    /* The lists. */
    assert_int_equal(c->n_listeners, 1);
    assert_false(c->listeners[0].tls);
    assert_null(c->listeners[0].tls_cert);
    assert_int_equal(c->listeners[0].line, 2);
    assert_int_equal(c->n_controllers, 1);
    assert_string_equal(c->controllers[0].id, "c1");
    assert_string_equal(c->controllers[0].url, "http://127.0.0.1:1280");
    assert_string_equal(c->controllers[0].scheme, "http");
    assert_string_equal(c->controllers[0].host, "127.0.0.1");
    assert_int_equal(c->controllers[0].port, 1280);
    assert_int_equal(c->controllers[0].line, 4);
    assert_string_equal(c->public_url, "http://127.0.0.1:8080");
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_int_equal(c->workers, cpus > 0 ? (uint32_t)cpus : 1);
    config_unref(c);
}

/* The example's own values (its listeners, controllers...). */
static void check_example_specifics(const struct config *c, const char *dir)
{
    char *p;
    check_documented_values(c);
    assert_string_equal(c->public_url, "https://ziti.example.com:8443");
    assert_int_equal(c->n_listeners, 2);
    assert_string_equal(c->listeners[0].addr.host, "0.0.0.0");
    assert_int_equal(c->listeners[0].addr.port, 8443);
    assert_true(c->listeners[0].tls);
    p = xasprintf("%s/tls/server.pem", dir);
    assert_string_equal(c->listeners[0].tls_cert, p);
    free(p);
    p = xasprintf("%s/tls/server.key", dir);
    assert_string_equal(c->listeners[0].tls_key, p);
    free(p);
    assert_string_equal(c->listeners[1].addr.text, "127.0.0.1:8080");
    assert_false(c->listeners[1].tls);
    assert_int_equal(c->listeners[0].line, 24);
    assert_int_equal(c->listeners[1].line, 31);
    assert_int_equal(c->admin.n_allow, 2);
    assert_int_equal(c->admin.allow[0].prefix, 8);
    assert_int_equal(c->admin.allow[1].prefix, 128);
    assert_int_equal(c->n_controllers, 3);
    assert_string_equal(c->controllers[2].id, "ctrl3");
    assert_string_equal(c->controllers[2].host, "10.0.0.13");
    assert_int_equal(c->controllers[2].port, 1280);
    assert_string_equal(c->controllers[2].scheme, "https");
    assert_int_equal(config_controller_index(c, "ctrl2"), 1);
    p = xasprintf("%s/ctrl-ca.pem", dir);
    assert_string_equal(c->upstream.ca_file, p);
    free(p);
    assert_string_equal(c->upstream.server_name, "ctrl.ziti.example.com");
    assert_true(c->upstream.batch_sends);
    /* The example spells out the built-in classes: lines are its own. */
    assert_int_equal(c->routing.routes[0].line, 152);
    assert_int_equal(c->routing.routes[5].line, 157);
}

static void test_example_as_shipped(void **state)
{
    const char *dir = *state;
    char *text = read_example(dir);
    struct config *c = load_file(dir, "quorumgate.yaml", text);
    check_example_specifics(c, dir);
    assert_null(c->listeners[0].tls_client_ca);
    assert_null(c->admin.basic_auth_user);
    assert_int_equal(c->relay.n_sources, 0);
    assert_string_equal(c->gate.mgmt_username, "quorumgate-probe");
    assert_int_equal(c->passthrough.addr.port, 1280);
    assert_int_equal(c->passthrough.allowed, 7);
    config_unref(c);
    free(text);
}

/* Every commented-out optional key of the example, enabled. */
static void test_example_with_options(void **state)
{
    const char *dir = *state;
    char *text = read_example(dir);
    replace_once(&text, "      # client_ca: ", "      client_ca: ");
    replace_once(&text, "  # basic_auth:\n  #   username: prometheus\n"
                        "  #   password_file: ",
                 "  basic_auth:\n    username: prometheus\n"
                 "    password_file: ");
    replace_once(&text, "    # cert: ", "    cert: ");
    replace_once(&text, "    # key: ", "    key: ");
    replace_once(&text, "  # username: quorumgate", "  username: quorumgate");
    replace_once(&text, "  # password_file: ", "  password_file: ");
    replace_once(&text, "  sources: []\n  # - {controller: ctrl1, ",
                 "  sources:\n  - {controller: ctrl1, ");
    struct config *c = load_file(dir, "full.yaml", text);
    check_example_specifics(c, dir);
    char *p = xasprintf("%s/tls/clients-ca.pem", dir);
    assert_string_equal(c->listeners[0].tls_client_ca, p);
    free(p);
    assert_string_equal(c->admin.basic_auth_user, "prometheus");
    assert_string_equal(c->admin.basic_auth_password, "s3cret");
    p = xasprintf("%s/er.key", dir);
    assert_string_equal(c->upstream.key_file, p);
    free(p);
    assert_string_equal(c->redis.username, "quorumgate");
    assert_string_equal(c->redis.password, "redis-pw");
    assert_string_equal(c->gate.mgmt_username, "quorumgate-probe");
    assert_string_equal(c->gate.mgmt_password, "mgmt-pw");
    assert_int_equal(c->relay.n_sources, 1);
    assert_string_equal(c->relay.sources[0].id, "ctrl1");
    assert_string_equal(c->relay.sources[0].path,
                        "/var/lib/ziti/ctrl1-events.json");
    config_unref(c);
    free(text);
}

static void test_workers_and_public_url(void **state)
{
    const char *dir = *state;
    static const struct { const char *listener, *tls, *want; } cases[] = {
        {"0.0.0.0:8443", "", "http://127.0.0.1:8443"},
        {"\"[::]:8443\"", "", "http://[::1]:8443"},
        {"\"[fd00::5]:80\"", "", "http://[fd00::5]:80"},
        {"proxy.example.com:443",
         ", tls: {cert: tls/server.pem, key: tls/server.key}",
         "https://proxy.example.com:443"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *yaml = xasprintf("workers: 3\n"
                               "listeners: [{address: %s%s}]\n"
                               "controllers: [{id: a, url: http://a}]\n"
                               "secrets: {hmac_key_file: hmac.key}\n",
                               cases[i].listener, cases[i].tls);
        struct config *c = load_ok(dir, yaml);
        assert_int_equal(c->workers, 3);
        assert_string_equal(c->public_url, cases[i].want);
        assert_int_equal(c->controllers[0].port, 80);
        config_unref(c);
        free(yaml);
    }
    struct config *c = load_ok(dir, MIN_YAML "public_url: https://Z.example/\n");
    assert_string_equal(c->public_url, "https://Z.example");
    config_unref(c);
}

/* config_load_string resolves against the name's directory; absolute
 * paths stay as written. */
static void test_relative_paths(void **state)
{
    const char *dir = *state;
    char *name = xasprintf("%s/q.yaml", dir);
    char *yaml = xasprintf("listeners:\n"
                           "  - address: 127.0.0.1:8443\n"
                           "    tls: {cert: tls/server.pem, key: %s/tls/server.key}\n"
                           "controllers: [{id: a, url: http://a}]\n"
                           "secrets: {hmac_key_file: ./hmac.key}\n"
                           "log: {error_log: logs/error.log, access_log: off}\n"
                           "redis: {address: unix:run/redis.sock}\n"
                           "relay: {sources: [{controller: a, path: ev.json}]}\n",
                           dir);
    struct config_errors errs = {0};
    struct config *c = config_load_string(name, yaml, &errs);
    if (!c)
        fixture_dump(&errs);
    assert_non_null(c);
    char *want = xasprintf("%s/tls/server.pem", dir);
    assert_string_equal(c->listeners[0].tls_cert, want);
    free(want);
    want = xasprintf("%s/tls/server.key", dir);
    assert_string_equal(c->listeners[0].tls_key, want);
    free(want);
    want = xasprintf("%s/logs/error.log", dir);
    assert_string_equal(c->log.error_log, want);
    free(want);
    assert_string_equal(c->log.access_log, "off");
    want = xasprintf("%s/run/redis.sock", dir);
    assert_string_equal(c->redis.addr.unix_path, want);
    free(want);
    want = xasprintf("%s/ev.json", dir);
    assert_string_equal(c->relay.sources[0].path, want);
    free(want);
    assert_int_equal(c->hmac_key_len, strlen(FIXTURE_HMAC));
    config_unref(c);
    free(yaml);
    free(name);
}

static void test_routing_classes(void **state)
{
    const char *dir = *state;
    struct config *c = load_ok(dir, MIN_YAML
        "routing:\n"
        "  classes:\n"
        "    - {path: /edge/, methods: [get, HEAD], header: X-A, class: oidc}\n"
        "    - {methods: [DELETE], class: write}\n"
        "    - {class: read}\n");
    const struct config_routing *r = &c->routing;
    assert_int_equal(r->n_routes, 3);
    assert_string_equal(r->routes[0].path_prefix, "/edge/");
    assert_int_equal(r->routes[0].methods, HTTP_M(HTTP_GET) | HTTP_M(HTTP_HEAD));
    assert_string_equal(r->routes[0].header, "X-A");
    assert_int_equal(r->routes[0].cls, ROUTE_OIDC);
    assert_int_equal(r->routes[0].line, 8);
    assert_string_equal(r->routes[1].path_prefix, "");
    assert_int_equal(r->routes[1].methods, HTTP_M(HTTP_DELETE));
    assert_int_equal(r->routes[2].cls, ROUTE_READ);
    assert_int_equal(r->routes[2].line, 10);
    config_unref(c);
}

static void test_retry_partial_and_anchors(void **state)
{
    const char *dir = *state;
    struct config *c = load_ok(dir, MIN_YAML
        "retry:\n"
        "  budget: {ratio: 1}\n"
        "  policies:\n"
        "    write: &w {max_attempts: 2, on: []}\n"
        "    session: {<<: *w, deadline: 20s}\n");
    const struct config_retry_policy *p = c->retry.policy;
    assert_true(c->retry.budget_ratio == 1.0);
    assert_int_equal(c->retry.budget_min, 3);
    assert_int_equal(p[ROUTE_WRITE].max_attempts, 2);
    assert_int_equal(p[ROUTE_WRITE].on, 0);
    assert_int_equal(p[ROUTE_WRITE].deadline_ms, 10000);   /* default kept */
    assert_int_equal(p[ROUTE_WRITE].backoff_cap_ms, 1000); /* default kept */
    assert_int_equal(p[ROUTE_SESSION].max_attempts, 2);    /* merged */
    assert_int_equal(p[ROUTE_SESSION].deadline_ms, 20000);
    assert_int_equal(p[ROUTE_SESSION].backoff_cap_ms, 500);
    assert_int_equal(p[ROUTE_MFA].max_attempts, 6);        /* untouched */
    config_unref(c);
}

static void test_gate_and_nulls(void **state)
{
    const char *dir = *state;
    static const struct { const char *mode; enum gate_mode m; uint32_t n; }
        cases[] = {{"all", GATE_ALL, 0}, {"majority", GATE_MAJORITY, 0},
                   {"1", GATE_COUNT, 1}, {"healthy", GATE_HEALTHY, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *yaml = xasprintf(MIN_YAML "gate: {mode: %s, on_timeout: fail, "
                               "source: events}\n", cases[i].mode);
        struct config *c = load_ok(dir, yaml);
        assert_int_equal(c->gate.mode, cases[i].m);
        assert_int_equal(c->gate.count, cases[i].n);
        assert_true(c->gate.fail_on_timeout);
        assert_int_equal(c->gate.source, GATE_SRC_EVENTS);
        config_unref(c);
        free(yaml);
    }
    /* Null values mean "the default". */
    struct config *c = load_ok(dir, MIN_YAML "health:\npublic_url: ~\n"
                                             "gate: {mode: null}\n");
    assert_int_equal(c->health.interval_ms, 500);
    assert_string_equal(c->public_url, "http://127.0.0.1:8080");
    assert_int_equal(c->gate.mode, GATE_HEALTHY);
    config_unref(c);
}

static void test_restart_only_diff(void **state)
{
    const char *dir = *state;
    struct config *a = load_ok(dir, MIN_YAML "workers: 2\n");
    struct config *b = load_ok(dir, MIN_YAML "workers: 2\n"
                                             "health: {interval: 1s}\n"
                                             "log: {level: debug}\n"
                                             "admin: {address: 127.0.0.1:9901}\n");
    assert_null(config_restart_only_diff(a, b));
    config_unref(b);

    b = load_ok(dir,
                "listeners:\n"
                "  - address: 127.0.0.1:8081\n"
                "controllers:\n"
                "  - {id: c1, url: \"http://127.0.0.1:1280\"}\n"
                "  - {id: c2, url: \"http://127.0.0.1:1281\"}\n"
                "secrets: {hmac_key_file: hmac.key}\n"
                "gate: {legacy_sessions: unconfirmed}\n"
                "workers: 4\n"
                "admin: {allow: [10.0.0.0/8]}\n"
                "redis: {address: unix:/run/r.sock, database: 2}\n");
    char *d = config_restart_only_diff(a, b);
    assert_non_null(d);
    assert_string_equal(d, "workers, listeners, admin.allow, controllers, "
                           "redis.address, redis.database");
    free(d);
    d = config_restart_only_diff(b, a);
    assert_string_equal(d, "workers, listeners, admin.allow, controllers, "
                           "redis.address, redis.database");
    free(d);
    config_unref(b);

    b = load_ok(dir, MIN_YAML "workers: 2\n"
                     "admin: {address: 127.0.0.1:9902, basic_auth: "
                     "{username: u, password_file: admin.password}}\n");
    d = config_restart_only_diff(a, b);
    assert_string_equal(d, "admin.address, admin.basic_auth.username, "
                           "admin.basic_auth.password_file");
    free(d);
    config_unref(b);

    /* the HMAC key: calls held under the old one would get other change
     * ids and fences (issue 17) */
    fixture_write(dir, "hmac2.key", "another-key-another-key-another-key-!\n");
    b = load_ok(dir, "listeners:\n"
                     "  - address: 127.0.0.1:8080\n"
                     "controllers:\n"
                     "  - {id: c1, url: \"http://127.0.0.1:1280\"}\n"
                     "secrets: {hmac_key_file: hmac2.key}\n"
                     "workers: 2\n");
    d = config_restart_only_diff(a, b);
    assert_string_equal(d, "secrets.hmac_key_file");
    free(d);
    config_unref(b);
    config_unref(a);
}

static void test_redis_sentinels(void **state)
{
    const char *dir = *state;
    struct config *a = load_ok(dir, MIN_YAML);
    struct config *b = load_ok(dir, MIN_YAML
                               "redis:\n"
                               "  sentinels: [127.0.0.1:26379, "
                               "\"[::1]:26380\", s3.example:26381]\n"
                               "  master_name: qg\n");
    assert_int_equal(a->redis.n_sentinels, 0);
    assert_null(a->redis.master_name);
    assert_int_equal(b->redis.n_sentinels, 3);
    assert_string_equal(b->redis.sentinels[0].host, "127.0.0.1");
    assert_int_equal(b->redis.sentinels[0].port, 26379);
    assert_string_equal(b->redis.sentinels[1].host, "::1");
    assert_int_equal(b->redis.sentinels[1].port, 26380);
    assert_string_equal(b->redis.sentinels[2].text, "s3.example:26381");
    assert_string_equal(b->redis.master_name, "qg");
    assert_null(b->redis.sentinel_password);
    char *d = config_restart_only_diff(a, b);
    assert_string_equal(d, "redis.sentinels, redis.master_name");
    free(d);
    config_unref(a);
    config_unref(b);
}

/* A key file others may write is refused: whoever writes it decides which
 * identities share change ids and fences. */
static void test_hmac_key_file_mode(void **state)
{
    const char *dir = *state;
    fixture_write(dir, "open.key", FIXTURE_HMAC);
    char *path = xasprintf("%s/open.key", dir);
    assert_int_equal(chmod(path, 0666), 0);
    struct config_errors errs = {0};
    struct config *c = config_load_string_dir(
        "q.yaml",
        "listeners:\n  - address: 127.0.0.1:8080\ncontrollers:\n"
        "  - {id: c1, url: \"http://127.0.0.1:1280\"}\n"
        "secrets: {hmac_key_file: open.key}\n",
        dir, &errs);
    assert_null(c);
    assert_int_equal(errs.n, 1);
    char *want = xasprintf("q.yaml:5: secrets.hmac_key_file: '%s' may be "
                           "changed by other users (mode 0666): chmod go-w "
                           "it", path);
    assert_string_equal(errs.items[0].text, want);
    config_errors_free(&errs);
    assert_int_equal(chmod(path, 0640), 0);
    c = config_load_string_dir(
        "q.yaml",
        "listeners:\n  - address: 127.0.0.1:8080\ncontrollers:\n"
        "  - {id: c1, url: \"http://127.0.0.1:1280\"}\n"
        "secrets: {hmac_key_file: open.key}\n",
        dir, &errs);
    assert_non_null(c);
    config_unref(c);
    free(want);
    free(path);
}

static void test_passthrough(void **state)
{
    const char *dir = *state;
    /* absent: no passthrough listener */
    struct config *c = load_ok(dir, MIN_YAML);
    assert_null(c->passthrough.addr.text);
    config_unref(c);
    /* defaults; no list = every controller */
    c = load_ok(dir,
                "listeners:\n"
                "  - address: 127.0.0.1:8080\n"
                "controllers:\n"
                "  - {id: c1, url: \"https://127.0.0.1:1280\"}\n"
                "  - {id: c2, url: \"https://127.0.0.1:1281\"}\n"
                "  - {id: c3, url: \"https://127.0.0.1:1282\"}\n"
                "secrets: {hmac_key_file: hmac.key}\n"
                "gate: {legacy_sessions: unconfirmed}\n"
                "passthrough: {address: \"127.0.0.1:8444\"}\n");
    assert_string_equal(c->passthrough.addr.host, "127.0.0.1");
    assert_int_equal(c->passthrough.addr.port, 8444);
    assert_int_equal(c->passthrough.allowed, 7);
    assert_int_equal(c->passthrough.max_connections, 4096);
    assert_int_equal(c->passthrough.connect_timeout_ms, 2000);
    assert_int_equal(c->passthrough.idle_timeout_ms, 300000);
    assert_int_equal(c->passthrough.on_leader_change, CONFIG_PT_CLOSE);
    assert_int_equal(c->passthrough.leader_change_grace_ms, 5000);
    assert_int_equal(c->passthrough.leader_change_quiet_ms, 250);
    config_unref(c);
    /* a list picks controllers; keep; limits */
    c = load_ok(dir,
                "listeners:\n"
                "  - address: 127.0.0.1:8080\n"
                "controllers:\n"
                "  - {id: c1, url: \"https://127.0.0.1:1280\"}\n"
                "  - {id: c2, url: \"https://127.0.0.1:1281\"}\n"
                "  - {id: c3, url: \"https://127.0.0.1:1282\"}\n"
                "secrets: {hmac_key_file: hmac.key}\n"
                "gate: {legacy_sessions: unconfirmed}\n"
                "passthrough:\n"
                "  address: \"[::1]:0\"\n"
                "  controllers: [c3, c1]\n"
                "  max_connections: 10\n"
                "  idle_timeout: 30s\n"
                "  leader_change: {action: keep, grace: 0s, quiet: 1s}\n");
    assert_string_equal(c->passthrough.addr.host, "::1");
    assert_int_equal(c->passthrough.allowed, 5);
    assert_int_equal(c->passthrough.max_connections, 10);
    assert_int_equal(c->passthrough.idle_timeout_ms, 30000);
    assert_int_equal(c->passthrough.on_leader_change, CONFIG_PT_KEEP);
    assert_int_equal(c->passthrough.leader_change_grace_ms, 0);
    assert_int_equal(c->passthrough.leader_change_quiet_ms, 1000);
    /* address and controllers need a restart; the rest reloads */
    struct config *d = load_ok(dir, MIN_YAML
                               "passthrough: {address: \"127.0.0.1:8444\", "
                               "controllers: [c1], idle_timeout: 1m}\n");
    struct config *e = load_ok(dir, MIN_YAML
                               "passthrough: {address: \"127.0.0.1:8444\", "
                               "controllers: [c1], idle_timeout: 2m}\n");
    assert_null(config_restart_only_diff(d, e));
    assert_int_equal(d->passthrough.n_sni, 0);
    config_unref(e);
    e = load_ok(dir,
                "listeners:\n"
                "  - address: 127.0.0.1:8080\n"
                "  - address: 127.0.0.1:8443\n"
                "    tls: {cert: tls/server.pem, key: tls/server.key}\n"
                "controllers:\n"
                "  - {id: c1, url: \"https://127.0.0.1:1280\"}\n"
                "secrets: {hmac_key_file: hmac.key}\n"
                "passthrough:\n"
                "  sni: {listener: 1, names: [Certs.Example.COM, b.example]}\n");
    assert_null(e->passthrough.addr.text);
    assert_int_equal(e->passthrough.sni_listener, 1);
    assert_int_equal(e->passthrough.n_sni, 2);
    assert_string_equal(e->passthrough.sni_names[0], "certs.example.com");
    assert_string_equal(e->passthrough.sni_names[1], "b.example");
    char *diff = config_restart_only_diff(c, d);
    assert_non_null(diff);
    assert_non_null(strstr(diff, "passthrough.address, "
                                 "passthrough.controllers"));
    free(diff);
    config_unref(e);
    config_unref(d);
    config_unref(c);
}

static void test_ref_unref_and_names(void **state)
{
    const char *dir = *state;
    struct config *c = load_ok(dir, MIN_YAML);
    assert_ptr_equal(config_ref(c), c);
    assert_int_equal(atomic_load(&c->refs), 2);
    config_unref(c);
    assert_int_equal(atomic_load(&c->refs), 1);
    assert_int_equal(config_controller_index(c, "c1"), 0);
    assert_int_equal(config_controller_index(c, "c2"), -1);
    config_unref(c); /* freed: LeakSanitizer would say otherwise */
    config_unref(NULL);

    static const char *const classes[] = {"mfa", "oidc", "session", "write",
                                          "read"};
    for (int i = 0; i < ROUTE__COUNT; i++)
        assert_string_equal(config_route_class_name((enum route_class)i),
                            classes[i]);
    static const char *const reasons[] = {"never_sent", "sent_failed",
                                          "no_leader", "too_many", "ambiguous"};
    for (int i = 0; i < RETRY__COUNT; i++)
        assert_string_equal(config_retry_reason_name((enum retry_reason)i),
                            reasons[i]);
    assert_string_equal(config_route_class_name(ROUTE__COUNT), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_example_as_shipped),
        cmocka_unit_test(test_example_with_options),
        cmocka_unit_test(test_workers_and_public_url),
        cmocka_unit_test(test_relative_paths),
        cmocka_unit_test(test_routing_classes),
        cmocka_unit_test(test_retry_partial_and_anchors),
        cmocka_unit_test(test_gate_and_nulls),
        cmocka_unit_test(test_restart_only_diff),
        cmocka_unit_test(test_redis_sentinels),
        cmocka_unit_test(test_hmac_key_file_mode),
        cmocka_unit_test(test_passthrough),
        cmocka_unit_test(test_ref_unref_and_names),
    };
    return cmocka_run_group_tests(tests, fixture_group_setup, fixture_group_teardown);
}
