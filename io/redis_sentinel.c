/* redis_sentinel.c - see redis_sentinel.h.  The sentinels are reached
 * with the module's own connections (struct redis, without sentinels in
 * their config); one sentinel at a time, the next one when it fails. */
#include "io/redis_sentinel.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"
#include "io/redis.h"

#define REDIS_SENTINEL_REFRESH_MS 1000
#define REDIS_SENTINEL_CHANNEL "+switch-master"

/* Owned by whoever created it (the app, or a struct redis of its own). */
struct redis_sentinel {
    struct loop *loop;                 /* borrowed */
    struct log *log;                   /* borrowed, may be NULL */
    struct config_redis scfg;          /* owned strings: a sentinel's
                                          connection settings */
    struct config_addr *addrs;         /* owned copies of cfg->sentinels */
    int n;
    char *name;                        /* owned: master_name */
    int cur;                           /* sentinel in use, -1 at start */
    int failed_in_row;                 /* sentinels that failed in a row */
    struct redis *q;                   /* owned: commands to addrs[cur] */
    struct redis *sub;                 /* owned: +switch-master */
    struct loop_timer *step;           /* owned: next sentinel / give up */
    struct loop_timer *refresh;        /* owned: ask again every second */
    struct loop_async *wake;           /* owned: recheck from any thread */
    struct config_redis mcfg;          /* owned strings: the master's
                                          connection settings */
    char cand_host[REDIS_SENTINEL_ADDR_MAX]; /* what the sentinels name */
    uint16_t cand_port;                /* 0 = nothing named yet */
    struct redis *m;                   /* owned: ROLE to the named master */

    pthread_mutex_t lock;              /* guards what follows */
    struct redis_sentinel_info info;
    char host[REDIS_SENTINEL_ADDR_MAX];
    uint16_t port;
    struct loop_async **watch;         /* owned array of borrowed */
    size_t n_watch, cap_watch;
};

#define RS_LOG(s, lvl, ...)                                                  \
    do {                                                                     \
        if ((s)->log)                                                        \
            LOG_AT((s)->log, lvl, __VA_ARGS__);                              \
    } while (0)

static void redis_sentinel_error(struct redis_sentinel *s, const char *fmt,
                                 ...) __attribute__((format(printf, 2, 3)));

static void redis_sentinel_error(struct redis_sentinel *s, const char *fmt,
                                 ...)
{
    char tmp[sizeof(s->info.last_error)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&s->lock);
    bool same = strcmp(tmp, s->info.last_error) == 0;
    memcpy(s->info.last_error, tmp, sizeof(tmp));
    pthread_mutex_unlock(&s->lock);
    if (!same)
        RS_LOG(s, LOG_LEVEL_WARN, "redis sentinel: %s", tmp);
}

bool redis_sentinel_parse_switch(const char *msg, size_t len,
                                 const char *name, char *host,
                                 size_t host_size, uint16_t *port)
{
    char buf[1024], *save = NULL, *tok[6];
    int n = 0;
    if (len >= sizeof(buf))
        return false;
    memcpy(buf, msg, len);
    buf[len] = '\0';
    for (char *t = strtok_r(buf, " ", &save); t && n < 6;
         t = strtok_r(NULL, " ", &save))
        tok[n++] = t; /* a sixth word: not the message we know */
    if (n != 5 || strcmp(tok[0], name) != 0)
        return false;
    char *end;
    unsigned long p = strtoul(tok[4], &end, 10);
    if (*end || p == 0 || p > 65535 || strlen(tok[3]) >= host_size ||
        !tok[3][0])
        return false;
    snprintf(host, host_size, "%s", tok[3]);
    *port = (uint16_t)p;
    return true;
}

static void redis_sentinel_fmt(char *out, size_t n, const char *host,
                               uint16_t port)
{
    snprintf(out, n, strchr(host, ':') ? "[%s]:%u" : "%s:%u", host,
             (unsigned)port);
}

/* Publishes what every Redis connection uses: the named master once ROLE
 * said master there (known), or nothing (not known).  Watchers are told
 * of every change. */
