/* config_schema.c - see config_schema.h.  Every key of the file, its type,
 * default (as written in examples/quorumgate.yaml), limits and whether a
 * reload can change it.  Lists and odd values use the parsers of
 * config_custom.c and config_rules.c. */
#include "config/config_schema.h"

#include <stddef.h>
#include <stdlib.h>

#include "config/config_custom.h"
#include "config/config_rules.h"
#include "base/http.h"
#include "base/util.h"

#define MS_1H (3600u * 1000)
#define MS_1D (24u * MS_1H)

#define DUR(k, st, f, d, lo, hi)                                             \
    {.key = (k), .type = CONFIG_T_DURATION, .offset = offsetof(st, f),      \
     .def = (d), .min = (lo), .max = (hi)}
#define U32(k, st, f, d, lo, hi)                                             \
    {.key = (k), .type = CONFIG_T_U32, .offset = offsetof(st, f),           \
     .def = (d), .min = (lo), .max = (hi)}
#define SIZE(k, st, f, d, lo, hi)                                            \
    {.key = (k), .type = CONFIG_T_SIZE, .offset = offsetof(st, f),          \
     .def = (d), .min = (lo), .max = (hi)}
#define BOOL(k, st, f, d)                                                    \
    {.key = (k), .type = CONFIG_T_BOOL, .offset = offsetof(st, f), .def = (d)}
#define STR(k, st, f, d, chk)                                                \
    {.key = (k), .type = CONFIG_T_STRING, .offset = offsetof(st, f),        \
     .def = (d), .check = (chk)}
#define FILE_(k, st, f)                                                      \
    {.key = (k), .type = CONFIG_T_FILE, .offset = offsetof(st, f)}
#define SECRET(k, st, f)                                                     \
    {.key = (k), .type = CONFIG_T_SECRET, .offset = offsetof(st, f)}
#define SECTION(k, st, f, sec)                                               \
    {.key = (k), .type = CONFIG_T_SECTION, .offset = offsetof(st, f),       \
     .section = &(sec)}

/* ---- enum names ---- */

const struct config_enum_name config_schema_route_classes[] = {
    {"mfa", ROUTE_MFA},         {"oidc", ROUTE_OIDC}, {"session", ROUTE_SESSION},
    {"write", ROUTE_WRITE},     {"read", ROUTE_READ}, {NULL, 0},
};

const struct config_enum_name config_schema_retry_reasons[] = {
    {"never_sent", RETRY_NEVER_SENT}, {"sent_failed", RETRY_SENT_FAILED},
    {"no_leader", RETRY_NO_LEADER},   {"too_many", RETRY_TOO_MANY},
    {"ambiguous", RETRY_AMBIGUOUS},   {NULL, 0},
};

static const struct config_enum_name config_schema_log_levels[] = {
    {"debug", CONFIG_LOG_DEBUG}, {"info", CONFIG_LOG_INFO},
    {"warn", CONFIG_LOG_WARN},   {"error", CONFIG_LOG_ERROR}, {NULL, 0},
};

static const struct config_enum_name config_schema_legacy_sessions[] = {
    {"confirmed", GATE_LEGACY_CONFIRMED},
    {"unconfirmed", GATE_LEGACY_UNCONFIRMED},
    {NULL, 0},
};

static const struct config_enum_name config_schema_gate_sources[] = {
    {"probe", GATE_SRC_PROBE}, {"events", GATE_SRC_EVENTS}, {NULL, 0},
};

/* ---- listeners[] ---- */

static const struct config_field config_schema_listener_tls_fields[] = {
    FILE_("cert", struct config_listener, tls_cert),
    FILE_("key", struct config_listener, tls_key),
    FILE_("client_ca", struct config_listener, tls_client_ca),
};
static const struct config_section config_schema_listener_tls =
    CONFIG_SECTION(config_schema_listener_tls_fields);

static const struct config_field config_schema_listener_fields[] = {
    {.key = "address", .type = CONFIG_T_ADDR,
     .offset = offsetof(struct config_listener, addr),
     .check = CONFIG_ADDR_PORT0, .required = true},
    {.key = "tls", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_listener_tls},
};
const struct config_section config_schema_listener =
    CONFIG_SECTION(config_schema_listener_fields);

/* ---- passthrough ---- */

static const struct config_enum_name config_schema_pt_actions[] = {
    {"close", CONFIG_PT_CLOSE}, {"keep", CONFIG_PT_KEEP}, {NULL, 0},
};

