/* budget.c - see budget.h. */
#include "retry/budget.h"

void budget_configure(struct budget *b, double ratio, uint32_t min)
{
    atomic_store(&b->permille, (unsigned)(ratio * 1000.0 + 0.5));
    atomic_store(&b->min, min);
}

void budget_request_begin(struct budget *b)
{
    atomic_fetch_add_explicit(&b->requests, 1, memory_order_relaxed);
}

void budget_request_end(struct budget *b)
{
    atomic_fetch_sub_explicit(&b->requests, 1, memory_order_relaxed);
}

bool budget_acquire(struct budget *b)
{
    int reqs = atomic_load_explicit(&b->requests, memory_order_relaxed);
    unsigned permille = atomic_load_explicit(&b->permille,
                                             memory_order_relaxed);
    int allowed = (int)(((long long)reqs * permille) / 1000);
    int floor = (int)atomic_load_explicit(&b->min, memory_order_relaxed);
    if (allowed < floor)
        allowed = floor;
    int cur = atomic_load_explicit(&b->retries, memory_order_relaxed);
    while (cur < allowed) {
        if (atomic_compare_exchange_weak(&b->retries, &cur, cur + 1))
            return true;
    }
    return false;
}

void budget_release(struct budget *b)
{
    atomic_fetch_sub_explicit(&b->retries, 1, memory_order_relaxed);
}
