/* config_custom.c - see config_custom.h. */
#include "config/config_custom.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/config_addr.h"
#include "config/config_schema.h"
#include "config/config_util.h"
#include "base/http.h"
#include "base/util.h"

#define CONFIG_CUSTOM_MAX_KEY 4096
#define CONFIG_CUSTOM_MIN_KEY 32

/* ---- public_url, controllers[].url ---- */

void config_custom_public_url(struct config_parse *p,
                              const struct config_field *f,
                              const struct yaml_doc_node *node,
                              const char *path, void *base)
{
    struct config *cfg = base;
    if (!node)
        return; /* derived from the first listener by config_check */
    const char *text = config_parse_scalar(p, node, path, "a URL");
    char *norm, *scheme, *host;
    uint16_t port;
    const char *why;
    if (!text)
        return;
    if (!config_addr_parse_url(text, &norm, &scheme, &host, &port, &why)) {
        config_parse_error(p, node->line, "%s: '%s' is not a valid URL: %s",
                           path, text, why);
        return;
    }
    free(scheme);
    free(host);
    free(cfg->public_url);
    cfg->public_url = norm;
}

void config_custom_public_url_release(const struct config_field *f,
                                      void *base)
{
    struct config *cfg = base;
    free(cfg->public_url);
    cfg->public_url = NULL;
}

void config_custom_url(struct config_parse *p, const struct config_field *f,
                       const struct yaml_doc_node *node, const char *path,
                       void *base)
{
    struct config_controller *c = base;
    const char *why;
    if (!node)
        return; /* required: reported by the section */
    const char *text = config_parse_scalar(p, node, path, "a URL");
    if (!text)
        return;
    config_custom_url_release(f, base);
    if (!config_addr_parse_url(text, &c->url, &c->scheme, &c->host, &c->port,
                               &why))
        config_parse_error(p, node->line, "%s: '%s' is not a valid URL: %s",
                           path, text, why);
}

void config_custom_url_release(const struct config_field *f, void *base)
{
    struct config_controller *c = base;
    free(c->url);
    free(c->scheme);
    free(c->host);
    c->url = c->scheme = c->host = NULL;
}

bool config_custom_url_same(const struct config_field *f, const void *a,
                            const void *b)
{
    const struct config_controller *x = a, *y = b;
    if (!x->url || !y->url)
        return x->url == y->url;
    return strcmp(x->url, y->url) == 0;
}

/* ---- listeners[] ---- */

void config_custom_listeners(struct config_parse *p,
                             const struct config_field *f,
                             const struct yaml_doc_node *node,
                             const char *path, void *base)
{
    struct config *cfg = base;
    cfg->n_listeners = config_parse_list(p, &config_schema_listener, node, path,
                                         cfg->listeners,
                                         sizeof(cfg->listeners[0]),
                                         CONFIG_MAX_LISTENERS);
    for (int i = 0; i < cfg->n_listeners; i++) {
        struct config_listener *l = &cfg->listeners[i];
        const struct yaml_doc_node *item = node->items[i];
        l->line = item->line;
        const struct yaml_doc_pair *tls = yaml_doc_find(item, "tls");
        if (!tls || yaml_doc_is_null(tls->value) ||
            tls->value->kind != YAML_DOC_MAPPING)
            continue;
        const struct yaml_doc_pair *cert = yaml_doc_find(tls->value, "cert");
        const struct yaml_doc_pair *key = yaml_doc_find(tls->value, "key");
        bool has_cert = cert && !yaml_doc_is_null(cert->value);
        bool has_key = key && !yaml_doc_is_null(key->value);
        if (!has_cert && !has_key)
            config_parse_error(p, tls->key->line, "%s[%d].tls: cert and key "
                               "are required", path, i);
        else if (!has_key)
            config_parse_error(p, cert->key->line, "%s[%d].tls: cert without "
                               "key", path, i);
        else if (!has_cert)
            config_parse_error(p, key->key->line, "%s[%d].tls: key without "
                               "cert", path, i);
        l->tls = true;
    }
    for (int j = 1; j < cfg->n_listeners; j++) {
        const struct config_addr *b = &cfg->listeners[j].addr;
        for (int i = 0; i < j && b->text; i++) {
            const struct config_addr *a = &cfg->listeners[i].addr;
            if (a->text && b->port != 0 && config_addr_same(a, b)) {
                char *at = xasprintf("%s[%d].address", path, j);
                config_parse_error(p, config_util_line(p, at),
                                   "%s: '%s' is already used by %s[%d] (line "
                                   "%d)", at, b->text, path, i,
                                   cfg->listeners[i].line);
                free(at);
                break;
            }
        }
    }
}

