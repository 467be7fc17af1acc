/* test_config_errors.c - every kind of configuration problem, with the
 * exact "file:line: message" it produces, that problems are all reported
 * (in line order), and the bound on how many. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config_fixture.h"
#include "base/buf.h"
#include "config/config.h"

/* 4 lines: valid but for the missing secrets section. */
#define HEAD4                                                                \
    "listeners:\n"                                                           \
    "  - address: 127.0.0.1:8080\n"                                          \
    "controllers:\n"                                                         \
    "  - {id: c1, url: \"http://127.0.0.1:1280\"}\n"
/* 5 lines: the smallest valid file; what a case appends starts at line 6. */
#define B HEAD4 "secrets: {hmac_key_file: hmac.key}\n"
/* Lists and secrets only, for cases about listeners or controllers. */
#define SECRETS "secrets: {hmac_key_file: hmac.key}\n"

#define HMAC_REQUIRED                                                        \
    "secrets.hmac_key_file is required: a file of at least 32 bytes, the "   \
    "same for every quorumgate sharing a Redis"

struct error_case {
    const char *yaml;
    const char *want[4];  /* "@D" stands for the fixture directory */
};

static const struct error_case cases[] = {
    /* unknown keys */
    {B "listners: []\n",
     {"q.yaml:6: unknown key 'listners' in the top level (did you mean "
      "'listeners'?)"}},
    {B "health:\n  bogus: 1\n", {"q.yaml:7: unknown key 'bogus' in health"}},
    {B "health: {intervl: 1s}\n",
     {"q.yaml:6: unknown key 'intervl' in health (did you mean 'interval'?)"}},
    {B "upstream: {tls: {CA: x}}\n",
     {"q.yaml:6: unknown key 'CA' in upstream.tls (did you mean 'ca'?)"}},
    /* durations, sizes, numbers, booleans, ratios, names */
    {B "health:\n  interval: 500\n",
     {"q.yaml:7: health.interval: '500' is not a duration (write 500ms, 2s, "
      "1m)"}},
    {B "health: {interval: 0ms}\n",
     {"q.yaml:6: health.interval: 0ms is too short (at least 1ms)"}},
    {B "upstream: {connect_timeout: 2h}\n",
     {"q.yaml:6: upstream.connect_timeout: 2h is too long (at most 1h)"}},
    {B "limits: {max_body_bytes: 1XB}\n",
     {"q.yaml:6: limits.max_body_bytes: '1XB' is not a size (write 512, "
      "16KiB, 1MiB)"}},
    {B "limits: {max_header_bytes: 100}\n",
     {"q.yaml:6: limits.max_header_bytes: 100 is too small (at least 1KiB)"}},
    {B "limits: {max_response_bytes: 2GiB}\n",
     {"q.yaml:6: limits.max_response_bytes: 2GiB is too large (at most "
      "1GiB)"}},
    {B "health: {rise: two}\n",
     {"q.yaml:6: health.rise: 'two' is not a whole number"}},
    {B "health:\n  rise: 0\n  fall: 0\n",
     {"q.yaml:7: health.rise: 0 is out of range (1 to 100)",
      "q.yaml:8: health.fall: 0 is out of range (1 to 100)"}},
    {B "workers: 2000\n",
     {"q.yaml:6: workers: 2000 is out of range (0 to 1024)"}},
    {B "workers: -1\n", {"q.yaml:6: workers: '-1' is not a whole number"}},
    {B "upstream: {tls: {verify: yes}}\n",
     {"q.yaml:6: upstream.tls.verify: 'yes' is not true or false"}},
    {B "retry: {budget: {ratio: 1.5}}\n",
     {"q.yaml:6: retry.budget.ratio: 1.5 is out of range (0 to 1)"}},
    {B "retry: {budget: {ratio: -0.1}}\n",
     {"q.yaml:6: retry.budget.ratio: -0.1 is out of range (0 to 1)"}},
    {B "retry: {budget: {ratio: lots}}\n",
     {"q.yaml:6: retry.budget.ratio: 'lots' is not a number"}},
    {B "retry: {budget: {ratio: nan}}\n",
     {"q.yaml:6: retry.budget.ratio: 'nan' is not a number"}},
    {B "retry: {budget: {ratio: 0x1p-1}}\n",
     {"q.yaml:6: retry.budget.ratio: '0x1p-1' is not a number"}},
    {B "log: {level: inof}\n",
     {"q.yaml:6: log.level: 'inof' is not one of debug, info, warn, error "
      "(did you mean 'info'?)"}},
    {B "gate: {source: kafka}\n",
     {"q.yaml:6: gate.source: 'kafka' is not one of probe, events"}},
    {B "gate: {on_timeout: maybe}\n",
     {"q.yaml:6: gate.on_timeout: 'maybe' is not one of succeed, fail"}},
    {B "headers: {request_id: \"X Req\"}\n",
     {"q.yaml:6: headers.request_id: 'X Req' is not a valid header name"}},
    /* keys are built in fixed buffers: a long prefix would collide */
    {B "redis: {key_prefix: \"qg-0123456789-0123456789-0123456789:\"}\n",
     {"q.yaml:6: redis.key_prefix: 'qg-0123456789-0123456789-0123456789:' "
      "is longer than 32 bytes"}},
    {B "redis: {key_prefix: \"qg: x\"}\n",
     {"q.yaml:6: redis.key_prefix: 'qg: x' must not contain spaces or "
      "control characters"}},
    {B "health: {path: health}\n",
     {"q.yaml:6: health.path: 'health' must start with '/'"}},
    {B "upstream: {tls: {server_name: \"a b\"}}\n",
     {"q.yaml:6: upstream.tls.server_name: 'a b' is not a valid host name"}},
    {B "log: {error_log: off}\n",
     {"q.yaml:6: log.error_log: 'off' is not allowed: the error log cannot "
      "be turned off"}},
    /* wrong node types */
    {B "health:\n  interval: {a: 1}\n",
     {"q.yaml:7: health.interval: expected a duration, found a mapping"}},
    {B "health: 5\n", {"q.yaml:6: health: expected a mapping, found a scalar"}},
    {B "admin: {allow: 10.0.0.0/8}\n",
     {"q.yaml:6: admin.allow: expected a list, found a scalar"}},
    {"listeners: {address: 127.0.0.1:1}\n"
     "controllers: [{id: a, url: http://a}]\n" SECRETS,
     {"q.yaml:1: listeners: expected a list, found a mapping"}},
    {"- a\n", {"q.yaml:1: the document must be a mapping, found a list"}},
    /* addresses, URLs, CIDR blocks, ids */
    {B "redis: {address: \"6379\"}\n",
     {"q.yaml:6: redis.address: '6379' is not a valid address: the port is "
      "missing (write host:port, [v6]:port or unix:/path)"}},
    {B "admin: {address: \"unix:/x\"}\n",
     {"q.yaml:6: admin.address: 'unix:/x' is not a valid address: a unix "
      "socket is not supported here (write host:port or [v6]:port)"}},
    /* redis behind sentinels */
    {B "redis:\n  address: 127.0.0.1:6379\n  sentinels: [127.0.0.1:26379]\n"
       "  master_name: m\n",
     {"q.yaml:8: redis: address and sentinels exclude each other (with "
      "sentinels the master's address is asked of them): remove one"}},
    {B "redis:\n  sentinels: [127.0.0.1:26379]\n",
     {"q.yaml:7: redis: sentinels without master_name"}},
    {B "redis:\n  master_name: m\n",
     {"q.yaml:7: redis: master_name without sentinels"}},
    {B "redis:\n  sentinels: [127.0.0.1:26379, \"26380\"]\n  master_name: m\n",
     {"q.yaml:7: redis.sentinels[1]: '26380' is not a sentinel address: the "
      "port is missing"}},
    {B "redis:\n  sentinels: [127.0.0.1:26379, 127.0.0.1:26379]\n"
       "  master_name: m\n",
     {"q.yaml:7: redis.sentinels[1]: '127.0.0.1:26379' is listed twice"}},
    {B "redis:\n  sentinels: []\n  master_name: m\n",
     {"q.yaml:7: redis.sentinels: an empty list (give at least one "
      "host:port, or remove the key and use redis.address)"}},
    {B "redis:\n  sentinel_username: u\n",
     {"q.yaml:7: redis: sentinel_username without sentinels",
      "q.yaml:7: redis: sentinel_username without sentinel_password_file"}},
    {B "redis:\n  sentinels: [\"unix:/tmp/s.sock\"]\n  master_name: m\n",
     {"q.yaml:7: redis.sentinels[0]: 'unix:/tmp/s.sock' is not a sentinel "
      "address: a unix socket is not supported here"}},
    {B "redis: {address: \"127.0.0.1:0\"}\n",
     {"q.yaml:6: redis.address: '127.0.0.1:0': port 0 is not allowed here"}},
    {B "admin: {allow: [127.0.0.1, 10.0.0.0/33]}\n",
     {"q.yaml:6: admin.allow[1]: '10.0.0.0/33' is not a CIDR block: an IPv4 "
      "prefix is at most /32"}},
    {B "public_url: https://x/ziti\n",
     {"q.yaml:6: public_url: 'https://x/ziti' is not a valid URL: a path, "
      "query or fragment is not allowed here"}},
    {"listeners: [{address: 127.0.0.1:1}]\n" SECRETS
     "controllers:\n"
     "  - {id: a, url: \"ftp://x\"}\n"
     "  - {id: b, url: \"https://\"}\n"
     "  - {id: \"c d\", url: \"http://c\"}\n",
     {"q.yaml:4: controllers[0].url: 'ftp://x' is not a valid URL: not an "
      "http:// or https:// URL",
      "q.yaml:5: controllers[1].url: 'https://' is not a valid URL: the URL "
      "has no host",
      "q.yaml:6: controllers[2].id: 'c d' is not a valid id (1 to 63 "
      "letters, digits, '.', '_', ':' or '-')"}},
    /* files */
    {B "upstream:\n  tls:\n    ca: /nope.pem\n",
     {"q.yaml:8: upstream.tls.ca: cannot read '/nope.pem': No such file or "
      "directory"}},
    {B "upstream: {tls: {ca: missing.pem}}\n",
     {"q.yaml:6: upstream.tls.ca: cannot read '@D/missing.pem': No such file "
      "or directory"}},
    {B "upstream: {tls: {ca: adir}}\n",
     {"q.yaml:6: upstream.tls.ca: cannot read '@D/adir': Is a directory"}},
    {B "upstream: {tls: {ca: not-a-cert.pem}}\n",
     {"q.yaml:6: upstream.tls.ca: '@D/not-a-cert.pem' holds no PEM "
      "certificate"}},
    {B "upstream: {tls: {cert: er.pem, key: er.pem}}\n",
     {"q.yaml:6: upstream.tls.key: '@D/er.pem' holds no PEM private key"}},
    {B "redis: {username: u, password_file: empty.password}\n",
     {"q.yaml:6: redis.password_file: '@D/empty.password' is empty"}},
    {B "gate: {management: {username: u, password_file: nope}}\n",
     {"q.yaml:6: gate.management.password_file: cannot read '@D/nope': No "
      "such file or directory"}},
    {HEAD4 "secrets: {hmac_key_file: short.key}\n",
     {"q.yaml:5: secrets.hmac_key_file: '@D/short.key' holds 20 bytes; the "
      "key needs at least 32"}},
    {HEAD4, {"q.yaml: " HMAC_REQUIRED}},
    {HEAD4 "secrets: {}\n", {"q.yaml:5: " HMAC_REQUIRED}},
    /* keys that go together */
    {B "health:\n  interval: 200ms\n  fast_interval: 300ms\n",
     {"q.yaml:8: health: fast_interval (300ms) is longer than interval "
      "(200ms)"}},
    {B "health: {interval: 50ms}\n",
     {"q.yaml:6: health: fast_interval (100ms) is longer than interval "
      "(50ms)"}},
    {B "retry:\n  policies:\n    read:\n      backoff_base: 2s\n",
     {"q.yaml:9: retry.policies.read: backoff_base (2s) is longer than "
      "backoff_cap (250ms)"}},
    {B "retry: {policies: {oidc: {per_try_timeout: 20s}}}\n",
     {"q.yaml:6: retry.policies.oidc: per_try_timeout (20s) is longer than "
      "deadline (15s)"}},
    {B "gate: {probe: {initial: 2s}}\n",
     {"q.yaml:6: gate.probe: initial (2s) is longer than max (250ms)"}},
    {B "gate: {mode: 0}\n",
     {"q.yaml:6: gate.mode: 0 is not a number of controllers (at least 1)"}},
    {B "gate: {mode: 2}\n",
     {"q.yaml:6: gate.mode: 2 is more than the number of controllers (1)"}},
    {B "gate: {mode: heathy}\n",
     {"q.yaml:6: gate.mode: 'heathy' is not one of healthy, all, majority or "
      "a number (did you mean 'healthy'?)"}},
    {B "admin:\n  basic_auth:\n    username: u\n",
     {"q.yaml:8: admin.basic_auth: username without password_file"}},
    {B "admin: {basic_auth: {password_file: admin.password}}\n",
     {"q.yaml:6: admin.basic_auth: password_file without username"}},
    {B "redis: {username: u}\n",
     {"q.yaml:6: redis: username without password_file"}},
    {B "upstream: {tls: {cert: er.pem}}\n",
     {"q.yaml:6: upstream.tls: cert without key"}},
    /* listeners */
    {"controllers: [{id: a, url: http://a}]\n" SECRETS,
     {"q.yaml: listeners: at least one listener is required"}},
    {"listeners: []\ncontrollers: [{id: a, url: http://a}]\n" SECRETS,
     {"q.yaml:1: listeners: at least one listener is required"}},
    {"listeners: [{}]\ncontrollers: [{id: a, url: http://a}]\n" SECRETS,
     {"q.yaml:1: listeners[0]: 'address' is required"}},
    {"listeners:\n  -\ncontrollers: [{id: a, url: http://a}]\n" SECRETS,
     {"q.yaml:2: listeners[0]: expected a mapping, found nothing"}},
    {"controllers: [{id: a, url: http://a}]\n" SECRETS
     "listeners:\n"
     "  - address: 127.0.0.1:8443\n"
     "    tls:\n"
     "      cert: tls/server.pem\n"
     "  - address: 127.0.0.1:8444\n"
     "    tls: {key: tls/server.key}\n"
     "  - address: 127.0.0.1:8445\n"
     "    tls: {client_ca: tls/clients-ca.pem}\n",
     {"q.yaml:6: listeners[0].tls: cert without key",
      "q.yaml:8: listeners[1].tls: key without cert",
      "q.yaml:10: listeners[2].tls: cert and key are required"}},
    {"controllers: [{id: a, url: http://a}]\n" SECRETS
     "listeners:\n"
     "  - address: 127.0.0.1:80\n"
     "  - address: LOCALHOST:80\n"
     "  - address: 127.0.0.1:80\n"
     "  - address: 127.0.0.1:0\n"
     "  - address: 127.0.0.1:0\n",
     {"q.yaml:6: listeners[2].address: '127.0.0.1:80' is already used by "
      "listeners[0] (line 4)"}},
    {B "admin: {address: 127.0.0.1:8080}\n",
     {"q.yaml:6: admin.address: '127.0.0.1:8080' is already used by "
      "listeners[0] (line 2)"}},
    {"controllers: [{id: a, url: http://a}]\n" SECRETS
     "listeners:\n"
     "  - {address: 127.0.0.1:1}\n  - {address: 127.0.0.1:2}\n"
     "  - {address: 127.0.0.1:3}\n  - {address: 127.0.0.1:4}\n"
     "  - {address: 127.0.0.1:5}\n  - {address: 127.0.0.1:6}\n"
     "  - {address: 127.0.0.1:7}\n  - {address: 127.0.0.1:8}\n"
     "  - {address: 127.0.0.1:9}\n",
     {"q.yaml:12: listeners: at most 8 entries are supported"}},
    /* controllers */
    {"listeners: [{address: 127.0.0.1:1}]\n" SECRETS,
     {"q.yaml: controllers: at least one controller is required"}},
    {"listeners: [{address: 127.0.0.1:1}]\n" SECRETS "controllers:\n",
     {"q.yaml:3: controllers: at least one controller is required"}},
    {"listeners: [{address: 127.0.0.1:1}]\n" SECRETS
     "controllers:\n"
     "  - id: a\n"
     "    url: http://h1\n"
     "  - id: a\n"
     "    url: http://h2\n"
     "  - id: b\n"
     "    url: http://h1\n"
     "  - url: http://h3\n",
     {"q.yaml:6: controllers[1].id: 'a' is already used by controllers[0] "
      "(line 4)",
      "q.yaml:9: controllers[2].url: 'http://h1' is already used by "
      "controllers[0] (line 4)",
      "q.yaml:10: controllers[3]: 'id' is required"}},
    /* routing */
    {B "routing:\n  classes:\n    - {class: reed}\n",
     {"q.yaml:8: routing.classes[0].class: 'reed' is not one of mfa, oidc, "
      "session, write, read (did you mean 'read'?)"}},
    {B "routing: {classes: [{methods: [GET, FETCH], class: read}]}\n",
     {"q.yaml:6: routing.classes[0].methods[1]: 'FETCH' is not one of GET, "
      "HEAD, POST, PUT, PATCH, DELETE, OPTIONS"}},
    {B "routing: {classes: [{methods: [], class: read}]}\n",
     {"q.yaml:6: routing.classes[0].methods: the list is empty (leave it out "
      "to match any method)"}},
    {B "routing: {classes: []}\n",
     {"q.yaml:6: routing.classes: the list is empty (leave it out to use the "
      "built-in table)"}},
    {B "routing:\n  classes:\n    - {class: read}\n    - {class: write}\n",
     {"q.yaml:8: routing.classes[0]: matches every request, so the rows after "
      "it are never used"}},
    {B "routing: {classes: [{path: /x}]}\n",
     {"q.yaml:6: routing.classes[0]: 'class' is required"}},
    {B "routing: {classes: [{path: /x, header: \"a:b\", class: read}]}\n",
     {"q.yaml:6: routing.classes[0].header: 'a:b' is not a valid header "
      "name"}},
    /* retry */
    {B "retry: {policies: {mfa: {on: [never_sent, timeout]}}}\n",
     {"q.yaml:6: retry.policies.mfa.on[1]: 'timeout' is not one of "
      "never_sent, sent_failed, no_leader, too_many, ambiguous"}},
    {B "retry: {policies: {mfa: {on: [never_snt]}}}\n",
     {"q.yaml:6: retry.policies.mfa.on[0]: 'never_snt' is not one of "
      "never_sent, sent_failed, no_leader, too_many, ambiguous (did you mean "
      "'never_sent'?)"}},
    {B "retry:\n  policies:\n    writes: {}\n    zzz: {}\n",
     {"q.yaml:8: unknown route class 'writes' in retry.policies (did you mean "
      "'write'?)",
      "q.yaml:9: unknown route class 'zzz' in retry.policies (the classes "
      "are mfa, oidc, session, write, read)"}},
    {B "retry: {policies: {mfa: {max_attempts: 0, fresh: true}}}\n",
     {"q.yaml:6: unknown key 'fresh' in retry.policies.mfa",
      "q.yaml:6: retry.policies.mfa.max_attempts: 0 is out of range (1 to "
      "100)"}},
    /* relay */
    {B "relay:\n  sources:\n    - {controller: c9, path: /x}\n",
     {"q.yaml:8: relay.sources[0].controller: 'c9' is not one of the "
      "controllers (c1)"}},
    {B "relay:\n  sources:\n    - {controller: c1, path: /x}\n"
       "    - {controller: c1, path: /y}\n",
     {"q.yaml:9: relay.sources[1].controller: 'c1' already has a source in "
      "relay.sources[0] (line 8)"}},
    {B "relay: {sources: [{controller: c1}]}\n",
     {"q.yaml:6: relay.sources[0]: 'path' is required"}},
    /* passthrough */
    {B "passthrough:\n  controllers: [c9]\n  address: 127.0.0.1:8444\n",
     {"q.yaml:7: passthrough.controllers[0]: 'c9' is not one of the "
      "controllers (c1)"}},
    {B "passthrough: {idle_timeout: 1m}\n",
     {"q.yaml:6: passthrough: address (or sni.names) is required (remove "
      "the section for no passthrough listener)"}},
    {B "passthrough:\n  sni: {names: [certs.example.com]}\n",
     {"q.yaml:7: passthrough.sni.listener: listeners[0] is not a TLS "
      "listener"}},
    {B "passthrough:\n  sni: {names: [\"a b\"]}\n",
     {"q.yaml:6: passthrough: address (or sni.names) is required (remove "
      "the section for no passthrough listener)",
      "q.yaml:7: passthrough.sni.names[0]: 'a b' is not a DNS name"}},
    {B "passthrough: {address: 127.0.0.1:8080}\n",
     {"q.yaml:6: passthrough.address: '127.0.0.1:8080' is already used by a "
      "listener"}},
    {B "passthrough:\n  address: 127.0.0.1:8444\n"
       "  leader_change: {action: drop}\n",
     {"q.yaml:8: passthrough.leader_change.action: 'drop' is not one of "
      "close, keep"}},
    /* YAML itself */
    {B "health: {}\nhealth: {}\n",
     {"q.yaml:7: duplicate key 'health' (first at line 6)"}},
    {B "health: [1, 2\n",
     {"q.yaml:7: YAML syntax error: did not find expected ',' or ']' (while "
      "parsing a flow sequence at line 6)"}},
};

