/* test_redis.c - io/redis.c against a real redis-server that each
 * test starts on a free loopback port and kills by PID in its teardown
 * (even when the test fails; PR_SET_PDEATHSIG covers a crashing test):
 * tests/unit/redis_fixture.h. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "redis_fixture.h"

#include "config/config.h"
#include "consistency/ackstore.h"
#include "io/redis.h"
#include "base/log.h"
#include "base/loop.h"
#include "base/util.h"

#define PASSWORD "sekret-pw-123"
#define ALICE_PASSWORD "alice-pw-456"
#define WRONG_PASSWORD "wrong-pw-789"

/* ---- fixture --------------------------------------------------------- */

struct fx {
    struct redis_fixture rs;    /* pid, port, dir, unix socket, extra args */
    char host[16];
    char text[160];
    struct loop *loop;
    struct redis *r[4];         /* freed in teardown if the test did not */
    struct config_redis cfg;
    struct redis_options opt;
};

static int fx_setup_with(void **state, const char *const *extra, bool start)
{
    signal(SIGPIPE, SIG_IGN);
    struct fx *f = xcalloc(1, sizeof(*f));
    snprintf(f->rs.dir, sizeof(f->rs.dir), "/tmp/qg-redis-test.XXXXXX");
    if (!mkdtemp(f->rs.dir))
        return -1;
    snprintf(f->rs.sock, sizeof(f->rs.sock), "%s/redis.sock", f->rs.dir);
    f->rs.port = redis_fixture_free_port();
    f->rs.extra = extra;
    snprintf(f->host, sizeof(f->host), "127.0.0.1");
    snprintf(f->text, sizeof(f->text), "127.0.0.1:%d", f->rs.port);
    f->cfg.addr.text = f->text;
    f->cfg.addr.host = f->host;
    f->cfg.addr.port = (uint16_t)f->rs.port;
    f->cfg.connect_timeout_ms = 500;
    f->cfg.command_timeout_ms = 300;
    f->opt.backoff_min_ms = 20;
    f->opt.backoff_max_ms = 200;
    f->loop = loop_new();
    *state = f;
    if (start)
        redis_fixture_start(&f->rs);
    return 0;
}

static int fx_setup(void **state)
{
    return fx_setup_with(state, NULL, true);
}

static const char *const auth_args[] = {
    "--requirepass", PASSWORD, "--user", "alice", "on", ">" ALICE_PASSWORD,
    "~*", "&*", "+@all", NULL};

static int fx_setup_auth(void **state)
{
    return fx_setup_with(state, auth_args, true);
}

static int fx_setup_no_server(void **state)
{
    return fx_setup_with(state, NULL, false);
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    for (size_t i = 0; i < ARRAY_LEN(f->r); i++)
        redis_free(f->r[i]);
    loop_free(f->loop);
    char path[192];
    snprintf(path, sizeof(path), "%s/qg.log", f->rs.dir);
    unlink(path);
    redis_fixture_stop(&f->rs); /* kills it, removes the directory */
    free(f);
    return 0;
}

/* ---- driving the loop with bounded deadlines -------------------------- */

static void stop_cb(void *arg)
{
    loop_stop(arg);
}

static void run_ms(struct loop *l, uint64_t ms)
{
    struct loop_timer *t = loop_timer_new(l, stop_cb, l);
    loop_timer_start(t, ms, 0);
    loop_run(l);
    loop_timer_free(t);
}

/* Runs the loop until cond holds or ms pass; never waits forever. */
#define RUN_UNTIL(f, cond, ms)                                               \
    do {                                                                     \
        uint64_t dl_ = util_mono_ms() + (ms);                                \
        while (!(cond) && util_mono_ms() < dl_)                              \
            run_ms((f)->loop, 2);                                            \
    } while (0)

/* ---- callbacks ------------------------------------------------------- */

struct res {
    int calls;
    int seq;                    /* order in which callbacks ran */
    int *counter;               /* shared sequence counter, optional */
    uint64_t at;                /* util_mono_ms() of the (last) call */
    enum redis_status st;
    enum redis_type type;
    long long integer;
    char str[256];
    size_t len;
    size_t n;
    struct {
        enum redis_type type;
        long long integer;
        char str[64];
        size_t len;
        size_t n;
    } el[8];
    struct redis **free_me;     /* redis_free(*free_me) from the callback */
};

