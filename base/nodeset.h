/* nodeset.h - a set of controllers, by index (0..63), as a bit mask: the
 * cluster's up set, a request's tried set, a gate's acknowledgements, a
 * fence.  Plain C11 (no compiler builtins: extensions are off).
 *
 * Ownership: values; nothing to free. */
#ifndef QG_NODESET_H
#define QG_NODESET_H

#include <stdbool.h>
#include <stdint.h>

/* The largest set: indexes 0..NODESET_MAX-1. */
#define NODESET_MAX 64

/* {i} */
static inline uint64_t nodeset_of(int i)
{
    return (uint64_t)1 << i;
}

static inline bool nodeset_has(uint64_t s, int i)
{
    return (s >> i) & 1u;
}

/* {0, ..., n-1} */
static inline uint64_t nodeset_first(int n)
{
    return n >= NODESET_MAX ? ~(uint64_t)0 : ((uint64_t)1 << n) - 1;
}

/* How many controllers s holds. */
static inline int nodeset_count(uint64_t s)
{
    int n = 0;
    for (; s; s &= s - 1)
        n++;
    return n;
}

#endif