/* "@D" -> dir. */
static char *expand(const char *want, const char *dir)
{
    struct buf b = {0};
    for (const char *s = want; *s; s++) {
        if (s[0] == '@' && s[1] == 'D') {
            buf_puts(&b, dir);
            s++;
        } else {
            buf_putc(&b, *s);
        }
    }
    return buf_steal(&b, NULL);
}

static bool check_case(const char *dir, const struct error_case *c)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load_string_dir("q.yaml", c->yaml, dir, &errs);
    int n_want = 0;
    while (n_want < 4 && c->want[n_want])
        n_want++;
    bool ok = cfg == NULL && errs.n == n_want;
    for (int i = 0; ok && i < n_want; i++) {
        char *want = expand(c->want[i], dir);
        ok = strcmp(errs.items[i].text, want) == 0;
        free(want);
    }
    if (!ok) {
        fprintf(stderr, "--- yaml:\n%s--- want:\n", c->yaml);
        for (int i = 0; i < n_want; i++)
            fprintf(stderr, "  [%d] %s\n", i, c->want[i]);
        fprintf(stderr, "--- got%s:\n", cfg ? " a config and" : "");
        fixture_dump(&errs);
    }
    config_unref(cfg);
    config_errors_free(&errs);
    return ok;
}

static void test_each_error(void **state)
{
    int failed = 0;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        failed += !check_case(*state, &cases[i]);
    assert_int_equal(failed, 0);
}