static void on_reply(void *arg, enum redis_status st,
                     const struct redis_reply *rep)
{
    struct res *x = arg;
    x->calls++;
    x->at = util_mono_ms();
    x->st = st;
    if (x->counter)
        x->seq = ++*x->counter;
    if (st == REDIS_STATUS_OK) {
        assert_non_null(rep);
        x->type = rep->type;
        x->integer = rep->integer;
        x->len = rep->len;
        if (rep->str)
            memcpy(x->str, rep->str, rep->len < 255 ? rep->len : 255);
        x->n = rep->n_elements;
        for (size_t i = 0; i < rep->n_elements && i < 8; i++) {
            const struct redis_reply *e = &rep->elements[i];
            x->el[i].type = e->type;
            x->el[i].integer = e->integer;
            x->el[i].len = e->len;
            x->el[i].n = e->n_elements;
            if (e->str)
                memcpy(x->el[i].str, e->str, e->len < 63 ? e->len : 63);
        }
    } else {
        assert_null(rep);
    }
    if (x->free_me) {
        redis_free(*x->free_me);
        *x->free_me = NULL;
    }
}

struct state {
    int ups, downs;
    bool up;
    struct redis **free_me;     /* redis_free(*free_me) when going down */
};

static void on_state(void *arg, bool up)
{
    struct state *s = arg;
    if (up)
        s->ups++;
    else
        s->downs++;
    s->up = up;
    if (!up && s->free_me) {
        redis_free(*s->free_me);
        *s->free_me = NULL;
    }
}

struct msgs {
    int n;
    char channel[64];
    char last[64];
    size_t last_len;
    struct redis **free_me;     /* redis_free(*free_me) on a message */
};

static void on_message(void *arg, const char *channel, size_t channel_len,
                       const char *msg, size_t len)
{
    struct msgs *m = arg;
    m->n++;
    snprintf(m->channel, sizeof(m->channel), "%.*s", (int)channel_len,
             channel);
    memset(m->last, 0, sizeof(m->last));
    memcpy(m->last, msg, len < 63 ? len : 63);
    m->last_len = len;
    if (m->free_me) {
        redis_free(*m->free_me);
        *m->free_me = NULL;
    }
}

static struct redis *new_redis(struct fx *f, int slot, struct state *st,
                               bool subscriber)
{
    struct redis_options o = f->opt;
    o.name = subscriber ? "test-sub" : "test";
    o.subscriber = subscriber;
    o.on_state = st ? on_state : NULL;
    o.state_arg = st;
    f->r[slot] = redis_new(f->loop, &f->cfg, &o);
    return f->r[slot];
}

/* Issues one command and waits for its single callback. */
static void sync_cmd(struct fx *f, struct redis *r, struct res *x,
                     const char *fmt, const char *a1, const char *a2)
{
    memset(x, 0, sizeof(*x));
    redis_command(r, on_reply, x, fmt, a1, a2);
    assert_int_equal(x->calls, 0); /* never from inside redis_command */
    RUN_UNTIL(f, x->calls > 0, 2000);
    assert_int_equal(x->calls, 1);
}

static struct redis *connect_up(struct fx *f, int slot, struct state *st)
{
    struct redis *r = new_redis(f, slot, st, false);
    assert_false(redis_up(r));
    RUN_UNTIL(f, redis_up(r), 3000);
    assert_true(redis_up(r));
    return r;
}

/* ---- tests ----------------------------------------------------------- */

