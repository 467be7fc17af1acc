/* buf.h - a growable byte buffer, always NUL-terminated for convenience.
 * Ownership: the struct owns data; buf_free releases it.  A zeroed struct
 * is an empty buffer. */
#ifndef QG_BUF_H
#define QG_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data;   /* owned; NULL until the first append */
    size_t len;
    size_t cap;
};

void buf_reserve(struct buf *b, size_t extra);
void buf_append(struct buf *b, const void *p, size_t n);
void buf_puts(struct buf *b, const char *s);
void buf_putc(struct buf *b, char c);
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
