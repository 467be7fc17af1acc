/* config_rules.c - see config_rules.h. */
#include "config/config_rules.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "config/config_schema.h"
#include "config/config_util.h"
#include "base/http.h"
#include "base/util.h"

/* ---- routing.classes ---- */

void config_rules_routes(struct config_parse *p, const struct config_field *f,
                         const struct yaml_doc_node *node, const char *path,
                         void *base)
{
    struct config_routing *r = base;
    if (!config_parse_is_list(p, node, path)) {
        config_schema_builtin_routes(r);
        return;
    }
    if (node->n_items == 0) {
        config_parse_error(p, node->line, "%s: the list is empty (leave it "
                           "out to use the built-in table)", path);
        config_schema_builtin_routes(r);
        return;
    }
    r->n_routes = config_parse_list(p, &config_schema_route, node, path,
                                    r->routes, sizeof(r->routes[0]),
                                    CONFIG_MAX_ROUTES);
    for (int i = 0; i < r->n_routes; i++) {
        struct config_route *rt = &r->routes[i];
        rt->line = node->items[i]->line;
        if (!rt->path_prefix)
            rt->path_prefix = xstrdup("");
    }
    /* A row with no condition (as written: a condition with a wrong value
     * is reported as such) hides every row after it. */
    for (int i = 0; i + 1 < r->n_routes; i++) {
        const struct yaml_doc_node *it = node->items[i];
        bool open = it->kind == YAML_DOC_MAPPING;
        static const char *const conds[] = {"path", "methods", "header"};
        for (size_t c = 0; open && c < ARRAY_LEN(conds); c++) {
            const struct yaml_doc_pair *pair = yaml_doc_find(it, conds[c]);
            open = !pair || yaml_doc_is_null(pair->value);
        }
        if (open) {
            config_parse_error(p, it->line, "%s[%d]: matches every request, "
                               "so the rows after it are never used", path, i);
            break;
        }
    }
}

void config_rules_routes_release(const struct config_field *f, void *base)
{
    struct config_routing *r = base;
    for (int i = 0; i < r->n_routes; i++) {
        free(r->routes[i].path_prefix);
        free(r->routes[i].header);
    }
    r->n_routes = 0;
}

void config_rules_methods(struct config_parse *p, const struct config_field *f,
                          const struct yaml_doc_node *node, const char *path,
                          void *base)
{
    struct config_route *rt = base;
    if (!config_parse_is_list(p, node, path))
        return; /* absent: any method */
    if (node->n_items == 0)
        config_parse_error(p, node->line, "%s: the list is empty (leave it "
                           "out to match any method)", path);
    for (size_t i = 0; i < node->n_items; i++) {
        char *ipath = xasprintf("%s[%zu]", path, i);
        const char *text = config_parse_scalar(p, node->items[i], ipath,
                                               "a method name");
        int m = text ? http_method_from_config(text) : -1;
        if (text && m < 0)
            config_parse_error(p, node->items[i]->line, "%s: '%s' is not one "
                               "of GET, HEAD, POST, PUT, PATCH, DELETE, "
                               "OPTIONS", ipath, text);
        else if (m >= 0)
            rt->methods |= HTTP_M(m);
        free(ipath);
    }
}

/* ---- retry.policies ---- */

void config_rules_policies(struct config_parse *p, const struct config_field *f,
                           const struct yaml_doc_node *node, const char *path,
                           void *base)
{
    struct config_retry *r = base;
    for (int c = 0; c < ROUTE__COUNT; c++)
        r->policy[c] = config_schema_retry_defaults[c];
    if (!node)
        return;
    if (node->kind != YAML_DOC_MAPPING) {
        config_parse_error(p, node->line, "%s: expected a mapping, found %s",
                           path, yaml_doc_kind_name(node->kind));
        return;
    }
    for (size_t i = 0; i < node->n_pairs; i++) {
        const struct yaml_doc_pair *pair = &node->pairs[i];
        struct buf list = {0};
        const char *hint;
        int c = config_util_name(config_schema_route_classes, pair->key->str,
                                 &hint, &list);
        if (c < 0 && hint)
            config_parse_error(p, pair->key->line, "unknown route class '%s' "
                               "in %s (did you mean '%s'?)", pair->key->str,
                               path, hint);
        else if (c < 0)
            config_parse_error(p, pair->key->line, "unknown route class '%s' "
                               "in %s (the classes are %s)", pair->key->str,
                               path, list.data);
        buf_free(&list);
        if (c < 0)
            continue;
        char *cpath = config_parse_join(path, pair->key->str);
        config_parse_section(p, &config_schema_policy, pair->value, cpath,
                             &r->policy[c], false);
        free(cpath);
    }
}