static void test_reply_types(void **state)
{
    struct fx *f = *state;
    struct state st = {0};
    struct redis *r = connect_up(f, 0, &st);
    assert_int_equal(st.ups, 1);
    assert_int_equal(st.downs, 0);

    /* all pipelined at once: replies come back in order */
    int seq = 0;
    struct res x[12];
    memset(x, 0, sizeof(x));
    for (size_t i = 0; i < ARRAY_LEN(x); i++)
        x[i].counter = &seq;
    redis_command(r, on_reply, &x[0], "SET %s %s", "k", "v");
    redis_command(r, on_reply, &x[1], "GET %s", "k");
    redis_command(r, on_reply, &x[2], "GET %s", "missing");
    redis_command(r, on_reply, &x[3], "INCR %s", "counter");
    redis_command(r, on_reply, &x[4], "INCR %s", "k"); /* error reply */
    redis_command(r, on_reply, &x[5], "RPUSH %s a b c", "list");
    redis_command(r, on_reply, &x[6], "LRANGE %s 0 -1", "list");
    redis_command(r, on_reply, &x[7], "MGET %s %s", "k", "missing");
    redis_command(r, on_reply, &x[8], "EVAL %s 0",
                  "return {1, {'a', 'b'}, 'c'}");
    redis_command(r, on_reply, &x[9], "LRANGE %s 0 -1", "nolist");
    redis_command(r, on_reply, &x[10], "PING");
    redis_command(r, on_reply, &x[11], "NOSUCHCOMMAND");
    assert_int_equal(redis_pending(r), 12);
    RUN_UNTIL(f, x[11].calls > 0, 2000);
    for (size_t i = 0; i < ARRAY_LEN(x); i++) {
        assert_int_equal(x[i].calls, 1);
        assert_int_equal(x[i].st, REDIS_STATUS_OK);
        assert_int_equal(x[i].seq, (int)i + 1);
    }
    assert_int_equal(redis_pending(r), 0);

    assert_int_equal(x[0].type, REDIS_TYPE_STATUS);
    assert_string_equal(x[0].str, "OK");
    assert_int_equal(x[1].type, REDIS_TYPE_STRING);
    assert_string_equal(x[1].str, "v");
    assert_int_equal(x[1].len, 1);
    assert_int_equal(x[2].type, REDIS_TYPE_NIL);
    assert_int_equal(x[3].type, REDIS_TYPE_INTEGER);
    assert_int_equal(x[3].integer, 1);
    assert_int_equal(x[4].type, REDIS_TYPE_ERROR);
    assert_non_null(strstr(x[4].str, "not an integer"));
    assert_int_equal(x[5].type, REDIS_TYPE_INTEGER);
    assert_int_equal(x[5].integer, 3);
    assert_int_equal(x[6].type, REDIS_TYPE_ARRAY);
    assert_int_equal(x[6].n, 3);
    assert_int_equal(x[6].el[0].type, REDIS_TYPE_STRING);
    assert_string_equal(x[6].el[0].str, "a");
    assert_string_equal(x[6].el[2].str, "c");
    assert_int_equal(x[7].n, 2);
    assert_string_equal(x[7].el[0].str, "v");
    assert_int_equal(x[7].el[1].type, REDIS_TYPE_NIL);
    assert_int_equal(x[8].type, REDIS_TYPE_ARRAY);
    assert_int_equal(x[8].n, 3);
    assert_int_equal(x[8].el[0].type, REDIS_TYPE_INTEGER);
    assert_int_equal(x[8].el[0].integer, 1);
    assert_int_equal(x[8].el[1].type, REDIS_TYPE_ARRAY);
    assert_int_equal(x[8].el[1].n, 2);
    assert_int_equal(x[8].el[2].type, REDIS_TYPE_STRING);
    assert_string_equal(x[8].el[2].str, "c");
    assert_int_equal(x[9].type, REDIS_TYPE_ARRAY);
    assert_int_equal(x[9].n, 0);
    assert_int_equal(x[10].type, REDIS_TYPE_STATUS);
    assert_string_equal(x[10].str, "PONG");
    assert_int_equal(x[11].type, REDIS_TYPE_ERROR);

    /* binary-safe argv and %b: NUL and 0xff bytes survive */
    static const char bin[] = {'a', '\0', 'b', (char)0xff};
    const char *argv[] = {"SET", "bin", bin};
    const size_t lens[] = {3, 3, sizeof(bin)};
    struct res b = {0};
    redis_command_argv(r, on_reply, &b, 3, argv, lens);
    RUN_UNTIL(f, b.calls > 0, 2000);
    assert_int_equal(b.type, REDIS_TYPE_STATUS);
    memset(&b, 0, sizeof(b));
    redis_command(r, on_reply, &b, "GET %b", "bin", (size_t)3);
    RUN_UNTIL(f, b.calls > 0, 2000);
    assert_int_equal(b.type, REDIS_TYPE_STRING);
    assert_int_equal(b.len, sizeof(bin));
    assert_memory_equal(b.str, bin, sizeof(bin));

    /* counters per command and result */
    struct redis_stats s;
    redis_stats(r, &s);
    assert_true(s.up);
    assert_int_equal(s.connects, 1);
    assert_int_equal(s.ops[REDIS_OP_GET][REDIS_RESULT_OK], 3);
    assert_int_equal(s.ops[REDIS_OP_SET][REDIS_RESULT_OK], 2);
    assert_int_equal(s.ops[REDIS_OP_INCR][REDIS_RESULT_OK], 1);
    assert_int_equal(s.ops[REDIS_OP_INCR][REDIS_RESULT_ERROR], 1);
    assert_int_equal(s.ops[REDIS_OP_EVAL][REDIS_RESULT_OK], 1);
    /* RPUSH, LRANGE x2, NOSUCHCOMMAND(error): "other" */
    assert_int_equal(s.ops[REDIS_OP_OTHER][REDIS_RESULT_OK], 3);
    assert_int_equal(s.ops[REDIS_OP_OTHER][REDIS_RESULT_ERROR], 1);
    assert_int_equal(s.ops[REDIS_OP_PING][REDIS_RESULT_OK], 2); /* + hs */
    assert_string_equal(redis_op_name(REDIS_OP_HGETALL), "hgetall");
    assert_string_equal(redis_result_name(REDIS_RESULT_UNAVAILABLE),
                        "unavailable");
}

