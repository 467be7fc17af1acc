/* config_parse.c - see config_parse.h. */
#include "config/config_parse.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_addr.h"
#include "config/config_util.h"
#include "base/util.h"

#define CONFIG_PARSE_MAX_SECRET (64u * 1024)

_Static_assert(sizeof(enum route_class) == sizeof(int), "enum size");
_Static_assert(sizeof(enum config_log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum gate_source) == sizeof(int), "enum size");

static void config_parse_add(struct config_parse *p, int line, char *message)
{
    struct config_errors *e = p->errs;
    e->items = xrealloc(e->items, (size_t)(e->n + 1) * sizeof(*e->items));
    struct config_error *it = &e->items[e->n++];
    it->file = xstrdup(p->file);
    it->line = line;
    it->message = message;
    it->text = line > 0 ? xasprintf("%s:%d: %s", p->file, line, message)
                        : xasprintf("%s: %s", p->file, message);
}

void config_parse_error(struct config_parse *p, int line, const char *fmt, ...)
{
    if (p->errs->n > CONFIG_PARSE_MAX_ERRORS)
        return;
    if (p->errs->n == CONFIG_PARSE_MAX_ERRORS) {
        config_parse_add(p, 0, xasprintf("more than %d errors; the rest are "
                                         "not shown", CONFIG_PARSE_MAX_ERRORS));
        return;
    }
    struct buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    config_parse_add(p, line, buf_steal(&b, NULL));
}

void config_parse_report(void *ctx, int line, const char *message)
{
    config_parse_error(ctx, line, "%s", message);
}

char *config_parse_join(const char *path, const char *key)
{
    return *path ? xasprintf("%s.%s", path, key) : xstrdup(key);
}

/* What a field's value should look like, for "expected ..." messages. */
static const char *config_parse_what(const struct config_field *f)
{
    switch (f->type) {
    case CONFIG_T_STRING: return "a string";
    case CONFIG_T_ID: return "an id";
    case CONFIG_T_BOOL: return "true or false";
    case CONFIG_T_U32: return "a whole number";
    case CONFIG_T_DURATION: return "a duration";
    case CONFIG_T_SIZE: return "a size";
    case CONFIG_T_RATIO: return "a number from 0 to 1";
    case CONFIG_T_ENUM: return "a name";
    case CONFIG_T_ADDR: return "an address";
    case CONFIG_T_FILE:
    case CONFIG_T_SECRET: return "a file path";
    case CONFIG_T_SECTION: return "a mapping";
    case CONFIG_T_CUSTOM: break;
    }
    return "a value";
}

const char *config_parse_scalar(struct config_parse *p,
                                const struct yaml_doc_node *node,
                                const char *path, const char *what)
{
    if (node->kind == YAML_DOC_SCALAR)
        return node->str;
    config_parse_error(p, node->line, "%s: expected %s, found %s", path, what,
                       yaml_doc_kind_name(node->kind));
    return NULL;
}

bool config_parse_is_list(struct config_parse *p,
                          const struct yaml_doc_node *node, const char *path)
{
    if (!node || yaml_doc_is_null(node))
        return false;
    if (node->kind == YAML_DOC_SEQUENCE)
        return true;
    config_parse_error(p, node->line, "%s: expected a list, found %s", path,
                       yaml_doc_kind_name(node->kind));
    return false;
}

/* ---- converters: text (from the file or a default) to a field ---- */

