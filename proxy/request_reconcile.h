/* request_reconcile.h - driving a request through the reconciliation of an
 * ambiguous MFA write (the decisions are retry/reconcile.h's): read
 * GET .../current-identity/mfa on the leader with the client's own
 * credentials, answer as the call would have when the change is there,
 * send the call again when it is not, read again when the read fails or
 * the state is behind; when it cannot be read, give the controller's own
 * answer back, or 504 "outcome unknown" for a call sent without an answer.
 *
 * Ownership: works on the request it is given; keeps nothing. */
#ifndef QG_REQUEST_RECONCILE_H
#define QG_REQUEST_RECONCILE_H

#include <stdbool.h>

struct request;

/* The request is an MFA write that can be reconciled. */
bool request_reconcile_available(const struct request *rq);
/* This answer needs a state read: after an earlier ambiguous attempt, or a
 * verify answered 404 at once (repeated after its first try was lost). */
bool request_reconcile_after_answer(const struct request *rq);
/* Start the state read (the request is in STAGE_RECONCILE until done). */
void request_reconcile_start(struct request *rq);

#endif
