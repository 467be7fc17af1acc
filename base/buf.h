/* buf.h - a growable byte buffer, always NUL-terminated for convenience.
 * Ownership: the struct owns data; buf_free releases it.  A zeroed struct
 * is an empty buffer. */
#ifndef QG_BUF_H
#define QG_BUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

struct buf {
    char *data;   /* owned; NULL until the first append */
    size_t len;
    size_t cap;
};

void buf_reserve(struct buf *b, size_t extra);
/* The appends are inline: the forwarding path makes ~80 of them per
 * request, most of a few bytes into a buffer that already has room
 * (bench/run.sh --only cost); only growing leaves the line. */
static inline void buf_append(struct buf *b, const void *p, size_t n)
{
    char *d;
    const char *s = p;
    if (b->len + n >= b->cap)
        buf_reserve(b, n);
    d = b->data + b->len;
    /* 4 to 32 bytes (most names and values) as two fixed-size copies that
     * may overlap, without the call */
    if (n > 16 && n <= 32) {
        memcpy(d, s, 16);
        memcpy(d + n - 16, s + n - 16, 16);
    } else if (n >= 8 && n <= 16) {
        memcpy(d, s, 8);
        memcpy(d + n - 8, s + n - 8, 8);
    } else if (n >= 4 && n < 8) {
        memcpy(d, s, 4);
        memcpy(d + n - 4, s + n - 4, 4);
    } else if (n) {
        memcpy(d, s, n);
    }
    b->len += n;
    b->data[b->len] = '\0';
}
static inline void buf_puts(struct buf *b, const char *s)
{
    buf_append(b, s, strlen(s));
}
static inline void buf_putc(struct buf *b, char c)
{
    if (b->len + 1 >= b->cap)
        buf_reserve(b, 1);
    b->data[b->len++] = c;
    b->data[b->len] = '\0';
}
/* Append u in decimal. */
void buf_put_u64(struct buf *b, uint64_t u);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void buf_vprintf(struct buf *b, const char *fmt, va_list ap);
/* Append s as the inside of a JSON string (quotes not included). */
void buf_json_escape(struct buf *b, const char *s, size_t n);
void buf_reset(struct buf *b);              /* len = 0, keeps memory */
void buf_free(struct buf *b);
/* Overwrites what b holds with zeros, then empties it (keeps the storage):
 * for buffers that held credentials. */
void buf_wipe(struct buf *b);
/* Hand the data to the caller (malloc'ed, NUL-terminated); b is emptied. */
char *buf_steal(struct buf *b, size_t *len);

#endif