static void test_auth_password(void **state)
{
    struct fx *f = *state;
    char pw[] = PASSWORD;
    f->cfg.password = pw;
    struct redis *r = connect_up(f, 0, NULL);
    struct res x;
    sync_cmd(f, r, &x, "ACL WHOAMI", NULL, NULL);
    assert_int_equal(x.st, REDIS_STATUS_OK);
    assert_string_equal(x.str, "default");
    struct redis_stats s;
    redis_stats(r, &s);
    assert_int_equal(s.ops[REDIS_OP_AUTH][REDIS_RESULT_OK], 1);
}

static void test_auth_acl_user(void **state)
{
    struct fx *f = *state;
    char user[] = "alice", pw[] = ALICE_PASSWORD;
    f->cfg.username = user;
    f->cfg.password = pw;
    struct redis *r = connect_up(f, 0, NULL);
    struct res x;
    sync_cmd(f, r, &x, "ACL WHOAMI", NULL, NULL);
    assert_int_equal(x.st, REDIS_STATUS_OK);
    assert_string_equal(x.str, "alice");
}

static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "r");
    if (!fp)
        return false;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static void test_auth_wrong_password(void **state)
{
    struct fx *f = *state;
    char logpath[192], off[] = "off";
    snprintf(logpath, sizeof(logpath), "%s/qg.log", f->rs.dir);
    struct log_sinks lc = {.level = LOG_LEVEL_DEBUG, .error_log = logpath,
                            .access_log = off};
    char *err = NULL;
    struct log *lg = log_new(&lc, &err);
    assert_non_null(lg);
    f->opt.log = lg;

    char user[] = "alice", pw[] = WRONG_PASSWORD;
    f->cfg.username = user;
    f->cfg.password = pw;
    struct state st = {0};
    struct redis *r = new_redis(f, 0, &st, false);
    struct redis_stats s;
    RUN_UNTIL(f, (redis_stats(r, &s), s.connect_failures >= 3), 3000);
    assert_true(s.connect_failures >= 3); /* keeps retrying, no crash */
    assert_false(redis_up(r));
    assert_int_equal(st.ups, 0);
    assert_true(s.ops[REDIS_OP_AUTH][REDIS_RESULT_ERROR] >= 1);

    char e[256];
    redis_last_error(r, e, sizeof(e));
    assert_non_null(strstr(e, "AUTH failed"));
    assert_non_null(strstr(e, "WRONGPASS"));
    assert_null(strstr(e, WRONG_PASSWORD));

    struct res x = {0};
    redis_command(r, on_reply, &x, "PING");
    RUN_UNTIL(f, x.calls > 0, 1000);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.st, REDIS_STATUS_DOWN);

    redis_free(r);
    f->r[0] = NULL;
    log_free(lg);
    assert_true(file_contains(logpath, "AUTH failed")); /* it did log */
    assert_false(file_contains(logpath, WRONG_PASSWORD));
}

static void test_auth_missing(void **state)
{
    struct fx *f = *state; /* server requires a password, none configured */
    struct redis *r = new_redis(f, 0, NULL, false);
    struct redis_stats s;
    RUN_UNTIL(f, (redis_stats(r, &s), s.connect_failures >= 1), 3000);
    assert_true(s.connect_failures >= 1);
    assert_false(redis_up(r));
    char e[256];
    redis_last_error(r, e, sizeof(e));
    assert_non_null(strstr(e, "NOAUTH"));
}

static void test_select(void **state)
{
    struct fx *f = *state;
    f->cfg.database = 5;
    struct redis *r5 = connect_up(f, 0, NULL);
    f->cfg.database = 0;
    struct redis *r0 = connect_up(f, 1, NULL);
    struct res x;
    sync_cmd(f, r5, &x, "SET %s %s", "k", "in-db5");
    sync_cmd(f, r0, &x, "GET %s", "k", NULL);
    assert_int_equal(x.type, REDIS_TYPE_NIL);
    sync_cmd(f, r0, &x, "SET %s %s", "k", "in-db0");
    sync_cmd(f, r5, &x, "GET %s", "k", NULL);
    assert_string_equal(x.str, "in-db5");
    sync_cmd(f, r5, &x, "CLIENT INFO", NULL, NULL);
    assert_non_null(strstr(x.str, " db=5 "));
}

