/* http.h - HTTP vocabulary shared by every module: methods, idempotency,
 * hop-by-hop header names.  Pure functions, no state. */
#ifndef QG_HTTP_H
#define QG_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <string.h>

enum http_method {
    HTTP_GET = 0,
    HTTP_HEAD,
    HTTP_POST,
    HTTP_PUT,
    HTTP_PATCH,
    HTTP_DELETE,
    HTTP_OPTIONS,
    HTTP_OTHER,
    HTTP__COUNT
};

#define HTTP_M(m) (1u << (m))

/* Parse a method token; unknown tokens are HTTP_OTHER. */
enum http_method http_method_parse(const char *s);
const char *http_method_name(enum http_method m);
/* Parse a method name as written in configuration; -1 if unknown. */
int http_method_from_config(const char *s);
/* RFC 9110 9.2.2: GET HEAD OPTIONS PUT DELETE (TRACE is refused anyway). */
bool http_method_idempotent(enum http_method m);
/* "2xx" style class label for a status, "other" for nonsense. */
const char *http_status_class(int status);

/* One header field of an answer: name and value with their lengths
 * (neither is read past its length, neither needs a NUL). */
struct http_field {
    const char *name, *value;
    size_t name_len, value_len;
};
/* A field of two string literals: HTTP_FIELD("Cache-Control", "no-store"). */
#define HTTP_FIELD(n, v) {n, v, sizeof(n) - 1, sizeof(v) - 1}
/* A field of two NUL-terminated strings. */
static inline struct http_field http_field_of(const char *name,
                                              const char *value)
{
    return (struct http_field){name, value, strlen(name), strlen(value)};
}

/* A list of fields pointing into storage owned elsewhere: the answer's
 * fields as they go to listener_respond, without a copy.
 * Ownership: f is owned (grown by http_fields_add); the names and values
 * are borrowed and must outlive every use of the list.  A zeroed struct
 * is empty. */
struct http_fields {
    struct http_field *f;
    int n, cap;
};

void http_fields_add(struct http_fields *l, const char *name, size_t name_len,
                     const char *value, size_t value_len);
static inline void http_fields_adds(struct http_fields *l, const char *name,
                                    const char *value)
{
    struct http_field f = http_field_of(name, value);
    http_fields_add(l, f.name, f.name_len, f.value, f.value_len);
}
/* The first field called name (any case), or NULL. */
const struct http_field *http_fields_get(const struct http_fields *l,
                                         const char *name);
/* Drops every field called name (any case); returns how many. */
int http_fields_remove(struct http_fields *l, const char *name);
static inline void http_fields_reset(struct http_fields *l)
{
    l->n = 0;
}
void http_fields_free(struct http_fields *l);

/* RFC 9110 7.6.1: fixed hop-by-hop names (case-insensitive). */
bool http_is_hop_by_hop(const char *name, size_t len);

/* A field name with its length, for tables of names that run on every
 * field: HTTP_NAME("Host"). */
struct http_name {
    const char *name;
    size_t len;
};
#define HTTP_NAME(s) {s, sizeof(s) - 1}

/* Is name (len bytes, any case) in table (n entries)? */
bool http_name_in(const struct http_name *table, size_t n, const char *name,
                  size_t len);
/* True when name appears as a token in a Connection header value. */
bool http_connection_lists(const char *connection_value, const char *name,
                           size_t len);

/* RFC 9110 5.6.2 tchar: the characters of a token (method, field name).
 * A table: every field name of every request and answer goes through it. */
extern const bool http_tchar_table[256];
static inline bool http_tchar(unsigned char c)
{
    return http_tchar_table[c];
}

/* The characters of a field value (VCHAR, obs-text, SP, HTAB). */
static inline bool http_vchar(unsigned char c)
{
    return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/* True when all of [s, s + n) are tchar. */
static inline bool http_token(const char *s, size_t n)
{
    bool ok = true;
    for (size_t i = 0; i < n; i++)
        ok &= http_tchar((unsigned char)s[i]);
    return ok;
}

/* True when all of [s, s + n) are field-value characters. */
bool http_field_value(const char *s, size_t n);

/* Optional whitespace (RFC 9110 5.6.3). */
static inline bool http_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* [*s, *s + *n) without leading and trailing optional whitespace. */
static inline void http_trim(const char **s, size_t *n)
{
    while (*n && http_ows((*s)[0])) {
        (*s)++;
        (*n)--;
    }
    while (*n && http_ows((*s)[*n - 1]))
        (*n)--;
}

#endif
