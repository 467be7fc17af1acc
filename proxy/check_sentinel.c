/* check_sentinel.c - see check_sentinel.h.  Every sentinel is asked at
 * once, each through a plain struct redis of its own; then the master the
 * first one named. */
#include "proxy/check_sentinel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/loop.h"
#include "base/util.h"
#include "io/redis.h"

struct check_sentinel_run;

/* One connection being asked; owned by the run. */
struct check_sentinel_conn {
    struct check_sentinel_run *run;  /* borrowed */
    struct redis *r;                 /* owned */
    int index;                       /* sentinel index, -1 = the master */
    int step;
    bool done;
};

struct check_sentinel_run {
    const struct config *cfg;        /* borrowed */
    struct check_sentinel_report *out; /* borrowed */
    struct loop *loop;               /* owned */
    struct loop_timer *timer;        /* owned: bounds each phase */
    struct check_sentinel_conn conns[CONFIG_MAX_SENTINELS + 1];
    int pending;                     /* connections not done */
};

static void check_sentinel_done(struct check_sentinel_conn *c)
{
    if (c->done)
        return;
    c->done = true;
    if (--c->run->pending == 0)
        loop_stop(c->run->loop);
}

static void check_sentinel_text(char *out, const struct redis_reply *rep)
{
    snprintf(out, CHECK_SENTINEL_TEXT, "%.*s",
             (int)(rep->len < 200 ? rep->len : 200), rep->str);
}

static void check_sentinel_on_addr(void *arg, enum redis_status st,
                                   const struct redis_reply *rep)
{
    struct check_sentinel_conn *c = arg;
    struct check_sentinel_report *o = c->run->out;
    int i = c->index;
    if (st != REDIS_STATUS_OK) {
        snprintf(o->detail[i], CHECK_SENTINEL_TEXT, "%s",
                 redis_status_name(st));
    } else if (rep->type == REDIS_TYPE_ERROR) {
        o->state[i] = CHECK_SENTINEL_ERROR;
        check_sentinel_text(o->detail[i], rep);
    } else if (rep->type == REDIS_TYPE_ARRAY && rep->n_elements == 2) {
        o->state[i] = CHECK_SENTINEL_NAMED;
        snprintf(o->detail[i], CHECK_SENTINEL_TEXT,
                 strchr(rep->elements[0].str, ':') ? "[%.*s]:%.*s"
                                                   : "%.*s:%.*s",
                 (int)(rep->elements[0].len < 200 ? rep->elements[0].len
                                                  : 200),
                 rep->elements[0].str,
                 (int)(rep->elements[1].len < 8 ? rep->elements[1].len : 8),
                 rep->elements[1].str);
    } else {
        o->state[i] = CHECK_SENTINEL_UNKNOWN;
        o->detail[i][0] = '\0';
    }
    check_sentinel_done(c);
}

static void check_sentinel_on_master(void *arg, enum redis_status st,
                                     const struct redis_reply *rep)
{
    struct check_sentinel_conn *c = arg;
    struct check_sentinel_report *o = c->run->out;
    if (st != REDIS_STATUS_OK) {
        snprintf(o->master_error, CHECK_SENTINEL_TEXT, "%s",
                 redis_status_name(st));
        check_sentinel_done(c);
        return;
    }
    o->master_reached = true;
    if (c->step == 0) {
        if (rep->type == REDIS_TYPE_ARRAY && rep->n_elements > 0)
            snprintf(o->role, sizeof(o->role), "%.*s",
                     (int)(rep->elements[0].len < 31 ? rep->elements[0].len
                                                     : 31),
                     rep->elements[0].str);
        c->step = 1;
        redis_command(c->r, check_sentinel_on_master, c,
                      "CONFIG GET maxmemory-policy");
        return;
    }
    if (rep->type == REDIS_TYPE_ARRAY && rep->n_elements == 2)
        snprintf(o->policy, sizeof(o->policy), "%.*s",
                 (int)(rep->elements[1].len < 63 ? rep->elements[1].len : 63),
                 rep->elements[1].str);
    else if (rep->type == REDIS_TYPE_ERROR)
        check_sentinel_text(o->master_error, rep);
    check_sentinel_done(c);
}

static void check_sentinel_state(void *arg, bool up)
{
    struct check_sentinel_conn *c = arg;
    if (!up || c->done)
        return;
    if (c->index >= 0)
        redis_command(c->r, check_sentinel_on_addr, c,
                      "SENTINEL get-master-addr-by-name %s",
                      c->run->cfg->redis.master_name);
    else
        redis_command(c->r, check_sentinel_on_master, c, "ROLE");
}

