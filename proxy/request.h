/* request.h - one client request from arrival to the access-log line:
 * classify, choose a controller, attempt, retry or reconcile, learn
 * affinity, rewrite, hold for replication, answer, log, count.
 *
 * Ownership: a struct request is owned by its worker (on its list) from
 * request_start() until the listener reports the exchange complete and no
 * asynchronous work of its own is left; then it is freed.  It holds a
 * reference on the configuration it started with.  Freed request structs
 * are kept by the worker (with their buffers) for the next request: a new
 * request starts zeroed except for that storage. */
#ifndef QG_REQUEST_H
#define QG_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "base/errcodes.h"
#include "base/list.h"
#include "config/config.h"
#include "io/headers.h"
#include "proxy/pipeline.h"
#include "io/upstream.h"
#include "retry/failure.h"
#include "routing/classify.h"
#include "routing/route.h"

struct worker;
struct listener_exchange;
struct loop_timer;
struct gate_wait;

#define REQUEST_MAX_ATTEMPTS 16

struct request_attempt {
    int node;                  /* -1 for none */
    const char *outcome;       /* static label */
    int status;
    uint64_t duration_ns;
    bool reconcile;            /* a state read, not the request itself */
};

enum request_stage {
    STAGE_ROUTING = 0,         /* choosing, or waiting for a leader */
    STAGE_AFFINITY,            /* looking up affinity in Redis */
    STAGE_ATTEMPT,             /* an attempt is in flight */
    STAGE_BACKOFF,             /* waiting before the next attempt */
    STAGE_RECONCILE,           /* reading the state after an ambiguous write */
    STAGE_GATE,                /* holding the answer for replication */
    STAGE_ANSWERED,            /* answer handed to the listener */
};

struct request {
    struct worker *w;                  /* borrowed */
    struct listener_exchange *ex;      /* borrowed; NULL once complete */
    struct config *cfg;                /* borrowed from cfg_hold */
    struct worker_cfg_hold *cfg_hold;  /* counts this request as a user */
    struct list link;                  /* in the worker's live requests
                                          (or its spares) */
    struct list wait_link;             /* in the worker's requests waiting
                                          for a leader, or unlinked */

    enum request_stage stage;
    struct classify_result cls;
    const struct config_retry_policy *policy; /* into cfg */
    struct headers up_headers;         /* owned: sent upstream */
    uint64_t start_ms;                 /* loop clock */
    uint64_t start_wall_ms;            /* wall clock, for createdAt */
    void (*timer_cb)(void *rq);        /* what the timer does next */
    struct http_fields answer_fields;  /* owned array: the answer's fields,
                                          * pointing into up, the config
                                          * and literals */
    uint64_t deadline_ms;              /* overall, loop clock */

    /* routing */
    struct route_in route;
    enum route_decision decision;
    int node;                          /* current or last attempt (or the
                                          controller whose state answered) */
    int home;                          /* affinity home (hard), -1 */
    char identity[80];                 /* JWT sub or learned identity id */
    char session_key[72];              /* hmac of zt-session, "" if none */

    /* attempts */
    struct upstream_req up;            /* owned */
    char *url;                         /* owned: URL of the current attempt */
    size_t url_cap;                    /* bytes allocated at url */
    struct request_attempt attempts[REQUEST_MAX_ATTEMPTS];
    int n_attempts;                    /* attempts at the request itself */
    int n_log;                         /* entries in attempts[] */
    struct failure last_failure;
    bool had_ambiguous;
    bool holds_retry_slot;
    bool budget_exhausted;
    bool retried;
    bool key_fetched;                  /* keys fetched for a refused token */
    bool login_resent;                 /* a fenced login sent elsewhere */
    bool amr_checked;                  /* a token's MFA state was read */
    struct loop_timer *timer;          /* owned: backoff, waits, deadline;
                                          NULL until request_after() */

    /* reconciliation / gate */
    struct upstream_req aux;           /* owned: state reads */
    int aux_node;                      /* where the current read goes */
    bool aux_fresh;                    /* the next read on a new connection */
    int n_reads;                       /* state reads made so far */
    int n_read_failures;               /* ... that got no usable answer */
    char *aux_url;                     /* owned */
    size_t aux_url_cap;                /* bytes allocated at aux_url */
    char *aux_auth;                    /* owned, wiped: a state read's own
                                          Authorization line, or NULL */
    const char *aux_lines[2];          /* that read's header lines (into
                                          aux_auth and static text) */
    const char *reconciled;            /* outcome label, NULL if none */
    struct gate_wait *gate;            /* owned by the gate while held */

    struct pipeline_state pipe;        /* affinity and gate stages */

    /* the answer */
    int status;
    const char *error_code;            /* our own envelope code, if any */
    bool complete;                     /* the listener is done with us */

    /* last: a reused struct clears replication[0] only (request.c) */
    char replication[CONFIG_REPLICATION_MAX]; /* Quorumgate-Replication */
};

