/* yaml_doc.c - see yaml_doc.h.  libyaml's document loader builds a graph
 * (aliases share nodes); we copy it into our own tree, bounded in depth and
 * size so that alias cycles and "billion laughs" documents fail cleanly. */
#include "base/yaml_doc.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "base/buf.h"
#include "base/util.h"

#define YAML_DOC_MAX_DEPTH 64
#define YAML_DOC_MAX_NODES 100000
#define YAML_DOC_MAX_FILE (16u * 1024 * 1024)

/* State of one conversion; borrowed pointers only. */
struct yaml_doc_loader {
    yaml_document_t *doc;            /* borrowed */
    yaml_doc_report_fn *report;
    void *ctx;
    size_t n_nodes;
    bool fatal;                      /* too deep or too large: give up */
};

static void yaml_doc_reportf(yaml_doc_report_fn *report, void *ctx, int line,
                             const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void yaml_doc_reportf(yaml_doc_report_fn *report, void *ctx, int line,
                             const char *fmt, ...)
{
    struct buf b = {0};
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&b, fmt, ap);
    va_end(ap);
    report(ctx, line, b.data);
    buf_free(&b);
}

const char *yaml_doc_kind_name(enum yaml_doc_kind kind)
{
    switch (kind) {
    case YAML_DOC_SCALAR: return "a scalar";
    case YAML_DOC_SEQUENCE: return "a list";
    case YAML_DOC_MAPPING: return "a mapping";
    }
    return "a node";
}

static const char *yaml_doc_libyaml_kind(const yaml_node_t *yn)
{
    return yn->type == YAML_MAPPING_NODE    ? "a mapping"
           : yn->type == YAML_SEQUENCE_NODE ? "a list"
                                            : "a scalar";
}

void yaml_doc_free(struct yaml_doc_node *node)
{
    if (!node)
        return;
    free(node->str);
    for (size_t i = 0; i < node->n_items; i++)
        yaml_doc_free(node->items[i]);
    free(node->items);
    for (size_t i = 0; i < node->n_pairs; i++) {
        yaml_doc_free(node->pairs[i].key);
        yaml_doc_free(node->pairs[i].value);
    }
    free(node->pairs);
    free(node);
}

const struct yaml_doc_pair *yaml_doc_find(const struct yaml_doc_node *node,
                                          const char *key)
{
    if (!node || node->kind != YAML_DOC_MAPPING)
        return NULL;
    for (size_t i = 0; i < node->n_pairs; i++)
        if (strcmp(node->pairs[i].key->str, key) == 0)
            return &node->pairs[i];
    return NULL;
}

bool yaml_doc_is_null(const struct yaml_doc_node *node)
{
    if (!node || node->kind != YAML_DOC_SCALAR || node->quoted)
        return false;
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL"};
    for (size_t i = 0; i < ARRAY_LEN(nulls); i++)
        if (strcmp(node->str, nulls[i]) == 0)
            return true;
    return false;
}

static struct yaml_doc_node *yaml_doc_new(enum yaml_doc_kind kind, int line)
{
    struct yaml_doc_node *n = xcalloc(1, sizeof(*n));
    n->kind = kind;
    n->line = line;
    return n;
}

static struct yaml_doc_node *yaml_doc_convert(struct yaml_doc_loader *l,
                                              yaml_node_t *yn, int depth);

static bool yaml_doc_is_merge_key(const yaml_node_t *key)
{
    return key->type == YAML_SCALAR_NODE &&
           key->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
           key->data.scalar.length == 2 &&
           memcmp(key->data.scalar.value, "<<", 2) == 0;
}

/* Append pair (taking ownership) unless its key is already present; a
 * duplicate is reported when report_dup, and freed either way. */
static void yaml_doc_add_pair(struct yaml_doc_loader *l,
                              struct yaml_doc_node *map,
                              struct yaml_doc_node *key,
                              struct yaml_doc_node *value, bool report_dup)
{
    const struct yaml_doc_pair *old = yaml_doc_find(map, key->str);
    if (old) {
        if (report_dup)
            yaml_doc_reportf(l->report, l->ctx, key->line,
                             "duplicate key '%s' (first at line %d)",
                             key->str, old->key->line);
        yaml_doc_free(key);
        yaml_doc_free(value);
        return;
    }
    map->pairs = xrealloc(map->pairs, (map->n_pairs + 1) * sizeof(*map->pairs));
    map->pairs[map->n_pairs].key = key;
    map->pairs[map->n_pairs].value = value;
    map->n_pairs++;
}

/* Collect the mappings named by a merge key's value into sources
 * (taking them out of value, which is then freed). */
