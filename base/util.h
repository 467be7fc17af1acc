/* util.h - allocation that aborts on exhaustion, and small string helpers.
 * Out of memory is fatal by policy: callers never test for NULL. */
#ifndef QG_UTIL_H
#define QG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
/* malloc'ed printf. */
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* Two bytes equal but for ASCII case differ at most in bit 0x20: a cheap
 * test that rejects most different field names before the libc call
 * (the callers compare one name with several in a row, per request). */
static inline bool util_caseeq_first(const char *a, const char *b)
{
    return ((unsigned char)(a[0] ^ b[0]) & ~0x20u) == 0;
}
/* strcasecmp(a, b) == 0; inline for the test above. */
static inline bool util_strcaseeq(const char *a, const char *b)
{
    return util_caseeq_first(a, b) && strcasecmp(a, b) == 0;
}
/* Inline so that the length of a literal b is a constant: field names are
 * compared with these dozens of times per forwarded request (strlen and
 * the call were ~3,000 instructions per request, bench/run.sh --only cost). */
static inline bool util_strncaseeq(const char *a, size_t alen, const char *b)
{
    return strlen(b) == alen &&
           (alen == 0 || (util_caseeq_first(a, b) &&
                          strncasecmp(a, b, alen) == 0));
}
static inline bool util_has_prefix(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}
/* Copies len bytes of src and a NUL into dst[cap] when they fit; else
 * leaves dst empty and returns false.  For identifiers (ids, keys), where
 * a cut copy could equal another one. */
bool util_copy_whole(char *dst, size_t cap, const char *src, size_t len);
/* Value of a hexadecimal digit, or -1. */
int util_hexval(char c);
/* A socket()/connect() errno that comes from this machine (descriptors,
 * memory, local ports), not from the peer. */
bool util_errno_is_local(int e);

/* Parse "250ms" "2s" "1m" "1h" (unit required); false on bad input. */
bool util_parse_duration_ms(const char *s, uint64_t *out);
/* Parse "512" "16KiB" "1MiB" "1GiB" (also kB/MB as powers of 1000). */
bool util_parse_size(const char *s, uint64_t *out);

/* Monotonic and wall clocks in milliseconds / nanoseconds. */
uint64_t util_mono_ms(void);
uint64_t util_mono_ns(void);
uint64_t util_wall_ms(void);

#endif
