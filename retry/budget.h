/* budget.h - the retry budget (Envoy's retry_budget): retries in flight may
 * not exceed ratio * requests in flight, with a floor of min_concurrency,
 * so a sick cluster is not stormed.  Process-wide, lock-free.
 *
 * Ownership: one per process, owned by the app; shared by every worker. */
#ifndef QG_BUDGET_H
#define QG_BUDGET_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

struct budget {
    atomic_int requests;       /* requests in flight */
    atomic_int retries;        /* requests holding a retry slot */
    atomic_uint permille;      /* ratio * 1000 */
    atomic_uint min;           /* floor */
};

void budget_configure(struct budget *b, double ratio, uint32_t min);
void budget_request_begin(struct budget *b);
void budget_request_end(struct budget *b);
/* Take a retry slot; false when the budget is exhausted. */
bool budget_acquire(struct budget *b);
void budget_release(struct budget *b);

#endif