static void test_pubsub(void **state)
{
    struct fx *f = *state;
    struct redis *r = connect_up(f, 0, NULL);
    struct state sst = {0};
    struct redis *sub = new_redis(f, 1, &sst, true);
    struct msgs m1 = {0}, m2 = {0}, m3 = {0};
    redis_subscribe(sub, "qg:test", on_message, &m1);
    redis_subscribe(sub, "qg:test", on_message, &m2); /* same channel */
    RUN_UNTIL(f, sst.ups == 1, 3000);
    assert_int_equal(sst.ups, 1);
    assert_true(redis_up(sub));

    struct res x = {0};
    redis_command(r, on_reply, &x, "PUBLISH %s %b", "qg:test", "he\0llo",
                  (size_t)6);
    RUN_UNTIL(f, m1.n > 0 && m2.n > 0 && x.calls > 0, 2000);
    assert_int_equal(x.integer, 1); /* one subscribed connection */
    assert_int_equal(m1.n, 1);
    assert_int_equal(m2.n, 1);
    assert_string_equal(m1.channel, "qg:test");
    assert_int_equal(m1.last_len, 6);
    assert_memory_equal(m1.last, "he\0llo", 6);

    /* a subscription added while up: confirmed, then on_state(true) again */
    redis_subscribe(sub, "qg:late", on_message, &m3);
    RUN_UNTIL(f, sst.ups == 2, 2000);
    assert_int_equal(sst.ups, 2);
    assert_int_equal(sst.downs, 0);
    memset(&x, 0, sizeof(x));
    redis_command(r, on_reply, &x, "PUBLISH %s %s", "qg:late", "late-msg");
    RUN_UNTIL(f, m3.n > 0, 2000);
    assert_int_equal(m3.n, 1);
    assert_string_equal(m3.last, "late-msg");
    assert_int_equal(m1.n, 1);

    struct redis_stats s;
    redis_stats(sub, &s);
    assert_int_equal(s.ops[REDIS_OP_SUBSCRIBE][REDIS_RESULT_OK], 2);
}

static void test_command_timeout(void **state)
{
    struct fx *f = *state;
    struct state st = {0};
    struct redis *r = connect_up(f, 0, &st);
    assert_int_equal(kill(f->rs.pid, SIGSTOP), 0);

    struct res a = {0}, b = {0};
    uint64_t t0 = util_mono_ms();
    redis_command(r, on_reply, &a, "GET %s", "k");
    redis_command(r, on_reply, &b, "GET %s", "k2");
    RUN_UNTIL(f, a.calls > 0 && b.calls > 0, 3000);
    assert_int_equal(a.calls, 1);
    assert_int_equal(a.st, REDIS_STATUS_TIMEOUT);
    assert_true(a.at - t0 >= 250);
    assert_true(a.at - t0 < 1500);
    /* the connection was dropped: the other one is lost, not left hanging */
    assert_int_equal(b.calls, 1);
    assert_int_equal(b.st, REDIS_STATUS_LOST);
    assert_false(redis_up(r));
    assert_int_equal(st.downs, 1);
    char e[256];
    redis_last_error(r, e, sizeof(e));
    assert_non_null(strstr(e, "timed out"));

    /* while the server is stuck, reconnect attempts time out too */
    struct res c = {0};
    redis_command(r, on_reply, &c, "PING");
    RUN_UNTIL(f, c.calls > 0, 500);
    assert_int_equal(c.st, REDIS_STATUS_DOWN);

    assert_int_equal(kill(f->rs.pid, SIGCONT), 0);
    RUN_UNTIL(f, redis_up(r), 4000);
    assert_true(redis_up(r));
    assert_int_equal(st.ups, 2);
    struct res d;
    sync_cmd(f, r, &d, "PING", NULL, NULL);
    assert_int_equal(d.st, REDIS_STATUS_OK);
    run_ms(f->loop, 100);
    assert_int_equal(a.calls, 1); /* exactly once, the late reply dropped */
    assert_int_equal(b.calls, 1);

    struct redis_stats s;
    redis_stats(r, &s);
    assert_int_equal(s.ops[REDIS_OP_GET][REDIS_RESULT_TIMEOUT], 1);
    assert_int_equal(s.ops[REDIS_OP_GET][REDIS_RESULT_UNAVAILABLE], 1);
    assert_int_equal(s.disconnects, 1);
    assert_int_equal(s.connects, 2);
}

