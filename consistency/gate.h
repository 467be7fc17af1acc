/* gate.h - the replication gate: after an MFA create, verify or delete
 * succeeded on the leader, the client's answer is held until the required
 * controllers acknowledge the change, with a timeout.
 *
 * A change is identified by cid = HMAC(identity | mfa id | call).  Its
 * acknowledgements live in Redis: the record <prefix>gate:<cid> (call,
 * required controllers, deadline, status, outcome), the set
 * <prefix>gate:<cid>:acks of controllers that have it, and a publish on
 * <prefix>acks that wakes every waiting quorumgate at once; a bounded poll
 * covers a missed publish.  Acknowledgements come from probes (GET
 * .../current-identity/mfa on each controller with the client's own
 * credentials; source "probe") or from `quorumgate relay` tailing the
 * controllers' entity-change event files (source "events").
 *
 * Required acknowledgements (gate.mode): healthy = every controller the
 * cluster view holds healthy (an unhealthy one is fenced for the identity
 * at once), all = every configured controller, majority, or a number.  On
 * timeout the change is not undone (it committed): the answer is a success
 * with Quorumgate-Replication naming the pending controllers, which stay
 * fenced for the identity until they acknowledge (or 504 REPLICATION_TIMEOUT
 * when gate.on_timeout is fail).
 *
 * Legacy sessions (zt-session, valid only on the controller that issued
 * them) are confirmed with quorumgate's own management credential
 * (gate.management) through GET /edge/management/v1/identities/{id}
 * (isMfaEnabled).  An unverified enrollment is not visible there, so with
 * probes a legacy create is confirmed by the controller that answered it
 * (every later call of that session goes there too); the relay sees it.
 *
 * Memory, not threads: a held answer is a struct gate_wait on its worker's
 * loop; probes and timers run on that loop.
 *
 * Ownership: one struct gate per worker (worker_ext), owning its waits.  A
 * wait borrows its request until it answers it or the request goes away
 * (gate_detach); it may outlive the request to keep probing controllers
 * still pending (so their fences clear early), up to its deadline. */
#ifndef QG_GATE_H
#define QG_GATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/crypto.h"

struct worker;
struct request;
struct gate;
struct gate_wait;
struct config;

enum gate_call { GATE_CREATE = 0, GATE_VERIFY, GATE_DELETE };

struct gate *gate_new(struct worker *w);
/* Drops every wait without answering (shutdown; requests are aborted). */
void gate_free(struct gate *g);

/* A publish on <prefix>acks: re-read the acknowledgements of cid. */
void gate_on_message(struct gate *g, const char *cid, size_t len);
/* The subscriber (re)connected: messages may have been missed. */
void gate_resync(struct gate *g);
struct mgmt;
/* The worker's management sessions (legacy confirmations). */
struct mgmt *gate_mgmt(struct gate *g);
/* Held answers on this worker. */
int gate_waiting(const struct gate *g);

/* cid and the identity's key, as hex. */
void gate_change_id(const struct config *cfg, const char *identity,
                    const char *mfa_id, enum gate_call call,
                    char out[CRYPTO_HMAC_HEX_LEN + 1]);
void gate_identity_hex(const struct config *cfg, const char *identity,
                       char out[CRYPTO_HMAC_HEX_LEN + 1]);
const char *gate_call_name(enum gate_call call);

/* Hold rq's successful answer (in rq->up) until the acknowledgements are
 * in.  deadline_ms 0 = now + gate.timeout.  Returns false when the answer
 * cannot be held (it is then sent at once). */
bool gate_hold(struct gate *g, struct request *rq, enum gate_call call,
               const char *identity, const char *mfa_id, int answered_by,
               uint64_t deadline_ms, bool legacy);
/* The request is going away before its answer was released. */
void gate_detach(struct request *rq);

/* Ack condition, pure (tests): does this GET .../current-identity/mfa
 * answer show the change? */
bool gate_acknowledges(enum gate_call call, const char *mfa_id, int status,
                       const char *body, size_t len);
/* The same for GET /edge/management/v1/identities/{id} (isMfaEnabled),
 * used for legacy sessions; a create cannot be seen there. */
bool gate_acknowledges_mgmt(enum gate_call call, int status, const char *body,
                            size_t len);

#endif
