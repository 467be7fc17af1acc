/* yaml_doc.h - a YAML document as a small tree of scalars, sequences and
 * mappings, each with the line it starts on.  The only wrapper of libyaml.
 *
 * Aliases are resolved (the aliased subtree is copied, keeping the lines of
 * the anchored original) and YAML 1.1 merge keys ("<<: *anchor") are applied:
 * keys written in the mapping win over merged ones.  Duplicate keys in a
 * mapping are reported; the first occurrence is kept.  Tags are ignored:
 * every scalar is text, and the consumer decides what it means.
 *
 * Ownership: a loaded tree is owned by the caller and released with
 * yaml_doc_free(); every node owns its children and its text. */
#ifndef QG_YAML_DOC_H
#define QG_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>

enum yaml_doc_kind { YAML_DOC_SCALAR, YAML_DOC_SEQUENCE, YAML_DOC_MAPPING };

struct yaml_doc_node;

struct yaml_doc_pair {
    struct yaml_doc_node *key;       /* owned; always a scalar */
    struct yaml_doc_node *value;     /* owned */
};

struct yaml_doc_node {
    enum yaml_doc_kind kind;
    int line;                        /* 1-based line where the node starts */
    /* YAML_DOC_SCALAR */
    char *str;                       /* owned, NUL-terminated */
    size_t len;
    bool quoted;                     /* '...', "...", | or >, not plain */
    /* YAML_DOC_SEQUENCE */
    struct yaml_doc_node **items;    /* owned array of owned nodes */
    size_t n_items;
    /* YAML_DOC_MAPPING */
    struct yaml_doc_pair *pairs;     /* owned array, in document order */
    size_t n_pairs;
};

/* Receives each problem found while loading: 1-based line (0 when not tied
 * to a line) and a message without any file name. */
typedef void yaml_doc_report_fn(void *ctx, int line, const char *message);

/* Parse text (len bytes, UTF-8).  Returns the root node (an empty document
 * is a plain empty scalar, i.e. null), or NULL after reporting a syntax
 * error.  Problems that do not stop parsing (duplicate keys) are reported
 * and the tree is still returned: a caller that must fail on any problem
 * counts the reports. */
struct yaml_doc_node *yaml_doc_load_string(const char *text, size_t len,
                                           yaml_doc_report_fn *report,
                                           void *ctx);
/* The same from a file; an unreadable file is reported with line 0. */
struct yaml_doc_node *yaml_doc_load_file(const char *path,
                                         yaml_doc_report_fn *report,
                                         void *ctx);

void yaml_doc_free(struct yaml_doc_node *node);

/* The pair with this key in a mapping, or NULL (also when node is NULL or
 * not a mapping). */
const struct yaml_doc_pair *yaml_doc_find(const struct yaml_doc_node *node,
                                          const char *key);
/* A plain scalar "", "~", "null", "Null" or "NULL". */
bool yaml_doc_is_null(const struct yaml_doc_node *node);
/* "a scalar", "a list", "a mapping": for messages. */
const char *yaml_doc_kind_name(enum yaml_doc_kind kind);

#endif