static bool config_parse_str_ok(const char *s, int check, const char **why)
{
    static const char tchar[] = "!#$%&'*+-.^_`|~";
    switch (check) {
    case CONFIG_STR_URL_PATH:
        if (s[0] != '/') {
            *why = "must start with '/'";
            return false;
        }
        for (const char *c = s; *c; c++) {
            if ((unsigned char)*c <= ' ' || *c == 0x7f) {
                *why = "must not contain spaces or control characters";
                return false;
            }
        }
        return true;
    case CONFIG_STR_KEY_PREFIX:
        /* keys are built in fixed buffers: a longer prefix would be cut and
         * make keys collide */
        if (strlen(s) > CONFIG_KEY_PREFIX_MAX) {
            *why = "is longer than " CONFIG_KEY_PREFIX_MAX_TEXT " bytes";
            return false;
        }
        for (const char *c = s; *c; c++) {
            if ((unsigned char)*c <= ' ' || *c == 0x7f) {
                *why = "must not contain spaces or control characters";
                return false;
            }
        }
        return true;
    case CONFIG_STR_TOKEN:
        if (!*s) {
            *why = "must not be empty";
            return false;
        }
        for (const char *c = s; *c; c++) {
            if (!isalnum((unsigned char)*c) && !strchr(tchar, *c)) {
                *why = "is not a valid header name";
                return false;
            }
        }
        return true;
    case CONFIG_STR_HOST:
        for (const char *c = s; *c; c++) {
            if (!isalnum((unsigned char)*c) && !strchr("-._", *c)) {
                *why = "is not a valid host name";
                return false;
            }
        }
        if (!*s) {
            *why = "must not be empty";
            return false;
        }
        return true;
    case CONFIG_STR_PATH:
    case CONFIG_STR_ERROR_LOG:
    case CONFIG_STR_ACCESS_LOG:
    case CONFIG_STR_NONEMPTY:
        if (!*s) {
            *why = "must not be empty";
            return false;
        }
        return true;
    default:
        return true;
    }
}

static bool config_parse_string(struct config_parse *p,
                                const struct config_field *f, const char *text,
                                int line, const char *path, char **dst)
{
    const char *why = NULL;
    if (!config_parse_str_ok(text, f->check, &why)) {
        config_parse_error(p, line, "%s: '%s' %s", path, text, why);
        return false;
    }
    if (f->check == CONFIG_STR_ERROR_LOG && strcmp(text, "off") == 0) {
        config_parse_error(p, line, "%s: 'off' is not allowed: the error log "
                           "cannot be turned off", path);
        return false;
    }
    bool is_path = f->check == CONFIG_STR_PATH;
    if (f->check == CONFIG_STR_ERROR_LOG)
        is_path = strcmp(text, "stderr") != 0 && strcmp(text, "stdout") != 0;
    if (f->check == CONFIG_STR_ACCESS_LOG)
        is_path = strcmp(text, "stderr") != 0 &&
                  strcmp(text, "stdout") != 0 && strcmp(text, "off") != 0;
    free(*dst);
    *dst = is_path ? config_util_resolve(p, text) : xstrdup(text);
    return true;
}

static bool config_parse_id(struct config_parse *p, const char *text, int line,
                            const char *path, char *dst)
{
    size_t n = strlen(text);
    bool ok = n > 0 && n < CONFIG_ID_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)text[i]) || strchr("._:-", text[i]);
    if (!ok) {
        config_parse_error(p, line,
                           "%s: '%s' is not a valid id (1 to %d letters, "
                           "digits, '.', '_', ':' or '-')",
                           path, text, CONFIG_ID_MAX - 1);
        return false;
    }
    memcpy(dst, text, n + 1);
    return true;
}

static bool config_parse_bool(struct config_parse *p, const char *text,
                              int line, const char *path, bool *dst)
{
    static const char *const yes[] = {"true", "True", "TRUE"};
    static const char *const no[] = {"false", "False", "FALSE"};
    for (size_t i = 0; i < ARRAY_LEN(yes); i++) {
        if (strcmp(text, yes[i]) == 0 || strcmp(text, no[i]) == 0) {
            *dst = strcmp(text, yes[i]) == 0;
            return true;
        }
    }
    config_parse_error(p, line, "%s: '%s' is not true or false", path, text);
    return false;
}

