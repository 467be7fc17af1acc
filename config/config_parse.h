/* config_parse.h - the table-driven engine behind config.c (internal to the
 * config module): error collection, field types, section tables, and the
 * converters custom parsers reuse.
 *
 * A section table lists the keys a YAML mapping may hold; each field says
 * how to convert its value and where to store it (offset into the struct the
 * section fills).  Defaults are written as YAML text and go through the same
 * converter as the file, so the tables read like the documented example.
 * When a value is wrong the error is recorded and the default stored, so
 * later cross-field checks see sane values and do not pile up noise. */
#ifndef QG_CONFIG_PARSE_H
#define QG_CONFIG_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/buf.h"
#include "config/config.h"
#include "base/yaml_doc.h"

/* Most problems reported for one file; then one "more errors" line. */
#define CONFIG_PARSE_MAX_ERRORS 100

/* One load in progress.  All pointers are borrowed. */
struct config_parse {
    const char *file;                  /* name used in messages */
    const char *base_dir;              /* relative paths resolve here */
    struct config_errors *errs;        /* where problems go */
    const struct yaml_doc_node *root;  /* the document (NULL before parsing) */
};

/* Record "file:line: message" (line 0: "file: message"). */
void config_parse_error(struct config_parse *p, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Adapter for yaml_doc's report callback (ctx is a struct config_parse). */
void config_parse_report(void *ctx, int line, const char *message);

enum config_type {
    CONFIG_T_STRING,     /* char *, owned; see enum config_str */
    CONFIG_T_ID,         /* char[CONFIG_ID_MAX]: [A-Za-z0-9._:-]{1,63} */
    CONFIG_T_BOOL,       /* bool: true / false */
    CONFIG_T_U32,        /* uint32_t in [min, max] */
    CONFIG_T_DURATION,   /* uint64_t ms in [min, max] ("250ms", "2s") */
    CONFIG_T_SIZE,       /* uint64_t bytes in [min, max] ("16KiB") */
    CONFIG_T_RATIO,      /* double in [0, 1] */
    CONFIG_T_ENUM,       /* an int-sized enum named by names[] */
    CONFIG_T_ADDR,       /* struct config_addr; see CONFIG_ADDR_* */
    CONFIG_T_FILE,       /* char *, owned: resolved path, must be readable */
    CONFIG_T_SECRET,     /* char *, owned: content of the named file, trailing
                            newline stripped, wiped on free */
    CONFIG_T_SECTION,    /* a nested mapping filling the struct at offset */
    CONFIG_T_CUSTOM      /* parse/release/same callbacks */
};

/* Checks on CONFIG_T_STRING values (field.check). */
enum config_str {
    CONFIG_STR_ANY = 0,
    CONFIG_STR_URL_PATH,     /* starts with '/', no spaces or controls */
    CONFIG_STR_TOKEN,        /* an HTTP token (header names) */
    CONFIG_STR_HOST,         /* a DNS name */
    CONFIG_STR_PATH,         /* a file path, resolved, need not exist */
    CONFIG_STR_ERROR_LOG,    /* "stderr", "stdout" or a path */
    CONFIG_STR_ACCESS_LOG,   /* "stdout", "stderr", "off" or a path */
    CONFIG_STR_NONEMPTY,
    CONFIG_STR_KEY_PREFIX    /* Redis key prefix: at most CONFIG_KEY_PREFIX_MAX
                                printable bytes, no spaces */
};

/* Flags for CONFIG_T_ADDR values (field.check). */
#define CONFIG_ADDR_UNIX 1   /* "unix:/path" accepted */
#define CONFIG_ADDR_PORT0 2  /* port 0 accepted (tests: pick a free port) */

struct config_enum_name {
    const char *name;
    int value;
};

struct config_field;

/* Custom fields.  parse gets node == NULL when the key is absent and
 * defaults apply; base is the struct the section fills. */
typedef void config_parse_fn(struct config_parse *p,
                             const struct config_field *f,
                             const struct yaml_doc_node *node,
                             const char *path, void *base);
typedef void config_release_fn(const struct config_field *f, void *base);
typedef bool config_same_fn(const struct config_field *f, const void *a,
                            const void *b);

struct config_section {
    const struct config_field *fields; /* static table */
    size_t n_fields;
};

struct config_field {
    const char *key;
    enum config_type type;
    size_t offset;                   /* into the section's struct */
    const char *def;                 /* default as YAML text; NULL = zero */
    uint64_t min, max;               /* U32, DURATION, SIZE; max 0 = none */
    int check;                       /* STRING: enum config_str;
                                        ADDR: CONFIG_ADDR_* flags */
    const struct config_enum_name *names; /* ENUM, ends with {NULL, 0} */
    const struct config_section *section; /* SECTION */
    config_parse_fn *parse;          /* CUSTOM */
    config_release_fn *release;      /* CUSTOM, optional */
    config_same_fn *same;            /* CUSTOM, needed when restart */
    bool restart;                    /* a reload cannot change it */
    bool required;                   /* absent (or null) is an error */
};

#define CONFIG_SECTION(tab) { (tab), sizeof(tab) / sizeof((tab)[0]) }

/* Fill base from a mapping node as described by sec.  node NULL or null
 * means an empty mapping.  path is the dotted name of the mapping ("" for
 * the top level).  With apply_defaults absent keys get their default,
 * otherwise they keep what base already holds. */
void config_parse_section(struct config_parse *p,
                          const struct config_section *sec,
                          const struct yaml_doc_node *node, const char *path,
                          void *base, bool apply_defaults);

/* Parse a list of mappings, each described by item, into consecutive
 * structs of item_size bytes at array.  Returns how many were filled (at
 * most max; more is an error).  node NULL or null is an empty list. */
int config_parse_list(struct config_parse *p, const struct config_section *item,
                      const struct yaml_doc_node *node, const char *path,
                      void *array, size_t item_size, int max);

/* Free whatever the fields of sec own in base. */
void config_parse_release(const struct config_section *sec, void *base);

/* Append to out (", " separated) the dotted names of the restart-only
 * fields whose values differ between a and b. */
void config_parse_diff(const struct config_section *sec, const void *a,
                       const void *b, const char *path, bool restart,
                       struct buf *out);

/* "path.key", or "key" when path is empty; malloc'ed. */
char *config_parse_join(const char *path, const char *key);
/* node must be a scalar: returns its text, else reports "path: expected
 * <what>, found a list" and returns NULL. */
const char *config_parse_scalar(struct config_parse *p,
                                const struct yaml_doc_node *node,
                                const char *path, const char *what);
/* node must be a sequence (NULL or null count as empty: returns false
 * without a message); reports and returns false otherwise. */
bool config_parse_is_list(struct config_parse *p,
                          const struct yaml_doc_node *node, const char *path);

#endif
