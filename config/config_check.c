/* config_check.c - see config_check.h. */
#include "config/config_check.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/buf.h"
#include "base/crypto.h"
#include "config/config_addr.h"
#include "config/config_schema.h"
#include "config/config_util.h"
#include "base/util.h"

/* The first of the paths present in the file, for the line of a problem
 * between keys that may each be defaulted. */
static int config_check_line(struct config_parse *p, const char *a,
                             const char *b, const char *section)
{
    if (config_util_node(p, a))
        return config_util_line(p, a);
    if (b && config_util_node(p, b))
        return config_util_line(p, b);
    return config_util_line(p, section);
}

/* Within section, key a needs key b (and, when both_ways, b needs a). */
static void config_check_pair(struct config_parse *p, const char *section,
                              const char *a, const char *b, bool both_ways)
{
    char *pa = config_parse_join(section, a);
    char *pb = config_parse_join(section, b);
    bool has_a = config_util_node(p, pa) != NULL;
    bool has_b = config_util_node(p, pb) != NULL;
    if (has_a && !has_b)
        config_parse_error(p, config_util_line(p, pa), "%s: %s without %s",
                           section, a, b);
    else if (both_ways && has_b && !has_a)
        config_parse_error(p, config_util_line(p, pb), "%s: %s without %s",
                           section, b, a);
    free(pa);
    free(pb);
}

static void config_check_not_more(struct config_parse *p, uint64_t small,
                                  uint64_t big, const char *section,
                                  const char *small_key, const char *big_key,
                                  const char *relation)
{
    if (small <= big)
        return;
    char a[32], b[32];
    config_util_fmt_ms(a, sizeof(a), small);
    config_util_fmt_ms(b, sizeof(b), big);
    char *ps = config_parse_join(section, small_key);
    char *pb = config_parse_join(section, big_key);
    config_parse_error(p, config_check_line(p, ps, pb, section),
                       "%s: %s (%s) is %s than %s (%s)", section, small_key, a,
                       relation, big_key, b);
    free(ps);
    free(pb);
}

static void config_check_lists(struct config_parse *p, struct config *cfg)
{
    /* "None" only when absent or an empty list: a wrong type is already
     * reported. */
    const struct yaml_doc_node *n = config_util_node(p, "listeners");
    if (cfg->n_listeners == 0 && (!n || n->kind == YAML_DOC_SEQUENCE))
        config_parse_error(p, config_util_line(p, "listeners"),
                           "listeners: at least one listener is required");
    n = config_util_node(p, "controllers");
    if (cfg->n_controllers == 0 && (!n || n->kind == YAML_DOC_SEQUENCE))
        config_parse_error(p, config_util_line(p, "controllers"),
                           "controllers: at least one controller is required");
    const struct config_addr *admin = &cfg->admin.addr;
    for (int i = 0; i < cfg->n_listeners && admin->text; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        if (l->addr.text && admin->port != 0 &&
            config_addr_same(&l->addr, admin)) {
            config_parse_error(p, config_util_line(p, "admin.address"),
                               "admin.address: '%s' is already used by "
                               "listeners[%d] (line %d)", admin->text, i,
                               l->line);
            break;
        }
    }
    for (int i = 0; i < cfg->relay.n_sources; i++) {
        const struct config_relay_source *s = &cfg->relay.sources[i];
        if (!s->id[0] || cfg->n_controllers == 0 ||
            config_controller_index(cfg, s->id) >= 0)
            continue;
        struct buf ids = {0};
        for (int c = 0; c < cfg->n_controllers; c++)
            buf_printf(&ids, "%s%s", c ? ", " : "", cfg->controllers[c].id);
        char *at = xasprintf("relay.sources[%d].controller", i);
        config_parse_error(p, config_util_line(p, at), "%s: '%s' is not one "
                           "of the controllers (%s)", at, s->id, ids.data);
        free(at);
        buf_free(&ids);
    }
}

/* passthrough: a section needs an address; its controllers must be
 * configured ones (none listed = every one); its address is its own. */
