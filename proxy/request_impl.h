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
/* request_attempt.c: the last attempt's answer is final (not a failure):
 * reconcile it or go on as after a success. */
void request_attempt_answered(struct request *rq);
/* request_key.c: the auth layer refused a bearer token whose minter is not
 * known yet: true when the keys are being fetched (the attempt is then
 * resent to the minter or answered as it is). */
bool request_key_fetch(struct request *rq, const struct upstream_req *r);
/* request_login.c: node's answer r is a login of an identity fenced on
 * node (issue 17): true when it was handled (sent once to a controller not
 * fenced for that identity, or answered 503 when there is none). */
bool request_login_fenced(struct request *rq, int node,
                          struct upstream_req *r);
/* request_attempt.c: count retry_outcomes_total for the request's class. */
void request_attempt_retry_outcome(struct request *rq,
                                   enum metrics_retry_outcome o);

#endif