void config_custom_listeners_release(const struct config_field *f, void *base)
{
    struct config *cfg = base;
    for (int i = 0; i < cfg->n_listeners; i++)
        config_parse_release(&config_schema_listener, &cfg->listeners[i]);
    cfg->n_listeners = 0;
}

/* Two lists of n items described by sec are the same when diffing each
 * pair as restart-only finds nothing. */
static bool config_custom_same_items(const struct config_section *sec,
                                     const void *a, const void *b, int n,
                                     size_t size)
{
    struct buf diff = {0};
    for (int i = 0; i < n && diff.len == 0; i++)
        config_parse_diff(sec, (const char *)a + (size_t)i * size,
                          (const char *)b + (size_t)i * size, "", true, &diff);
    bool same = diff.len == 0;
    buf_free(&diff);
    return same;
}

bool config_custom_listeners_same(const struct config_field *f, const void *a,
                                  const void *b)
{
    const struct config *x = a, *y = b;
    return x->n_listeners == y->n_listeners &&
           config_custom_same_items(&config_schema_listener, x->listeners,
                                    y->listeners, x->n_listeners,
                                    sizeof(x->listeners[0]));
}

/* ---- controllers[] ---- */

void config_custom_controllers(struct config_parse *p,
                               const struct config_field *f,
                               const struct yaml_doc_node *node,
                               const char *path, void *base)
{
    struct config *cfg = base;
    cfg->n_controllers = config_parse_list(p, &config_schema_controller, node,
                                           path, cfg->controllers,
                                           sizeof(cfg->controllers[0]),
                                           CONFIG_MAX_CONTROLLERS);
    for (int i = 0; i < cfg->n_controllers; i++)
        cfg->controllers[i].line = node->items[i]->line;
    for (int j = 1; j < cfg->n_controllers; j++) {
        const struct config_controller *b = &cfg->controllers[j];
        for (int i = 0; i < j; i++) {
            const struct config_controller *a = &cfg->controllers[i];
            const char *what = NULL;
            if (b->id[0] && strcmp(a->id, b->id) == 0)
                what = "id";
            else if (a->url && b->url && strcmp(a->url, b->url) == 0)
                what = "url";
            if (!what)
                continue;
            char *at = xasprintf("%s[%d].%s", path, j, what);
            config_parse_error(p, config_util_line(p, at), "%s: '%s' is "
                               "already used by %s[%d] (line %d)", at,
                               what[0] == 'i' ? b->id : b->url, path, i,
                               a->line);
            free(at);
            break;
        }
    }
}

void config_custom_controllers_release(const struct config_field *f,
                                       void *base)
{
    struct config *cfg = base;
    for (int i = 0; i < cfg->n_controllers; i++)
        config_parse_release(&config_schema_controller, &cfg->controllers[i]);
    cfg->n_controllers = 0;
}

bool config_custom_controllers_same(const struct config_field *f,
                                    const void *a, const void *b)
{
    const struct config *x = a, *y = b;
    return x->n_controllers == y->n_controllers &&
           config_custom_same_items(&config_schema_controller, x->controllers,
                                    y->controllers, x->n_controllers,
                                    sizeof(x->controllers[0]));
}

/* ---- secrets.hmac_key_file ---- */

