/* redis.c - see redis.h.  Wraps hiredis 0.14.1's async API.
 *
 * How it hangs together:
 *  - The event-library adapter (addRead/delRead/addWrite/delWrite/cleanup)
 *    drives one loop_io per connection.  hiredis calls cleanup exactly once
 *    when it frees a redisAsyncContext, whatever the reason; that is where
 *    a connection is declared gone and a reconnection scheduled.
 *  - Every command sent is a struct redis_cmd, the privdata of its hiredis
 *    callback.  hiredis calls that callback exactly once (with the reply,
 *    or with NULL when the context is freed), and only there is the cmd
 *    freed.  Until its result is known it also sits in r->inflight, a FIFO
 *    in send order; since every command gets the same timeout, the head has
 *    the earliest deadline and one timer serves them all.
 *  - Commands that cannot be sent wait in r->failq for a zero-delay timer,
 *    so a callback never runs from inside redis_command().
 *  - Re-entrancy: every entry from the loop (I/O and timer callbacks) is
 *    bracketed by redis_enter/redis_leave; redis_free() called inside one
 *    of them only marks the struct, and the last redis_leave destroys it.
 *    The context is only ever freed outside hiredis' own frames, or from a
 *    reply callback (where hiredis defers the free), never from onConnect.
 */
#include "io/redis.h"

#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"

enum redis_state {
    ST_WAIT = 0,         /* no context; reconnect timer armed */
    ST_CONNECTING,       /* connect(2) in progress */
    ST_HANDSHAKE,        /* AUTH / SELECT / PING in flight */
    ST_SUBSCRIBING,      /* subscriber: SUBSCRIBE confirmations pending */
    ST_UP,
    ST_CLOSING           /* the context is being freed */
};

struct redis_cmd_list {
    struct redis_cmd *head, *tail;
    size_t n;
};

/* One command.  Owned by hiredis' callback list once sent (freed in
 * redis_cmd_cb), by r->failq otherwise. */
struct redis_cmd {
    struct redis_cmd *prev, *next;   /* in *list */
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
};

#define REDIS_LOG(r, lvl, fmt, ...)                                          \
    do {                                                                     \
        if ((r)->log)                                                        \
            LOG_AT((r)->log, lvl, "redis %s: " fmt, (r)->name, __VA_ARGS__); \
    } while (0)

#define REDIS_OP_NAME_(id, name) name,
static const char *const redis_op_names[] = {REDIS_OPS(REDIS_OP_NAME_)};
#undef REDIS_OP_NAME_

static const char *const redis_result_names[] = {"ok", "error", "timeout",
                                                 "unavailable"};
static const char *const redis_status_names[] = {"ok", "down", "timeout",
                                                 "lost"};

/* Commands that would change the connection under the module's feet. */
static const char *const redis_forbidden[] = {
    "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
    "sunsubscribe", "monitor", "select", "auth", "hello", "reset", "quit"};