static void config_check_passthrough(struct config_parse *p,
                                     struct config *cfg)
{
    struct config_passthrough *pt = &cfg->passthrough;
    const struct yaml_doc_node *n = config_util_node(p, "passthrough");
    pt->line = n ? config_util_line(p, "passthrough") : 0;
    pt->allowed = 0;
    if (n && !yaml_doc_is_null(n) && !pt->addr.text && pt->n_sni == 0 &&
        !config_util_node(p, "passthrough.address"))
        config_parse_error(p, pt->line, "passthrough: address (or "
                           "sni.names) is required (remove the section for "
                           "no passthrough listener)");
    if (pt->n_sni > 0 &&
        ((int)pt->sni_listener >= cfg->n_listeners ||
         !cfg->listeners[pt->sni_listener].tls))
        config_parse_error(p, config_util_line(p, "passthrough.sni"),
                           "passthrough.sni.listener: listeners[%u] is not a "
                           "TLS listener", (unsigned)pt->sni_listener);
    for (int i = 0; i < pt->n_ids; i++) {
        int k = config_controller_index(cfg, pt->ids[i]);
        if (k >= 0) {
            pt->allowed |= 1u << k;
            continue;
        }
        if (cfg->n_controllers == 0)
            continue;
        struct buf ids = {0};
        for (int c = 0; c < cfg->n_controllers; c++)
            buf_printf(&ids, "%s%s", c ? ", " : "", cfg->controllers[c].id);
        char *at = xasprintf("passthrough.controllers[%d]", i);
        config_parse_error(p, config_util_line(p, at), "%s: '%s' is not one "
                           "of the controllers (%s)", at, pt->ids[i],
                           ids.data);
        free(at);
        buf_free(&ids);
    }
    if (pt->n_ids == 0)
        for (int c = 0; c < cfg->n_controllers; c++)
            pt->allowed |= 1u << c;
    if (!pt->addr.text || pt->addr.port == 0)
        return;
    const struct config_addr *others[CONFIG_MAX_LISTENERS + 1];
    int n_others = 0;
    for (int i = 0; i < cfg->n_listeners; i++)
        others[n_others++] = &cfg->listeners[i].addr;
    others[n_others++] = &cfg->admin.addr;
    for (int i = 0; i < n_others; i++) {
        if (others[i]->text && config_addr_same(others[i], &pt->addr)) {
            config_parse_error(p, config_util_line(p, "passthrough.address"),
                               "passthrough.address: '%s' is already used "
                               "by %s", pt->addr.text,
                               i == n_others - 1 ? "admin.address"
                                                 : "a listener");
            break;
        }
    }
}

/* redis: either address or sentinels + master_name. */
static void config_check_redis(struct config_parse *p)
{
    bool has_sentinels = config_util_node(p, "redis.sentinels") != NULL;
    if (has_sentinels && config_util_node(p, "redis.address"))
        config_parse_error(p, config_util_line(p, "redis.sentinels"),
                           "redis: address and sentinels exclude each other "
                           "(with sentinels the master's address is asked "
                           "of them): remove one");
    config_check_pair(p, "redis", "sentinels", "master_name", true);
    static const char *const needs[] = {"sentinel_username",
                                        "sentinel_password_file"};
    for (size_t i = 0; i < ARRAY_LEN(needs); i++) {
        char *k = config_parse_join("redis", needs[i]);
        if (!has_sentinels && config_util_node(p, k))
            config_parse_error(p, config_util_line(p, k),
                               "redis: %s without sentinels", needs[i]);
        free(k);
    }
    config_check_pair(p, "redis", "sentinel_username",
                      "sentinel_password_file", false);
}

static void config_check_values(struct config_parse *p, struct config *cfg)
{
    config_check_redis(p);
    config_check_passthrough(p, cfg);
    config_check_pair(p, "upstream.tls", "cert", "key", true);
    config_check_pair(p, "admin.basic_auth", "username", "password_file",
                      true);
    config_check_pair(p, "gate.management", "username", "password_file",
                      true);
    config_check_pair(p, "redis", "username", "password_file", false);
    config_check_not_more(p, cfg->health.fast_interval_ms,
                          cfg->health.interval_ms, "health", "fast_interval",
                          "interval", "longer");
    config_check_not_more(p, cfg->gate.probe_initial_ms, cfg->gate.probe_max_ms,
                          "gate.probe", "initial", "max", "longer");
    /* after the rest is right: a misspelt management key is the cause */
    if (p->errs->n == 0 && cfg->gate.enabled &&
        cfg->gate.source == GATE_SRC_PROBE && cfg->n_controllers > 1 &&
        !(cfg->gate.mgmt_username && cfg->gate.mgmt_password) &&
        cfg->gate.legacy_sessions != GATE_LEGACY_UNCONFIRMED)
        config_parse_error(
            p, config_check_line(p, "gate.source", "gate.enabled", "gate"),
            "gate: MFA calls made with a legacy zt-session cannot be "
            "confirmed on the other controllers: configure "
            "gate.management (username + password_file of a management "
            "credential) or gate.source: events (with quorumgate relay), or "
            "pass them unheld with gate.legacy_sessions: unconfirmed (their "
            "answers then carry Quorumgate-Replication: unconfirmed)");
    if (cfg->gate.mode == GATE_COUNT && cfg->n_controllers > 0 &&
        cfg->gate.count > (uint32_t)cfg->n_controllers)
        config_parse_error(p, config_util_line(p, "gate.mode"),
                           "gate.mode: %u is more than the number of "
                           "controllers (%d)",
                           (unsigned)cfg->gate.count, cfg->n_controllers);
    for (int c = 0; c < ROUTE__COUNT; c++) {
        const struct config_retry_policy *pol = &cfg->retry.policy[c];
        char *section = xasprintf("retry.policies.%s",
                                  config_route_class_name((enum route_class)c));
        config_check_not_more(p, pol->per_try_timeout_ms, pol->deadline_ms,
                              section, "per_try_timeout", "deadline",
                              "longer");
        config_check_not_more(p, pol->backoff_base_ms, pol->backoff_cap_ms,
                              section, "backoff_base", "backoff_cap",
                              "longer");
        free(section);
    }
}