void config_custom_hmac_key(struct config_parse *p,
                            const struct config_field *f,
                            const struct yaml_doc_node *node,
                            const char *path, void *base)
{
    struct config *cfg = base;
    if (!node) {
        config_parse_error(p, config_util_line(p, "secrets"),
                           "%s is required: a file of at least %d bytes, the "
                           "same for every quorumgate sharing a Redis", path,
                           CONFIG_CUSTOM_MIN_KEY);
        return;
    }
    const char *text = config_parse_scalar(p, node, path, "a file path");
    if (!text)
        return;
    char *file = config_util_resolve(p, text);
    size_t len = 0;
    struct stat st;
    if (stat(file, &st) == 0 && (st.st_mode & (S_IWGRP | S_IWOTH))) {
        /* whoever may write it decides which identities share fences */
        config_parse_error(p, node->line, "%s: '%s' may be changed by other "
                           "users (mode %04o): chmod go-w it", path, file,
                           (unsigned)(st.st_mode & 07777));
        free(file);
        return;
    }
    char *key = config_util_read_file(p, node->line, path, file,
                                      CONFIG_CUSTOM_MAX_KEY, &len);
    if (key && len < CONFIG_CUSTOM_MIN_KEY) {
        config_parse_error(p, node->line, "%s: '%s' holds %zu bytes; the key "
                           "needs at least %d", path, file, len,
                           CONFIG_CUSTOM_MIN_KEY);
        explicit_bzero(key, len);
        free(key);
        key = NULL;
    }
    if (key) {
        config_custom_hmac_release(f, base);
        cfg->hmac_key = (unsigned char *)key;
        cfg->hmac_key_len = len;
    }
    free(file);
}

bool config_custom_hmac_same(const struct config_field *f, const void *a,
                             const void *b)
{
    const struct config *x = a, *y = b;
    return x->hmac_key_len == y->hmac_key_len &&
           (!x->hmac_key_len ||
            memcmp(x->hmac_key, y->hmac_key, x->hmac_key_len) == 0);
}

void config_custom_hmac_release(const struct config_field *f, void *base)
{
    struct config *cfg = base;
    if (cfg->hmac_key) {
        explicit_bzero(cfg->hmac_key, cfg->hmac_key_len);
        free(cfg->hmac_key);
    }
    cfg->hmac_key = NULL;
    cfg->hmac_key_len = 0;
}

/* ---- lists of networks: admin.allow, headers.trust_forwarded ---- */

/* A list of CIDR blocks into out[max]; returns how many. */
static int config_custom_cidrs(struct config_parse *p,
                               const struct yaml_doc_node *node,
                               const char *path, struct config_cidr *out,
                               int max)
{
    int n = 0;
    for (size_t i = 0; i < node->n_items; i++) {
        char *ipath = xasprintf("%s[%zu]", path, i);
        const struct yaml_doc_node *it = node->items[i];
        const char *text = config_parse_scalar(p, it, ipath,
                                               "an address or CIDR block");
        struct config_cidr c;
        const char *why;
        if (!text) {
            /* reported */
        } else if (!config_addr_parse_cidr(text, &c, &why)) {
            config_parse_error(p, it->line, "%s: '%s' is not a CIDR block: "
                               "%s", ipath, text, why);
        } else if (n == max) {
            config_parse_error(p, it->line, "%s: at most %d entries are "
                               "supported", path, max);
            free(ipath);
            break;
        } else {
            out[n++] = c;
        }
        free(ipath);
    }
    return n;
}

static bool config_custom_cidrs_same(const struct config_cidr *x, int nx,
                                     const struct config_cidr *y, int ny)
{
    if (nx != ny)
        return false;
    for (int i = 0; i < nx; i++)
        if (x[i].family != y[i].family || x[i].prefix != y[i].prefix ||
            memcmp(x[i].addr, y[i].addr, sizeof(x[i].addr)) != 0)
            return false;
    return true;
}

void config_custom_allow(struct config_parse *p, const struct config_field *f,
                         const struct yaml_doc_node *node, const char *path,
                         void *base)
{
    struct config_admin *a = base;
    a->n_allow = 0;
    if (!config_parse_is_list(p, node, path))
        return; /* absent: everyone who can reach the address */
    a->n_allow = config_custom_cidrs(p, node, path, a->allow,
                                     CONFIG_MAX_ALLOW);
}