static void redis_schedule_reconnect(struct redis *r);
static void redis_drop(struct redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- small helpers ---------------------------------------------------- */

static void redis_list_push(struct redis_cmd_list *l, struct redis_cmd *c)
{
    c->list = l;
    c->next = NULL;
    c->prev = l->tail;
    if (l->tail)
        l->tail->next = c;
    else
        l->head = c;
    l->tail = c;
    l->n++;
}

static void redis_list_remove(struct redis_cmd *c)
{
    struct redis_cmd_list *l = c->list;
    if (!l)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else
        l->tail = c->prev;
    l->n--;
    c->prev = c->next = NULL;
    c->list = NULL;
}

static void redis_set_error(struct redis *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void redis_set_error(struct redis *r, const char *fmt, ...)
{
    char tmp[sizeof(r->last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&r->err_lock);
    memcpy(r->last_error, tmp, sizeof(tmp));
    pthread_mutex_unlock(&r->err_lock);
}

static void redis_count(struct redis *r, enum redis_op op,
                        enum redis_result res)
{
    atomic_fetch_add_explicit(&r->ops[op][res], 1, memory_order_relaxed);
}

static void redis_bump(atomic_uint_fast64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static bool redis_subs_confirmed(const struct redis *r)
{
    for (const struct redis_sub *s = r->subs; s; s = s->next)
        if (!s->confirmed)
            return false;
    return true;
}

static void redis_notify(struct redis *r, bool up)
{
    r->reported_up = up;
    if (r->on_state && !r->freeing)
        r->on_state(r->state_arg, up);
}

static void redis_destroy(struct redis *r);

static void redis_enter(struct redis *r)
{
    r->depth++;
}

/* May free r: the caller must not touch it afterwards. */
static void redis_leave(struct redis *r)
{
    if (--r->depth == 0 && r->freeing)
        redis_destroy(r);
}

/* Which op a formatted command ("*N\r\n$L\r\nNAME\r\n...") is. */
static enum redis_op redis_classify(const char *cmd, size_t len,
                                    bool *forbidden)
{
    *forbidden = false;
    const char *p = memchr(cmd, '$', len);
    if (!p)
        return REDIS_OP_OTHER;
    char *end;
    unsigned long n = strtoul(p + 1, &end, 10);
    if (end[0] != '\r' || n == 0 || n > 32 ||
        (size_t)(end - cmd) + 2 + n > len)
        return REDIS_OP_OTHER;
    const char *name = end + 2;
    for (size_t i = 0; i < ARRAY_LEN(redis_forbidden); i++)
        if (strlen(redis_forbidden[i]) == n &&
            strncasecmp(name, redis_forbidden[i], n) == 0)
            *forbidden = true;
    for (int op = 0; op < REDIS_OP__COUNT; op++)
        if (strlen(redis_op_names[op]) == n &&
            strncasecmp(name, redis_op_names[op], n) == 0)
            return (enum redis_op)op;
    return REDIS_OP_OTHER;
}

/* hiredis 0.14 allocates whatever an array reply announces (*300000000
 * is 2.4 GB of pointers; fuzz/fuzz_redis.c found it): the reader's
 * createArray refuses more than this many elements, which makes the
 * reply a protocol error ("out of memory") and drops the connection. */
#define REDIS_MAX_ELEMENTS (1 << 20)

static void *redis_create_array(const redisReadTask *task, int elements)
{
    const redisReplyObjectFunctions *orig = task->privdata;
    if (elements < 0 || elements > REDIS_MAX_ELEMENTS)
        return NULL;
    return orig->createArray(task, elements);
}

/* Installs the bounded createArray on rd; fns must outlive rd. */
static void redis_bound_reader(redisReader *rd,
                               redisReplyObjectFunctions *fns)
{
    if (rd->fn != fns) {
        *fns = *rd->fn;
        fns->createArray = redis_create_array;
        redisReaderSetPrivdata(rd, rd->fn);
        rd->fn = fns;
    }
}

/* ---- replies ---------------------------------------------------------- */

static size_t redis_view_count(const redisReply *rep)
{
    size_t n = 0;
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++)
            n += 1 + redis_view_count(rep->element[i]);
    return n;
}

static void redis_view_fill(struct redis_reply *v, const redisReply *rep,
                            struct redis_reply *pool, size_t *next)
{
    memset(v, 0, sizeof(*v));
    switch (rep->type) {
    case REDIS_REPLY_STATUS: v->type = REDIS_TYPE_STATUS; break;
    case REDIS_REPLY_ERROR: v->type = REDIS_TYPE_ERROR; break;
    case REDIS_REPLY_INTEGER: v->type = REDIS_TYPE_INTEGER; break;
    case REDIS_REPLY_STRING: v->type = REDIS_TYPE_STRING; break;
    case REDIS_REPLY_ARRAY: v->type = REDIS_TYPE_ARRAY; break;
    default: v->type = REDIS_TYPE_NIL; break;
    }
    v->integer = rep->integer;
    v->str = ""; /* never NULL, whatever Redis sent where */
    if (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_ERROR ||
        rep->type == REDIS_REPLY_STRING) {
        v->str = rep->str ? rep->str : "";
        v->len = rep->str ? rep->len : 0;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) {
        struct redis_reply *kids = pool + *next;
        *next += rep->elements;
        for (size_t i = 0; i < rep->elements; i++)
            redis_view_fill(&kids[i], rep->element[i], pool, next);
        v->elements = kids;
        v->n_elements = rep->elements;
    }
}

/* Runs cmd's callback (if any) with its result and counts it.  The cmd
 * must already be out of r->inflight. */
static void redis_complete(struct redis *r, struct redis_cmd *cmd,
                           enum redis_status st, const redisReply *rep)
{
    struct redis_reply root;
    struct redis_reply *pool = NULL;
    enum redis_result res = REDIS_RESULT_UNAVAILABLE;
    if (st == REDIS_STATUS_OK) {
        size_t n = redis_view_count(rep), next = 0;
        if (n)
            pool = xcalloc(n, sizeof(*pool));
        redis_view_fill(&root, rep, pool, &next);
        res = root.type == REDIS_TYPE_ERROR ? REDIS_RESULT_ERROR
                                            : REDIS_RESULT_OK;
    } else if (st == REDIS_STATUS_TIMEOUT) {
        res = REDIS_RESULT_TIMEOUT;
    }
    redis_count(r, cmd->op, res);
    redis_cb cb = cmd->cb;
    cmd->cb = NULL;
    if (cb && !r->freeing)
        cb(cmd->arg, st, st == REDIS_STATUS_OK ? &root : NULL);
    free(pool);
}

bool redis_reply_parse(const char *bytes, size_t len, redis_cb cb, void *arg)
{
    redisReader *rd = redisReaderCreate();
    redisReplyObjectFunctions fns;
    void *rep = NULL;
    bool ok = false;
    if (!rd)
        return false;
    redis_bound_reader(rd, &fns);
    if (redisReaderFeed(rd, bytes, len) == REDIS_OK &&
        redisReaderGetReply(rd, &rep) == REDIS_OK && rep) {
        struct redis_reply root;
        size_t n = redis_view_count(rep), next = 0;
        struct redis_reply *pool = n ? xcalloc(n, sizeof(*pool)) : NULL;
        redis_view_fill(&root, rep, pool, &next);
        cb(arg, REDIS_STATUS_OK, &root);
        free(pool);
        freeReplyObject(rep);
        ok = true;
    }
    redisReaderFree(rd);
    return ok;
}

/* ---- the connection going away ---------------------------------------- */

/* The context is going away for a reason hiredis knows: note it once. */
static void redis_begin_close(struct redis *r, const redisAsyncContext *ac)
{
    if (r->state == ST_CLOSING || r->freeing)
        return;
    if (ac->c.err)
        redis_set_error(r, "%s: %s", r->addr, ac->c.errstr);
    else
        redis_set_error(r, "%s: connection closed", r->addr);
    r->state = ST_CLOSING;
    atomic_store(&r->up, false);
}

/* Called by hiredis (adapter cleanup) while it frees the context, after
 * it has failed every pending callback. */
static void redis_conn_gone(struct redis *r)
{
    if (r->io) {
        loop_io_free(r->io);
        r->io = NULL;
    }
    r->io_events = 0;
    if (r->ac)
        redis_begin_close(r, r->ac);
    r->ac = NULL;
    loop_timer_stop(r->sync_timer);
    for (struct redis_sub *s = r->subs; s; s = s->next)
        s->confirmed = false;
    if (r->freeing)
        return;
    r->state = ST_WAIT;
    bool was_up = r->reported_up;
    char err[sizeof(r->last_error)];
    redis_last_error(r, err, sizeof(err));
    if (was_up) {
        redis_bump(&r->disconnects);
        REDIS_LOG(r, LOG_LEVEL_WARN, "connection lost (%s); reconnecting",
                  err);
    } else {
        redis_bump(&r->connect_failures);
        if (r->attempt == 0)
            REDIS_LOG(r, LOG_LEVEL_WARN, "cannot connect (%s); retrying",
                      err);
        else
            REDIS_LOG(r, LOG_LEVEL_DEBUG, "attempt %u failed (%s)",
                      r->attempt + 1, err);
    }
    redis_schedule_reconnect(r);
    if (was_up)
        redis_notify(r, false);
}

/* Closes the connection on purpose (timeout, failed handshake).  Inside a
 * reply callback hiredis frees the context once the callback returns. */
static void redis_drop(struct redis *r, const char *fmt, ...)
{
    if (!r->ac || r->state == ST_CLOSING || r->freeing)
        return;
    char why[sizeof(r->last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    redis_set_error(r, "%s: %s", r->addr, why);
    r->state = ST_CLOSING;
    atomic_store(&r->up, false);
    redisAsyncFree(r->ac);
}

/* ---- event-library adapter -------------------------------------------- */

static void redis_io_update(struct redis *r, int events)
{
    if (!r->io || events == r->io_events)
        return;
    r->io_events = events;
    loop_io_set(r->io, events);
}

static void redis_ev_add_read(void *p)
{
    struct redis *r = p;
    redis_io_update(r, r->io_events | LOOP_READ);
}

static void redis_ev_del_read(void *p)
{
    struct redis *r = p;
    redis_io_update(r, r->io_events & ~LOOP_READ);
}

static void redis_ev_add_write(void *p)
{
    struct redis *r = p;
    redis_io_update(r, r->io_events | LOOP_WRITE);
}

static void redis_ev_del_write(void *p)
{
    struct redis *r = p;
    redis_io_update(r, r->io_events & ~LOOP_WRITE);
}

static void redis_ev_cleanup(void *p)
{
    redis_conn_gone(p);
}

static void redis_io_cb(void *arg, int events)
{
    struct redis *r = arg;
    redis_enter(r);
    /* A context freed while reading is gone (r->ac == NULL); a new one is
     * only ever created from a timer, never in here. */
    if (r->ac && !r->freeing && (events & (LOOP_READ | LOOP_ERROR)))
        redisAsyncHandleRead(r->ac);
    if (r->ac && !r->freeing && (events & LOOP_WRITE))
        redisAsyncHandleWrite(r->ac);
    redis_leave(r);
}

/* ---- sending ---------------------------------------------------------- */

static void redis_cmd_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis_cmd *cmd = privdata;
    struct redis *r = cmd->r;
    if (!reply)
        redis_begin_close(r, ac);
    if (cmd->list) {
        redis_list_remove(cmd);
        redis_complete(r, cmd, reply ? REDIS_STATUS_OK : REDIS_STATUS_LOST,
                       reply);
    }
    free(cmd);
}

/* Sends an already formatted command; internal commands (the handshake)
 * may go out before the connection is up. */
static struct redis_cmd *redis_submit(struct redis *r, enum redis_op op,
                                      const char *buf, size_t len,
                                      redis_cb cb, void *arg, bool internal)
{
    struct redis_cmd *cmd = xcalloc(1, sizeof(*cmd));
    cmd->r = r;
    cmd->cb = cb;
    cmd->arg = arg;
    cmd->op = op;
    bool ok = r->ac && !r->freeing &&
              (r->state == ST_UP || (internal && r->state == ST_HANDSHAKE));
    if (ok && redisAsyncFormattedCommand(r->ac, redis_cmd_cb, cmd, buf,
                                         len) == REDIS_OK) {
        cmd->deadline = loop_now_ms(r->loop) + r->command_timeout_ms;
        redis_list_push(&r->inflight, cmd);
        if (!loop_timer_active(r->deadline_timer))
            loop_timer_start(r->deadline_timer, r->command_timeout_ms, 0);
    } else {
        redis_list_push(&r->failq, cmd);
        if (!loop_timer_active(r->fail_timer))
            loop_timer_start(r->fail_timer, 0, 0);
    }
    return cmd;
}

static struct redis_cmd *redis_submit_user(struct redis *r, char *buf,
                                           int len, redis_cb cb, void *arg)
{
    if (len < 0) {
        fprintf(stderr, "redis_command: invalid format or out of memory\n");
        abort();
    }
    bool forbidden;
    enum redis_op op = redis_classify(buf, (size_t)len, &forbidden);
    if (forbidden || r->subscriber) {
        fprintf(stderr, "redis_command: %s on a %s connection is not "
                "allowed\n", forbidden ? "this command" : "a command",
                r->subscriber ? "subscriber" : "command");
        abort();
    }
    struct redis_cmd *cmd = redis_submit(r, op, buf, (size_t)len, cb, arg,
                                         false);
    free(buf);
    return cmd;
}

struct redis_cmd *redis_command(struct redis *r, redis_cb cb, void *arg,
                                const char *fmt, ...)
{
    char *buf = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&buf, fmt, ap);
    va_end(ap);
    return redis_submit_user(r, buf, len, cb, arg);
}

struct redis_cmd *redis_command_argv(struct redis *r, redis_cb cb, void *arg,
                                     int argc, const char *const *argv,
                                     const size_t *argvlen)
{
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, (const char **)argv,
                                     argvlen);
    return redis_submit_user(r, buf, len, cb, arg);
}

void redis_cancel(struct redis *r, struct redis_cmd *cmd)
{
    if (cmd)
        cmd->cb = NULL;
}

/* ---- timers ----------------------------------------------------------- */

static void redis_deadline_cb(void *arg)
{
    struct redis *r = arg;
    redis_enter(r);
    struct redis_cmd *head = r->inflight.head;
    uint64_t now = loop_now_ms(r->loop);
    if (head && head->deadline > now) {
        loop_timer_start(r->deadline_timer, head->deadline - now, 0);
    } else if (head) {
        /* Fail the late one, then drop the connection: the others get
         * REDIS_STATUS_LOST, a late reply goes nowhere. */
        redis_list_remove(head);
        redis_set_error(r, "%s: %s timed out after %llu ms", r->addr,
                        redis_op_names[head->op],
                        (unsigned long long)r->command_timeout_ms);
        REDIS_LOG(r, LOG_LEVEL_WARN, "%s timed out after %llu ms; "
                  "reconnecting", redis_op_names[head->op],
                  (unsigned long long)r->command_timeout_ms);
        r->state = ST_CLOSING;
        atomic_store(&r->up, false);
        redis_complete(r, head, REDIS_STATUS_TIMEOUT, NULL);
        if (r->ac && !r->freeing)
            redisAsyncFree(r->ac);
    }
    redis_leave(r);
}

static void redis_fail_cb(void *arg)
{
    struct redis *r = arg;
    redis_enter(r);
    /* Only those queued so far: callbacks that retry get the next round. */
    struct redis_cmd_list batch = r->failq;
    memset(&r->failq, 0, sizeof(r->failq));
    for (struct redis_cmd *c = batch.head; c; c = c->next)
        c->list = &batch;
    while (batch.head && !r->freeing) {
        struct redis_cmd *c = batch.head;
        redis_list_remove(c);
        redis_complete(r, c, REDIS_STATUS_DOWN, NULL);
        free(c);
    }
    while (batch.head) { /* freed meanwhile: no more callbacks */
        struct redis_cmd *c = batch.head;
        redis_list_remove(c);
        free(c);
    }
    redis_leave(r);
}

static void redis_sync_cb(void *arg)
{
    struct redis *r = arg;
    redis_enter(r);
    static const char *const what[] = {
        [ST_CONNECTING] = "connect", [ST_HANDSHAKE] = "handshake",
        [ST_SUBSCRIBING] = "subscribe", [ST_UP] = "subscribe"};
    if (r->state >= ST_CONNECTING && r->state <= ST_UP &&
        (r->state != ST_UP || !redis_subs_confirmed(r)))
        redis_drop(r, "%s timed out after %llu ms", what[r->state],
                   (unsigned long long)(r->state == ST_UP
                                            ? r->command_timeout_ms
                                            : r->connect_timeout_ms));
    redis_leave(r);
}

static uint64_t redis_backoff(struct redis *r)
{
    uint64_t d = r->backoff_min_ms;
    for (unsigned i = 0; i < r->attempt && d < r->backoff_max_ms; i++)
        d *= 2;
    if (d > r->backoff_max_ms)
        d = r->backoff_max_ms;
    if (r->attempt < 64)
        r->attempt++;
    /* xorshift64 */
    r->rng ^= r->rng << 13;
    r->rng ^= r->rng >> 7;
    r->rng ^= r->rng << 17;
    return d / 2 + r->rng % (d / 2 + 1);
}

static void redis_schedule_reconnect(struct redis *r)
{
    loop_timer_start(r->reconnect_timer, redis_backoff(r), 0);
}

/* ---- connecting ------------------------------------------------------- */

static void redis_now_up(struct redis *r)
{
    r->state = ST_UP;
    r->attempt = 0;
    loop_timer_stop(r->sync_timer);
    atomic_store(&r->up, true);
    redis_bump(&r->connects);
    REDIS_LOG(r, LOG_LEVEL_INFO, "connected to %s (db %u)", r->addr,
              r->database);
    redis_notify(r, true);
}

static bool redis_sub_sent_before(const struct redis *r,
                                  const struct redis_sub *s)
{
    for (const struct redis_sub *o = r->subs; o != s; o = o->next)
        if (o->len == s->len && memcmp(o->channel, s->channel, s->len) == 0)
            return true;
    return false;
}

static void redis_sub_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct redis *r = privdata;
    const redisReply *rep = reply;
    if (!rep || r->freeing || rep->type != REDIS_REPLY_ARRAY ||
        rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING ||
        rep->element[1]->type != REDIS_REPLY_STRING)
        return;
    const char *kind = rep->element[0]->str;
    const redisReply *ch = rep->element[1];
    if (strcmp(kind, "message") == 0 &&
        rep->element[2]->type == REDIS_REPLY_STRING) {
        for (struct redis_sub *s = r->subs; s && !r->freeing; s = s->next)
            if (s->len == ch->len && memcmp(s->channel, ch->str, s->len) == 0)
                s->cb(s->arg, ch->str, ch->len, rep->element[2]->str,
                      rep->element[2]->len);
    } else if (strcmp(kind, "subscribe") == 0) {
        redis_count(r, REDIS_OP_SUBSCRIBE, REDIS_RESULT_OK);
        bool changed = false;
        for (struct redis_sub *s = r->subs; s; s = s->next)
            if (!s->confirmed && s->len == ch->len &&
                memcmp(s->channel, ch->str, s->len) == 0)
                s->confirmed = changed = true;
        if (!changed || !redis_subs_confirmed(r))
            return;
        if (r->state == ST_SUBSCRIBING) {
            redis_now_up(r);
        } else if (r->state == ST_UP) {
            loop_timer_stop(r->sync_timer);
            redis_notify(r, true); /* late subscription: re-check */
        }
    }
}

static void redis_send_sub(struct redis *r, struct redis_sub *s)
{
    /* On failure the sync timer drops the connection. */
    redisAsyncCommand(r->ac, redis_sub_cb, r, "SUBSCRIBE %b", s->channel,
                      s->len);
}

static void redis_hs_step(struct redis *r, const char *what,
                          enum redis_status st, const struct redis_reply *rep)
{
    if (r->state != ST_HANDSHAKE)
        return; /* the connection is already going away */
    if (st != REDIS_STATUS_OK) {
        redis_drop(r, "%s: %s", what, redis_status_names[st]);
        return;
    }
    if (rep->type == REDIS_TYPE_ERROR) {
        /* The server's words (e.g. WRONGPASS ...) never hold the secret. */
        redis_drop(r, "%s failed: %.*s", what, (int)rep->len, rep->str);
        return;
    }
    if (--r->hs_pending > 0)
        return;
    if (!r->subscriber || !r->subs) {
        redis_now_up(r);
        return;
    }
    r->state = ST_SUBSCRIBING;
    for (struct redis_sub *s = r->subs; s; s = s->next)
        if (!redis_sub_sent_before(r, s))
            redis_send_sub(r, s);
}

static void redis_hs_auth_cb(void *arg, enum redis_status st,
                             const struct redis_reply *rep)
{
    redis_hs_step(arg, "AUTH", st, rep);
}

static void redis_hs_select_cb(void *arg, enum redis_status st,
                               const struct redis_reply *rep)
{
    redis_hs_step(arg, "SELECT", st, rep);
}

static void redis_hs_ping_cb(void *arg, enum redis_status st,
                             const struct redis_reply *rep)
{
    redis_hs_step(arg, "PING", st, rep);
}

static void redis_send_internal(struct redis *r, enum redis_op op,
                                redis_cb cb, int argc, const char **argv)
{
    char *buf = NULL;
    int len = redisFormatCommandArgv(&buf, argc, argv, NULL);
    if (len < 0)
        abort();
    r->hs_pending++;
    redis_submit(r, op, buf, (size_t)len, cb, r, true);
    explicit_bzero(buf, (size_t)len); /* AUTH carries the password */
    free(buf);
}

/* hiredis: the first write event on the socket.  The context must not be
 * freed from in here (hiredis keeps using it after we return); anything
 * that fails is reported through the handshake callbacks or timers. */
static void redis_on_connect(const redisAsyncContext *ac, int status)
{
    struct redis *r = ac->data;
    if (status != REDIS_OK || r->state != ST_CONNECTING)
        return; /* hiredis frees the context; cleanup reports it */
    r->state = ST_HANDSHAKE;
    r->hs_pending = 0;
    if (r->password) {
        const char *argv[3] = {"AUTH"};
        int argc = 1;
        if (r->username)
            argv[argc++] = r->username;
        argv[argc++] = r->password;
        redis_send_internal(r, REDIS_OP_AUTH, redis_hs_auth_cb, argc, argv);
    }
    if (r->database != 0) {
        char db[16];
        snprintf(db, sizeof(db), "%u", r->database);
        const char *argv[2] = {"SELECT", db};
        redis_send_internal(r, REDIS_OP_SELECT, redis_hs_select_cb, 2, argv);
    }
    const char *argv[1] = {"PING"};
    redis_send_internal(r, REDIS_OP_PING, redis_hs_ping_cb, 1, argv);
}

static void redis_keepalive(int fd)
{
    int on = 1, idle = 15, intvl = 5, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

static void redis_connect(struct redis *r)
{
    redisAsyncContext *ac = r->unix_path ? redisAsyncConnectUnix(r->unix_path)
                                         : redisAsyncConnect(r->host, r->port);
    if (!ac)
        abort(); /* hiredis out of memory */
    struct loop_io *io = NULL;
    if (!ac->err)
        io = loop_io_new(r->loop, ac->c.fd, redis_io_cb, r);
    if (!io) {
        redis_set_error(r, "%s: %s", r->addr,
                        ac->err ? ac->errstr : "cannot watch the socket");
        redisAsyncFree(ac); /* no adapter attached: no cleanup call */
        r->state = ST_CLOSING;
        r->ac = NULL;
        redis_conn_gone(r);
        return;
    }
    if (!r->unix_path)
        redis_keepalive(ac->c.fd);
    redis_bound_reader(ac->c.reader, &r->fns);
    r->ac = ac;
    r->io = io;
    r->io_events = 0;
    r->state = ST_CONNECTING;
    ac->data = r;
    ac->ev.data = r;
    ac->ev.addRead = redis_ev_add_read;
    ac->ev.delRead = redis_ev_del_read;
    ac->ev.addWrite = redis_ev_add_write;
    ac->ev.delWrite = redis_ev_del_write;
    ac->ev.cleanup = redis_ev_cleanup;
    loop_timer_start(r->sync_timer, r->connect_timeout_ms, 0);
    redisAsyncSetConnectCallback(ac, redis_on_connect); /* watches write */
}

static void redis_reconnect_cb(void *arg)
{
    struct redis *r = arg;
    redis_enter(r);
    if (r->state == ST_WAIT && !r->freeing)
        redis_connect(r);
    redis_leave(r);
}

/* ---- public ----------------------------------------------------------- */

struct redis *redis_new(struct loop *loop, const struct config_redis *cfg,
                        const struct redis_options *opt)
{
    static const struct redis_options none;
    if (!opt)
        opt = &none;
    struct redis *r = xcalloc(1, sizeof(*r));
    r->loop = loop;
    r->log = opt->log;
    r->name = xstrdup(opt->name ? opt->name : "redis");
    if (cfg->addr.unix_path) {
        r->unix_path = xstrdup(cfg->addr.unix_path);
        r->addr = xasprintf("unix:%s", cfg->addr.unix_path);
    } else {
        r->host = xstrdup(cfg->addr.host && *cfg->addr.host ? cfg->addr.host
                                                            : "127.0.0.1");
        r->port = cfg->addr.port ? cfg->addr.port : 6379;
        r->addr = xasprintf(strchr(r->host, ':') ? "[%s]:%u" : "%s:%u",
                            r->host, r->port);
    }
    r->username = cfg->username && *cfg->username ? xstrdup(cfg->username)
                                                  : NULL;
    r->password = cfg->password ? xstrdup(cfg->password) : NULL;
    if (r->username && !r->password)
        REDIS_LOG(r, LOG_LEVEL_WARN, "%s", "username without a password: "
                  "not authenticating");
    r->database = cfg->database;
    r->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms
                                                    : 1000;
    r->command_timeout_ms = cfg->command_timeout_ms ? cfg->command_timeout_ms
                                                    : 1000;
    r->backoff_min_ms = opt->backoff_min_ms ? opt->backoff_min_ms : 100;
    r->backoff_max_ms = opt->backoff_max_ms ? opt->backoff_max_ms : 5000;
    if (r->backoff_max_ms < r->backoff_min_ms)
        r->backoff_max_ms = r->backoff_min_ms;
    r->subscriber = opt->subscriber;
    r->on_state = opt->on_state;
    r->state_arg = opt->state_arg;
    r->rng = util_mono_ns() ^ (uint64_t)(uintptr_t)r ^ 0x9e3779b97f4a7c15ull;
    if (!r->rng)
        r->rng = 1;
    pthread_mutex_init(&r->err_lock, NULL);
    r->reconnect_timer = loop_timer_new(loop, redis_reconnect_cb, r);
    r->sync_timer = loop_timer_new(loop, redis_sync_cb, r);
    r->deadline_timer = loop_timer_new(loop, redis_deadline_cb, r);
    r->fail_timer = loop_timer_new(loop, redis_fail_cb, r);
    r->state = ST_WAIT;
    loop_timer_start(r->reconnect_timer, 0, 0);
    return r;
}

static void redis_destroy(struct redis *r)
{
    if (r->ac)
        redisAsyncFree(r->ac); /* runs redis_cmd_cb(NULL) + cleanup */
    while (r->failq.head) {
        struct redis_cmd *c = r->failq.head;
        redis_list_remove(c);
        free(c);
    }
    loop_timer_free(r->reconnect_timer);
    loop_timer_free(r->sync_timer);
    loop_timer_free(r->deadline_timer);
    loop_timer_free(r->fail_timer);
    while (r->subs) {
        struct redis_sub *s = r->subs;
        r->subs = s->next;
        free(s->channel);
        free(s);
    }
    if (r->password) {
        explicit_bzero(r->password, strlen(r->password));
        free(r->password);
    }
    free(r->username);
    free(r->unix_path);
    free(r->host);
    free(r->addr);
    free(r->name);
    pthread_mutex_destroy(&r->err_lock);
    free(r);
}

void redis_free(struct redis *r)
{
    if (!r || r->freeing)
        return;
    r->freeing = true;
    atomic_store(&r->up, false);
    if (r->depth == 0)
        redis_destroy(r);
}

void redis_subscribe(struct redis *r, const char *channel,
                     redis_message_cb cb, void *arg)
{
    if (!r->subscriber) {
        fprintf(stderr, "redis_subscribe: not a subscriber connection\n");
        abort();
    }
    struct redis_sub *s = xcalloc(1, sizeof(*s));
    s->len = strlen(channel);
    s->channel = xstrndup(channel, s->len);
    s->cb = cb;
    s->arg = arg;
    struct redis_sub **tail = &r->subs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = s;
    if (r->state != ST_UP && r->state != ST_SUBSCRIBING)
        return; /* sent once the handshake is done */
    for (struct redis_sub *o = r->subs; o != s; o = o->next)
        if (o->len == s->len && memcmp(o->channel, s->channel, s->len) == 0) {
            s->confirmed = o->confirmed; /* already sent on this conn */
            return;
        }
    redis_send_sub(r, s);
    if (r->state == ST_UP && !loop_timer_active(r->sync_timer))
        loop_timer_start(r->sync_timer, r->command_timeout_ms, 0);
}

bool redis_up(const struct redis *r)
{
    return atomic_load(&r->up);
}

void redis_stats(const struct redis *r, struct redis_stats *out)
{
    memset(out, 0, sizeof(*out));
    out->up = atomic_load(&r->up);
    out->connects = atomic_load_explicit(&r->connects, memory_order_relaxed);
    out->connect_failures =
        atomic_load_explicit(&r->connect_failures, memory_order_relaxed);
    out->disconnects =
        atomic_load_explicit(&r->disconnects, memory_order_relaxed);
    for (int o = 0; o < REDIS_OP__COUNT; o++)
        for (int s = 0; s < REDIS_RESULT__COUNT; s++)
            out->ops[o][s] =
                atomic_load_explicit(&r->ops[o][s], memory_order_relaxed);
}

void redis_last_error(struct redis *r, char *out, size_t size)
{
    if (!size)
        return;
    pthread_mutex_lock(&r->err_lock);
    snprintf(out, size, "%s", r->last_error);
    pthread_mutex_unlock(&r->err_lock);
}

size_t redis_pending(const struct redis *r)
{
    return r->inflight.n + r->failq.n;
}

const char *redis_op_name(enum redis_op op)
{
    return (unsigned)op < REDIS_OP__COUNT ? redis_op_names[op] : "?";
}

const char *redis_result_name(enum redis_result res)
{
    return (unsigned)res < REDIS_RESULT__COUNT ? redis_result_names[res]
                                               : "?";
}

const char *redis_status_name(enum redis_status st)
{
    return (unsigned)st < REDIS_STATUS__COUNT ? redis_status_names[st] : "?";
}