static void test_reconnect(void **state)
{
    struct fx *f = *state;
    struct state st = {0}, sst = {0};
    struct redis *r = connect_up(f, 0, &st);
    struct redis *sub = new_redis(f, 1, &sst, true);
    struct msgs m = {0};
    redis_subscribe(sub, "qg:acks", on_message, &m);
    RUN_UNTIL(f, sst.ups == 1, 3000);
    assert_int_equal(sst.ups, 1);

    redis_fixture_kill(&f->rs);
    RUN_UNTIL(f, st.downs == 1 && sst.downs == 1, 2000);
    assert_int_equal(st.downs, 1);
    assert_int_equal(sst.downs, 1);
    assert_false(redis_up(r));
    assert_false(redis_up(sub));

    /* fail fast while down, never synchronously */
    struct res x = {0};
    uint64_t t0 = util_mono_ms();
    redis_command(r, on_reply, &x, "GET %s", "k");
    assert_int_equal(x.calls, 0);
    RUN_UNTIL(f, x.calls > 0, 1000);
    assert_int_equal(x.calls, 1);
    assert_int_equal(x.st, REDIS_STATUS_DOWN);
    assert_true(x.at - t0 < 100);

    run_ms(f->loop, 100); /* a few failed attempts with backoff */
    redis_fixture_start(&f->rs);
    RUN_UNTIL(f, redis_up(r) && sst.ups == 2, 3000);
    assert_true(redis_up(r));
    assert_int_equal(st.ups, 2);
    assert_int_equal(sst.ups, 2); /* re-subscribed and told the owner */
    assert_true(redis_up(sub));

    struct res p;
    sync_cmd(f, r, &p, "PUBLISH %s %s", "qg:acks", "after-restart");
    assert_int_equal(p.integer, 1);
    RUN_UNTIL(f, m.n > 0, 2000);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.last, "after-restart");

    struct redis_stats s;
    redis_stats(r, &s);
    assert_int_equal(s.disconnects, 1);
    assert_int_equal(s.connects, 2);
    assert_true(s.connect_failures >= 1);
}

static void test_no_server_fails_fast(void **state)
{
    struct fx *f = *state;
    struct state st = {0};
    struct redis *r = new_redis(f, 0, &st, false);
    struct redis_stats s;
    RUN_UNTIL(f, (redis_stats(r, &s), s.connect_failures >= 2), 2000);
    assert_true(s.connect_failures >= 2);
    char e[256];
    redis_last_error(r, e, sizeof(e));
    assert_non_null(strstr(e, "Connection refused"));
    assert_non_null(strstr(e, f->text));

    struct res x[50];
    memset(x, 0, sizeof(x));
    for (size_t i = 0; i < ARRAY_LEN(x); i++)
        redis_command(r, on_reply, &x[i], "GET k%d", (int)i);
    assert_int_equal(redis_pending(r), ARRAY_LEN(x));
    RUN_UNTIL(f, x[49].calls > 0, 1000);
    for (size_t i = 0; i < ARRAY_LEN(x); i++) {
        assert_int_equal(x[i].calls, 1);
        assert_int_equal(x[i].st, REDIS_STATUS_DOWN);
    }
    assert_int_equal(redis_pending(r), 0);
    assert_int_equal(st.ups + st.downs, 0);
    redis_stats(r, &s);
    assert_int_equal(s.ops[REDIS_OP_GET][REDIS_RESULT_UNAVAILABLE], 50);
}

static void test_connect_timeout(void **state)
{
    struct fx *f = *state;
    /* a listener that never accepts nor answers: connect(2) succeeds, the
     * handshake never completes */
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)f->rs.port),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 16), 0);
    f->cfg.connect_timeout_ms = 200;
    f->cfg.command_timeout_ms = 5000; /* only connect_timeout may fire */
    struct redis *r = new_redis(f, 0, NULL, false);
    struct redis_stats s;
    uint64_t t0 = util_mono_ms();
    RUN_UNTIL(f, (redis_stats(r, &s), s.connect_failures >= 1), 2000);
    uint64_t took = util_mono_ms() - t0;
    close(lfd);
    assert_int_equal(s.connect_failures, 1);
    assert_true(took >= 150 && took < 1000);
    assert_false(redis_up(r));
    char e[256];
    redis_last_error(r, e, sizeof(e));
    assert_non_null(strstr(e, "timed out"));
}

static void test_many_concurrent(void **state)
{
    struct fx *f = *state;
    f->cfg.command_timeout_ms = 5000; /* 20000 pipelined, under ASan too */
    struct redis *r = connect_up(f, 0, NULL);
    enum { N = 20000 };
    struct res *x = xcalloc(N, sizeof(*x));
    for (int i = 0; i < N; i++)
        redis_command(r, on_reply, &x[i], "INCR %s", "many");
    assert_int_equal(redis_pending(r), N);
    RUN_UNTIL(f, x[N - 1].calls > 0, 5000);
    int bad = 0;
    for (int i = 0; i < N; i++)
        if (x[i].calls != 1 || x[i].st != REDIS_STATUS_OK ||
            x[i].integer != i + 1)
            bad++;
    free(x);
    assert_int_equal(bad, 0);
    assert_int_equal(redis_pending(r), 0);
}

