/* gate_before.h - the state of an MFA enrollment on every controller, read
 * right before a delete (or a legacy verify) is sent, so that its held
 * answer can tell "deleted" from "never had it".
 *
 * Gone (404, or isMfaEnabled false through the management API) is what a
 * controller says after the delete, and also what it says while it still
 * lacks the enrollment's create (or verify) -- a change whose answer was
 * lost (504: the outcome unknown, nothing acknowledged in Redis, nothing
 * fenced) or made around quorumgate.  Read before the delete, a controller
 * shows which it is: one that holds the enrollment then has it (its "gone"
 * afterwards is the delete's); one that says gone already lacks an earlier
 * change, and is stale for the delete's wait (gate_probe.c: it must be
 * seen holding the enrollment first, or it is named pending).  Found by
 * bench/soak.py (issue 18): a legacy delete right after a verify answered
 * 504 counted isMfaEnabled false on a member that lacked the verify.
 *
 * A legacy verify is read the same way (management API only): a member
 * that says isMfaEnabled true before the verify is sent still holds an
 * older verified enrollment whose delete it has not applied, and its true
 * afterwards may be that one's (bench/soak.py, 30-minute v1.5.4 run: the
 * delete's holder was killed before it could fence that member); one that
 * says false has no MFA yet, so its true afterwards is this verify's.
 *
 * Read the way the gate's probes read: GET .../current-identity/mfa with
 * the client's credential (the enrollment by id), or, for legacy sessions
 * and controllers that refuse the client's token, GET
 * /edge/management/v1/identities/{id} with gate.management (isMfaEnabled:
 * only meaningful when the enrollment is verified on the leader).  Bounded
 * by twice gate.probe.max, at least 1 s.  A controller asked that gives no usable
 * answer in time (stopped, slow, refusing) is unread: its state is unknown,
 * so the wait treats it as stale like a controller seen lacking the
 * enrollment (bench/soak.py, 30-minute v1.5.4 run, op 27098: a member
 * SIGSTOPped during the read before a legacy verify still held an older
 * verified enrollment, and its isMfaEnabled true was taken for this
 * verify's).
 *
 * Ownership: a struct gate_before belongs to its caller's request until its
 * callback ran or gate_before_cancel; it borrows the gate (same loop) and
 * copies what the args point at. */
#ifndef QG_GATE_BEFORE_H
#define QG_GATE_BEFORE_H

#include <stdbool.h>
#include <stdint.h>

#include "consistency/gate.h"

struct gate;
struct gate_before;

struct gate_before_result {
    uint64_t holding;  /* read through the client API: holds the enrollment */
    uint64_t gone;     /* ... answered "no such enrollment" */
    uint64_t enabled;  /* read through the management API: isMfaEnabled */
    uint64_t disabled; /* ... isMfaEnabled false */
    uint64_t unread;   /* asked, no usable answer in time: unknown */
};
typedef void (*gate_before_cb)(void *arg,
                               const struct gate_before_result *res);

struct gate_before_args {
    enum gate_call call;       /* GATE_DELETE or GATE_VERIFY (legacy: only
                                  the management API can be misread) */
    const char *identity;      /* the controller's identity id */
    const char *mfa_id;        /* the enrollment, as the leader shows it */
    bool verified;             /* verified on the leader (else the
                                  management API cannot tell: not asked) */
    bool legacy;               /* ask everyone with gate.management */
    const char *authorization; /* the client's Authorization value or NULL */
    const char *state_path;    /* .../current-identity/mfa of the call */
    uint64_t refused;          /* controllers that refuse the client's
                                  token: asked with gate.management */
    gate_before_cb done;       /* called once, never from inside
                                  gate_before_start */
    void *arg;
};

/* Reads every controller; NULL (and done never called) when there is
 * nothing to read (one controller, or no way to ask). */
struct gate_before *gate_before_start(struct gate *g,
                                      const struct gate_before_args *a);
/* The caller is going away: stop, done is not called. */
void gate_before_cancel(struct gate_before *b);

#endif