static void test_error_fields(void **state)
{
    struct config_errors errs = {0};
    assert_null(config_load_string_dir("q.yaml", B "health: {rise: 0}\n",
                                       *state, &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0].file, "q.yaml");
    assert_int_equal(errs.items[0].line, 6);
    assert_string_equal(errs.items[0].message,
                        "health.rise: 0 is out of range (1 to 100)");
    config_errors_free(&errs);
    assert_int_equal(errs.n, 0);
    assert_null(errs.items);
}

/* Everything wrong in one file is reported, sorted by line, problems not
 * tied to a line last. */
static void test_all_errors_reported(void **state)
{
    const char *yaml =
        "listeners:\n"                                    /* 1 */
        "  - address: \":80\"\n"                          /* 2 */
        "health:\n"                                       /* 3 */
        "  interval: 500\n"                               /* 4 */
        "  rise: 0\n"                                     /* 5 */
        "relay: {sources: [{controller: x, path: /p}]}\n" /* 6 */
        "listners: 1\n"                                   /* 7 */
        "upstream: {tls: {ca: /nope.pem}}\n"              /* 8 */
        "controllers: [{id: a, url: http://a}]\n"         /* 9 */
        "log: {level: loud}\n";                           /* 10 */
    static const char *const want[] = {
        "q.yaml:2: listeners[0].address: ':80' is not a valid address: the "
        "host is not a valid name or address (write host:port or [v6]:port)",
        "q.yaml:4: health.interval: '500' is not a duration (write 500ms, 2s, "
        "1m)",
        "q.yaml:5: health.rise: 0 is out of range (1 to 100)",
        "q.yaml:6: relay.sources[0].controller: 'x' is not one of the "
        "controllers (a)",
        "q.yaml:7: unknown key 'listners' in the top level (did you mean "
        "'listeners'?)",
        "q.yaml:8: upstream.tls.ca: cannot read '/nope.pem': No such file or "
        "directory",
        "q.yaml:10: log.level: 'loud' is not one of debug, info, warn, error",
        "q.yaml: " HMAC_REQUIRED,
    };
    struct config_errors errs = {0};
    assert_null(config_load_string_dir("q.yaml", yaml, *state, &errs));
    if (errs.n != (int)(sizeof(want) / sizeof(want[0])))
        fixture_dump(&errs);
    assert_int_equal(errs.n, sizeof(want) / sizeof(want[0]));
    for (int i = 0; i < errs.n; i++)
        assert_string_equal(errs.items[i].text, want[i]);
    config_errors_free(&errs);
}

