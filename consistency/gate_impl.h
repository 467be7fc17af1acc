/* gate_impl.h - what gate.c and gate_probe.c share of the replication
 * gate's insides; nothing else includes it (the interface is gate.h). */
#ifndef QG_GATE_IMPL_H
#define QG_GATE_IMPL_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "base/list.h"
#include "consistency/ackstore.h"
#include "consistency/gate.h"
#include "metrics/metrics.h"
#include "config/config.h"
#include "io/upstream.h"
#include "routing/fence.h"

#define GATE_BUCKETS 256

struct gate_probe {
    struct gate_wait *gw;         /* borrowed: the owner */
    int node;
    bool in_flight;
    uint64_t delay_ms;            /* next backoff */
    int tries;                    /* probes sent */
    int refusals;                 /* 401/403 answers so far (3, over 1 s:
                                   * refused) */
    bool refused;                 /* 401/403: the credential does not work
                                   * there; no more probes */
    bool mgmt;                    /* the client's token is refused there (a
                                   * controller that does not know its
                                   * minter's key, routing/keyrefusal.h):
                                   * asked with gate.management instead */
    uint64_t sent_ns, miss_ns;    /* last probe sent; last "not yet" */
    bool sent;                    /* its own request is out (req) */
    struct list riders;           /* probes of the same identity's other
                                   * waits at this controller that take
                                   * this one's answer (coalesced) */
    struct list ride;             /* in host->riders while riding */
    struct gate_probe *host;      /* the probe whose answer it waits for */
    bool seen_before;             /* answered in the state before the
                                   * change (a stale member needs it first) */
    struct loop_timer *timer;     /* owned */
    struct upstream_req req;      /* owned response buffers */
    char *url;                    /* owned */
    const char *hdr_lines[2];     /* [1] borrowed from the wait or auth */
    char *auth;                   /* owned: legacy "zt-session: ..." line */
    char *token;                  /* owned: the management session used */
};

/* Owned by the gate; borrows its request until released or detached. */
struct gate_wait {
    struct gate *g;               /* borrowed */
    gate_release_cb done;         /* the owner's, until released/detached */
    void *done_arg;
    struct gate_wait **handle;    /* the owner's, NULL once released or
                                     detached */
    struct list link;             /* in its bucket (g->buckets), or in
                                     g->dead once finished */
    struct list id_link;          /* in g->by_id while live */
    char cid[CRYPTO_HMAC_HEX_LEN + 1];
    char idhex[CRYPTO_HMAC_HEX_LEN + 1];
    struct fence_key fk;
    enum gate_call call;
    char mfa_id[128];
    char identity[128];           /* for the management API (legacy) */
    bool legacy;                  /* confirm with gate.management */
    bool key_refused;             /* the client's token is one some
                                   * controllers refuse (keyrefusal.h): a
                                   * 401 is that, not a passing moment */
    char *auth;                   /* owned: "Authorization: ..." line */
    char *state_path;             /* owned: .../current-identity/mfa */
    uint64_t all, required, acked, counted;
    uint64_t fenced;              /* fences this change set, not lifted */
    uint64_t unfenced;            /* own fences lifted through Redis */
    uint64_t refused;             /* refused the credential: not probed */
    uint64_t denied;              /* probes answered 401/403 */
    uint64_t answered;            /* probes answered anything else */
    uint64_t lifted_once;         /* fenced, but no longer in the table at
                                   * the last poll */
    uint64_t stale;               /* fenced for the identity or down when
                                   * held: may lack earlier changes too */
    uint64_t had;                 /* acknowledged the enrollment's create
                                   * in Redis */
    uint64_t had_verified;        /* acknowledged its verify in Redis (a
                                   * delete's wait only) */
    uint64_t lacked;              /* seen without the earlier change by the
                                   * read right before this one: what Redis
                                   * says it acknowledged does not count */
    int need;
    bool match_all;               /* healthy/all: every required one */
    bool healthy;                 /* mode healthy: required follows health */
    uint64_t start_ms, deadline_ms;
    uint64_t held_wall_ms;        /* orders one identity's changes */
    uint64_t end_ms;              /* watch for acks until (>= deadline_ms;
                                   * a fence extends it to its expiry) */
    uint64_t start_ns;
    bool released;
    bool holding;                 /* the hold's Redis reply is awaited */
    bool redis_lost;
    struct loop_timer *deadline;  /* owned */
    struct loop_timer *poll;      /* owned */
    struct gate_probe probes[CONFIG_MAX_CONTROLLERS];
    int n;
    struct ackstore_ctx held_ctx;  /* Redis callbacks (see refs) */
    struct ackstore_ctx read_ctx;
    struct ackstore_ctx had_ctx[2]; /* create, verify */
    int refs;                     /* Redis commands still to call back */
    bool dead;                    /* finished; memory kept for refs */
};

/* One per worker. */
struct gate {
    struct gate_env env;          /* borrowed pointers */
    struct mgmt *mgmt;            /* owned: management sessions */
    struct list buckets[GATE_BUCKETS]; /* live waits by cid */
    struct list by_id[GATE_BUCKETS];   /* live waits by identity (probes
                                          of one identity coalesce) */
    struct list dead;             /* finished waits Redis still refers to */
    struct list clears;           /* fence clears to send again (owned,
                                     gate_clear.c) */
    int n_clears;
    struct loop_timer *clear_timer; /* owned; created on first use */
    int waiting;                  /* held answers */
    int live;                     /* waits, held or probing on */
    /* per controller: estimated time from a hold to the change being
     * there (EWMA, microseconds), which times the first re-probe */
    uint64_t lag_est_us[CONFIG_MAX_CONTROLLERS];
    bool lag_known[CONFIG_MAX_CONTROLLERS];
    /* gate.probe.budget, this worker's share: probes left per controller
     * (thousandths of a probe) and when they were last refilled */
    uint64_t budget_milli[CONFIG_MAX_CONTROLLERS];
    uint64_t budget_ms[CONFIG_MAX_CONTROLLERS];
};

static inline struct config *gate_cfg(const struct gate *g)
{
    return *g->env.cfg;
}

/* The bucket of a hex key (a cid or an identity's hex). */
static inline unsigned gate_bucket(const char *hex)
{
    return (unsigned)strtoul((char[3]){hex[0], hex[1], 0}, NULL, 16) %
           GATE_BUCKETS;
}

/* gate.c */
/* The context that counts one Redis operation of g in the metrics. */
void *gate_count(struct gate *g, enum metrics_redis_op op);
/* Controllers in mask acknowledged gw's change (counted once each). */
void gate_add_acks(struct gate_wait *gw, uint64_t mask);
/* Releases or finishes gw when its acknowledgements allow; may free gw. */
void gate_check(struct gate_wait *gw);
/* Controllers in mask can never acknowledge by probe (they refused the
 * credential): fenced now instead of waited for; may free gw. */
void gate_give_up(struct gate_wait *gw, uint64_t mask);

/* gate_probe.c */
/* The probe timer's callback: asks p's controller once more. */
void gate_probe_send(void *arg);
/* gw is ending: its probes stop riding, and those riding on its probes
 * are sent on their own. */
void gate_probe_detach(struct gate_wait *gw);
/* Every controller that has not acknowledged: the required ones, and the
 * fenced ones, whose fences clear when they do.  A probe in flight or
 * waiting on its backoff goes on as it is. */
void gate_probe_all(struct gate_wait *gw);

#endif