static bool config_parse_u32(struct config_parse *p,
                             const struct config_field *f, const char *text,
                             int line, const char *path, uint32_t *dst)
{
    uint64_t v = 0;
    bool ok = *text != '\0' && strlen(text) <= 12;
    for (const char *c = text; ok && *c; c++) {
        ok = isdigit((unsigned char)*c);
        v = v * 10 + (uint64_t)(*c - '0');
    }
    if (!ok) {
        config_parse_error(p, line, "%s: '%s' is not a whole number", path,
                           text);
        return false;
    }
    uint64_t max = f->max ? f->max : UINT32_MAX;
    if (v < f->min || v > max) {
        config_parse_error(p, line, "%s: %s is out of range (%llu to %llu)",
                           path, text, (unsigned long long)f->min,
                           (unsigned long long)max);
        return false;
    }
    *dst = (uint32_t)v;
    return true;
}

/* Range check for durations and sizes, with the bounds written back the
 * way the file would write them. */
static bool config_parse_range(struct config_parse *p,
                               const struct config_field *f, uint64_t v,
                               const char *text, int line, const char *path)
{
    char bound[32];
    bool is_ms = f->type == CONFIG_T_DURATION;
    if (v < f->min) {
        if (is_ms)
            config_util_fmt_ms(bound, sizeof(bound), f->min);
        else
            config_util_fmt_size(bound, sizeof(bound), f->min);
        config_parse_error(p, line, "%s: %s is too %s (at least %s)", path,
                           text, is_ms ? "short" : "small", bound);
        return false;
    }
    if (f->max && v > f->max) {
        if (is_ms)
            config_util_fmt_ms(bound, sizeof(bound), f->max);
        else
            config_util_fmt_size(bound, sizeof(bound), f->max);
        config_parse_error(p, line, "%s: %s is too %s (at most %s)", path,
                           text, is_ms ? "long" : "large", bound);
        return false;
    }
    return true;
}

static bool config_parse_ratio(struct config_parse *p, const char *text,
                               int line, const char *path, double *dst)
{
    /* Plain decimal only: strtod would also take "inf", "nan", "0x1p-1". */
    bool plain = *text != '\0' && strspn(text, "+-0123456789.eE") == strlen(text);
    char *end;
    errno = 0;
    double v = plain ? strtod(text, &end) : 0.0;
    if (!plain || *end || errno || !isfinite(v)) {
        config_parse_error(p, line, "%s: '%s' is not a number", path, text);
        return false;
    }
    if (v < 0.0 || v > 1.0) {
        config_parse_error(p, line, "%s: %s is out of range (0 to 1)", path,
                           text);
        return false;
    }
    *dst = v;
    return true;
}

static bool config_parse_enum(struct config_parse *p,
                              const struct config_field *f, const char *text,
                              int line, const char *path, int *dst)
{
    struct buf list = {0};
    const char *hint;
    int v = config_util_name(f->names, text, &hint, &list);
    if (v >= 0)
        *dst = v;
    else if (hint)
        config_parse_error(p, line, "%s: '%s' is not one of %s (did you mean "
                           "'%s'?)", path, text, list.data, hint);
    else
        config_parse_error(p, line, "%s: '%s' is not one of %s", path, text,
                           list.data);
    buf_free(&list);
    return v >= 0;
}

static bool config_parse_addr(struct config_parse *p,
                              const struct config_field *f, const char *text,
                              int line, const char *path,
                              struct config_addr *dst)
{
    struct config_addr a;
    const char *why;
    if (!config_addr_parse(text, f->check & CONFIG_ADDR_UNIX, &a, &why)) {
        config_parse_error(p, line, "%s: '%s' is not a valid address: %s "
                           "(write host:port%s)", path, text, why,
                           (f->check & CONFIG_ADDR_UNIX)
                               ? ", [v6]:port or unix:/path"
                               : " or [v6]:port");
        return false;
    }
    if (!a.unix_path && a.port == 0 && !(f->check & CONFIG_ADDR_PORT0)) {
        config_parse_error(p, line, "%s: '%s': port 0 is not allowed here",
                           path, text);
        config_addr_free(&a);
        return false;
    }
    if (a.unix_path) {
        char *resolved = config_util_resolve(p, a.unix_path);
        free(a.unix_path);
        a.unix_path = resolved;
    }
    config_addr_free(dst);
    *dst = a;
    return true;
}