static const struct config_field config_schema_pt_change_fields[] = {
    {.key = "action", .type = CONFIG_T_ENUM,
     .offset = offsetof(struct config_passthrough, on_leader_change),
     .def = "close", .names = config_schema_pt_actions},
    DUR("grace", struct config_passthrough, leader_change_grace_ms, "5s", 0,
        MS_1D),
    DUR("quiet", struct config_passthrough, leader_change_quiet_ms, "250ms",
        1, MS_1H),
};
static const struct config_section config_schema_pt_change =
    CONFIG_SECTION(config_schema_pt_change_fields);

static const struct config_field config_schema_pt_sni_fields[] = {
    U32("listener", struct config_passthrough, sni_listener, "0", 0,
        CONFIG_MAX_LISTENERS - 1),
    {.key = "names", .type = CONFIG_T_CUSTOM,
     .parse = config_custom_pt_sni_names,
     .same = config_custom_pt_sni_names_same},
};
static const struct config_section config_schema_pt_sni =
    CONFIG_SECTION(config_schema_pt_sni_fields);

static const struct config_field config_schema_passthrough_fields[] = {
    {.key = "address", .type = CONFIG_T_ADDR,
     .offset = offsetof(struct config_passthrough, addr),
     .check = CONFIG_ADDR_PORT0, .restart = true},
    {.key = "controllers", .type = CONFIG_T_CUSTOM,
     .parse = config_custom_pt_controllers,
     .same = config_custom_pt_controllers_same, .restart = true},
    U32("max_connections", struct config_passthrough, max_connections,
        "4096", 1, 1000000),
    DUR("connect_timeout", struct config_passthrough, connect_timeout_ms,
        "2s", 1, MS_1H),
    DUR("idle_timeout", struct config_passthrough, idle_timeout_ms, "5m", 1,
        MS_1D),
    {.key = "leader_change", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_pt_change},
    {.key = "sni", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_pt_sni, .restart = true},
};
static const struct config_section config_schema_passthrough =
    CONFIG_SECTION(config_schema_passthrough_fields);

/* ---- admin ---- */

static const struct config_field config_schema_basic_auth_fields[] = {
    STR("username", struct config_admin, basic_auth_user, NULL,
        CONFIG_STR_NONEMPTY),
    SECRET("password_file", struct config_admin, basic_auth_password),
};
static const struct config_section config_schema_basic_auth =
    CONFIG_SECTION(config_schema_basic_auth_fields);

static const struct config_field config_schema_admin_fields[] = {
    {.key = "address", .type = CONFIG_T_ADDR,
     .offset = offsetof(struct config_admin, addr), .def = "127.0.0.1:9901",
     .check = CONFIG_ADDR_PORT0},
    {.key = "basic_auth", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_basic_auth},
    {.key = "allow", .type = CONFIG_T_CUSTOM, .parse = config_custom_allow,
     .same = config_custom_allow_same},
};
static const struct config_section config_schema_admin =
    CONFIG_SECTION(config_schema_admin_fields);

/* ---- controllers[] ---- */

static const struct config_field config_schema_controller_fields[] = {
    {.key = "id", .type = CONFIG_T_ID,
     .offset = offsetof(struct config_controller, id), .required = true},
    {.key = "url", .type = CONFIG_T_CUSTOM, .parse = config_custom_url,
     .release = config_custom_url_release, .same = config_custom_url_same,
     .required = true},
};
const struct config_section config_schema_controller =
    CONFIG_SECTION(config_schema_controller_fields);

/* ---- upstream, health, timeouts, limits ---- */

static const struct config_field config_schema_upstream_tls_fields[] = {
    FILE_("ca", struct config_upstream, ca_file),
    FILE_("cert", struct config_upstream, cert_file),
    FILE_("key", struct config_upstream, key_file),
    STR("server_name", struct config_upstream, server_name, NULL,
        CONFIG_STR_HOST),
    BOOL("verify", struct config_upstream, verify, "true"),
};
static const struct config_section config_schema_upstream_tls =
    CONFIG_SECTION(config_schema_upstream_tls_fields);