static void test_free_with_pending(void **state)
{
    struct fx *f = *state;
    struct redis *r = connect_up(f, 0, NULL);
    struct res x[20];
    memset(x, 0, sizeof(x));
    for (size_t i = 0; i < ARRAY_LEN(x); i++)
        redis_command(r, on_reply, &x[i], "INCR %s", "freed");
    redis_free(r);
    f->r[0] = NULL;
    run_ms(f->loop, 100);
    for (size_t i = 0; i < ARRAY_LEN(x); i++)
        assert_int_equal(x[i].calls, 0);

    /* freed from inside a callback: the others are not called */
    struct redis *r2 = connect_up(f, 1, NULL);
    struct res y[5];
    memset(y, 0, sizeof(y));
    y[0].free_me = &f->r[1];
    for (size_t i = 0; i < ARRAY_LEN(y); i++)
        redis_command(r2, on_reply, &y[i], "PING");
    RUN_UNTIL(f, y[0].calls > 0, 2000);
    assert_null(f->r[1]);
    run_ms(f->loop, 100);
    assert_int_equal(y[0].calls, 1);
    for (size_t i = 1; i < ARRAY_LEN(y); i++)
        assert_int_equal(y[i].calls, 0);

    /* freed while commands wait to fail */
    struct redis *r3 = new_redis(f, 2, NULL, false);
    struct res z = {0};
    redis_command(r3, on_reply, &z, "PING");
    redis_free(r3);
    f->r[2] = NULL;
    run_ms(f->loop, 50);
    assert_int_equal(z.calls, 0);
}

static void test_cancel(void **state)
{
    struct fx *f = *state;
    struct redis *r = connect_up(f, 0, NULL);
    struct res a = {0}, b = {0};
    struct redis_cmd *c = redis_command(r, on_reply, &a, "GET %s", "k");
    redis_command(r, on_reply, &b, "PING");
    redis_cancel(r, c);
    RUN_UNTIL(f, b.calls > 0, 2000);
    run_ms(f->loop, 20);
    assert_int_equal(b.calls, 1);
    assert_int_equal(a.calls, 0);
    struct redis_stats s;
    redis_stats(r, &s);
    assert_int_equal(s.ops[REDIS_OP_GET][REDIS_RESULT_OK], 1); /* counted */

    /* cancelled while waiting to fail */
    redis_fixture_kill(&f->rs);
    RUN_UNTIL(f, !redis_up(r), 2000);
    struct res d = {0}, e = {0};
    c = redis_command(r, on_reply, &d, "GET %s", "k");
    redis_command(r, on_reply, &e, "GET %s", "k");
    redis_cancel(r, c);
    RUN_UNTIL(f, e.calls > 0, 1000);
    assert_int_equal(e.calls, 1);
    assert_int_equal(d.calls, 0);
}

static void test_unix_socket(void **state)
{
    struct fx *f = *state;
    f->cfg.addr.unix_path = f->rs.sock;
    f->cfg.addr.host = NULL;
    f->cfg.addr.port = 0;
    struct redis *r = connect_up(f, 0, NULL);
    struct res x;
    sync_cmd(f, r, &x, "CLIENT INFO", NULL, NULL);
    assert_int_equal(x.st, REDIS_STATUS_OK);
    assert_non_null(strstr(x.str, f->rs.sock)); /* addr=<socket path> */
    struct res p;
    sync_cmd(f, r, &p, "PING", NULL, NULL);
    assert_string_equal(p.str, "PONG");
}

struct chain {
    struct redis *r;
    int steps;
    enum redis_status last;
    long long value;
};

static void on_chain(void *arg, enum redis_status st,
                     const struct redis_reply *rep)
{
    struct chain *c = arg;
    c->last = st;
    if (st != REDIS_STATUS_OK)
        return;
    c->value = rep->integer;
    if (++c->steps < 5)
        redis_command(c->r, on_chain, c, "INCR %s", "chain");
}

