/* http.c - see http.h. */
#include "base/http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

static const char *const http_method_names[HTTP__COUNT] = {
    [HTTP_GET] = "GET",       [HTTP_HEAD] = "HEAD",
    [HTTP_POST] = "POST",     [HTTP_PUT] = "PUT",
    [HTTP_PATCH] = "PATCH",   [HTTP_DELETE] = "DELETE",
    [HTTP_OPTIONS] = "OPTIONS", [HTTP_OTHER] = "OTHER",
};

enum http_method http_method_parse(const char *s)
{
    for (int m = 0; m < HTTP_OTHER; m++)
        if (strcmp(s, http_method_names[m]) == 0)
            return (enum http_method)m;
    return HTTP_OTHER;
}

int http_method_from_config(const char *s)
{
    for (int m = 0; m < HTTP_OTHER; m++)
        if (strcasecmp(s, http_method_names[m]) == 0)
            return m;
    return -1;
}

const char *http_method_name(enum http_method m)
{
    return (m >= 0 && m < HTTP__COUNT) ? http_method_names[m] : "OTHER";
}

bool http_method_idempotent(enum http_method m)
{
    return m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS ||
           m == HTTP_PUT || m == HTTP_DELETE;
}

const char *http_status_class(int status)
{
    static const char *const classes[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
    if (status < 100 || status > 599)
        return "other";
    return classes[status / 100 - 1];
}

/* !#$%&'*+-.^_`| ~ DIGIT ALPHA; bytes from 0x80 up are not (zero) */
const bool http_tchar_table[256] = {
    /*  0 1 2 3 4 5 6 7 8 9 a b c d e f */
    [0x20] =
        0,1,0,1,1,1,1,1,0,0,1,1,0,1,1,0, /* 0x20  !"#$%&'()*+,-./ */
        1,1,1,1,1,1,1,1,1,1,0,0,0,0,0,0, /* 0x30 0123456789:;<=>? */
        0,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* 0x40 @ABCDEFGHIJKLMNO */
        1,1,1,1,1,1,1,1,1,1,1,0,0,0,1,1, /* 0x50 PQRSTUVWXYZ[\]^_ */
        1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1, /* 0x60 `abcdefghijklmno */
        1,1,1,1,1,1,1,1,1,1,1,0,1,0,1,0, /* 0x70 pqrstuvwxyz{|}~ DEL */
};

/* Eight bytes at a time (most values are dates, types, ids: 10 to 40
 * bytes, on every request and answer): a word with no byte below 0x20 and
 * none equal to 0x7f is all field-value characters; a word that has one is
 * looked at byte by byte (HTAB is allowed). */
bool http_field_value(const char *s, size_t n)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    size_t i = 0;
    for (; i < n; i += 8) {
        uint64_t w, d;
        if (i + 8 > n) {
            if (n < 8)
                break;
            i = n - 8; /* the last eight bytes, again in part */
        }
        memcpy(&w, s + i, 8);
        d = w ^ (ones * 0x7f); /* a zero byte where w has 0x7f */
        if (((w - ones * 0x20) | (d - ones)) & ~w & highs)
            break; /* below 0x20 or 0x7f somewhere (or a false alarm
                      next to such a byte): decided below */
    }
    for (; i < n; i++)
        if (!http_vchar((unsigned char)s[i]))
            return false;
    return true;
}

bool http_name_in(const struct http_name *table, size_t n, const char *name,
                  size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (table[i].len == len && util_caseeq_first(name, table[i].name) &&
            strncasecmp(name, table[i].name, len) == 0)
            return true;
    return false;
}

bool http_is_hop_by_hop(const char *name, size_t len)
{
    /* with their lengths: this runs for every field both ways */
    static const struct http_name hop[] = {
        HTTP_NAME("Connection"), HTTP_NAME("Keep-Alive"),
        HTTP_NAME("Proxy-Connection"), HTTP_NAME("TE"),
        HTTP_NAME("Transfer-Encoding"), HTTP_NAME("Upgrade"),
        HTTP_NAME("Trailer"), HTTP_NAME("Proxy-Authenticate"),
        HTTP_NAME("Proxy-Authorization"),
    };
    return http_name_in(hop, ARRAY_LEN(hop), name, len);
}

bool http_connection_lists(const char *value, const char *name, size_t len)
{
    const char *p = value;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *start = p;
        p = strchrnul(p, ','); /* called for every field both ways */
        const char *end = p;
        while (end > start && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        if ((size_t)(end - start) == len && strncasecmp(start, name, len) == 0)
            return true;
    }
    return false;
}

/* ---- field lists --------------------------------------------------------- */

void http_fields_add(struct http_fields *l, const char *name, size_t name_len,
                     const char *value, size_t value_len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 16;
        l->f = xrealloc(l->f, (size_t)l->cap * sizeof(*l->f));
    }
    l->f[l->n++] = (struct http_field){name, value, name_len, value_len};
}

/* f is called name (len bytes), any case */
static bool http_field_is(const struct http_field *f, const char *name,
                          size_t len)
{
    return f->name_len == len && len && util_caseeq_first(f->name, name) &&
           strncasecmp(f->name, name, len) == 0;
}

const struct http_field *http_fields_get(const struct http_fields *l,
                                         const char *name)
{
    size_t len = strlen(name);
    for (int i = 0; i < l->n; i++)
        if (http_field_is(&l->f[i], name, len))
            return &l->f[i];
    return NULL;
}

int http_fields_remove(struct http_fields *l, const char *name)
{
    size_t len = strlen(name);
    int kept = 0;
    for (int i = 0; i < l->n; i++)
        if (!http_field_is(&l->f[i], name, len))
            l->f[kept++] = l->f[i];
    int removed = l->n - kept;
    l->n = kept;
    return removed;
}

void http_fields_free(struct http_fields *l)
{
    free(l->f);
    *l = (struct http_fields){0};
}