static const struct config_field config_schema_upstream_fields[] = {
    {.key = "tls", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_upstream_tls, .restart = true},
    DUR("connect_timeout", struct config_upstream, connect_timeout_ms, "2s",
        1, MS_1H),
    DUR("idle_timeout", struct config_upstream, idle_timeout_ms, "60s", 1,
        MS_1D),
    U32("max_connections", struct config_upstream, max_connections, "64", 1,
        100000),
    BOOL("batch_sends", struct config_upstream, batch_sends, "true"),
};
static const struct config_section config_schema_upstream =
    CONFIG_SECTION(config_schema_upstream_fields);

static const struct config_field config_schema_health_fields[] = {
    STR("path", struct config_health, path, "/health-checks/controller/raft",
        CONFIG_STR_URL_PATH),
    DUR("interval", struct config_health, interval_ms, "500ms", 1, MS_1H),
    DUR("fast_interval", struct config_health, fast_interval_ms, "100ms", 1,
        MS_1H),
    DUR("timeout", struct config_health, timeout_ms, "1s", 1, MS_1H),
    U32("rise", struct config_health, rise, "2", 1, 100),
    U32("fall", struct config_health, fall, "2", 1, 100),
};
static const struct config_section config_schema_health =
    CONFIG_SECTION(config_schema_health_fields);

static const struct config_field config_schema_timeouts_fields[] = {
    DUR("client_header", struct config_timeouts, client_header_ms, "10s", 1,
        MS_1H),
    DUR("client_body", struct config_timeouts, client_body_ms, "30s", 1,
        MS_1D),
    DUR("client_idle", struct config_timeouts, client_idle_ms, "75s", 1,
        MS_1D),
    DUR("client_send", struct config_timeouts, client_send_ms, "60s", 1,
        MS_1D),
    DUR("drain", struct config_timeouts, drain_ms, "15s", 0, MS_1D),
};
static const struct config_section config_schema_timeouts =
    CONFIG_SECTION(config_schema_timeouts_fields);

static const struct config_field config_schema_limits_fields[] = {
    SIZE("max_header_bytes", struct config_limits, max_header_bytes, "16KiB",
         1024, 16u << 20),
    U32("max_headers", struct config_limits, max_headers, "100", 1, 10000),
    SIZE("max_body_bytes", struct config_limits, max_body_bytes, "1MiB", 0,
         1ull << 30),
    SIZE("max_response_bytes", struct config_limits, max_response_bytes,
         "8MiB", 1024, 1ull << 30),
    U32("max_concurrent_requests", struct config_limits,
        max_concurrent_requests, "4096", 1, 1000000),
    U32("max_connections", struct config_limits, max_connections, "16384", 1,
        1000000),
    U32("max_connections_per_client", struct config_limits,
        max_connections_per_client, "0", 0, 1000000),
    SIZE("max_buffered_bytes", struct config_limits, max_buffered_bytes,
         "256MiB", 0, 1ull << 40),
};
static const struct config_section config_schema_limits =
    CONFIG_SECTION(config_schema_limits_fields);

/* ---- redis, secrets, log, headers ---- */

static const struct config_field config_schema_redis_fields[] = {
    {.key = "address", .type = CONFIG_T_ADDR,
     .offset = offsetof(struct config_redis, addr), .def = "127.0.0.1:6379",
     .check = CONFIG_ADDR_UNIX, .restart = true},
    STR("username", struct config_redis, username, NULL, CONFIG_STR_NONEMPTY),
    SECRET("password_file", struct config_redis, password),
    U32("database", struct config_redis, database, "0", 0, 65535),
    STR("key_prefix", struct config_redis, key_prefix, "qg:",
        CONFIG_STR_KEY_PREFIX),
    DUR("connect_timeout", struct config_redis, connect_timeout_ms, "1s", 1,
        MS_1H),
    DUR("command_timeout", struct config_redis, command_timeout_ms, "1s", 1,
        MS_1H),
    {.key = "sentinels", .type = CONFIG_T_CUSTOM,
     .parse = config_custom_sentinels,
     .release = config_custom_sentinels_release,
     .same = config_custom_sentinels_same},
    STR("master_name", struct config_redis, master_name, NULL,
        CONFIG_STR_NONEMPTY),
    STR("sentinel_username", struct config_redis, sentinel_username, NULL,
        CONFIG_STR_NONEMPTY),
    SECRET("sentinel_password_file", struct config_redis, sentinel_password),
};
static const struct config_section config_schema_redis =
    CONFIG_SECTION(config_schema_redis_fields);