static void check_sentinel_fail(void *arg)
{
    struct check_sentinel_conn *c = arg;
    struct check_sentinel_report *o = c->run->out;
    char *to = c->index >= 0 ? o->detail[c->index] : o->master_error;
    if (c->done)
        return;
    redis_last_error(c->r, to, CHECK_SENTINEL_TEXT);
    check_sentinel_done(c);
}

static void check_sentinel_timeout(void *arg)
{
    loop_stop(((struct check_sentinel_run *)arg)->loop);
}

/* Starts one connection to addr with the given credentials. */
static void check_sentinel_open(struct check_sentinel_run *run, int slot,
                                int index, const struct config_redis *base,
                                const struct config_addr *addr,
                                bool sentinel)
{
    struct config_redis rc = {0};
    rc.addr = *addr;
    rc.connect_timeout_ms = base->connect_timeout_ms;
    rc.command_timeout_ms = base->command_timeout_ms;
    rc.username = sentinel ? base->sentinel_username : base->username;
    rc.password = sentinel ? base->sentinel_password : base->password;
    rc.database = sentinel ? 0 : base->database;
    struct check_sentinel_conn *c = &run->conns[slot];
    *c = (struct check_sentinel_conn){.run = run, .index = index};
    c->r = redis_new(run->loop, &rc,
                     &(struct redis_options){
                         .name = "check", .on_state = check_sentinel_state,
                         .on_fail = check_sentinel_fail, .state_arg = c,
                         .backoff_min_ms = 60000, .backoff_max_ms = 60000});
    run->pending++;
}

static void check_sentinel_phase(struct check_sentinel_run *run)
{
    const struct config_redis *rc = &run->cfg->redis;
    loop_timer_start(run->timer,
                     rc->connect_timeout_ms + 2 * rc->command_timeout_ms, 0);
    loop_run(run->loop);
    for (int i = 0; i <= CONFIG_MAX_SENTINELS; i++) {
        redis_free(run->conns[i].r);
        run->conns[i].r = NULL;
    }
    run->pending = 0;
}

/* "host:port" or "[v6]:port" into a config_addr (strings borrowed from
 * buf, which this writes into). */
static bool check_sentinel_split(char *buf, struct config_addr *a)
{
    char *colon = strrchr(buf, ':');
    if (!colon)
        return false;
    *colon = '\0';
    char *host = buf;
    if (host[0] == '[') {
        host++;
        host[strlen(host) - 1] = '\0';
    }
    a->host = host;
    a->port = (uint16_t)strtoul(colon + 1, NULL, 10);
    return a->port != 0;
}

void check_sentinel_ask(const struct config *cfg,
                        struct check_sentinel_report *out)
{
    const struct config_redis *rc = &cfg->redis;
    struct check_sentinel_run run = {.cfg = cfg, .out = out,
                                     .loop = loop_new()};
    memset(out, 0, sizeof(*out));
    out->n = rc->n_sentinels;
    run.timer = loop_timer_new(run.loop, check_sentinel_timeout, &run);
    for (int i = 0; i < rc->n_sentinels; i++) {
        snprintf(out->detail[i], CHECK_SENTINEL_TEXT, "no answer in time");
        check_sentinel_open(&run, i, i, rc, &rc->sentinels[i], true);
    }
    check_sentinel_phase(&run);
    out->agree = true;
    for (int i = 0; i < rc->n_sentinels; i++) {
        if (out->state[i] != CHECK_SENTINEL_NAMED)
            continue;
        out->named++;
        if (!out->master[0])
            snprintf(out->master, sizeof(out->master), "%s", out->detail[i]);
        else if (strcmp(out->master, out->detail[i]) != 0)
            out->agree = false;
    }
    char buf[CHECK_SENTINEL_TEXT];
    struct config_addr a = {0};
    snprintf(buf, sizeof(buf), "%s", out->master);
    if (out->master[0] && check_sentinel_split(buf, &a)) {
        a.text = out->master;
        check_sentinel_open(&run, CONFIG_MAX_SENTINELS, -1, rc, &a, false);
        check_sentinel_phase(&run);
        if (!out->master_reached && !out->master_error[0])
            snprintf(out->master_error, CHECK_SENTINEL_TEXT,
                     "no answer in time");
    }
    loop_timer_free(run.timer);
    loop_free(run.loop);
}
