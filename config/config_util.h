/* config_util.h - small helpers of the configuration loader: file access
 * relative to the configuration, typo suggestions, line lookup, formatting
 * values back the way a file writes them.  Internal to the config module. */
#ifndef QG_CONFIG_UTIL_H
#define QG_CONFIG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config_parse.h"

/* A malloc'ed copy of file, resolved against p->base_dir when relative. */
char *config_util_resolve(const struct config_parse *p, const char *file);

/* Open file read-only, refusing directories (errno EISDIR); -1 + errno on
 * failure. */
int config_util_open(const char *file);

/* Read a whole file of at most max bytes.  Returns it malloc'ed and
 * NUL-terminated, length in *len; on failure reports "path: cannot read
 * 'file': reason" (at line) and returns NULL. */
char *config_util_read_file(struct config_parse *p, int line, const char *path,
                            const char *file, size_t max, size_t *len);

/* The candidate closest to word (case-insensitive edit distance) when it
 * is close enough to be a likely typo; else NULL. */
const char *config_util_suggest(const char *word, const char *const *cands,
                                size_t n);

/* The value of name in a {NULL}-terminated name table, or -1; then *hint
 * is a likely intended name (or NULL) and list gets "a, b, c". */
int config_util_name(const struct config_enum_name *tab, const char *name,
                     const char **hint, struct buf *list);

/* The node at a path such as "gate.management.username" (see
 * config_util_line), or NULL when absent or null. */
const struct yaml_doc_node *config_util_node(const struct config_parse *p,
                                             const char *path);

/* Line of the deepest existing node along a path such as
 * "listeners[1].tls.key" (a mapping entry's line is its key's); 0 when the
 * first step is absent. */
int config_util_line(const struct config_parse *p, const char *path);

/* Write a duration / size the way the file would ("250ms", "2s", "16KiB"). */
void config_util_fmt_ms(char *out, size_t n, uint64_t ms);
void config_util_fmt_size(char *out, size_t n, uint64_t bytes);

#endif