static void yaml_doc_take_merge(struct yaml_doc_loader *l,
                                struct yaml_doc_node *value,
                                struct yaml_doc_node ***sources, size_t *n)
{
    if (value->kind == YAML_DOC_MAPPING) {
        *sources = xrealloc(*sources, (*n + 1) * sizeof(**sources));
        (*sources)[(*n)++] = value;
        return;
    }
    if (value->kind == YAML_DOC_SEQUENCE) {
        for (size_t i = 0; i < value->n_items; i++) {
            if (value->items[i]->kind != YAML_DOC_MAPPING) {
                yaml_doc_reportf(l->report, l->ctx, value->items[i]->line,
                                 "merge key '<<' needs mappings, found %s",
                                 yaml_doc_kind_name(value->items[i]->kind));
                continue;
            }
            *sources = xrealloc(*sources, (*n + 1) * sizeof(**sources));
            (*sources)[(*n)++] = value->items[i];
            value->items[i] = NULL;
        }
    } else {
        yaml_doc_reportf(l->report, l->ctx, value->line,
                         "merge key '<<' needs a mapping, found %s",
                         yaml_doc_kind_name(value->kind));
    }
    yaml_doc_free(value);
}

static struct yaml_doc_node *yaml_doc_convert_mapping(struct yaml_doc_loader *l,
                                                      yaml_node_t *yn,
                                                      int depth)
{
    struct yaml_doc_node *map =
        yaml_doc_new(YAML_DOC_MAPPING, (int)yn->start_mark.line + 1);
    struct yaml_doc_node **merges = NULL;
    size_t n_merges = 0;
    for (yaml_node_pair_t *p = yn->data.mapping.pairs.start;
         p < yn->data.mapping.pairs.top && !l->fatal; p++) {
        yaml_node_t *ykey = yaml_document_get_node(l->doc, p->key);
        yaml_node_t *yval = yaml_document_get_node(l->doc, p->value);
        if (ykey->type != YAML_SCALAR_NODE) {
            yaml_doc_reportf(l->report, l->ctx, (int)ykey->start_mark.line + 1,
                             "a mapping key must be a scalar, found %s",
                             yaml_doc_libyaml_kind(ykey));
            continue;
        }
        struct yaml_doc_node *value = yaml_doc_convert(l, yval, depth + 1);
        if (!value)
            break;
        if (yaml_doc_is_merge_key(ykey)) {
            yaml_doc_take_merge(l, value, &merges, &n_merges);
            continue;
        }
        struct yaml_doc_node *key = yaml_doc_convert(l, ykey, depth + 1);
        if (!key) {
            yaml_doc_free(value);
            break;
        }
        yaml_doc_add_pair(l, map, key, value, true);
    }
    /* Merged keys never override written ones, and an earlier source
     * wins over a later one. */
    for (size_t m = 0; m < n_merges; m++) {
        struct yaml_doc_node *src = merges[m];
        for (size_t i = 0; i < src->n_pairs; i++) {
            yaml_doc_add_pair(l, map, src->pairs[i].key, src->pairs[i].value,
                              false);
            src->pairs[i].key = src->pairs[i].value = NULL;
        }
        yaml_doc_free(src);
    }
    free(merges);
    if (l->fatal) {
        yaml_doc_free(map);
        return NULL;
    }
    return map;
}

static struct yaml_doc_node *yaml_doc_convert(struct yaml_doc_loader *l,
                                              yaml_node_t *yn, int depth)
{
    int line = (int)yn->start_mark.line + 1;
    if (depth > YAML_DOC_MAX_DEPTH) {
        yaml_doc_reportf(l->report, l->ctx, line,
                         "nested more than %d levels deep (an alias cycle?)",
                         YAML_DOC_MAX_DEPTH);
        l->fatal = true;
        return NULL;
    }
    if (++l->n_nodes > YAML_DOC_MAX_NODES) {
        yaml_doc_reportf(l->report, l->ctx, line,
                         "document too large (more than %d nodes after "
                         "expanding aliases)", YAML_DOC_MAX_NODES);
        l->fatal = true;
        return NULL;
    }
    struct yaml_doc_node *n = NULL;
    switch (yn->type) {
    case YAML_SCALAR_NODE:
        n = yaml_doc_new(YAML_DOC_SCALAR, line);
        n->len = yn->data.scalar.length;
        n->str = xstrndup((const char *)yn->data.scalar.value, n->len);
        n->quoted = yn->data.scalar.style != YAML_PLAIN_SCALAR_STYLE;
        if (strlen(n->str) != n->len)
            yaml_doc_reportf(l->report, l->ctx, line,
                             "a scalar contains a NUL character");
        return n;
    case YAML_SEQUENCE_NODE:
        n = yaml_doc_new(YAML_DOC_SEQUENCE, line);
        size_t count = (size_t)(yn->data.sequence.items.top -
                                yn->data.sequence.items.start);
        n->items = xcalloc(count, sizeof(*n->items));
        for (size_t i = 0; i < count; i++) {
            yaml_node_t *child = yaml_document_get_node(
                l->doc, yn->data.sequence.items.start[i]);
            n->items[i] = yaml_doc_convert(l, child, depth + 1);
            if (!n->items[i]) {
                yaml_doc_free(n);
                return NULL;
            }
            n->n_items++;
        }
        return n;
    case YAML_MAPPING_NODE:
        return yaml_doc_convert_mapping(l, yn, depth);
    case YAML_NO_NODE:
        break;
    }
    return yaml_doc_new(YAML_DOC_SCALAR, line); /* not reached */
}

