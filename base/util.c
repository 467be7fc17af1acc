/* util.c - see util.h. */
#include "base/util.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static void util_oom(size_t n)
{
    fprintf(stderr, "quorumgate: out of memory allocating %zu bytes\n", n);
    abort();
}

void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        util_oom(n);
    return p;
}

void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        util_oom(n * size);
    return p;
}

void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        util_oom(n);
    return q;
}

char *xstrdup(const char *s)
{
    return xstrndup(s, strlen(s));
}

char *xstrndup(const char *s, size_t n)
{
    char *p = xmalloc(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *xasprintf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    char *p = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

int util_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static bool util_parse_number(const char *s, uint64_t *num, const char **rest)
{
    if (!isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    *num = v;
    *rest = end;
    return true;
}

struct util_unit {
    const char *name;
    uint64_t mult;
};

/* s as a number followed by one of the units, scaled; false when the unit is
 * unknown or the product overflows. */
static bool util_parse_scaled(const char *s, const struct util_unit *units,
                              size_t count, uint64_t *out)
{
    uint64_t n;
    const char *unit;
    if (!s || !util_parse_number(s, &n, &unit))
        return false;
    for (size_t i = 0; i < count; i++) {
        if (strcmp(unit, units[i].name) == 0) {
            if (n > UINT64_MAX / units[i].mult)
                return false;
            *out = n * units[i].mult;
            return true;
        }
    }
    return false;
}

bool util_parse_duration_ms(const char *s, uint64_t *out)
{
    static const struct util_unit units[] = {
        {"ms", 1}, {"s", 1000}, {"m", 60000}, {"h", 3600000},
    };
    return util_parse_scaled(s, units, ARRAY_LEN(units), out);
}

bool util_parse_size(const char *s, uint64_t *out)
{
    static const struct util_unit units[] = {
        {"", 1}, {"B", 1}, {"KiB", 1024}, {"MiB", 1024 * 1024},
        {"GiB", 1024ull * 1024 * 1024}, {"kB", 1000}, {"KB", 1000},
        {"MB", 1000 * 1000}, {"GB", 1000ull * 1000 * 1000},
    };
    return util_parse_scaled(s, units, ARRAY_LEN(units), out);
}

uint64_t util_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t util_mono_ms(void)
{
    return util_mono_ns() / 1000000ull;
}

uint64_t util_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000ull + (uint64_t)ts.tv_nsec / 1000000ull;
}

bool util_copy_whole(char *dst, size_t cap, const char *src, size_t len)
{
    if (cap == 0)
        return false;
    if (!src || len >= cap) {
        dst[0] = '\0';
        return false;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
    return true;
}

bool util_errno_is_local(int e)
{
    return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM ||
           e == EADDRNOTAVAIL || e == EAGAIN;
}