static void test_reentrancy(void **state)
{
    struct fx *f = *state;
    struct state st = {.free_me = &f->r[0]};
    struct redis *r = connect_up(f, 0, &st);

    /* commands issued from inside callbacks */
    struct chain c = {.r = r};
    redis_command(r, on_chain, &c, "INCR %s", "chain");
    RUN_UNTIL(f, c.steps == 5, 2000);
    assert_int_equal(c.steps, 5);
    assert_int_equal(c.value, 5);

    /* a subscriber freed by its own message callback: the second message,
     * already read in the same batch, is not delivered */
    struct state sst = {0};
    struct redis *sub = new_redis(f, 1, &sst, true);
    struct msgs m = {.free_me = &f->r[1]};
    redis_subscribe(sub, "qg:free", on_message, &m);
    RUN_UNTIL(f, sst.ups == 1, 3000);
    assert_int_equal(sst.ups, 1);
    struct res p = {0};
    redis_command(r, on_reply, &p, "EVAL %s 0",
                  "redis.call('PUBLISH', 'qg:free', 'one'); "
                  "return redis.call('PUBLISH', 'qg:free', 'two')");
    RUN_UNTIL(f, f->r[1] == NULL && p.calls > 0, 2000);
    assert_null(f->r[1]);
    run_ms(f->loop, 50);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.last, "one");

    /* freed from on_state(false), which runs while hiredis tears the
     * context down */
    redis_fixture_kill(&f->rs);
    RUN_UNTIL(f, f->r[0] == NULL, 2000);
    assert_null(f->r[0]);
    assert_int_equal(st.downs, 1);
    run_ms(f->loop, 50);
}

static void expect_abort(struct fx *f, bool subscriber, const char *fmt)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        /* the child must die of SIGABRT; stay quiet about it */
        int null = open("/dev/null", O_WRONLY);
        dup2(null, STDERR_FILENO);
        struct loop *l = loop_new();
        struct redis_options o = {.subscriber = subscriber};
        struct redis *r = redis_new(l, &f->cfg, &o);
        if (!fmt)
            redis_subscribe(r, "x", on_message, NULL);
        else
            redis_command(r, on_reply, NULL, fmt);
        _exit(0);
    }
    int st = 0;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFSIGNALED(st));
    assert_int_equal(WTERMSIG(st), SIGABRT);
}

static void test_misuse_aborts(void **state)
{
    struct fx *f = *state;
    expect_abort(f, false, "SUBSCRIBE %s");
    expect_abort(f, false, "select 1");
    expect_abort(f, true, "GET x");
    expect_abort(f, false, NULL); /* subscribe on a command connection */
}

/* A gate outcome written where the record is gone (its hold failed)
 * makes a key with a TTL, not an immortal one; an existing TTL is kept
 * (issue 17). */
static void test_outcome_record_has_a_ttl(void **state)
{
    struct fx *f = *state;
    struct config *cfg = xcalloc(1, sizeof(*cfg));
    cfg->redis.key_prefix = "qg:";
    cfg->gate.timeout_ms = 5000;
    cfg->gate.outcome_ttl_ms = 60000;
    f->r[0] = redis_new(f->loop, &f->cfg, &f->opt);
    RUN_UNTIL(f, redis_up(f->r[0]), 3000);
    assert_true(redis_up(f->r[0]));
    struct res a = {0}, b = {0}, c = {0};
    ackstore_record_outcome(f->r[0], cfg, "cid1", "timeout", "acked=c1",
                            on_reply, &a);
    RUN_UNTIL(f, a.calls, 3000);
    assert_int_equal(a.type, REDIS_TYPE_INTEGER);
    redis_command(f->r[0], on_reply, &b, "PTTL qg:gate:cid1");
    RUN_UNTIL(f, b.calls, 3000);
    assert_true(b.integer > 60000 && b.integer <= 65000);
    redis_command(f->r[0], on_reply, &c, "PEXPIRE qg:gate:cid1 1000000");
    RUN_UNTIL(f, c.calls, 3000);
    memset(&a, 0, sizeof(a));
    memset(&b, 0, sizeof(b));
    ackstore_record_outcome(f->r[0], cfg, "cid1", "released", "acked=c1",
                            on_reply, &a);
    RUN_UNTIL(f, a.calls, 3000);
    redis_command(f->r[0], on_reply, &b, "PTTL qg:gate:cid1");
    RUN_UNTIL(f, b.calls, 3000);
    assert_true(b.integer > 900000);
    free(cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reply_types, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth_password, fx_setup_auth,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth_acl_user, fx_setup_auth,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth_wrong_password,
                                        fx_setup_auth, fx_teardown),
        cmocka_unit_test_setup_teardown(test_auth_missing, fx_setup_auth,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_select, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_pubsub, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_command_timeout, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_reconnect, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_no_server_fails_fast,
                                        fx_setup_no_server, fx_teardown),
        cmocka_unit_test_setup_teardown(test_connect_timeout,
                                        fx_setup_no_server, fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_outcome_record_has_a_ttl,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unix_socket, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_reentrancy, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_misuse_aborts,
                                        fx_setup_no_server, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
