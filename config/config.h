/* config.h - quorumgate's configuration: the parsed, validated, immutable
 * form of the YAML file.
 *
 * Ownership: config_load() returns a struct config that owns every string
 * and array inside it (all heap-allocated, freed by the last
 * config_unref()).  Once
 * loaded a config is never modified; it is shared between threads by
 * reference counting (config_ref / config_unref), so a reload builds a new
 * one aside and swaps a pointer.
 *
 * Units: every duration is stored in milliseconds (uint64_t), every size in
 * bytes (uint64_t).  In YAML, durations are written "250ms", "2s", "1m",
 * "1h" (a bare integer is rejected: the unit must be explicit) and sizes
 * "512", "16KiB", "1MiB", "1GiB".
 *
 * Files: every file path is resolved against the configuration file's
 * directory when relative; certificate, key and CA paths are checked to be
 * readable at load time and stored as paths; *password_file keys are read
 * and stored as the file's content without its trailing newline (wiped
 * when freed).
 */
#ifndef QG_CONFIG_H
#define QG_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_CONTROLLERS 16
#define CONFIG_MAX_LISTENERS 8
#define CONFIG_MAX_ALLOW 32
#define CONFIG_MAX_ROUTES 64
#define CONFIG_ID_MAX 64
/* Every controller id joined by commas, with the NUL: a list of ids never
 * has to be cut. */
#define CONFIG_ID_LIST_MAX (CONFIG_MAX_CONTROLLERS * CONFIG_ID_MAX)
/* "acked=<ids>; pending=<ids>" (the Quorumgate-Replication value). */
#define CONFIG_REPLICATION_MAX (sizeof("acked=; pending=") + CONFIG_ID_LIST_MAX)
#define CONFIG_MAX_SNI 8
#define CONFIG_SNI_MAX 254
#define CONFIG_MAX_SENTINELS 8

/* A host:port, "[v6]:port" or "unix:/path" address as written in the file. */
struct config_addr {
    char *text;            /* as written, owned */
    char *host;            /* owned; "" for unix sockets; IPv6 literals
                              without their brackets */
    uint16_t port;         /* 0 = pick a free port (tests) */
    char *unix_path;       /* owned; NULL unless "unix:" (only redis.address
                              accepts it); resolved like file paths */
};

struct config_listener {
    struct config_addr addr;
    bool tls;              /* a tls: mapping was given (cert + key) */
    char *tls_cert;        /* owned PEM path, NULL unless tls */
    char *tls_key;         /* owned PEM path */
    char *tls_client_ca;   /* owned; optional: ask clients for certificates */
    int line;              /* where it was declared, for messages */
};

enum config_pt_action { CONFIG_PT_CLOSE = 0, CONFIG_PT_KEEP };

/* The passthrough listener: TCP spliced untouched to the raft leader, for
 * identities that log in with a client certificate (see README, "Client
 * certificates").  Its own port (addr; text NULL = none), and/or an SNI
 * split of a TLS listener's port (n_sni > 0). */
struct config_passthrough {
    struct config_addr addr;         /* (restart); text NULL = disabled */
    char ids[CONFIG_MAX_CONTROLLERS][CONFIG_ID_MAX]; /* controllers: as
                                        listed (restart); none = all */
    int n_ids;
    uint32_t allowed;                /* bitmask of controller indexes it
                                        may splice to (resolved from ids) */
    uint32_t max_connections;        /* 4096 per process */
    uint64_t connect_timeout_ms;     /* 2s */
    uint64_t idle_timeout_ms;        /* 5m */
    enum config_pt_action on_leader_change; /* leader_change.action */
    uint64_t leader_change_grace_ms; /* 5s: bound of an in-flight exchange */
    uint64_t leader_change_quiet_ms; /* 250ms: no exchange in flight */
    /* sni: the split on a TLS listener's port (restart) */
    uint32_t sni_listener;           /* sni.listener: listeners[] index */
    char sni_names[CONFIG_MAX_SNI][CONFIG_SNI_MAX]; /* sni.names, lower
                                        case; none = no split */
    int n_sni;
    int line;                        /* of the section, for messages */
};

struct config_cidr {
    int family;            /* AF_INET or AF_INET6 */
    uint8_t addr[16];
    int prefix;
};