static bool config_parse_file(struct config_parse *p, const char *text,
                              int line, const char *path, char **dst)
{
    if (!*text) {
        config_parse_error(p, line, "%s: the file name is empty", path);
        return false;
    }
    /* Only a check: whoever uses the file opens it again. */
    char *file = config_util_resolve(p, text);
    bool ok = false;
    int fd = config_util_open(file);
    if (fd < 0) {
        config_parse_error(p, line, "%s: cannot read '%s': %s", path, file,
                           strerror(errno));
        goto out;
    }
    free(*dst);
    *dst = file;
    file = NULL;
    ok = true;
out:
    if (fd >= 0)
        close(fd);
    free(file);
    return ok;
}

static void config_parse_wipe(char *s)
{
    if (s) {
        explicit_bzero(s, strlen(s));
        free(s);
    }
}

static bool config_parse_secret(struct config_parse *p, const char *text,
                                int line, const char *path, char **dst)
{
    if (!*text) {
        config_parse_error(p, line, "%s: the file name is empty", path);
        return false;
    }
    char *file = config_util_resolve(p, text);
    size_t len = 0;
    char *s = config_util_read_file(p, line, path, file,
                                    CONFIG_PARSE_MAX_SECRET, &len);
    bool ok = false;
    if (!s)
        goto out;
    while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
        s[--len] = '\0';
    if (len == 0) {
        config_parse_error(p, line, "%s: '%s' is empty", path, file);
        goto out;
    }
    if (strlen(s) != len) {
        config_parse_error(p, line, "%s: '%s' contains a NUL byte", path,
                           file);
        goto out;
    }
    config_parse_wipe(*dst);
    *dst = s;
    s = NULL;
    ok = true;
out:
    if (s) {
        explicit_bzero(s, len);
        free(s);
    }
    free(file);
    return ok;
}

/* Convert text into the field at base; false (reported) when invalid. */
static bool config_parse_convert(struct config_parse *p,
                                 const struct config_field *f,
                                 const char *text, int line, const char *path,
                                 void *base)
{
    void *dst = (char *)base + f->offset;
    uint64_t v;
    switch (f->type) {
    case CONFIG_T_STRING:
        return config_parse_string(p, f, text, line, path, dst);
    case CONFIG_T_ID:
        return config_parse_id(p, text, line, path, dst);
    case CONFIG_T_BOOL:
        return config_parse_bool(p, text, line, path, dst);
    case CONFIG_T_U32:
        return config_parse_u32(p, f, text, line, path, dst);
    case CONFIG_T_DURATION:
        if (!util_parse_duration_ms(text, &v)) {
            config_parse_error(p, line, "%s: '%s' is not a duration (write "
                               "500ms, 2s, 1m)", path, text);
            return false;
        }
        if (!config_parse_range(p, f, v, text, line, path))
            return false;
        memcpy(dst, &v, sizeof(v));
        return true;
    case CONFIG_T_SIZE:
        if (!util_parse_size(text, &v)) {
            config_parse_error(p, line, "%s: '%s' is not a size (write 512, "
                               "16KiB, 1MiB)", path, text);
            return false;
        }
        if (!config_parse_range(p, f, v, text, line, path))
            return false;
        memcpy(dst, &v, sizeof(v));
        return true;
    case CONFIG_T_RATIO:
        return config_parse_ratio(p, text, line, path, dst);
    case CONFIG_T_ENUM:
        return config_parse_enum(p, f, text, line, path, dst);
    case CONFIG_T_ADDR:
        return config_parse_addr(p, f, text, line, path, dst);
    case CONFIG_T_FILE:
        return config_parse_file(p, text, line, path, dst);
    case CONFIG_T_SECRET:
        return config_parse_secret(p, text, line, path, dst);
    case CONFIG_T_SECTION:
    case CONFIG_T_CUSTOM:
        break;
    }
    return false;
}