/* Listener callbacks (ctx = worker). */
void request_on_request(void *ctx, struct listener_exchange *ex);
void request_on_complete(void *ctx, struct listener_exchange *ex);
bool request_admit(void *ctx);
void request_on_connection(void *ctx, int delta);

/* Frees the worker's spare request structs (worker shutdown). */
void request_free_spares(struct worker *w);
/* Wipes and frees rq->aux_auth (a state read's own credential). */
void request_aux_auth_free(struct request *rq);
/* Frees one request struct and everything it owns. */
void request_destroy(struct request *rq);

/* The cluster view changed: requests waiting for a leader look again. */
void request_cluster_changed(struct worker *w);
/* Abandon every request of the worker (shutdown). */
void request_abort_all(struct worker *w);

/* Stages other modules drive (reconcile, gate, pipeline): request.c. */
/* Continue after an asynchronous step: route and attempt again. */
void request_reroute(struct request *rq);
/* A reconciled answer is in rq->up: continue as after a success. */
void request_reconciled_success(struct request *rq);
/* Affinity learned from the answer is stored: gate or answer it. */
void request_learned(struct request *rq);
/* A request header's first value, or NULL (and NULL once complete). */
const char *request_header(const struct request *rq, const char *name);
/* ".../current-identity/mfa" of the request's API (malloc'ed). */
char *request_mfa_state_path(const struct request *rq);
/* Tokens a controller refuses (routing/keyrefusal.h; request_key.c).
 * A bearer token whose minter's tokens other controllers refused lately:
 * the minter becomes the request's home. */
void request_key_home(struct request *rq);
/* r, node's answer to rq (its call or a state read), is the auth layer's
 * refusal of a valid token another controller minted: noted, counted, and
 * rq->home is now the minter (send it there); false otherwise. */
bool request_key_refusal(struct request *rq, int node,
                         const struct upstream_req *r);
/* The controllers known to refuse rq's bearer token lately (0: none). */
uint64_t request_key_refusers(struct request *rq);
/* Logins and fences (request_login.c): a fenced identity's call came
 * from rq's client address, mask its fenced controllers: that address's
 * OIDC logins avoid them for a while (gate.fence_ttl at most). */
void request_login_hint(struct request *rq, uint64_t mask);
/* The controllers fenced for identity (a controller id) now (0: none). */
uint64_t request_login_fences(struct request *rq, const char *identity);
/* The controllers an OIDC login from rq's client address avoids. */
uint64_t request_login_avoid(struct request *rq);
/* Stop the request's timer, if it has one yet. */
void request_timer_stop(struct request *rq);
/* Run cb(rq) after ms on the request's timer. */
void request_after(struct request *rq, uint64_t ms, void (*cb)(void *));

/* The answers: request_answer.c. */
void request_answer_upstream(struct request *rq);
/* Our own envelope: e's code and status, message (NULL: the table's). */
void request_answer_error(struct request *rq, enum errcode e,
                          const char *message);
void request_answer_json(struct request *rq, int status, const char *body);
/* The last attempt's failure goes back to the client as it was (an
 * upstream answer) or as our envelope (no answer). */
void request_answer_give_up(struct request *rq);
/* rq's write was answered (rq->up) but may have been applied anyway: 504
 * PROXY_UPSTREAM_TIMEOUT saying the outcome is unknown, never an answer
 * that tells the client it failed.  after_lost: an earlier attempt was not
 * answered; unread: the state read after it failed. */
void request_answer_unknown(struct request *rq, bool after_lost,
                            bool unread);
/* r (an attempt or a read at rq's hard home, rq->node) could not reach
 * the home: 401 UNAUTHORIZED, counted, logged once per episode. */
void request_answer_home_unreachable(struct request *rq,
                                     const struct upstream_req *r);
/* The controller's own answer when its last one had e's status, else our
 * envelope with e (message NULL: the table's). */
void request_answer_as_upstream_or(struct request *rq, enum errcode e,
                                   const char *message);

/* Attempts and retries: request_attempt.c. */
/* Take a retry slot from the budget (held until the request ends); false
 * (and counted) when the budget is exhausted. */
bool request_attempt_retry_slot(struct request *rq);
/* Resend the call if attempts, deadline and budget allow; else give up. */
void request_attempt_retry_if_allowed(struct request *rq);
/* GET path (a request target) on node with the client's own headers, on
 * rq->aux (state reads: the enrollment, the identity); rq->aux_node says
 * where.  done runs on the loop. */
void request_attempt_aux_get(struct request *rq, int node, const char *path,
                             uint64_t timeout_ms,
                             void (*done)(struct upstream_req *r, void *arg));
/* The same with these header lines (borrowed until done runs). */
void request_attempt_aux_get_as(struct request *rq, int node,
                                const char *path, const char *const *headers,
                                int n_headers, uint64_t timeout_ms,
                                void (*done)(struct upstream_req *r,
                                             void *arg));
/* Log an auxiliary attempt (state reads). */
void request_attempt_log(struct request *rq, int node, const char *outcome,
                         int status, uint64_t duration_ns, bool reconcile);

#endif