struct config_admin {
    struct config_addr addr;         /* default 127.0.0.1:9901 */
    char *basic_auth_user;           /* owned; NULL = no auth */
    char *basic_auth_password;       /* owned; read from password_file */
    struct config_cidr allow[CONFIG_MAX_ALLOW];
    int n_allow;                     /* 0 = everyone who can reach addr */
};

struct config_controller {
    char id[CONFIG_ID_MAX];          /* raft member id, e.g. "ctrl1" */
    char *url;                       /* owned, e.g. "https://10.0.0.1:1280"
                                        (scheme lower-cased, no trailing
                                        slash; never a path) */
    char *scheme;                    /* owned: "http" or "https" */
    char *host;                      /* owned: host part of url */
    uint16_t port;                   /* port part of url (default by scheme) */
    int line;
};

struct config_upstream {
    char *ca_file;                   /* owned; NULL = system store */
    char *cert_file;                 /* owned; optional client cert */
    char *key_file;                  /* owned */
    char *server_name;               /* owned; Host/SNI to send; NULL = url host */
    bool verify;                     /* default true */
    uint64_t connect_timeout_ms;     /* default 2s */
    uint64_t idle_timeout_ms;        /* idle keep-alive upstream conns; 60s */
    uint32_t max_connections;        /* per controller per worker; 64 */
    bool batch_sends;                /* io_uring batches; default true */
};

struct config_health {
    char *path;                      /* owned; /health-checks/controller/raft */
    uint64_t interval_ms;            /* 500ms */
    uint64_t fast_interval_ms;       /* 100ms, while no leader is known */
    uint64_t timeout_ms;             /* 1s */
    uint32_t rise;                   /* 2 */
    uint32_t fall;                   /* 2 */
};

struct config_timeouts {
    uint64_t client_header_ms;       /* 10s: request line+headers, else 408 */
    uint64_t client_body_ms;         /* 30s: whole body, else 408 */
    uint64_t client_idle_ms;         /* 75s: idle keep-alive, closed silently */
    uint64_t client_send_ms;         /* 60s: a whole answer taken by the
                                        client, else the connection is
                                        closed (and counted) */
    uint64_t drain_ms;               /* 15s: SIGTERM drain bound */
};

struct config_limits {
    uint64_t max_header_bytes;       /* 16KiB, else 431 */
    uint32_t max_headers;            /* 100, else 431 */
    uint64_t max_body_bytes;         /* 1MiB, else 413 */
    uint64_t max_response_bytes;     /* 8MiB, else 502 */
    uint32_t max_concurrent_requests;/* 4096 per process, else 503 */
    uint32_t max_connections;        /* 16384 per process */
    uint32_t max_connections_per_client; /* per client address; 0 = no limit */
    uint64_t max_buffered_bytes;     /* 256MiB per process: request bodies
                                        and answers held for clients, else
                                        503 PROXY_BUFFER_BUDGET; 0 = none */
};

/* redis.key_prefix: keys are built in fixed buffers sized for it. */
#define CONFIG_KEY_PREFIX_MAX 32
#define CONFIG_KEY_PREFIX_MAX_TEXT "32"

struct config_redis {
    struct config_addr addr;         /* default 127.0.0.1:6379 */
    char *username;                  /* owned; optional ACL user */
    char *password;                  /* owned; from password_file */
    uint32_t database;               /* 0 */
    char *key_prefix;                /* owned; "qg:" */
    uint64_t connect_timeout_ms;     /* 1s */
    uint64_t command_timeout_ms;     /* 1s */
    /* Sentinel-managed Redis (instead of address): the master is asked of
     * these sentinels, in order, by master_name. */
    struct config_addr sentinels[CONFIG_MAX_SENTINELS]; /* owned */
    int n_sentinels;                 /* 0 = use address */
    char *master_name;               /* owned; NULL without sentinels */
    char *sentinel_username;         /* owned; optional */
    char *sentinel_password;         /* owned; sentinel_password_file */
};

enum config_log_level {
    CONFIG_LOG_DEBUG = 0,
    CONFIG_LOG_INFO,
    CONFIG_LOG_WARN,
    CONFIG_LOG_ERROR
};