static const struct config_field config_schema_secrets_fields[] = {
    {.key = "hmac_key_file", .type = CONFIG_T_CUSTOM,
     .parse = config_custom_hmac_key, .release = config_custom_hmac_release,
     .same = config_custom_hmac_same, .restart = true},
};
static const struct config_section config_schema_secrets =
    CONFIG_SECTION(config_schema_secrets_fields);

static const struct config_field config_schema_log_fields[] = {
    {.key = "level", .type = CONFIG_T_ENUM,
     .offset = offsetof(struct config_log, level), .def = "info",
     .names = config_schema_log_levels},
    STR("error_log", struct config_log, error_log, "stderr",
        CONFIG_STR_ERROR_LOG),
    STR("access_log", struct config_log, access_log, "stdout",
        CONFIG_STR_ACCESS_LOG),
};
static const struct config_section config_schema_log =
    CONFIG_SECTION(config_schema_log_fields);

static const struct config_field config_schema_headers_fields[] = {
    STR("request_id", struct config_headers, request_id, "X-Request-Id",
        CONFIG_STR_TOKEN),
    BOOL("expose_controller", struct config_headers, expose_controller,
         "true"),
    {.key = "trust_forwarded", .type = CONFIG_T_CUSTOM,
     .parse = config_custom_trust_forwarded,
     .same = config_custom_trust_forwarded_same},
};
static const struct config_section config_schema_headers =
    CONFIG_SECTION(config_schema_headers_fields);

/* ---- routing ---- */

static const struct config_field config_schema_route_fields[] = {
    STR("path", struct config_route, path_prefix, NULL, CONFIG_STR_URL_PATH),
    {.key = "methods", .type = CONFIG_T_CUSTOM,
     .parse = config_rules_methods},
    STR("header", struct config_route, header, NULL, CONFIG_STR_TOKEN),
    {.key = "class", .type = CONFIG_T_ENUM,
     .offset = offsetof(struct config_route, cls),
     .names = config_schema_route_classes, .required = true},
};
const struct config_section config_schema_route =
    CONFIG_SECTION(config_schema_route_fields);

static const struct config_field config_schema_routing_fields[] = {
    DUR("affinity_ttl", struct config_routing, affinity_ttl_ms, "30m", 1000,
        30 * MS_1D),
    U32("affinity_learn_rate", struct config_routing, affinity_learn_rate,
        "200", 1, 100000),
    DUR("leader_wait", struct config_routing, leader_wait_ms, "10s", 0, MS_1H),
    {.key = "classes", .type = CONFIG_T_CUSTOM, .parse = config_rules_routes,
     .release = config_rules_routes_release},
};
static const struct config_section config_schema_routing =
    CONFIG_SECTION(config_schema_routing_fields);

/* ---- retry ---- */

#define ALL_REASONS                                                          \
    ((1u << RETRY_NEVER_SENT) | (1u << RETRY_SENT_FAILED) |                  \
     (1u << RETRY_NO_LEADER) | (1u << RETRY_TOO_MANY))

const struct config_retry_policy config_schema_retry_defaults[ROUTE__COUNT] = {
    [ROUTE_MFA] = {.on = ALL_REASONS | (1u << RETRY_AMBIGUOUS),
                   .max_attempts = 6, .per_try_timeout_ms = 6000,
                   .deadline_ms = 10000, .backoff_base_ms = 50,
                   .backoff_cap_ms = 1000, .fresh_connection = true},
    [ROUTE_OIDC] = {.on = 1u << RETRY_NEVER_SENT, .max_attempts = 2,
                    .per_try_timeout_ms = 10000, .deadline_ms = 15000,
                    .backoff_base_ms = 25, .backoff_cap_ms = 250,
                    .fresh_connection = true},
    [ROUTE_SESSION] = {.on = ALL_REASONS, .max_attempts = 3,
                       .per_try_timeout_ms = 10000, .deadline_ms = 15000,
                       .backoff_base_ms = 25, .backoff_cap_ms = 500,
                       .fresh_connection = true},
    [ROUTE_WRITE] = {.on = ALL_REASONS, .max_attempts = 4,
                     .per_try_timeout_ms = 10000, .deadline_ms = 10000,
                     .backoff_base_ms = 50, .backoff_cap_ms = 1000,
                     .fresh_connection = true},
    [ROUTE_READ] = {.on = ALL_REASONS, .max_attempts = 3,
                    .per_try_timeout_ms = 10000, .deadline_ms = 15000,
                    .backoff_base_ms = 25, .backoff_cap_ms = 250,
                    .fresh_connection = true},
};

