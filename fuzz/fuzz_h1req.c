/* fuzz_h1req.c - the request parser (base/h1req.c): what any client sends
 * the front, pipelined requests included.
 *
 * Input: one selector byte, then the bytes of a connection.  Bit 0 of the
 * selector picks small limits (to reach them) or roomy ones; the other bits
 * pick where the bytes are split.  The bytes are parsed three ways --
 * whole, split at the chosen offset, one byte at a time, each keeping the
 * unconsumed bytes like a connection's read buffer and starting a fresh
 * parser after each complete request -- and the three must agree on the
 * outcome, the error, every request line, field, head and body, and where
 * each request ended.  Each completed request must also be framed one way
 * only: chunked or a length, never both nor chunked in HTTP/1.0, a body of
 * exactly its length, never over the limit, never after a refused head.  A
 * disagreement or a broken rule aborts (a finding). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/h1req.h"

#define MAX_REQUESTS 8

struct sink {
    uint64_t heads;     /* a running hash of request lines, fields, heads */
    uint64_t body;      /* a running hash of body bytes */
    uint64_t body_len;  /* of the request being read */
    bool head_seen;     /* its head was reported */
};

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ull;
    return h;
}

static bool on_line(void *arg, const char *m, size_t ml, const char *t,
                    size_t tl)
{
    struct sink *s = arg;
    s->heads = mix(mix(s->heads, m, ml), t, tl) + 1;
    return true;
}

static bool on_header(void *arg, const char *n, size_t nl, const char *v,
                      size_t vl)
{
    struct sink *s = arg;
    s->heads = mix(mix(s->heads, n, nl), v, vl) + 2;
    return true;
}

static bool on_head(void *arg, const struct h1req *p)
{
    struct sink *s = arg;
    unsigned char f[4] = {(unsigned char)p->minor, p->keep_alive,
                          p->expect_continue, p->chunked};
    s->heads = mix(mix(s->heads, f, sizeof(f)), &p->length,
                   p->have_length ? sizeof(p->length) : 0) + 3;
    s->head_seen = true;
    return true;
}

static bool on_body(void *arg, const char *p, size_t n)
{
    struct sink *s = arg;
    if (!s->head_seen)
        abort(); /* a body byte before its head was complete */
    s->body = mix(s->body, p, n);
    s->body_len += n;
    return true;
}

static const struct h1req_ops ops = {on_line, on_header, on_head, on_body};
static const struct h1req_limits roomy = {4096, 32, 1u << 20};
static const struct h1req_limits small = {128, 4, 16};

struct outcome {
    enum h1req_result res;
    enum h1req_error kind;
    const char *error;
    int n_done;
    size_t ends[MAX_REQUESTS];
    struct sink s;
};

/* A completed request was framed one way, and its body was that long. */
static void check_done(const struct h1req *p, const struct sink *s,
                       const struct h1req_limits *lim)
{
    if (!s->head_seen || (p->chunked && p->have_length) ||
        (p->chunked && p->minor == 0) || s->body_len > lim->max_body)
        abort();
    if (!p->chunked && s->body_len != (p->have_length ? p->length : 0))
        abort();
    if (p->chunked && s->body_len != p->body_len)
        abort();
}

/* Feeds data in pieces of `step` bytes (0 = whole, or `split` then the
 * rest); a new parser after each complete request. */
static void run(const char *data, size_t size,
                const struct h1req_limits *lim, size_t split, size_t step,
                struct outcome *o)
{
    struct h1req p;
    char *held = malloc(size + 1);
    size_t held_len = 0, off = 0, total = 0;
    memset(o, 0, sizeof(*o));
    h1req_init(&p, &ops, &o->s, lim);
    o->res = H1REQ_MORE;
    while (o->res != H1REQ_ERROR && off < size && o->n_done < MAX_REQUESTS) {
        size_t n = step ? step : size - off;
        if (!step && split && off < split)
            n = split - off;
        if (n > size - off)
            n = size - off;
        memcpy(held + held_len, data + off, n);
        held_len += n;
        off += n;
        while (held_len > 0 && o->n_done < MAX_REQUESTS) {
            size_t used = 0;
            o->res = h1req_feed(&p, held, held_len, &used);
            if (used > held_len)
                abort();
            total += used;
            memmove(held, held + used, held_len - used);
            held_len -= used;
            if (o->res != H1REQ_DONE)
                break;
            check_done(&p, &o->s, lim);
            o->ends[o->n_done++] = total;
            o->s.body_len = 0;
            o->s.head_seen = false;
            h1req_init(&p, &ops, &o->s, lim);
        }
    }
    if (o->res == H1REQ_ERROR &&
        (!p.error || p.error_kind == H1REQ_E_NONE ||
         p.error_kind == H1REQ_E_STOPPED || !h1req_status(p.error_kind)))
        abort();
    o->kind = p.error_kind;
    o->error = p.error;
    free(held);
}

static void same(const struct outcome *a, const struct outcome *b)
{
    if (a->n_done != b->n_done ||
        memcmp(a->ends, b->ends, sizeof(a->ends)) != 0)
        abort();
    if (a->res != b->res || a->kind != b->kind || a->error != b->error ||
        a->s.heads != b->s.heads || a->s.body != b->s.body ||
        a->s.body_len != b->s.body_len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const struct h1req_limits *lim = data[0] & 1 ? &small : &roomy;
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;
    size_t split = len ? (size_t)(data[0] >> 1) * len / 127 : 0;
    struct outcome whole, halves, bytes;
    run(msg, len, lim, 0, 0, &whole);
    run(msg, len, lim, split, 0, &halves);
    run(msg, len, lim, 0, 1, &bytes);
    same(&whole, &halves);
    same(&whole, &bytes);
    return 0;
}
