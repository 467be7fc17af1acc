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
 * (isMfaEnabled).  Before a delete (or a legacy verify) is sent, every
 * controller's state of the enrollment is read (gate_before.h), so that one
 * already lacking an earlier change is not taken for one that has this one.  An unverified
 * enrollment is not visible there, so with
 * probes a legacy create is confirmed by the controller that answered it
 * (every later call of that session goes there too); the relay sees it.
 *
 * Memory, not threads: a held answer is a struct gate_wait on its worker's
 * loop; probes and timers run on that loop.
 *
 * The gate knows nothing of requests or workers: what it needs of its
 * worker comes in struct gate_env, and a held answer is given back through
 * its owner's callback (struct gate_release); the owner decides the HTTP
 * answer.
 *
 * Ownership: one struct gate per worker, owning its waits; what the env
 * points at is borrowed and outlives the gate.  A wait reports to its owner
 * until it released the answer or the owner went away (gate_detach); it
 * may outlive the owner to keep probing controllers still pending (so
 * their fences clear early), up to its deadline. */
#ifndef QG_GATE_H
#define QG_GATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/crypto.h"
#include "io/redis.h"
#include "metrics/metrics.h"

struct gate;
struct gate_wait;
struct config;
struct loop;
struct upstream;
struct cluster;
struct log;
struct fence;
struct gate_before_result;

enum gate_call { GATE_CREATE = 0, GATE_VERIFY, GATE_DELETE };

/* Caps on held calls (gate.max_held, gate.max_held_per_identity), taken
 * before a gated call is sent (a refusal then changes nothing) and given
 * back when the request ends.  Identities share GATE_SLOT_BUCKETS counters
 * by a hash of their id (a collision can only make the per-identity cap
 * stricter).  Process-wide and lock-free; owned by the app. */
#define GATE_SLOT_BUCKETS 4096
struct gate_slots {
    atomic_int total;
    atomic_int per_id[GATE_SLOT_BUCKETS];
};
/* A slot for identity; false (and nothing taken) when a cap is reached.
 * *bucket is what gate_slot_give needs. */
bool gate_slot_take(struct gate_slots *s, const struct config *cfg,
                    const char *identity, unsigned *bucket);
void gate_slot_give(struct gate_slots *s, unsigned bucket);

/* What a worker lends its gate; all borrowed, used on the worker's loop. */
struct gate_env {
    struct loop *loop;
    struct upstream *up;           /* probes, management logins */
    struct redis *redis;           /* commands */
    struct cluster *cluster;
    struct metrics *metrics;
    struct log *log;
    struct fence *fence;           /* the process-wide fence table */
    struct config *const *cfg;     /* the worker's current configuration */
    atomic_int *waiting;           /* kept equal to gate_waiting(), for
                                      other threads */
    /* A Redis callback and its argument per operation, for commands whose
     * only follow-up is redis_operations_total{op}. */
    redis_cb count_cb;
    void *count_ctx[M_REDIS_OP__COUNT];
};

struct gate *gate_new(const struct gate_env *env);
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

/* How a held answer ends, given to its owner's callback. */
struct gate_release {
    bool timed_out;          /* not every required controller acknowledged */
    bool fail;               /* timed out and gate.on_timeout is fail: the
                                owner answers with an error */
    uint64_t fenced;         /* controllers the identity is fenced on as
                                the answer goes (pending ones) */
    const char *replication; /* "acked=a,b; pending=c" (valid during the
                                callback) */
};
typedef void (*gate_release_cb)(void *arg, const struct gate_release *rel);

struct gate_hold_args {
    enum gate_call call;
    const char *identity;
    const char *mfa_id;
    int answered_by;         /* the controller that answered, -1 none */
    uint64_t deadline_ms;    /* loop clock; 0 = now + gate.timeout */
    bool legacy;             /* confirm with gate.management */
    const char *authorization; /* the client's Authorization value or NULL */
    const char *state_path;  /* .../current-identity/mfa of the call */
    uint64_t refused;        /* controllers known to refuse the client's
                                token (routing/keyrefusal.h): verify and
                                delete are confirmed there with
                                gate.management, a create is not waited
                                for there (and not fenced) */
    /* a delete: each controller's state read right before it was sent
     * (gate_before.h), NULL when not read */
    const struct gate_before_result *before;
    gate_release_cb done;    /* called once, when the answer may go */
    void *arg;
    struct gate_wait **handle; /* the owner's: set while the wait reports
                                  to it, NULL once it released or the gate
                                  went away */
};

/* Hold an answer until the acknowledgements are in.  done may run before
 * this returns (nothing to wait for).  Returns false when the answer cannot
 * be held (the owner then sends it at once; done is never called). */
bool gate_hold(struct gate *g, const struct gate_hold_args *h);
/* The owner is going away before its answer was released: *handle's wait
 * no longer reports (it may go on probing for its fences). */
void gate_detach(struct gate_wait **handle);

/* Ack condition, pure (tests): does this GET .../current-identity/mfa
 * answer show the change? */
bool gate_acknowledges(enum gate_call call, const char *mfa_id, int status,
                       const char *body, size_t len);
/* The same for GET /edge/management/v1/identities/{id} (isMfaEnabled),
 * used for legacy sessions; a create cannot be seen there. */
bool gate_acknowledges_mgmt(enum gate_call call, int status, const char *body,
                            size_t len);

#endif