bool config_custom_allow_same(const struct config_field *f, const void *a,
                              const void *b)
{
    const struct config_admin *x = a, *y = b;
    return config_custom_cidrs_same(x->allow, x->n_allow, y->allow,
                                    y->n_allow);
}

/* headers.trust_forwarded: the networks of the proxies in front of
 * quorumgate, whose X-Forwarded-For / Forwarded are kept and appended to.
 * `false` (or absent) is none; `true`, which used to trust every client,
 * is refused: a client outside the proxies' networks could then choose
 * the address the controllers and the logs see. */
void config_custom_trust_forwarded(struct config_parse *p,
                                   const struct config_field *f,
                                   const struct yaml_doc_node *node,
                                   const char *path, void *base)
{
    struct config_headers *h = base;
    h->n_trust_forwarded = 0;
    if (node && node->kind == YAML_DOC_SCALAR && !yaml_doc_is_null(node)) {
        const char *v = node->str;
        if (strcmp(v, "false") == 0)
            return;
        if (strcmp(v, "true") == 0)
            config_parse_error(p, node->line, "%s: 'true' (trust every "
                               "client) is no longer accepted: list the "
                               "networks of the proxies in front of "
                               "quorumgate, e.g. [\"10.0.0.0/8\", "
                               "\"fd00::/8\"] (\"0.0.0.0/0\" and \"::/0\" "
                               "trust everyone)", path);
        else
            config_parse_error(p, node->line, "%s: expected a list of "
                               "networks (CIDR) or false, found '%s'", path,
                               v);
        return;
    }
    if (!config_parse_is_list(p, node, path))
        return; /* absent: nobody */
    h->n_trust_forwarded = config_custom_cidrs(p, node, path,
                                               h->trust_forwarded,
                                               CONFIG_MAX_ALLOW);
}

bool config_custom_trust_forwarded_same(const struct config_field *f,
                                        const void *a, const void *b)
{
    const struct config_headers *x = a, *y = b;
    return config_custom_cidrs_same(x->trust_forwarded, x->n_trust_forwarded,
                                    y->trust_forwarded, y->n_trust_forwarded);
}

/* ---- passthrough.controllers ---- */

void config_custom_pt_controllers(struct config_parse *p,
                                  const struct config_field *f,
                                  const struct yaml_doc_node *node,
                                  const char *path, void *base)
{
    struct config_passthrough *pt = base;
    pt->n_ids = 0;
    if (!config_parse_is_list(p, node, path))
        return; /* absent: every controller (checked in config_check) */
    for (size_t i = 0; i < node->n_items; i++) {
        char *ipath = xasprintf("%s[%zu]", path, i);
        const char *text = config_parse_scalar(p, node->items[i], ipath,
                                               "a controller id");
        if (!text) {
            /* reported */
        } else if (pt->n_ids == CONFIG_MAX_CONTROLLERS) {
            config_parse_error(p, node->items[i]->line, "%s: at most %d "
                               "controllers", path, CONFIG_MAX_CONTROLLERS);
            free(ipath);
            break;
        } else if (!*text || strlen(text) >= CONFIG_ID_MAX) {
            config_parse_error(p, node->items[i]->line, "%s: '%s' is not a "
                               "controller id", ipath, text);
        } else {
            snprintf(pt->ids[pt->n_ids++], CONFIG_ID_MAX, "%s", text);
        }
        free(ipath);
    }
}

bool config_custom_pt_controllers_same(const struct config_field *f,
                                       const void *a, const void *b)
{
    const struct config_passthrough *x = a, *y = b;
    if (x->n_ids != y->n_ids)
        return false;
    for (int i = 0; i < x->n_ids; i++)
        if (strcmp(x->ids[i], y->ids[i]) != 0)
            return false;
    return true;
}

/* ---- passthrough.sni.names ---- */

