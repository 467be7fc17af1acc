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
#include "io/redis_impl.h"

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
#include "io/redis_sentinel.h"


static void redis_schedule_reconnect(struct redis *r);

/* ---- small helpers ---------------------------------------------------- */

static void redis_list_init(struct redis_cmd_list *l)
{
    list_init(&l->head);
    l->n = 0;
}

static void redis_list_push(struct redis_cmd_list *l, struct redis_cmd *c)
{
    c->list = l;
    list_insert_tail(&l->head, &c->link);
    l->n++;
}

static void redis_list_remove(struct redis_cmd *c)
{
    if (!c->list)
        return;
    list_remove(&c->link);
    c->list->n--;
    c->list = NULL;
}

/* The oldest command of l, or NULL. */
static struct redis_cmd *redis_list_first(const struct redis_cmd_list *l)
{
    struct list *n = list_first(&l->head);
    return n ? list_entry(n, struct redis_cmd, link) : NULL;
}

void redis_set_error(struct redis *r, const char *fmt, ...)
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

void redis_notify(struct redis *r, bool up)
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

/* Runs cmd's callback (if any) with its result and counts it.  The cmd
 * must already be out of r->inflight. */
static void redis_complete(struct redis *r, struct redis_cmd *cmd,
                           enum redis_status st, const redisReply *rep)
{
    struct redis_reply root;
    struct redis_reply *pool = NULL;
    enum redis_result res = REDIS_RESULT_UNAVAILABLE;
    if (st == REDIS_STATUS_OK) {
        redis_reply_view(&root, rep, &pool);
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
    if (r->reconnect_now) { /* a new master is known: no reason to wait */
        r->reconnect_now = false;
        loop_timer_start(r->reconnect_timer, 0, 0);
    } else {
        redis_schedule_reconnect(r);
    }
    if (r->sentinel) /* down, or not the master: ask again */
        redis_sentinel_recheck(r->sentinel);
    if (was_up)
        redis_notify(r, false);
    else if (r->on_fail && !r->freeing)
        r->on_fail(r->state_arg);
}

/* Closes the connection on purpose (timeout, failed handshake).  Inside a
 * reply callback hiredis frees the context once the callback returns. */
void redis_drop(struct redis *r, const char *fmt, ...)
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

/* Behind sentinels, a READONLY error says the server became a replica
 * while connected: drop it (reconnecting asks the sentinels again). */
static void redis_check_readonly(struct redis *r, const redisReply *rep)
{
    if (r->sentinel && rep->type == REDIS_REPLY_ERROR && rep->str &&
        strncmp(rep->str, "READONLY", 8) == 0 && r->state == ST_UP) {
        REDIS_LOG(r, LOG_LEVEL_WARN, "%s answers READONLY: a replica now; "
                  "reconnecting", r->addr);
        redis_drop(r, "READONLY: a replica now");
        redis_sentinel_recheck(r->sentinel);
    }
}

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
    if (reply && !r->freeing)
        redis_check_readonly(r, reply);
}

/* Sends an already formatted command; internal commands (the handshake)
 * may go out before the connection is up. */