/* Line (1-based) of byte offset in text, for reader errors which carry an
 * offset rather than a mark. */
static int yaml_doc_offset_line(const char *text, size_t len, size_t offset)
{
    int line = 1;
    for (size_t i = 0; i < offset && i < len; i++)
        if (text[i] == '\n')
            line++;
    return line;
}

static void yaml_doc_report_parser(yaml_parser_t *parser, const char *text,
                                   size_t len, yaml_doc_report_fn *report,
                                   void *ctx)
{
    if (parser->error == YAML_MEMORY_ERROR) {
        fprintf(stderr, "quorumgate: out of memory parsing YAML\n");
        abort();
    }
    const char *problem = parser->problem ? parser->problem : "unknown error";
    if (parser->error == YAML_READER_ERROR) {
        yaml_doc_reportf(report, ctx,
                         yaml_doc_offset_line(text, len, parser->problem_offset),
                         "YAML syntax error: %s", problem);
        return;
    }
    int line = (int)parser->problem_mark.line + 1;
    if (parser->context)
        yaml_doc_reportf(report, ctx, line,
                         "YAML syntax error: %s (%s at line %d)", problem,
                         parser->context, (int)parser->context_mark.line + 1);
    else
        yaml_doc_reportf(report, ctx, line, "YAML syntax error: %s", problem);
}

struct yaml_doc_node *yaml_doc_load_string(const char *text, size_t len,
                                           yaml_doc_report_fn *report,
                                           void *ctx)
{
    struct yaml_doc_node *root = NULL;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    bool have_doc = false, have_extra = false;

    if (!yaml_parser_initialize(&parser)) {
        fprintf(stderr, "quorumgate: out of memory parsing YAML\n");
        abort();
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        yaml_doc_report_parser(&parser, text, len, report, ctx);
        goto out;
    }
    have_doc = true;
    yaml_node_t *yroot = yaml_document_get_root_node(&doc);
    if (!yroot) {
        root = yaml_doc_new(YAML_DOC_SCALAR, 1);
        root->str = xstrdup("");
        goto out;
    }
    struct yaml_doc_loader l = {.doc = &doc, .report = report, .ctx = ctx};
    root = yaml_doc_convert(&l, yroot, 0);
    if (!root)
        goto out;
    /* A second document would be silently ignored: refuse it. */
    if (!yaml_parser_load(&parser, &extra)) {
        yaml_doc_report_parser(&parser, text, len, report, ctx);
        yaml_doc_free(root);
        root = NULL;
        goto out;
    }
    have_extra = true;
    yaml_node_t *xroot = yaml_document_get_root_node(&extra);
    if (xroot) {
        yaml_doc_reportf(report, ctx, (int)extra.start_mark.line + 1,
                         "a second YAML document; put everything in one");
        yaml_doc_free(root);
        root = NULL;
    }
out:
    if (have_extra)
        yaml_document_delete(&extra);
    if (have_doc)
        yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return root;
}

struct yaml_doc_node *yaml_doc_load_file(const char *path,
                                         yaml_doc_report_fn *report,
                                         void *ctx)
{
    struct yaml_doc_node *root = NULL;
    struct buf text = {0};
    FILE *f = fopen(path, "rb");
    if (!f) {
        yaml_doc_reportf(report, ctx, 0, "cannot read '%s': %s", path,
                         strerror(errno));
        goto out;
    }
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0) {
        buf_append(&text, chunk, n);
        if (text.len > YAML_DOC_MAX_FILE) {
            yaml_doc_reportf(report, ctx, 0, "'%s' is larger than %u bytes",
                             path, YAML_DOC_MAX_FILE);
            goto out;
        }
    }
    if (ferror(f)) {
        yaml_doc_reportf(report, ctx, 0, "cannot read '%s': %s", path,
                         strerror(errno));
        goto out;
    }
    root = yaml_doc_load_string(text.data ? text.data : "", text.len, report,
                                ctx);
out:
    if (f)
        fclose(f);
    buf_free(&text);
    return root;
}