/* ---- sections ---- */

static void config_parse_default(struct config_parse *p,
                                 const struct config_field *f,
                                 const char *path, void *base)
{
    if (f->type == CONFIG_T_SECTION)
        config_parse_section(p, f->section, NULL, path,
                             (char *)base + f->offset, true);
    else if (f->type == CONFIG_T_CUSTOM)
        f->parse(p, f, NULL, path, base);
    else if (f->def)
        config_parse_convert(p, f, f->def, 0, path, base);
}

static void config_parse_value(struct config_parse *p,
                               const struct config_field *f,
                               const struct yaml_doc_node *value,
                               const char *path, void *base,
                               bool apply_defaults)
{
    if (f->type == CONFIG_T_SECTION) {
        config_parse_section(p, f->section, value, path,
                             (char *)base + f->offset, apply_defaults);
        return;
    }
    if (f->type == CONFIG_T_CUSTOM) {
        f->parse(p, f, value, path, base);
        return;
    }
    const char *text = config_parse_scalar(p, value, path, config_parse_what(f));
    if (text && config_parse_convert(p, f, text, value->line, path, base))
        return;
    if (apply_defaults)
        config_parse_default(p, f, path, base);
}

static void config_parse_unknown(struct config_parse *p,
                                 const struct config_section *sec,
                                 const struct yaml_doc_pair *pair,
                                 const char *path)
{
    const char *keys[64];
    size_t n = 0;
    for (size_t i = 0; i < sec->n_fields && n < ARRAY_LEN(keys); i++)
        keys[n++] = sec->fields[i].key;
    const char *where = *path ? path : "the top level";
    const char *hint = config_util_suggest(pair->key->str, keys, n);
    if (hint)
        config_parse_error(p, pair->key->line,
                           "unknown key '%s' in %s (did you mean '%s'?)",
                           pair->key->str, where, hint);
    else
        config_parse_error(p, pair->key->line, "unknown key '%s' in %s",
                           pair->key->str, where);
}

/* config_parse_section, with required keys checked only when asked (a
 * list item that is not a mapping is reported once, as that). */
static void config_parse_mapping(struct config_parse *p,
                                 const struct config_section *sec,
                                 const struct yaml_doc_node *node,
                                 const char *path, void *base,
                                 bool apply_defaults, bool check_required)
{
    if (node && yaml_doc_is_null(node))
        node = NULL;
    if (node && node->kind != YAML_DOC_MAPPING) {
        config_parse_error(p, node->line, "%s: expected a mapping, found %s",
                           path, yaml_doc_kind_name(node->kind));
        node = NULL;
        check_required = false;
    }
    for (size_t i = 0; node && i < node->n_pairs; i++) {
        bool known = false;
        for (size_t j = 0; j < sec->n_fields && !known; j++)
            known = strcmp(node->pairs[i].key->str, sec->fields[j].key) == 0;
        if (!known)
            config_parse_unknown(p, sec, &node->pairs[i], path);
    }
    for (size_t j = 0; j < sec->n_fields; j++) {
        const struct config_field *f = &sec->fields[j];
        const struct yaml_doc_pair *pair = yaml_doc_find(node, f->key);
        const struct yaml_doc_node *value = pair ? pair->value : NULL;
        char *fpath = config_parse_join(path, f->key);
        if (value && yaml_doc_is_null(value))
            value = NULL;
        if (value) {
            config_parse_value(p, f, value, fpath, base, apply_defaults);
        } else {
            if (f->required && check_required)
                config_parse_error(p, pair ? pair->key->line
                                           : node ? node->line : 0,
                                   "%s: '%s' is required",
                                   *path ? path : "the top level", f->key);
            if (apply_defaults)
                config_parse_default(p, f, fpath, base);
        }
        free(fpath);
    }
}

void config_parse_section(struct config_parse *p,
                          const struct config_section *sec,
                          const struct yaml_doc_node *node, const char *path,
                          void *base, bool apply_defaults)
{
    config_parse_mapping(p, sec, node, path, base, apply_defaults, true);
}

