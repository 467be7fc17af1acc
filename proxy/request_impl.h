/* request_impl.h - what the parts of the request module share (request.c,
 * request_answer.c, request_attempt.c); nothing else includes it. */
#ifndef QG_REQUEST_IMPL_H
#define QG_REQUEST_IMPL_H

#include "metrics/metrics.h"
#include "proxy/request.h"
#include "proxy/worker.h"

static inline struct app *request_app(struct request *rq)
{
    return rq->w->app;
}

/* request.c: off the worker's list of requests waiting for a leader. */
void request_unwait(struct request *rq);

/* request_attempt.c: send the request to node (rq->up). */
void request_attempt_start(struct request *rq, int node);
/* request_attempt.c: count retry_outcomes_total for the request's class. */
void request_attempt_retry_outcome(struct request *rq,
                                   enum metrics_retry_outcome o);

#endif