struct config_log {
    enum config_log_level level;     /* info */
    char *error_log;                 /* owned: "stderr", "stdout" or a path */
    char *access_log;                /* owned: "stdout", "stderr", path, "off" */
                                     /* (paths resolved against the file's
                                        directory) */
};

struct config_headers {
    char *request_id;                /* owned: "X-Request-Id" */
    bool expose_controller;          /* Quorumgate-Controller; true */
    struct config_cidr trust_forwarded[CONFIG_MAX_ALLOW]; /* proxies whose
                                        X-Forwarded-For / Forwarded are kept
                                        and appended to; none by default */
    int n_trust_forwarded;
};

/* Routing classes (see routing/classify.h). */
enum route_class {
    ROUTE_MFA = 0,
    ROUTE_OIDC,
    ROUTE_SESSION,
    ROUTE_WRITE,
    ROUTE_READ,
    ROUTE__COUNT
};

/* One row of the classification table: the first matching row wins. */
struct config_route {
    char *path_prefix;               /* owned; "" matches everything */
    uint32_t methods;                /* bitmask of 1u << enum http_method; 0 = any */
    char *header;                    /* owned; request must carry it; NULL = n/a */
    enum route_class cls;
    int line;
};

struct config_routing {
    struct config_route routes[CONFIG_MAX_ROUTES];
    int n_routes;                    /* >= 1 after loading: without
                                        routing.classes the built-in OpenZiti
                                        table is filled in (lines 0) */
    uint64_t affinity_ttl_ms;        /* 30m, refreshed on use */
    uint32_t affinity_learn_rate;    /* entries per second per client
                                        address (burst 5x): 20 */
    uint64_t leader_wait_ms;         /* wait for a leader: 10s */
};

/* Failure classes a retry policy may list (retry/classify.h). */
enum retry_reason {
    RETRY_NEVER_SENT = 0,            /* connect refused, DNS, TLS handshake */
    RETRY_SENT_FAILED,               /* reset, timeout, 502/504 after send */
    RETRY_NO_LEADER,                 /* 503 CLUSTER_NO_LEADER */
    RETRY_TOO_MANY,                  /* 429 SERVER_TOO_MANY_REQUESTS/RATE_LIMITED */
    RETRY_AMBIGUOUS,                 /* may have committed */
    RETRY__COUNT
};

struct config_retry_policy {
    uint32_t on;                     /* bitmask of 1u << enum retry_reason */
    uint32_t max_attempts;           /* including the first */
    uint64_t per_try_timeout_ms;
    uint64_t deadline_ms;            /* overall, all attempts + backoff */
    uint64_t backoff_base_ms;
    uint64_t backoff_cap_ms;
    bool fresh_connection;           /* no keep-alive reuse for writes */
};

struct config_retry {
    struct config_retry_policy policy[ROUTE__COUNT];
    double budget_ratio;             /* 0.2 */
    uint32_t budget_min;             /* 3 concurrent retries always allowed */
    uint64_t clock_skew_ms;          /* reconcile: createdAt tolerance, 5s */
};

enum gate_mode { GATE_HEALTHY = 0, GATE_ALL, GATE_MAJORITY, GATE_COUNT };
enum gate_source { GATE_SRC_PROBE = 0, GATE_SRC_EVENTS };
enum gate_legacy { GATE_LEGACY_CONFIRMED = 0, GATE_LEGACY_UNCONFIRMED };

struct config_gate {
    bool enabled;                    /* true */
    enum gate_mode mode;             /* healthy */
    uint32_t count;                  /* for GATE_COUNT */
    uint64_t timeout_ms;             /* 10s */
    bool fail_on_timeout;            /* false: answer success + header */
    enum gate_source source;         /* probe */
    uint64_t probe_initial_ms;       /* 50ms */
    uint64_t probe_max_ms;           /* 1s */
    uint32_t probe_budget;           /* probes per second per controller,
                                        all held calls; 0 = no cap */
    uint64_t poll_ms;                /* fallback poll of Redis: 500ms */
    uint64_t fence_ttl_ms;           /* 10m */
    uint64_t outcome_ttl_ms;         /* how long a repeat gets the outcome: 10m */
    enum gate_legacy legacy_sessions;/* confirmed; unconfirmed = legacy-
                                        session calls pass unheld, marked */
    uint32_t max_held;               /* held calls per process: 10000 */
    uint32_t max_held_per_identity;  /* held calls per identity: 4 */
    char *mgmt_username;             /* owned; management credential (legacy) */
    char *mgmt_password;             /* owned; from password_file */
};