int config_parse_list(struct config_parse *p, const struct config_section *item,
                      const struct yaml_doc_node *node, const char *path,
                      void *array, size_t item_size, int max)
{
    if (!config_parse_is_list(p, node, path))
        return 0;
    size_t n = node->n_items;
    if (n > (size_t)max) {
        config_parse_error(p, node->items[max]->line,
                           "%s: at most %d entries are supported", path, max);
        n = (size_t)max;
    }
    for (size_t i = 0; i < n; i++) {
        char *ipath = xasprintf("%s[%zu]", path, i);
        const struct yaml_doc_node *it = node->items[i];
        bool null = yaml_doc_is_null(it); /* "- " alone */
        if (null)
            config_parse_error(p, it->line, "%s: expected a mapping, found "
                               "nothing", ipath);
        config_parse_mapping(p, item, null ? NULL : it, ipath,
                             (char *)array + i * item_size, true, !null);
        free(ipath);
    }
    return (int)n;
}

void config_parse_release(const struct config_section *sec, void *base)
{
    for (size_t j = 0; j < sec->n_fields; j++) {
        const struct config_field *f = &sec->fields[j];
        void *dst = (char *)base + f->offset;
        switch (f->type) {
        case CONFIG_T_STRING:
        case CONFIG_T_FILE:
            free(*(char **)dst);
            *(char **)dst = NULL;
            break;
        case CONFIG_T_SECRET:
            config_parse_wipe(*(char **)dst);
            *(char **)dst = NULL;
            break;
        case CONFIG_T_ADDR:
            config_addr_free(dst);
            break;
        case CONFIG_T_SECTION:
            config_parse_release(f->section, dst);
            break;
        case CONFIG_T_CUSTOM:
            if (f->release)
                f->release(f, base);
            break;
        default:
            break;
        }
    }
}

static bool config_parse_streq(const char *a, const char *b)
{
    return (!a || !b) ? a == b : strcmp(a, b) == 0;
}

static bool config_parse_same(const struct config_field *f, const void *a,
                              const void *b)
{
    const void *x = (const char *)a + f->offset;
    const void *y = (const char *)b + f->offset;
    switch (f->type) {
    case CONFIG_T_STRING:
    case CONFIG_T_FILE:
    case CONFIG_T_SECRET:
        return config_parse_streq(*(char *const *)x, *(char *const *)y);
    case CONFIG_T_ID:
        return strcmp(x, y) == 0;
    case CONFIG_T_BOOL:
        return *(const bool *)x == *(const bool *)y;
    case CONFIG_T_U32:
        return *(const uint32_t *)x == *(const uint32_t *)y;
    case CONFIG_T_DURATION:
    case CONFIG_T_SIZE:
        return *(const uint64_t *)x == *(const uint64_t *)y;
    case CONFIG_T_RATIO:
        return *(const double *)x == *(const double *)y;
    case CONFIG_T_ENUM:
        return *(const int *)x == *(const int *)y;
    case CONFIG_T_ADDR:
        return config_addr_same(x, y);
    case CONFIG_T_CUSTOM:
        return f->same ? f->same(f, a, b) : true;
    case CONFIG_T_SECTION:
        break;
    }
    return true;
}

void config_parse_diff(const struct config_section *sec, const void *a,
                       const void *b, const char *path, bool restart,
                       struct buf *out)
{
    for (size_t j = 0; j < sec->n_fields; j++) {
        const struct config_field *f = &sec->fields[j];
        bool r = restart || f->restart;
        char *fpath = config_parse_join(path, f->key);
        if (f->type == CONFIG_T_SECTION)
            config_parse_diff(f->section, (const char *)a + f->offset,
                              (const char *)b + f->offset, fpath, r, out);
        else if (r && !config_parse_same(f, a, b))
            buf_printf(out, "%s%s", out->len ? ", " : "", fpath);
        free(fpath);
    }
}
