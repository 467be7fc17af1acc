/* failure.h - what a finished attempt means for retrying.
 *
 * Reads the controller's error envelope to decide; never guesses from the
 * status alone.  Sources (openziti/ziti v1.5.4):
 *  - 503 CLUSTER_NO_LEADER: returned before anything is dispatched
 *    (controller/raft/raft.go Dispatch: no leader address; raft.ErrNotLeader
 *    from Apply on a node that is no longer leader): nothing committed, so
 *    safe to resend whatever the method.
 *  - 429 SERVER_TOO_MANY_REQUESTS: the command rate limiter (before apply)
 *    or a leader busy with commands (handler_peer_ctrl/command.go); after a
 *    forwarded write it may hide a commit, so it is ambiguous for a
 *    non-idempotent request.  429 RATE_LIMITED (database_router.go) comes
 *    before any change.
 *  - 500 UNHANDLED: any error Dispatch returns that is not an API error
 *    ("timed out" waiting for the local apply, a forward that timed out,
 *    leadership lost during commit, a read-only cluster, and for MFA verify
 *    "could not update MFA status", mfa_manager.go): the write may have
 *    committed.
 * Pure functions. */
#ifndef QG_FAILURE_H
#define QG_FAILURE_H

#include <stdbool.h>

#include "config/config.h"
#include "base/http.h"

struct upstream_req;

enum failure_kind {
    FAILURE_NONE = 0,      /* an answer to pass on (success or a plain error) */
    FAILURE_NEVER_SENT,    /* connect refused/timeout, DNS, TLS handshake */
    FAILURE_SENT,          /* reset, timeout, 502/504 after the request left */
    FAILURE_NO_LEADER,     /* 503 CLUSTER_NO_LEADER */
    FAILURE_TOO_MANY,      /* 429 SERVER_TOO_MANY_REQUESTS / RATE_LIMITED */
    FAILURE_AMBIGUOUS,     /* a write that may have committed */
    FAILURE_FATAL,         /* never retried: answer too large, bad request */
};

struct failure {
    enum failure_kind kind;
    enum retry_reason reason;   /* for policy and metrics (not for NONE) */
    char code[48];              /* error.code from the envelope, if any */
};

/* Classify a finished attempt.  mfa_write: the request is an MFA create,
 * verify or delete (their only UNHANDLED errors come from the raft
 * dispatch, see mfa_manager.go). */
void failure_classify(const struct upstream_req *r, enum http_method m,
                      bool mfa_write, struct failure *out);

/* Same, from parts (unit tests): result is enum upstream_result. */
void failure_classify_parts(int result, bool sent, int status,
                            const char *body, size_t body_len,
                            enum http_method m, bool mfa_write,
                            struct failure *out);

const char *failure_kind_name(enum failure_kind k);

#endif
