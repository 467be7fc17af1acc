/* pipeline.h - the stages of the request path around routing and the
 * attempts, in one place:
 *   before routing: the identity (fences), affinity lookups (local table,
 *     then Redis), and for gated MFA writes the gate's preparation (Redis
 *     must answer, the enrollment state is read on the leader, a repeated
 *     verify gets the original outcome);
 *   after a usable answer: learning affinity from it;
 *   after a successful MFA write: holding the answer in the gate.
 * request.c calls these; each returns whether it took the request over.
 * pipeline.c runs the steps (identity, affinity); pipeline_gate.c has the
 * gate's. */
#ifndef QG_PIPELINE_H
#define QG_PIPELINE_H

#include <stdbool.h>
#include <stdint.h>

#include "consistency/ackstore.h"
#include "consistency/gate_before.h"
#include "proxy/worker.h"
#include "routing/affinity.h"

struct request;
struct redis_cmd;

/* Per-request state of these stages (embedded in struct request). */
struct pipeline_state {
    int step;                       /* next step of pipeline_run */
    bool async;                     /* went asynchronous at least once */
    struct affinity_key aff;        /* the entry looked up */
    bool has_aff;
    bool aff_hit;
    uint64_t aff_expiry;            /* table seconds, of a local hit */
    struct redis_cmd *cmd;          /* outstanding, cancelled on free */
    struct ackstore_ctx actx;       /* gate record reads */
    bool gated;                     /* an MFA write the gate holds */
    bool legacy;                    /* ... made with a zt-session */
    bool ask_id;                    /* ... with a bearer token whose
                                       signature could not be checked: the
                                       controller says whose it is */
    bool id_retried;                /* the identity read was sent again */
    bool slot;                      /* holds a held-call slot ... */
    unsigned slot_bucket;           /* ... of this identity bucket */
    bool unconfirmed;               /* a legacy-session MFA write passed
                                       unheld (gate.legacy_sessions) */
    int gcall;                      /* enum gate_call */
    int pre_state;                  /* enum reconcile_state, -1 = unread */
    char mfa_id[128];
    int id_result;                  /* enum jwks_result of the bearer, -1 */
    bool keys_fetched;              /* the controllers' keys were asked for */
    uint64_t deadline_ms;           /* leader wait for the state read */
    struct gate_before *before;     /* a delete's read of every
                                       controller, running (owned) */
    struct gate_before_result before_res; /* ... and what it found */
    bool before_read;
    struct worker_redis_waiter redis_wait; /* for the worker's Redis
                                       connection, being made */
};

/* POST .../authenticate of the client or the management API (a legacy
 * login). */
bool pipeline_is_authenticate(const struct request *rq);
bool pipeline_before_route(struct request *rq);
/* Learns affinity from a usable answer; true when the answer waits until
 * Redis has it (request_learned continues). */
bool pipeline_learn(struct request *rq);
bool pipeline_gate(struct request *rq);
void pipeline_cancel(struct request *rq);

#endif