static void test_error_cap(void **state)
{
    struct buf yaml = {0};
    buf_puts(&yaml, B);
    for (int i = 0; i < 150; i++)
        buf_printf(&yaml, "bogus%d: 1\n", i);
    struct config_errors errs = {0};
    assert_null(config_load_string_dir("q.yaml", yaml.data, *state, &errs));
    assert_int_equal(errs.n, 101);
    assert_string_equal(errs.items[0].text,
                        "q.yaml:6: unknown key 'bogus0' in the top level");
    assert_string_equal(errs.items[99].text,
                        "q.yaml:105: unknown key 'bogus99' in the top level");
    assert_string_equal(errs.items[100].text,
                        "q.yaml: more than 100 errors; the rest are not shown");
    config_errors_free(&errs);
    buf_free(&yaml);
}

static void test_missing_file(void **state)
{
    (void)state;
    struct config_errors errs = {0};
    assert_null(config_load("/nonexistent/q.yaml", &errs));
    assert_int_equal(errs.n, 1);
    assert_string_equal(errs.items[0].text,
                        "/nonexistent/q.yaml: cannot read '/nonexistent/q.yaml'"
                        ": No such file or directory");
    assert_int_equal(errs.items[0].line, 0);
    config_errors_free(&errs);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_each_error),
        cmocka_unit_test(test_error_fields),
        cmocka_unit_test(test_all_errors_reported),
        cmocka_unit_test(test_error_cap),
        cmocka_unit_test(test_missing_file),
    };
    return cmocka_run_group_tests(tests, fixture_group_setup, fixture_group_teardown);
}