/* A readable file that holds no PEM of the right kind is an error too: a
 * broken certificate found by -t is better than one found by the first
 * request. */
static void config_check_pem(struct config_parse *p, const char *path,
                             const char *where, bool key)
{
    char *err = NULL;
    if (!path || access(path, R_OK) != 0)
        return; /* absent or unreadable: reported by the file check */
    if (!crypto_check_pem(path, key, &err)) {
        config_parse_error(p, config_util_line(p, where), "%s: %s", where,
                           err);
        free(err);
    }
}

/* A certificate and a key that load alone but do not belong together
 * would stop the listener at start. */
static void config_check_keypair(struct config_parse *p, const char *cert,
                              const char *key, const char *where)
{
    char *err = NULL;
    if (!cert || !key || access(cert, R_OK) != 0 || access(key, R_OK) != 0 ||
        !crypto_check_pem(cert, false, &err) ||
        !crypto_check_pem(key, true, &err)) {
        free(err); /* reported by the checks above */
        return;
    }
    if (!crypto_key_matches(cert, key, &err)) {
        config_parse_error(p, config_util_line(p, where), "%s: %s", where,
                           err);
        free(err);
    }
}

static void config_check_pems(struct config_parse *p, struct config *cfg)
{
    for (int i = 0; i < cfg->n_listeners; i++) {
        const struct config_listener *l = &cfg->listeners[i];
        char w[64];
        snprintf(w, sizeof(w), "listeners[%d].tls.cert", i);
        config_check_pem(p, l->tls_cert, w, false);
        snprintf(w, sizeof(w), "listeners[%d].tls.key", i);
        config_check_pem(p, l->tls_key, w, true);
        config_check_keypair(p, l->tls_cert, l->tls_key, w);
        snprintf(w, sizeof(w), "listeners[%d].tls.client_ca", i);
        config_check_pem(p, l->tls_client_ca, w, false);
    }
    config_check_pem(p, cfg->upstream.ca_file, "upstream.tls.ca", false);
    config_check_pem(p, cfg->upstream.cert_file, "upstream.tls.cert", false);
    config_check_pem(p, cfg->upstream.key_file, "upstream.tls.key", true);
    config_check_keypair(p, cfg->upstream.cert_file, cfg->upstream.key_file,
                         "upstream.tls.key");
}

/* True for 0.0.0.0 and :: (any address). */
static bool config_check_unspecified(const char *host)
{
    unsigned char bin[16] = {0};
    static const unsigned char zero[16];
    if (inet_pton(AF_INET, host, bin) == 1)
        return memcmp(bin, zero, 4) == 0;
    if (inet_pton(AF_INET6, host, bin) == 1)
        return memcmp(bin, zero, 16) == 0;
    return false;
}

static void config_check_derive(struct config_parse *p, struct config *cfg)
{
    if (cfg->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = n > 0 ? (uint32_t)(n > 1024 ? 1024 : n) : 1;
    }
    if (cfg->public_url || cfg->n_listeners == 0)
        return;
    const struct config_listener *l = &cfg->listeners[0];
    if (!l->addr.host)
        return; /* its address was wrong: reported */
    const char *scheme = l->tls ? "https" : "http";
    const char *host = l->addr.host;
    bool v6 = strchr(host, ':') != NULL;
    if (config_check_unspecified(host))
        host = v6 ? "::1" : "127.0.0.1";
    cfg->public_url = xasprintf(v6 ? "%s://[%s]:%u" : "%s://%s:%u", scheme,
                                host, (unsigned)l->addr.port);
    cfg->public_url_derived = true;
}

void config_check(struct config_parse *p, struct config *cfg)
{
    config_check_pems(p, cfg);
    config_check_lists(p, cfg);
    config_check_values(p, cfg);
    config_check_derive(p, cfg);
}