static void redis_sentinel_publish(struct redis_sentinel *s, bool known)
{
    char was[REDIS_SENTINEL_ADDR_MAX], now[REDIS_SENTINEL_ADDR_MAX];
    redis_sentinel_fmt(now, sizeof(now), s->cand_host, s->cand_port);
    pthread_mutex_lock(&s->lock);
    bool moved = known && s->info.master[0] && strcmp(s->info.master, now);
    bool changed = known != s->info.known ||
                   (known && strcmp(s->info.master, now) != 0);
    snprintf(was, sizeof(was), "%s", s->info.master);
    if (changed) {
        s->info.known = known;
        if (known) {
            snprintf(s->host, sizeof(s->host), "%s", s->cand_host);
            s->port = s->cand_port;
            snprintf(s->info.master, sizeof(s->info.master), "%s", now);
            s->info.last_error[0] = '\0';
        }
        s->info.generation++;
        if (moved)
            s->info.switches++;
        for (size_t i = 0; i < s->n_watch; i++)
            loop_async_send(s->watch[i]);
    }
    pthread_mutex_unlock(&s->lock);
    if (!changed)
        return;
    if (moved)
        RS_LOG(s, LOG_LEVEL_WARN, "redis sentinel: master '%s' moved from "
               "%s to %s", s->name, was, now);
    else if (known)
        RS_LOG(s, LOG_LEVEL_INFO, "redis sentinel: master '%s' is %s "
               "(from sentinel %s)", s->name, now, s->addrs[s->cur].text);
}

static void redis_sentinel_on_role(void *arg, enum redis_status st,
                                   const struct redis_reply *rep)
{
    struct redis_sentinel *s = arg;
    if (st != REDIS_STATUS_OK || rep->type != REDIS_TYPE_ARRAY ||
        rep->n_elements == 0 || rep->elements[0].type != REDIS_TYPE_STRING)
        return; /* no answer: the connections find out for themselves */
    if (strcmp(rep->elements[0].str, "master") == 0) {
        pthread_mutex_lock(&s->lock);
        s->info.last_error[0] = '\0'; /* whatever it was, this works */
        pthread_mutex_unlock(&s->lock);
        redis_sentinel_publish(s, true);
        return;
    }
    redis_sentinel_error(s, "%s:%u, named by the sentinels, says ROLE %.*s: "
                         "not used until it is a master",
                         s->cand_host, (unsigned)s->cand_port,
                         (int)(rep->elements[0].len < 32
                                   ? rep->elements[0].len : 32),
                         rep->elements[0].str);
    redis_sentinel_publish(s, false);
}

static void redis_sentinel_verify(struct redis_sentinel *s)
{
    if (s->m && redis_up(s->m))
        redis_command(s->m, redis_sentinel_on_role, s, "ROLE");
}

static void redis_sentinel_m_state(void *arg, bool up)
{
    if (up)
        redis_sentinel_verify(arg);
}

/* A sentinel named host:port as the master: check it with ROLE (now for
 * a new address, or again on the connection already there). */
static void redis_sentinel_set(struct redis_sentinel *s, const char *host,
                               uint16_t port)
{
    pthread_mutex_lock(&s->lock);
    snprintf(s->info.sentinel, sizeof(s->info.sentinel), "%s",
             s->addrs[s->cur].text);
    pthread_mutex_unlock(&s->lock);
    if (s->cand_port == port && strcmp(s->cand_host, host) == 0 && s->m) {
        redis_sentinel_verify(s);
        return;
    }
    bool was_known = s->cand_port != 0;
    snprintf(s->cand_host, sizeof(s->cand_host), "%s", host);
    s->cand_port = port;
    /* Moved: leave the old one at once (it may still take writes that the
     * new one never sees), use the new one once ROLE says master there. */
    if (was_known)
        redis_sentinel_publish(s, false);
    redis_free(s->m);
    s->mcfg.addr.host = s->cand_host; /* borrowed view; redis_new copies */
    s->mcfg.addr.port = port;
    s->m = redis_new(s->loop, &s->mcfg,
                     &(struct redis_options){
                         .name = "sentinel-master", .log = s->log,
                         .on_state = redis_sentinel_m_state, .state_arg = s,
                         .backoff_min_ms = 100, .backoff_max_ms = 1000});
    memset(&s->mcfg.addr, 0, sizeof(s->mcfg.addr));
}

static void redis_sentinel_next(struct redis_sentinel *s)
{
    s->failed_in_row++;
    /* A whole round without an answer: pause before the next one. */
    uint64_t delay = s->failed_in_row >= s->n ? s->scfg.connect_timeout_ms
                                              : 0;
    if (s->failed_in_row >= s->n)
        s->failed_in_row = 0;
    loop_timer_start(s->step, delay, 0);
}

