/* buf.c - see buf.h. */
#include "base/buf.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

void buf_reserve(struct buf *b, size_t extra)
{
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

/* One conversion of the plain kind buf_fmt_plain formats, at *p (after
 * the '%'): its conversion character ('s', 'd', 'u' or '%') and its length
 * modifier in *len (0 none, 1 l, 2 ll, 3 z); NUL for anything else. */
static char buf_fmt_conv(const char **p, int *len)
{
    const char *q = *p;
    *len = 0;
    if (q[0] == 'l' && q[1] == 'l')
        *len = 2, q += 2;
    else if (q[0] == 'l')
        *len = 1, q++;
    else if (q[0] == 'z')
        *len = 3, q++;
    char c = *q;
    if (!(c == 'u' || (c == 'd' && *len < 3) ||
          ((c == 's' || c == '%') && *len == 0)))
        return '\0';
    *p = q + 1;
    return c;
}

/* What vsnprintf makes of fmt when its conversions are all %s %d %ld %lld
 * %u %lu %llu %zu or %% without flags, width or precision, without stdio:
 * the answer's status line and Content-Length are formatted on every
 * request (vsnprintf was ~2,000 instructions per request).  False, with
 * some of the output appended, at any other conversion. */
static bool buf_fmt_plain(struct buf *b, const char *fmt, va_list ap)
{
    const char *lit = fmt, *p;
    while (*(p = strchrnul(lit, '%'))) {
        buf_append(b, lit, (size_t)(p - lit));
        p++;
        int len;
        char c = buf_fmt_conv(&p, &len);
        lit = p;
        unsigned long long u;
        bool neg = false;
        if (c == '\0')
            return false;
        if (c == '%') {
            buf_putc(b, '%');
            continue;
        }
        if (c == 's') {
            const char *s = va_arg(ap, const char *);
            buf_puts(b, s ? s : "(null)");
            continue;
        }
        if (c == 'd') {
            long long v = len == 0   ? va_arg(ap, int)
                          : len == 1 ? va_arg(ap, long)
                                     : va_arg(ap, long long);
            neg = v < 0;
            u = neg ? 0ULL - (unsigned long long)v : (unsigned long long)v;
        } else {
            u = len == 0   ? va_arg(ap, unsigned)
                : len == 1 ? va_arg(ap, unsigned long)
                : len == 2 ? va_arg(ap, unsigned long long)
                           : va_arg(ap, size_t);
        }
        if (neg)
            buf_putc(b, '-');
        buf_put_u64(b, u);
    }
    buf_append(b, lit, (size_t)(p - lit));
    return true;
}

void buf_put_u64(struct buf *b, uint64_t u)
{
    char digits[24], *d = digits + sizeof(digits);
    do {
        *--d = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    buf_append(b, d, (size_t)(digits + sizeof(digits) - d));
}

static void buf_vprintf_stdio(struct buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    buf_reserve(b, 64);
    int n = vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
    if (n < 0)
        abort();
    if ((size_t)n >= b->cap - b->len) {
        buf_reserve(b, (size_t)n);
        vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap2);
    }
    va_end(ap2);
    b->len += (size_t)n;
}

void buf_vprintf(struct buf *b, const char *fmt, va_list ap)
{
    size_t start = b->len;
    va_list ap2;
    va_copy(ap2, ap);
    buf_reserve(b, 64);
    if (!buf_fmt_plain(b, fmt, ap)) { /* back to where it started */
        b->len = start;
        b->data[start] = '\0';
        buf_vprintf_stdio(b, fmt, ap2);
    }
    va_end(ap2);
}

void buf_printf(struct buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(b, fmt, ap);
    va_end(ap);
}

void buf_json_escape(struct buf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    buf_reserve(b, n + 8);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '"': buf_append(b, "\\\"", 2); break;
        case '\\': buf_append(b, "\\\\", 2); break;
        case '\n': buf_append(b, "\\n", 2); break;
        case '\r': buf_append(b, "\\r", 2); break;
        case '\t': buf_append(b, "\\t", 2); break;
        default:
            if (c < 0x20 || c == 0x7f) {
                char u[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                buf_append(b, u, 6);
            } else {
                buf_putc(b, (char)c);
            }
        }
    }
}

void buf_reset(struct buf *b)
{
    b->len = 0;
    if (b->data)
        b->data[0] = '\0';
}

void buf_free(struct buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

char *buf_steal(struct buf *b, size_t *len)
{
    if (!b->data)
        buf_reserve(b, 0);
    char *p = b->data;
    if (len)
        *len = b->len;
    p[b->len] = '\0';
    b->data = NULL;
    b->len = b->cap = 0;
    return p;
}

void buf_wipe(struct buf *b)
{
    if (b->data && b->cap)
        explicit_bzero(b->data, b->cap);
    b->len = 0;
}
