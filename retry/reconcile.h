/* reconcile.h - resolving ambiguous MFA writes by reading the state.
 *
 * After an ambiguous create, verify or delete (a sent failure, a 429 after
 * a forward, a 500 UNHANDLED from the raft dispatch), or after a resent
 * call meets the answer its first attempt would cause (409 MFA_EXISTS for a
 * create, 404 for a verify or delete), quorumgate reads
 * GET .../current-identity/mfa on the leader with the client's own
 * credentials and answers from what it shows:
 *   - create: the enrollment exists and was created since the request began
 *     (createdAt, with retry.clock_skew of tolerance): 201 with its id, as
 *     the create would have answered;
 *   - verify: isVerified is true: 200, as the verify would have answered;
 *   - delete: no enrollment: 200, as the delete would have answered;
 *   - the change is not there: the call is sent again (attempts, deadline
 *     and budget permitting) -- except that a resent create that met 409
 *     MFA_EXISTS, or a resent delete that met 404, was answered from the
 *     raft apply (or a state that already has the change): a state read
 *     that disagrees is behind, so it is read again (backoff, deadline,
 *     budget), never resent;
 *   - a read that gets no answer, a 429 or a 5xx is made again after the
 *     policy's backoff on whoever leads then (at most 2 x max_attempts such
 *     failures that reached a controller -- a refused one is bounded by the
 *     deadline only --, deadline and budget permitting: a repeated read
 *     takes a retry slot);
 *   - a legacy session's home (not the leader) that answered 5xx and does
 *     not show the change is behind (a forwarded write commits on the
 *     leader first): read again, never resent;
 *   - the state cannot be read: 504 "outcome unknown" when the call was
 *     sent and got no answer (reset, timeout) or a 5xx (the raft dispatch's
 *     500 may follow a commit); else the controller's own answer goes back
 *     (a resend's 404 or 409) -- never an invented success, never a 502 or
 *     500 saying that a maybe-applied write failed
 *     (proxy/request_reconcile.c). */
#ifndef QG_RECONCILE_H
#define QG_RECONCILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;

/* The decisions and the parsers, pure.  proxy/request_reconcile.c drives
 * a request through them. */

/* The MFA writes that can be reconciled. */
enum reconcile_call { RECONCILE_CREATE = 0, RECONCILE_VERIFY,
                      RECONCILE_DELETE };

enum reconcile_state { RECONCILE_ABSENT = 0, RECONCILE_UNVERIFIED,
                       RECONCILE_VERIFIED, RECONCILE_UNREADABLE };

/* After an earlier ambiguous attempt, an answer with this status is what a
 * resend meets when the first attempt was applied (409 for a create, 404
 * for a verify or delete): it needs a state read. */
bool reconcile_needs_read(enum reconcile_call c, int status);

enum reconcile_verdict {
    RECONCILE_APPLIED = 0,   /* answer as the call would have */
    RECONCILE_NOT_APPLIED,   /* the change is not there: send it again */
    RECONCILE_PREEXISTING,   /* create: the enrollment is older than the
                                request: the create's own 409 MFA_EXISTS */
    RECONCILE_BEHIND,        /* the state disagrees with an answer decided
                                in the raft apply: read it again */
};

/* What a readable state (st != RECONCILE_UNREADABLE) says about the call.
 * answered: the status of the answer that sent us reading, 0 when the
 * attempt got none; created_ms: the enrollment's createdAt (0 unknown);
 * since_ms: the request's start minus the tolerated clock skew. */
enum reconcile_verdict reconcile_judge(enum reconcile_call c, int answered,
                                       enum reconcile_state st,
                                       uint64_t created_ms,
                                       uint64_t since_ms);

/* The answer the applied call would have given (the controller's
 * envelope, controller/response/responder.go): its body into out (reset
 * first) and its status returned.  id: the enrollment's, for a create. */
int reconcile_applied_body(enum reconcile_call c, const char *id,
                           struct buf *out);

/* Parse a GET .../current-identity/mfa answer (pure, for tests).  id and
 * created_ms are filled when present (created_ms 0 if unparsable). */
enum reconcile_state reconcile_parse(int status, const char *body,
                                     size_t len, char *id, size_t id_cap,
                                     uint64_t *created_ms);
/* ".../current-identity/mfa" of a request target such as
 * "/edge/client/v1/current-identity/mfa/verify?x" (malloc'ed). */
char *reconcile_state_path(const char *target);
/* RFC 3339 timestamp to Unix milliseconds; 0 on bad input. */
uint64_t reconcile_parse_time(const char *s);

#endif