static void redis_sentinel_on_addr(void *arg, enum redis_status st,
                                   const struct redis_reply *rep)
{
    struct redis_sentinel *s = arg;
    const char *at = s->addrs[s->cur].text;
    if (st != REDIS_STATUS_OK) {
        redis_sentinel_error(s, "sentinel %s: %s", at, redis_status_name(st));
    } else if (rep->type == REDIS_TYPE_ARRAY && rep->n_elements == 2 &&
               rep->elements[0].type == REDIS_TYPE_STRING &&
               rep->elements[1].type == REDIS_TYPE_STRING) {
        char *end;
        unsigned long p = strtoul(rep->elements[1].str, &end, 10);
        if (!*end && p > 0 && p <= 65535 && rep->elements[0].len > 0 &&
            rep->elements[0].len < REDIS_SENTINEL_ADDR_MAX) {
            s->failed_in_row = 0;
            loop_timer_stop(s->step);
            redis_sentinel_set(s, rep->elements[0].str, (uint16_t)p);
            return;
        }
        redis_sentinel_error(s, "sentinel %s: odd master address", at);
    } else if (rep->type == REDIS_TYPE_NIL ||
               (rep->type == REDIS_TYPE_ARRAY && rep->n_elements == 0)) {
        redis_sentinel_error(s, "sentinel %s does not know a master named "
                             "'%s'", at, s->name);
    } else if (rep->type == REDIS_TYPE_ERROR) {
        redis_sentinel_error(s, "sentinel %s: %.*s", at,
                             (int)(rep->len < 160 ? rep->len : 160), rep->str);
    } else {
        redis_sentinel_error(s, "sentinel %s: unexpected answer", at);
    }
    redis_sentinel_next(s);
}

static void redis_sentinel_query(struct redis_sentinel *s)
{
    if (s->q && redis_up(s->q))
        redis_command(s->q, redis_sentinel_on_addr, s,
                      "SENTINEL get-master-addr-by-name %s", s->name);
}

static void redis_sentinel_q_state(void *arg, bool up)
{
    struct redis_sentinel *s = arg;
    if (up) {
        redis_sentinel_query(s);
        return;
    }
    redis_sentinel_error(s, "sentinel %s: connection lost",
                         s->addrs[s->cur].text);
    redis_sentinel_next(s);
}

static void redis_sentinel_fail(void *arg)
{
    struct redis_sentinel *s = arg;
    char err[256] = "";
    redis_last_error(s->q, err, sizeof(err));
    redis_sentinel_error(s, "sentinel %s unreachable (%s)",
                         s->addrs[s->cur].text, err);
    redis_sentinel_next(s);
}

static void redis_sentinel_sub_state(void *arg, bool up)
{
    struct redis_sentinel *s = arg;
    if (up)
        redis_sentinel_query(s); /* a switch may have been missed */
}

static void redis_sentinel_message(void *arg, const char *ch, size_t chlen,
                                   const char *msg, size_t len)
{
    struct redis_sentinel *s = arg;
    char host[REDIS_SENTINEL_ADDR_MAX];
    uint16_t port;
    (void)ch;
    (void)chlen;
    if (redis_sentinel_parse_switch(msg, len, s->name, host, sizeof(host),
                                    &port))
        redis_sentinel_set(s, host, port);
}

/* Talk to sentinel i from now on. */
static void redis_sentinel_use(struct redis_sentinel *s, int i)
{
    redis_free(s->q);
    redis_free(s->sub);
    s->cur = i;
    s->scfg.addr = s->addrs[i]; /* borrowed view; redis_new copies */
    char name[40];
    snprintf(name, sizeof(name), "sentinel-%d", i);
    s->q = redis_new(s->loop, &s->scfg,
                     &(struct redis_options){
                         .name = name, .log = s->log,
                         .on_state = redis_sentinel_q_state,
                         .on_fail = redis_sentinel_fail, .state_arg = s,
                         .backoff_min_ms = s->scfg.connect_timeout_ms,
                         .backoff_max_ms = s->scfg.connect_timeout_ms});
    snprintf(name, sizeof(name), "sentinel-%d-sub", i);
    s->sub = redis_new(s->loop, &s->scfg,
                       &(struct redis_options){
                           .name = name, .log = s->log, .subscriber = true,
                           .on_state = redis_sentinel_sub_state,
                           .state_arg = s,
                           .backoff_min_ms = 100, .backoff_max_ms = 1000});
    memset(&s->scfg.addr, 0, sizeof(s->scfg.addr));
    redis_subscribe(s->sub, REDIS_SENTINEL_CHANNEL, redis_sentinel_message, s);
    /* no answer in time: the next one */
    loop_timer_start(s->step, s->scfg.connect_timeout_ms +
                                  s->scfg.command_timeout_ms, 0);
}

static void redis_sentinel_step_cb(void *arg)
{
    struct redis_sentinel *s = arg;
    redis_sentinel_use(s, s->cur < 0 ? 0 : (s->cur + 1) % s->n);
}

static void redis_sentinel_refresh_cb(void *arg)
{
    redis_sentinel_query(arg);
}

static void redis_sentinel_wake_cb(void *arg)
{
    redis_sentinel_query(arg);
}

