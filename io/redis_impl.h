/* redis_impl.h - internals shared by the files of the Redis module
 * (redis.c: connection, sending, timers, lifecycle; redis_hs.c: the
 * handshake, subscriptions and read-only accessors; redis_reply.c: reply
 * views, names and the bounded reader).  Nothing outside io/redis*.c
 * includes it. */
#ifndef QG_REDIS_IMPL_H
#define QG_REDIS_IMPL_H

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <stdatomic.h>

#include "base/list.h"
#include "base/log.h"
#include "io/redis.h"

struct redis_sentinel;
struct loop_async;

enum redis_state {
    ST_WAIT = 0,         /* no context; reconnect timer armed */
    ST_CONNECTING,       /* connect(2) in progress */
    ST_HANDSHAKE,        /* AUTH / SELECT / PING in flight */
    ST_SUBSCRIBING,      /* subscriber: SUBSCRIBE confirmations pending */
    ST_UP,
    ST_CLOSING           /* the context is being freed */
};

/* A FIFO of commands (base/list.h); its head must not move while not
 * empty. */
struct redis_cmd_list {
    struct list head;                /* of redis_cmd.link */
    size_t n;
};

/* One command.  Owned by hiredis' callback list once sent (freed in
 * redis_cmd_cb), by r->failq otherwise. */
struct redis_cmd {
    struct list link;                /* in *list */
    struct redis_cmd_list *list;     /* &r->inflight, &r->failq or NULL */
    struct redis *r;                 /* borrowed: outlives the context */
    redis_cb cb;                     /* NULL once called or cancelled */
    void *arg;                       /* the caller's */
    enum redis_op op;
    uint64_t deadline;               /* loop ms */
};

/* One redis_subscribe() registration, owned by r->subs. */
struct redis_sub {
    struct redis_sub *next;
    char *channel;                   /* owned */
    size_t len;
    redis_message_cb cb;
    void *arg;
    bool confirmed;                  /* on the current connection */
};

struct redis {
    struct loop *loop;               /* borrowed */
    struct log *log;                 /* borrowed, may be NULL */
    char *name;                      /* owned */
    char *addr;                      /* owned: as written, for messages */
    char *host;                      /* owned; NULL for unix sockets */
    uint16_t port;
    char *unix_path;                 /* owned; NULL for TCP */
    redisReplyObjectFunctions fns;   /* hiredis' own, createArray bounded */
    char *username;                  /* owned, may be NULL */
    char *password;                  /* owned, may be NULL; wiped on free */
    uint32_t database;
    uint64_t connect_timeout_ms, command_timeout_ms;
    uint64_t backoff_min_ms, backoff_max_ms;
    bool subscriber;
    void (*on_state)(void *arg, bool up);
    void *state_arg;
    void (*on_fail)(void *arg);

    redisAsyncContext *ac;           /* owned; NULL in ST_WAIT */
    struct loop_io *io;              /* owned; watches ac's socket */
    int io_events;
    enum redis_state state;
    bool reported_up;                /* last value given to on_state */
    unsigned attempt;                /* consecutive failed attempts */
    uint64_t rng;                    /* backoff jitter */
    int hs_pending;                  /* handshake replies still expected */

    struct loop_timer *reconnect_timer; /* owned */
    struct loop_timer *sync_timer;   /* owned: connect/handshake/subscribe */
    struct loop_timer *deadline_timer; /* owned: head of inflight */
    struct loop_timer *fail_timer;   /* owned: drains failq */
    struct redis_cmd_list inflight;  /* cmds owned by hiredis, no result yet */
    struct redis_cmd_list failq;     /* cmds owned here, to fail */
    struct redis_sub *subs;          /* owned list */

    int depth;                       /* nesting of loop entries */
    bool freeing;                    /* redis_free() was called */

    atomic_bool up;
    atomic_uint_fast64_t connects, connect_failures, disconnects;
    atomic_uint_fast64_t ops[REDIS_OP__COUNT][REDIS_RESULT__COUNT];
    pthread_mutex_t err_lock;        /* guards last_error */
    char last_error[256];

    /* Sentinel mode (cfg->n_sentinels > 0): the address is asked of the
     * monitor at every connect, and the server must say ROLE master. */
    struct redis_sentinel *sentinel; /* borrowed (or owned_sentinel) */
    struct redis_sentinel *owned_sentinel; /* owned when not shared */
    struct loop_async *moved;        /* owned: the master changed */
    uint64_t master_gen;             /* of the address connected to */
    bool reconnect_now;              /* dropped because the master moved:
                                        reconnect at once */
    char *master_name;               /* owned; NULL without sentinels */
};

#define REDIS_LOG(r, lvl, fmt, ...)                                          \
    do {                                                                     \
        if ((r)->log)                                                        \
            LOG_AT((r)->log, lvl, "redis %s: " fmt, (r)->name, __VA_ARGS__); \
    } while (0)

static inline void redis_bump(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static inline void redis_count(struct redis *r, enum redis_op op,
                               enum redis_result res)
{
    atomic_fetch_add_explicit(&r->ops[op][res], 1, memory_order_relaxed);
}

/* redis.c */
void redis_drop(struct redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void redis_set_error(struct redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void redis_notify(struct redis *r, bool up);
/* Sends an already formatted command; internal ones (the handshake) may go
 * out before the connection is up. */
struct redis_cmd *redis_submit(struct redis *r, enum redis_op op,
                               const char *buf, size_t len, redis_cb cb,
                               void *arg, bool internal);

/* redis_hs.c: hiredis' connect callback (starts the handshake) */
void redis_hs_on_connect(const redisAsyncContext *ac, int status);
bool redis_hs_subs_confirmed(const struct redis *r);

/* redis_reply.c */
extern const char *const redis_reply_op_names[REDIS_OP__COUNT];
extern const char *const redis_reply_status_names[REDIS_STATUS__COUNT];
/* Which op a formatted command ("*N\r\n$L\r\nNAME\r\n...") is; *forbidden
 * for those that would change the connection under the module's feet. */
enum redis_op redis_reply_classify(const char *cmd, size_t len,
                                   bool *forbidden);
/* Installs a createArray that refuses huge arrays on rd; fns must
 * outlive rd. */
void redis_reply_bound_reader(redisReader *rd, redisReplyObjectFunctions *fns);
/* Fills *root with a view of rep; *pool (free it) holds the elements. */
void redis_reply_view(struct redis_reply *root, const redisReply *rep,
                      struct redis_reply **pool);

#endif