/* Policy keys have no .def: absent keys keep the class's default. */
static const struct config_field config_schema_policy_fields[] = {
    {.key = "on", .type = CONFIG_T_CUSTOM, .parse = config_rules_retry_on},
    U32("max_attempts", struct config_retry_policy, max_attempts, NULL, 1,
        100),
    DUR("per_try_timeout", struct config_retry_policy, per_try_timeout_ms,
        NULL, 1, MS_1H),
    DUR("deadline", struct config_retry_policy, deadline_ms, NULL, 1, MS_1H),
    DUR("backoff_base", struct config_retry_policy, backoff_base_ms, NULL, 0,
        MS_1H),
    DUR("backoff_cap", struct config_retry_policy, backoff_cap_ms, NULL, 0,
        MS_1H),
    BOOL("fresh_connection", struct config_retry_policy, fresh_connection,
         NULL),
};
const struct config_section config_schema_policy =
    CONFIG_SECTION(config_schema_policy_fields);

static const struct config_field config_schema_budget_fields[] = {
    {.key = "ratio", .type = CONFIG_T_RATIO,
     .offset = offsetof(struct config_retry, budget_ratio), .def = "0.2"},
    U32("min", struct config_retry, budget_min, "3", 0, 1000000),
};
static const struct config_section config_schema_budget =
    CONFIG_SECTION(config_schema_budget_fields);

static const struct config_field config_schema_retry_fields[] = {
    {.key = "budget", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_budget},
    DUR("clock_skew", struct config_retry, clock_skew_ms, "5s", 0, MS_1H),
    {.key = "policies", .type = CONFIG_T_CUSTOM,
     .parse = config_rules_policies},
};
static const struct config_section config_schema_retry =
    CONFIG_SECTION(config_schema_retry_fields);

/* ---- gate ---- */

static const struct config_field config_schema_probe_fields[] = {
    DUR("initial", struct config_gate, probe_initial_ms, "2ms", 1, MS_1H),
    DUR("max", struct config_gate, probe_max_ms, "250ms", 1, MS_1H),
    U32("budget", struct config_gate, probe_budget, "500", 0, 1000000),
};
static const struct config_section config_schema_probe =
    CONFIG_SECTION(config_schema_probe_fields);

static const struct config_field config_schema_management_fields[] = {
    STR("username", struct config_gate, mgmt_username, NULL,
        CONFIG_STR_NONEMPTY),
    SECRET("password_file", struct config_gate, mgmt_password),
};
static const struct config_section config_schema_management =
    CONFIG_SECTION(config_schema_management_fields);

static const struct config_field config_schema_gate_fields[] = {
    BOOL("enabled", struct config_gate, enabled, "true"),
    {.key = "mode", .type = CONFIG_T_CUSTOM, .parse = config_rules_gate_mode},
    DUR("timeout", struct config_gate, timeout_ms, "10s", 1, MS_1H),
    {.key = "on_timeout", .type = CONFIG_T_CUSTOM,
     .parse = config_rules_on_timeout},
    {.key = "source", .type = CONFIG_T_ENUM,
     .offset = offsetof(struct config_gate, source), .def = "probe",
     .names = config_schema_gate_sources},
    {.key = "probe", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_probe},
    DUR("poll", struct config_gate, poll_ms, "500ms", 1, MS_1H),
    DUR("fence_ttl", struct config_gate, fence_ttl_ms, "10m", 1000, 30 * MS_1D),
    DUR("outcome_ttl", struct config_gate, outcome_ttl_ms, "10m", 1000,
        30 * MS_1D),
    {.key = "management", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_management},
    {.key = "legacy_sessions", .type = CONFIG_T_ENUM,
     .offset = offsetof(struct config_gate, legacy_sessions),
     .def = "confirmed", .names = config_schema_legacy_sessions},
    U32("max_held", struct config_gate, max_held, "10000", 1, 10000000),
    U32("max_held_per_identity", struct config_gate, max_held_per_identity,
        "4", 1, 1000000),
};
static const struct config_section config_schema_gate =
    CONFIG_SECTION(config_schema_gate_fields);

/* ---- relay ---- */