struct redis_sentinel *redis_sentinel_new(struct loop *loop,
                                          const struct config_redis *cfg,
                                          struct log *log)
{
    struct redis_sentinel *s = xcalloc(1, sizeof(*s));
    s->loop = loop;
    s->log = log;
    s->n = cfg->n_sentinels > 0 ? cfg->n_sentinels : 1;
    s->addrs = xcalloc((size_t)s->n, sizeof(*s->addrs));
    for (int i = 0; i < cfg->n_sentinels; i++) {
        const struct config_addr *a = &cfg->sentinels[i];
        s->addrs[i].text = xstrdup(a->text ? a->text : "?");
        s->addrs[i].host = xstrdup(a->host ? a->host : "127.0.0.1");
        s->addrs[i].port = a->port;
    }
    if (cfg->n_sentinels == 0) { /* misuse: a sentinel that cannot answer */
        s->addrs[0].text = xstrdup("127.0.0.1:26379");
        s->addrs[0].host = xstrdup("127.0.0.1");
        s->addrs[0].port = 26379;
    }
    s->name = xstrdup(cfg->master_name ? cfg->master_name : "mymaster");
    s->scfg.username = cfg->sentinel_username
                           ? xstrdup(cfg->sentinel_username) : NULL;
    s->scfg.password = cfg->sentinel_password
                           ? xstrdup(cfg->sentinel_password) : NULL;
    s->scfg.connect_timeout_ms = cfg->connect_timeout_ms
                                     ? cfg->connect_timeout_ms : 1000;
    s->scfg.command_timeout_ms = cfg->command_timeout_ms
                                     ? cfg->command_timeout_ms : 1000;
    s->mcfg.username = cfg->username ? xstrdup(cfg->username) : NULL;
    s->mcfg.password = cfg->password ? xstrdup(cfg->password) : NULL;
    s->mcfg.database = cfg->database;
    s->mcfg.connect_timeout_ms = s->scfg.connect_timeout_ms;
    s->mcfg.command_timeout_ms = s->scfg.command_timeout_ms;
    s->cur = -1;
    pthread_mutex_init(&s->lock, NULL);
    s->step = loop_timer_new(loop, redis_sentinel_step_cb, s);
    s->refresh = loop_timer_new(loop, redis_sentinel_refresh_cb, s);
    s->wake = loop_async_new(loop, redis_sentinel_wake_cb, s);
    loop_timer_start(s->step, 0, 0);
    loop_timer_start(s->refresh, REDIS_SENTINEL_REFRESH_MS,
                     REDIS_SENTINEL_REFRESH_MS);
    return s;
}

void redis_sentinel_free(struct redis_sentinel *s)
{
    if (!s)
        return;
    redis_free(s->q);
    redis_free(s->sub);
    redis_free(s->m);
    loop_timer_free(s->step);
    loop_timer_free(s->refresh);
    loop_async_free(s->wake);
    for (int i = 0; i < s->n; i++) {
        free(s->addrs[i].text);
        free(s->addrs[i].host);
    }
    free(s->addrs);
    free(s->name);
    free(s->scfg.username);
    free(s->mcfg.username);
    for (int i = 0; i < 2; i++) {
        char *pw = i ? s->mcfg.password : s->scfg.password;
        if (pw) {
            explicit_bzero(pw, strlen(pw));
            free(pw);
        }
    }
    free(s->watch);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

bool redis_sentinel_master(struct redis_sentinel *s, char *host,
                           size_t host_size, uint16_t *port, uint64_t *gen)
{
    pthread_mutex_lock(&s->lock);
    bool known = s->info.known;
    if (known) {
        snprintf(host, host_size, "%s", s->host);
        *port = s->port;
    }
    *gen = s->info.generation;
    pthread_mutex_unlock(&s->lock);
    return known;
}

void redis_sentinel_info(struct redis_sentinel *s,
                         struct redis_sentinel_info *out)
{
    pthread_mutex_lock(&s->lock);
    *out = s->info;
    pthread_mutex_unlock(&s->lock);
}

void redis_sentinel_recheck(struct redis_sentinel *s)
{
    loop_async_send(s->wake);
}

void redis_sentinel_watch(struct redis_sentinel *s, struct loop_async *a)
{
    pthread_mutex_lock(&s->lock);
    if (s->n_watch == s->cap_watch) {
        s->cap_watch = s->cap_watch ? s->cap_watch * 2 : 8;
        s->watch = xrealloc(s->watch, s->cap_watch * sizeof(*s->watch));
    }
    s->watch[s->n_watch++] = a;
    pthread_mutex_unlock(&s->lock);
}

void redis_sentinel_unwatch(struct redis_sentinel *s, struct loop_async *a)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_watch; i++)
        if (s->watch[i] == a) {
            s->watch[i] = s->watch[--s->n_watch];
            break;
        }
    pthread_mutex_unlock(&s->lock);
}