struct config_relay_source {
    char id[CONFIG_ID_MAX];          /* controller id the file belongs to */
    char *path;                      /* owned: event file (resolved; it
                                        need not exist yet) */
    int line;
};

struct config_relay {
    struct config_relay_source sources[CONFIG_MAX_CONTROLLERS];
    int n_sources;
    uint64_t poll_ms;                /* 200ms */
    struct config_addr metrics_addr; /* relay's /metrics: 127.0.0.1:9902 */
};

struct config {
    atomic_int refs;                 /* config_ref/config_unref */
    char *path;                      /* owned: file it came from */
    uint32_t workers;                /* 0 in the file = CPUs; resolved here */
    char *public_url;                /* owned; what clients use, for rewriting
                                        /controllers, /version, Location;
                                        never NULL after loading: when the
                                        file has none it is derived from the
                                        first listener; no trailing slash */
    bool public_url_derived;         /* public_url came from listeners[0]
                                        (whose port 0 the app replaces by
                                        the port it bound) */

    struct config_listener listeners[CONFIG_MAX_LISTENERS];
    int n_listeners;
    struct config_passthrough passthrough;
    struct config_admin admin;
    struct config_controller controllers[CONFIG_MAX_CONTROLLERS];
    int n_controllers;
    struct config_upstream upstream;
    struct config_health health;
    struct config_timeouts timeouts;
    struct config_limits limits;
    struct config_redis redis;
    unsigned char *hmac_key;         /* owned; the bytes of
                                        secrets.hmac_key_file as they are
                                        (required; wiped when freed) */
    size_t hmac_key_len;             /* >= 32 */
    struct config_log log;
    struct config_headers headers;
    struct config_routing routing;
    struct config_retry retry;
    struct config_gate gate;
    struct config_relay relay;
};

/* One problem found while loading: "file:line: message". */
struct config_error {
    char *file;                      /* owned */
    int line;                        /* 0 when not tied to a line */
    char *message;                   /* owned; without file and line */
    char *text;                      /* owned: "file:line: message" (or
                                        "file: message" when line is 0) */
};

/* Sorted by line; problems not tied to a line come last. */
struct config_errors {
    struct config_error *items;      /* owned array */
    int n;
};

/* Parse and validate path.  On success returns a config with refs == 1 and
 * leaves errs empty; on failure returns NULL and fills errs with every
 * problem found (not just the first).  *errs must start empty ({0}).
 * Relative file names in the file are resolved against path's directory. */
struct config *config_load(const char *path, struct config_errors *errs);

/* The same from a string (tests); name is used in messages, and relative
 * file names resolve against name's directory (the current directory when
 * name has none). */
struct config *config_load_string(const char *name, const char *yaml,
                                  struct config_errors *errs);
/* The same with an explicit directory for relative file names. */
struct config *config_load_string_dir(const char *name, const char *yaml,
                                      const char *base_dir,
                                      struct config_errors *errs);

void config_errors_free(struct config_errors *errs);

/* The log sinks cfg->log names (pointers into cfg), for log_new and
 * log_reopen (base/log.h). */
struct log_sinks;
void config_log_sinks(const struct config *cfg, struct log_sinks *out);

struct config *config_ref(struct config *cfg);
void config_unref(struct config *cfg);

/* Keys that an in-process reload (SIGHUP) cannot change: listeners, admin,
 * workers, controllers, redis address.  Returns a malloc'ed, ", "
 * separated list of the ones that differ, named as in the file (e.g.
 * "workers, listeners, admin.allow, redis.address"), or NULL when none do. */
char *config_restart_only_diff(const struct config *old,
                               const struct config *neu);

/* Index of a controller id, or -1. */
int config_controller_index(const struct config *cfg, const char *id);

const char *config_route_class_name(enum route_class cls);
const char *config_retry_reason_name(enum retry_reason r);

#endif