void config_custom_pt_sni_names(struct config_parse *p,
                                const struct config_field *f,
                                const struct yaml_doc_node *node,
                                const char *path, void *base)
{
    struct config_passthrough *pt = base;
    pt->n_sni = 0;
    if (!config_parse_is_list(p, node, path))
        return;
    for (size_t i = 0; i < node->n_items; i++) {
        char *ipath = xasprintf("%s[%zu]", path, i);
        const char *text = config_parse_scalar(p, node->items[i], ipath,
                                               "a server name");
        size_t len = text ? strlen(text) : 0;
        bool ok = len > 0 && len < CONFIG_SNI_MAX;
        for (size_t k = 0; ok && k < len; k++)
            ok = isalnum((unsigned char)text[k]) || text[k] == '-' ||
                 text[k] == '.';
        if (!text) {
            /* reported */
        } else if (pt->n_sni == CONFIG_MAX_SNI) {
            config_parse_error(p, node->items[i]->line, "%s: at most %d "
                               "names", path, CONFIG_MAX_SNI);
            free(ipath);
            break;
        } else if (!ok) {
            config_parse_error(p, node->items[i]->line, "%s: '%s' is not a "
                               "DNS name", ipath, text);
        } else {
            char *d = pt->sni_names[pt->n_sni++];
            for (size_t k = 0; k <= len; k++)
                d[k] = (char)tolower((unsigned char)text[k]);
        }
        free(ipath);
    }
}

bool config_custom_pt_sni_names_same(const struct config_field *f,
                                     const void *a, const void *b)
{
    const struct config_passthrough *x = a, *y = b;
    if (x->n_sni != y->n_sni)
        return false;
    for (int i = 0; i < x->n_sni; i++)
        if (strcmp(x->sni_names[i], y->sni_names[i]) != 0)
            return false;
    return true;
}

/* ---- redis.sentinels ---- */

void config_custom_sentinels(struct config_parse *p,
                             const struct config_field *f,
                             const struct yaml_doc_node *node,
                             const char *path, void *base)
{
    struct config_redis *r = base;
    config_custom_sentinels_release(f, base);
    if (!config_parse_is_list(p, node, path))
        return; /* absent: redis.address is used */
    if (node->n_items == 0)
        config_parse_error(p, node->line, "%s: an empty list (give at least "
                           "one host:port, or remove the key and use "
                           "redis.address)", path);
    for (size_t i = 0; i < node->n_items; i++) {
        char *ipath = xasprintf("%s[%zu]", path, i);
        const struct yaml_doc_node *it = node->items[i];
        const char *text = config_parse_scalar(p, it, ipath, "a host:port");
        struct config_addr a;
        const char *why;
        if (!text) {
            /* reported */
        } else if (!config_addr_parse(text, false, &a, &why)) {
            config_parse_error(p, it->line, "%s: '%s' is not a sentinel "
                               "address: %s", ipath, text, why);
        } else if (r->n_sentinels == CONFIG_MAX_SENTINELS) {
            config_addr_free(&a);
            config_parse_error(p, it->line, "%s: at most %d sentinels are "
                               "supported", path, CONFIG_MAX_SENTINELS);
            free(ipath);
            break;
        } else {
            bool dup = false;
            for (int k = 0; k < r->n_sentinels; k++)
                dup = dup || config_addr_same(&r->sentinels[k], &a);
            if (dup) {
                config_parse_error(p, it->line, "%s: '%s' is listed twice",
                                   ipath, text);
                config_addr_free(&a);
            } else {
                r->sentinels[r->n_sentinels++] = a;
            }
        }
        free(ipath);
    }
}

void config_custom_sentinels_release(const struct config_field *f,
                                     void *base)
{
    struct config_redis *r = base;
    (void)f;
    for (int i = 0; i < r->n_sentinels; i++)
        config_addr_free(&r->sentinels[i]);
    r->n_sentinels = 0;
}

bool config_custom_sentinels_same(const struct config_field *f,
                                  const void *a, const void *b)
{
    const struct config_redis *x = a, *y = b;
    (void)f;
    if (x->n_sentinels != y->n_sentinels)
        return false;
    for (int i = 0; i < x->n_sentinels; i++)
        if (!config_addr_same(&x->sentinels[i], &y->sentinels[i]))
            return false;
    return true;
}