void config_rules_retry_on(struct config_parse *p, const struct config_field *f,
                           const struct yaml_doc_node *node, const char *path,
                           void *base)
{
    struct config_retry_policy *pol = base;
    if (!config_parse_is_list(p, node, path))
        return; /* absent: keep the class's default */
    uint32_t on = 0;
    bool ok = true;
    for (size_t i = 0; i < node->n_items; i++) {
        char *ipath = xasprintf("%s[%zu]", path, i);
        const struct yaml_doc_node *it = node->items[i];
        const char *text = config_parse_scalar(p, it, ipath,
                                               "a failure class");
        struct buf list = {0};
        const char *hint = NULL;
        int r = text ? config_util_name(config_schema_retry_reasons, text,
                                        &hint, &list)
                     : -1;
        if (r >= 0)
            on |= 1u << r;
        else
            ok = false;
        if (text && r < 0 && hint)
            config_parse_error(p, it->line, "%s: '%s' is not one of %s (did "
                               "you mean '%s'?)", ipath, text, list.data,
                               hint);
        else if (text && r < 0)
            config_parse_error(p, it->line, "%s: '%s' is not one of %s",
                               ipath, text, list.data);
        buf_free(&list);
        free(ipath);
    }
    if (ok)
        pol->on = on;
}

/* ---- gate ---- */

void config_rules_gate_mode(struct config_parse *p, const struct config_field *f,
                            const struct yaml_doc_node *node, const char *path,
                            void *base)
{
    static const struct config_enum_name modes[] = {
        {"healthy", GATE_HEALTHY}, {"all", GATE_ALL},
        {"majority", GATE_MAJORITY}, {NULL, 0},
    };
    struct config_gate *g = base;
    g->mode = GATE_HEALTHY;
    g->count = 0;
    const char *text = node ? config_parse_scalar(p, node, path,
                                                  "a mode") : NULL;
    if (!text)
        return;
    struct buf list = {0};
    const char *hint;
    int m = config_util_name(modes, text, &hint, &list);
    size_t len = strlen(text);
    bool digits = len > 0 && len <= 9;
    for (size_t i = 0; digits && i < len; i++)
        digits = isdigit((unsigned char)text[i]);
    if (m >= 0) {
        g->mode = (enum gate_mode)m;
    } else if (digits && strtoul(text, NULL, 10) > 0) {
        g->mode = GATE_COUNT;
        g->count = (uint32_t)strtoul(text, NULL, 10);
    } else if (digits) {
        config_parse_error(p, node->line, "%s: 0 is not a number of "
                           "controllers (at least 1)", path);
    } else if (hint) {
        config_parse_error(p, node->line, "%s: '%s' is not one of %s or a "
                           "number (did you mean '%s'?)", path, text,
                           list.data, hint);
    } else {
        config_parse_error(p, node->line, "%s: '%s' is not one of %s or a "
                           "number", path, text, list.data);
    }
    buf_free(&list);
}

void config_rules_on_timeout(struct config_parse *p,
                             const struct config_field *f,
                             const struct yaml_doc_node *node,
                             const char *path, void *base)
{
    struct config_gate *g = base;
    g->fail_on_timeout = false;
    const char *text = node ? config_parse_scalar(p, node, path,
                                                  "succeed or fail") : NULL;
    if (!text || strcmp(text, "succeed") == 0)
        return;
    if (strcmp(text, "fail") == 0)
        g->fail_on_timeout = true;
    else
        config_parse_error(p, node->line, "%s: '%s' is not one of succeed, "
                           "fail", path, text);
}

/* ---- relay.sources ---- */

void config_rules_relay_sources(struct config_parse *p,
                                const struct config_field *f,
                                const struct yaml_doc_node *node,
                                const char *path, void *base)
{
    struct config_relay *r = base;
    r->n_sources = config_parse_list(p, &config_schema_relay_source, node,
                                     path, r->sources, sizeof(r->sources[0]),
                                     CONFIG_MAX_CONTROLLERS);
    for (int i = 0; i < r->n_sources; i++)
        r->sources[i].line = node->items[i]->line;
    for (int j = 1; j < r->n_sources; j++) {
        for (int i = 0; i < j; i++) {
            if (r->sources[j].id[0] &&
                strcmp(r->sources[i].id, r->sources[j].id) == 0) {
                char *at = xasprintf("%s[%d].controller", path, j);
                config_parse_error(p, config_util_line(p, at), "%s: '%s' "
                                   "already has a source in %s[%d] (line %d)",
                                   at, r->sources[j].id, path, i,
                                   r->sources[i].line);
                free(at);
                break;
            }
        }
    }
}

void config_rules_relay_sources_release(const struct config_field *f,
                                        void *base)
{
    struct config_relay *r = base;
    for (int i = 0; i < r->n_sources; i++)
        config_parse_release(&config_schema_relay_source, &r->sources[i]);
    r->n_sources = 0;
}
