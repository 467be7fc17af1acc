/* redis_hs.c - the Redis connection's handshake (AUTH, SELECT, PING and,
 * behind sentinels, ROLE), its subscriptions, and the accessors other
 * threads may call (see redis.h, redis_impl.h). */
#include "io/redis_impl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/loop.h"
#include "base/util.h"
#include "io/redis_sentinel.h"

bool redis_hs_subs_confirmed(const struct redis *r)
{
    for (const struct redis_sub *s = r->subs; s; s = s->next)
        if (!s->confirmed)
            return false;
    return true;
}


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
        if (!changed || !redis_hs_subs_confirmed(r))
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
        redis_drop(r, "%s: %s", what, redis_reply_status_names[st]);
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

/* Behind sentinels: the server must be the master, not a replica left
 * behind (or not yet reconfigured) by a failover. */
static void redis_hs_role_cb(void *arg, enum redis_status st,
                             const struct redis_reply *rep)
{
    struct redis *r = arg;
    if (st == REDIS_STATUS_OK && rep->type == REDIS_TYPE_ARRAY &&
        rep->n_elements > 0 && rep->elements[0].type == REDIS_TYPE_STRING &&
        strcmp(rep->elements[0].str, "master") != 0) {
        if (r->state == ST_HANDSHAKE)
            redis_drop(r, "not the master (ROLE says %.*s)",
                       (int)(rep->elements[0].len < 32 ? rep->elements[0].len
                                                       : 32),
                       rep->elements[0].str);
        return;
    }
    redis_hs_step(r, "ROLE", st, rep);
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
void redis_hs_on_connect(const redisAsyncContext *ac, int status)
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
    if (r->sentinel) {
        const char *role[1] = {"ROLE"};
        redis_send_internal(r, REDIS_OP_OTHER, redis_hs_role_cb, 1, role);
    }
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
