/* fuzz_h1parse.c - the upstream answer parser (base/h1parse.c): what a
 * controller (or anything on its address) sends back.
 *
 * Input: one selector byte, then the answer bytes.  Bit 0 of the selector
 * says the request was a HEAD; the other bits pick where the bytes are
 * split.  The answer is parsed three ways -- whole, split at the chosen
 * offset, one byte at a time, each keeping the unconsumed bytes like the
 * client's read buffer -- and the three must agree on the outcome, the
 * fields, the body and where the answer ended; consumed counts must stay
 * within what was given.  A disagreement aborts (a finding). */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/h1parse.h"

struct sink {
    uint64_t fields;    /* a running hash of names and values */
    uint64_t body;      /* a running hash of body bytes */
    size_t body_len;
};

static uint64_t mix(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)p[i]) * 0x100000001b3ull;
    return h;
}

static bool on_header(void *arg, const char *n, size_t nl, const char *v,
                      size_t vl)
{
    struct sink *s = arg;
    s->fields = mix(mix(s->fields, n, nl), v, vl) + 1;
    return true;
}

static bool on_body(void *arg, const char *p, size_t n)
{
    struct sink *s = arg;
    s->body = mix(s->body, p, n);
    s->body_len += n;
    return s->body_len <= 1u << 20;
}

static const struct h1parse_ops ops = {on_header, on_body};
static const struct h1parse_limits lim = {4096, 32};

struct outcome {
    enum h1parse_result res;
    size_t end;
    struct sink s;
    int status;
    bool keep_alive;
};

/* Feeds data in pieces of `step` bytes (0 = whole), then the end. */
static void run(const char *data, size_t size, bool head, size_t split,
                size_t step, struct outcome *o)
{
    struct h1parse p;
    char *held = malloc(size + 1);
    size_t held_len = 0, off = 0;
    memset(o, 0, sizeof(*o));
    h1parse_init(&p, &ops, &o->s, &lim, head);
    o->res = H1P_MORE;
    while (o->res == H1P_MORE && off < size) {
        size_t n = step ? step : size - off;
        if (!step && split && off < split)
            n = split - off;
        if (n > size - off)
            n = size - off;
        memcpy(held + held_len, data + off, n);
        held_len += n;
        off += n;
        size_t used = 0;
        o->res = h1parse_feed(&p, held, held_len, &used);
        if (used > held_len)
            abort();
        o->end += used;
        memmove(held, held + used, held_len - used);
        held_len -= used;
    }
    if (o->res == H1P_MORE)
        o->res = h1parse_eof(&p);
    if (o->res == H1P_ERROR && !p.error)
        abort();
    o->status = p.status;
    o->keep_alive = p.keep_alive;
    free(held);
}

static void same(const struct outcome *a, const struct outcome *b)
{
    if (a->res != b->res || a->s.fields != b->s.fields ||
        a->s.body != b->s.body || a->s.body_len != b->s.body_len)
        abort();
    if (a->res == H1P_DONE &&
        (a->end != b->end || a->status != b->status ||
         a->keep_alive != b->keep_alive))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    bool head = data[0] & 1;
    const char *msg = (const char *)data + 1;
    size_t len = size - 1;
    size_t split = len ? (size_t)(data[0] >> 1) * len / 127 : 0;
    struct outcome whole, halves, bytes;
    run(msg, len, head, 0, 0, &whole);
    run(msg, len, head, split, 0, &halves);
    run(msg, len, head, 0, 1, &bytes);
    same(&whole, &halves);
    same(&whole, &bytes);
    return 0;
}