struct redis_cmd *redis_submit(struct redis *r, enum redis_op op,
                               const char *buf, size_t len, redis_cb cb,
                               void *arg, bool internal)
{
    struct redis_cmd *cmd = xcalloc(1, sizeof(*cmd));
    list_init(&cmd->link);
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
    enum redis_op op = redis_reply_classify(buf, (size_t)len, &forbidden);
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
    struct redis_cmd *head = redis_list_first(&r->inflight);
    uint64_t now = loop_now_ms(r->loop);
    if (head && head->deadline > now) {
        loop_timer_start(r->deadline_timer, head->deadline - now, 0);
    } else if (head) {
        /* Fail the late one, then drop the connection: the others get
         * REDIS_STATUS_LOST, a late reply goes nowhere. */
        redis_list_remove(head);
        redis_set_error(r, "%s: %s timed out after %llu ms", r->addr,
                        redis_reply_op_names[head->op],
                        (unsigned long long)r->command_timeout_ms);
        REDIS_LOG(r, LOG_LEVEL_WARN, "%s timed out after %llu ms; "
                  "reconnecting", redis_reply_op_names[head->op],
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
    struct redis_cmd_list batch;
    struct redis_cmd *c;
    redis_list_init(&batch);
    while ((c = redis_list_first(&r->failq))) {
        redis_list_remove(c);
        redis_list_push(&batch, c);
    }
    while ((c = redis_list_first(&batch)) && !r->freeing) {
        redis_list_remove(c);
        redis_complete(r, c, REDIS_STATUS_DOWN, NULL);
        free(c);
    }
    while ((c = redis_list_first(&batch))) { /* freed meanwhile: no more
                                                 callbacks */
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
        (r->state != ST_UP || !redis_hs_subs_confirmed(r)))
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

static void redis_keepalive(int fd)
{
    int on = 1, idle = 15, intvl = 5, cnt = 3;
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof(idle));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
    setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

/* Behind sentinels: point host/port/addr at the master they name now;
 * false when none is known. */
static bool redis_find_master(struct redis *r)
{
    char host[REDIS_SENTINEL_ADDR_MAX];
    uint16_t port;
    if (!redis_sentinel_master(r->sentinel, host, sizeof(host), &port,
                               &r->master_gen))
        return false;
    free(r->host);
    free(r->addr);
    r->host = xstrdup(host);
    r->port = port;
    r->addr = xasprintf(strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
                        (unsigned)port);
    return true;
}

static void redis_connect(struct redis *r)
{
    if (r->sentinel && !redis_find_master(r)) {
        redis_set_error(r, "no master known for '%s' (see /status "
                        "redis.sentinel_error)", r->master_name);
        r->state = ST_CLOSING;
        r->ac = NULL;
        redis_conn_gone(r);
        return;
    }
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
    redis_reply_bound_reader(ac->c.reader, &r->fns);
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
    redisAsyncSetConnectCallback(ac, redis_hs_on_connect); /* watches write */
}

static void redis_reconnect_cb(void *arg)
{
    struct redis *r = arg;
    redis_enter(r);
    if (r->state == ST_WAIT && !r->freeing)
        redis_connect(r);
    redis_leave(r);
}

/* Behind sentinels: the master changed (any thread sent it). */
static void redis_moved_cb(void *arg)
{
    struct redis *r = arg;
    char host[REDIS_SENTINEL_ADDR_MAX];
    uint16_t port;
    uint64_t gen;
    redis_enter(r);
    bool known = redis_sentinel_master(r->sentinel, host, sizeof(host),
                                       &port, &gen);
    if (r->freeing) {
        /* nothing to do */
    } else if (!known) {
        /* the master named is not one (ROLE): off it until one is */
        if (r->state != ST_WAIT)
            redis_drop(r, "the master is not known any more");
    } else if (r->state == ST_WAIT) {
        r->attempt = 0; /* a new address: try it now */
        loop_timer_start(r->reconnect_timer, 0, 0);
    } else if (gen != r->master_gen &&
               (port != r->port || !r->host || strcmp(host, r->host) != 0)) {
        r->attempt = 0;
        r->reconnect_now = true;
        REDIS_LOG(r, LOG_LEVEL_WARN, "the master moved from %s to %s:%u; "
                  "reconnecting", r->addr, host, (unsigned)port);
        redis_drop(r, "the master moved to %s:%u", host, (unsigned)port);
    }
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
    redis_list_init(&r->inflight);
    redis_list_init(&r->failq);
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
    r->on_fail = opt->on_fail;
    if (cfg->n_sentinels > 0) {
        r->master_name = xstrdup(cfg->master_name ? cfg->master_name : "");
        r->sentinel = opt->sentinel;
        if (!r->sentinel)
            r->sentinel = r->owned_sentinel =
                redis_sentinel_new(loop, cfg, opt->log);
        free(r->addr);
        r->addr = xasprintf("master '%s'", r->master_name);
        r->moved = loop_async_new(loop, redis_moved_cb, r);
        redis_sentinel_watch(r->sentinel, r->moved);
    }
    r->state = ST_WAIT;
    loop_timer_start(r->reconnect_timer, 0, 0);
    return r;
}

static void redis_destroy(struct redis *r)
{
    if (r->ac)
        redisAsyncFree(r->ac); /* runs redis_cmd_cb(NULL) + cleanup */
    struct redis_cmd *c;
    while ((c = redis_list_first(&r->failq))) {
        redis_list_remove(c);
        free(c);
    }
    loop_timer_free(r->reconnect_timer);
    loop_timer_free(r->sync_timer);
    loop_timer_free(r->deadline_timer);
    loop_timer_free(r->fail_timer);
    if (r->moved) {
        redis_sentinel_unwatch(r->sentinel, r->moved);
        loop_async_free(r->moved);
    }
    redis_sentinel_free(r->owned_sentinel);
    free(r->master_name);
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