static const struct config_field config_schema_relay_source_fields[] = {
    {.key = "controller", .type = CONFIG_T_ID,
     .offset = offsetof(struct config_relay_source, id), .required = true},
    {.key = "path", .type = CONFIG_T_STRING,
     .offset = offsetof(struct config_relay_source, path),
     .check = CONFIG_STR_PATH, .required = true},
};
const struct config_section config_schema_relay_source =
    CONFIG_SECTION(config_schema_relay_source_fields);

static const struct config_field config_schema_relay_fields[] = {
    DUR("poll", struct config_relay, poll_ms, "200ms", 1, MS_1H),
    {.key = "metrics_address", .type = CONFIG_T_ADDR,
     .offset = offsetof(struct config_relay, metrics_addr),
     .def = "127.0.0.1:9902", .check = CONFIG_ADDR_PORT0},
    {.key = "sources", .type = CONFIG_T_CUSTOM,
     .parse = config_rules_relay_sources,
     .release = config_rules_relay_sources_release},
};
static const struct config_section config_schema_relay =
    CONFIG_SECTION(config_schema_relay_fields);

/* ---- the top level ---- */

static const struct config_field config_schema_top_fields[] = {
    {.key = "workers", .type = CONFIG_T_U32,
     .offset = offsetof(struct config, workers), .def = "0", .max = 1024,
     .restart = true},
    {.key = "public_url", .type = CONFIG_T_CUSTOM,
     .parse = config_custom_public_url,
     .release = config_custom_public_url_release},
    {.key = "listeners", .type = CONFIG_T_CUSTOM,
     .parse = config_custom_listeners,
     .release = config_custom_listeners_release,
     .same = config_custom_listeners_same, .restart = true},
    SECTION("passthrough", struct config, passthrough,
            config_schema_passthrough),
    {.key = "admin", .type = CONFIG_T_SECTION,
     .offset = offsetof(struct config, admin), .section = &config_schema_admin,
     .restart = true},
    {.key = "controllers", .type = CONFIG_T_CUSTOM,
     .parse = config_custom_controllers,
     .release = config_custom_controllers_release,
     .same = config_custom_controllers_same, .restart = true},
    SECTION("upstream", struct config, upstream, config_schema_upstream),
    SECTION("health", struct config, health, config_schema_health),
    SECTION("timeouts", struct config, timeouts, config_schema_timeouts),
    SECTION("limits", struct config, limits, config_schema_limits),
    {.key = "redis", .type = CONFIG_T_SECTION,
     .offset = offsetof(struct config, redis),
     .section = &config_schema_redis, .restart = true},
    {.key = "secrets", .type = CONFIG_T_SECTION, .offset = 0,
     .section = &config_schema_secrets},
    SECTION("log", struct config, log, config_schema_log),
    SECTION("headers", struct config, headers, config_schema_headers),
    SECTION("routing", struct config, routing, config_schema_routing),
    SECTION("retry", struct config, retry, config_schema_retry),
    SECTION("gate", struct config, gate, config_schema_gate),
    SECTION("relay", struct config, relay, config_schema_relay),
};
const struct config_section config_schema_top =
    CONFIG_SECTION(config_schema_top_fields);

/* ---- built-in routes ---- */

void config_schema_builtin_routes(struct config_routing *r)
{
    static const struct {
        const char *path;
        uint32_t methods;
        const char *header;
        enum route_class cls;
    } rows[] = {
        {"/edge/client/v1/current-identity/mfa", 0, NULL, ROUTE_MFA},
        {"/edge/management/v1/current-identity/mfa", 0, NULL, ROUTE_MFA},
        {"/oidc/", 0, NULL, ROUTE_OIDC},
        {"", 0, "zt-session", ROUTE_SESSION},
        {"", HTTP_M(HTTP_POST) | HTTP_M(HTTP_PUT) | HTTP_M(HTTP_PATCH) |
                 HTTP_M(HTTP_DELETE),
         NULL, ROUTE_WRITE},
        {"", 0, NULL, ROUTE_READ},
    };
    for (size_t i = 0; i < ARRAY_LEN(rows); i++) {
        struct config_route *rt = &r->routes[i];
        rt->path_prefix = xstrdup(rows[i].path);
        rt->methods = rows[i].methods;
        rt->header = rows[i].header ? xstrdup(rows[i].header) : NULL;
        rt->cls = rows[i].cls;
        rt->line = 0;
    }
    r->n_routes = (int)ARRAY_LEN(rows);
}
