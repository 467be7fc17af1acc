/* config.c - see config.h.  Loading is: YAML to a node tree (yaml_doc.c),
 * the tree through the section tables (config_schema.c driving
 * config_parse.c), then the checks between keys (config_check.c).  Every
 * problem is collected; a config is only returned when there are none. */
#include "config/config.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/log.h"
#include "config/config_check.h"
#include "config/config_parse.h"
#include "config/config_schema.h"
#include "base/util.h"
#include "base/yaml_doc.h"

/* Directory part of a file name: "." when there is none. */
static char *config_dirname(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xstrndup(path, (size_t)(slash - path));
}

static void config_free(struct config *cfg)
{
    config_parse_release(&config_schema_top, cfg);
    free(cfg->path);
    free(cfg);
}

static int config_sort_key(const struct config_error *e)
{
    return e->line > 0 ? e->line : INT_MAX;
}

/* Stable sort by line, problems without a line last. */
static void config_sort_errors(struct config_errors *errs)
{
    for (int i = 1; i < errs->n; i++) {
        struct config_error e = errs->items[i];
        int j = i;
        while (j > 0 && config_sort_key(&errs->items[j - 1]) >
                            config_sort_key(&e)) {
            errs->items[j] = errs->items[j - 1];
            j--;
        }
        errs->items[j] = e;
    }
}

/* Turn a parsed document (NULL after a syntax error) into a config. */
static struct config *config_build(struct config_parse *p,
                                   struct yaml_doc_node *root,
                                   const char *name)
{
    struct config *cfg = NULL;
    if (!root)
        goto out;
    p->root = root;
    if (root->kind != YAML_DOC_MAPPING && !yaml_doc_is_null(root)) {
        config_parse_error(p, root->line, "the document must be a mapping, "
                           "found %s", yaml_doc_kind_name(root->kind));
        goto out;
    }
    cfg = xcalloc(1, sizeof(*cfg));
    atomic_init(&cfg->refs, 1);
    cfg->path = xstrdup(name);
    config_parse_section(p, &config_schema_top, root, "", cfg, true);
    config_check(p, cfg);
out:
    if (p->errs->n > 0) {
        if (cfg)
            config_free(cfg);
        cfg = NULL;
        config_sort_errors(p->errs);
    }
    p->root = NULL;
    yaml_doc_free(root);
    return cfg;
}

struct config *config_load(const char *path, struct config_errors *errs)
{
    char *dir = config_dirname(path);
    struct config_parse p = {.file = path, .base_dir = dir, .errs = errs};
    struct yaml_doc_node *root =
        yaml_doc_load_file(path, config_parse_report, &p);
    struct config *cfg = config_build(&p, root, path);
    free(dir);
    return cfg;
}

struct config *config_load_string_dir(const char *name, const char *yaml,
                                      const char *base_dir,
                                      struct config_errors *errs)
{
    struct config_parse p = {.file = name, .base_dir = base_dir, .errs = errs};
    struct yaml_doc_node *root =
        yaml_doc_load_string(yaml, strlen(yaml), config_parse_report, &p);
    return config_build(&p, root, name);
}

struct config *config_load_string(const char *name, const char *yaml,
                                  struct config_errors *errs)
{
    char *dir = config_dirname(name);
    struct config *cfg = config_load_string_dir(name, yaml, dir, errs);
    free(dir);
    return cfg;
}

void config_errors_free(struct config_errors *errs)
{
    for (int i = 0; i < errs->n; i++) {
        free(errs->items[i].file);
        free(errs->items[i].message);
        free(errs->items[i].text);
    }
    free(errs->items);
    errs->items = NULL;
    errs->n = 0;
}

struct config *config_ref(struct config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void config_unref(struct config *cfg)
{
    if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1,
                                         memory_order_acq_rel) == 1)
        config_free(cfg);
}

char *config_restart_only_diff(const struct config *old,
                               const struct config *neu)
{
    struct buf out = {0};
    config_parse_diff(&config_schema_top, old, neu, "", false, &out);
    if (out.len == 0) {
        buf_free(&out);
        return NULL;
    }
    return buf_steal(&out, NULL);
}

int config_controller_index(const struct config *cfg, const char *id)
{
    for (int i = 0; i < cfg->n_controllers; i++)
        if (strcmp(cfg->controllers[i].id, id) == 0)
            return i;
    return -1;
}

static const char *config_name_of(const struct config_enum_name *tab, int v)
{
    for (const struct config_enum_name *e = tab; e->name; e++)
        if (e->value == v)
            return e->name;
    return "unknown";
}

const char *config_route_class_name(enum route_class cls)
{
    return config_name_of(config_schema_route_classes, (int)cls);
}

const char *config_retry_reason_name(enum retry_reason r)
{
    return config_name_of(config_schema_retry_reasons, (int)r);
}

_Static_assert((int)CONFIG_LOG_DEBUG == (int)LOG_LEVEL_DEBUG &&
                   (int)CONFIG_LOG_INFO == (int)LOG_LEVEL_INFO &&
                   (int)CONFIG_LOG_WARN == (int)LOG_LEVEL_WARN &&
                   (int)CONFIG_LOG_ERROR == (int)LOG_LEVEL_ERROR,
               "enum config_log_level and enum log_level differ");

void config_log_sinks(const struct config *cfg, struct log_sinks *out)
{
    *out = (struct log_sinks){.level = (enum log_level)cfg->log.level,
                              .error_log = cfg->log.error_log,
                              .access_log = cfg->log.access_log};
}
