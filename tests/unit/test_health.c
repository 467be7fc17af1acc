/* test_health.c - routing/health.c probing real HTTP servers: three
 * controllers on loopback ports (a server thread answering each with the
 * status the test sets), a real loop, a real upstream client.
 * Covered: the first round settles who leads; rise/fall counted over real
 * probes (a controller that fails goes down only after `fall` failures and
 * comes back after `rise` successes); the leader moving; a worker's passive
 * report (health_report) answered by a probe at once, well before the next
 * interval; the 404 fallback to list-members with a management session
 * (the session sent, leader and readOnly read from the controller's own
 * row) and, without a credential, on_unwatchable naming both fixes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config_fixture.h"

#include "base/log.h"
#include "base/loop.h"
#include "config/config.h"
#include "io/upstream.h"
#include "routing/cluster.h"
#include "routing/health.h"

#define N 3
#define TOKEN "mgmt-session-1"

/* The fake controllers: one listening socket each, answered by a thread. */
struct srv {
    int lfd[N];
    uint16_t port[N];
    atomic_int status[N];         /* for the health path */
    atomic_int members_leader;    /* list-members: index that leads */
    atomic_int members_ro;        /* ... and readOnly */
    atomic_int health_hits[N];
    atomic_int members_hits[N];
    atomic_int bad_session[N];    /* list-members without our session */
    int stop[2];                  /* pipe: stop the thread */
    pthread_t thread;
};

static void srv_answer(struct srv *s, int i, int fd)
{
    char req[4096];
    size_t len = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (len + 1 < sizeof(req) && poll(&p, 1, 2000) == 1) {
        ssize_t n = read(fd, req + len, sizeof(req) - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        req[len] = '\0';
        if (strstr(req, "\r\n\r\n"))
            break;
    }
    req[len] = '\0';
    char body[512] = "";
    int status;
    if (strncmp(req, "GET /fabric/v1/cluster/list-members ", 36) == 0) {
        atomic_fetch_add(&s->members_hits[i], 1);
        if (!strstr(req, "zt-session: " TOKEN "\r\n")) {
            atomic_fetch_add(&s->bad_session[i], 1);
            status = 401;
        } else {
            status = 200;
            int leader = atomic_load(&s->members_leader);
            int ro = atomic_load(&s->members_ro);
            snprintf(body, sizeof(body),
                     "{\"data\":[{\"id\":\"ctrl1\",\"leader\":%s,"
                     "\"readOnly\":%s,\"version\":\"v1.5.4\"},"
                     "{\"id\":\"ctrl2\",\"leader\":%s,\"readOnly\":%s},"
                     "{\"id\":\"ctrl3\",\"leader\":%s,\"readOnly\":%s}],"
                     "\"meta\":{}}",
                     leader == 0 ? "true" : "false", ro ? "true" : "false",
                     leader == 1 ? "true" : "false", ro ? "true" : "false",
                     leader == 2 ? "true" : "false", ro ? "true" : "false");
        }
    } else {
        atomic_fetch_add(&s->health_hits[i], 1);
        status = atomic_load(&s->status[i]);
        if (status == 200)
            snprintf(body, sizeof(body), "{\"data\":{\"raft\":{}}}");
    }
    char out[1024];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d X\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, strlen(body), body);
    if (write(fd, out, (size_t)n) < 0) {
        /* the prober gave up: nothing to do */
    }
}

static void *srv_main(void *arg)
{
    struct srv *s = arg;
    struct pollfd p[N + 1];
    for (int i = 0; i < N; i++)
        p[i] = (struct pollfd){.fd = s->lfd[i], .events = POLLIN};
    p[N] = (struct pollfd){.fd = s->stop[0], .events = POLLIN};
    for (;;) {
        if (poll(p, N + 1, 1000) < 0)
            break;
        if (p[N].revents)
            break;
        for (int i = 0; i < N; i++) {
            if (!(p[i].revents & POLLIN))
                continue;
            int fd = accept(s->lfd[i], NULL, NULL);
            if (fd < 0)
                continue;
            srv_answer(s, i, fd);
            close(fd);
        }
    }
    return NULL;
}

static void srv_start(struct srv *s)
{
    for (int i = 0; i < N; i++) {
        struct sockaddr_in sa = {.sin_family = AF_INET,
                                 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof(sa);
        s->lfd[i] = socket(AF_INET, SOCK_STREAM, 0);
        assert_int_equal(bind(s->lfd[i], (struct sockaddr *)&sa, len), 0);
        assert_int_equal(listen(s->lfd[i], 16), 0);
        assert_int_equal(getsockname(s->lfd[i], (struct sockaddr *)&sa, &len),
                         0);
        s->port[i] = ntohs(sa.sin_port);
        atomic_store(&s->status[i], 429);
    }
    atomic_store(&s->members_leader, -1);
    assert_int_equal(pipe(s->stop), 0);
    assert_int_equal(pthread_create(&s->thread, NULL, srv_main, s), 0);
}

static void srv_stop(struct srv *s)
{
    if (write(s->stop[1], "x", 1) != 1)
        fail_msg("cannot stop the server thread");
    pthread_join(s->thread, NULL);
    for (int i = 0; i < N; i++)
        close(s->lfd[i]);
    close(s->stop[0]);
    close(s->stop[1]);
}

struct fx {
    struct srv srv;
    char *dir;
    struct config *cfg;
    struct log *log;
    struct loop *loop;
    struct loop_timer *tick;
    struct upstream *up;
    struct cluster *c;
    struct health *h;
    bool credential;
    int n_changes;
    int probes[N];
    int unwatchable[N];
    char why[1024];
    int tokens_refused;
    uint64_t until_ms;
    bool (*pred)(struct fx *);
    int probe_mark;      /* probes[0] when a wait began */
};

static void ev_change(void *arg)
{
    ((struct fx *)arg)->n_changes++;
}

static void ev_probe(void *arg, int node, int status)
{
    ((struct fx *)arg)->probes[node]++;
}

static void ev_token(void *arg, int node,
                     void (*cb)(void *cbarg, const char *token), void *cbarg)
{
    cb(cbarg, TOKEN);
}

static void ev_refused(void *arg, int node, const char *token)
{
    ((struct fx *)arg)->tokens_refused++;
}

static bool ev_has_credential(void *arg)
{
    return ((struct fx *)arg)->credential;
}

static void ev_unwatchable(void *arg, int node, const char *why)
{
    struct fx *f = arg;
    f->unwatchable[node]++;
    snprintf(f->why, sizeof(f->why), "%s", why);
}

static const struct health_events test_events = {
    .on_change = ev_change,
    .on_probe = ev_probe,
    .token = ev_token,
    .token_refused = ev_refused,
    .has_credential = ev_has_credential,
    .on_unwatchable = ev_unwatchable,
};

static void fx_tick(void *arg)
{
    struct fx *f = arg;
    if ((f->pred && f->pred(f)) || loop_now_ms(f->loop) >= f->until_ms)
        loop_stop(f->loop);
}

/* Runs the loop until pred holds (NULL: for max_ms); returns pred. */
static bool run_until(struct fx *f, bool (*pred)(struct fx *),
                      uint64_t max_ms)
{
    loop_update_time(f->loop);
    f->until_ms = loop_now_ms(f->loop) + max_ms;
    f->pred = pred;
    if (pred && pred(f))
        return true;
    loop_timer_start(f->tick, 2, 2);
    loop_run(f->loop);
    loop_timer_stop(f->tick);
    return pred ? pred(f) : true;
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    srv_start(&f->srv);
    f->dir = fixture_make();
    f->loop = loop_new();
    f->tick = loop_timer_new(f->loop, fx_tick, f);
    f->log = log_new(NULL, NULL);
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    health_free(f->h);
    upstream_free(f->up);
    cluster_free(f->c);
    loop_timer_free(f->tick);
    loop_free(f->loop);
    log_free(f->log);
    config_unref(f->cfg);
    srv_stop(&f->srv);
    fixture_remove(f->dir);
    free(f);
    return 0;
}

/* Starts health on the three servers (interval, fast 50 ms). */
static void fx_health_every(struct fx *f, int rise, int fall,
                            const char *interval)
{
    char yaml[1024];
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:8443\n"
             "secrets: {hmac_key_file: hmac.key}\n"
             "controllers:\n"
             "  - {id: ctrl1, url: 'http://127.0.0.1:%u'}\n"
             "  - {id: ctrl2, url: 'http://127.0.0.1:%u'}\n"
             "  - {id: ctrl3, url: 'http://127.0.0.1:%u'}\n"
             "gate: {enabled: false}\n"
             "health:\n"
             "  interval: %s\n"
             "  fast_interval: 50ms\n"
             "  timeout: 1s\n"
             "  rise: %d\n"
             "  fall: %d\n",
             f->srv.port[0], f->srv.port[1], f->srv.port[2], interval, rise,
             fall);
    f->cfg = fixture_load(f->dir, yaml);
    f->c = cluster_new(f->cfg);
    f->up = upstream_new(f->loop, &(struct upstream_settings){
                                      .connect_timeout_ms = 1000,
                                      .idle_timeout_ms = 1000,
                                      .max_host_connections = 4});
    struct health_events ev = test_events;
    ev.arg = f;
    f->h = health_new(f->loop, f->up, f->c, f->log, f->cfg, &ev);
}

static void fx_health(struct fx *f, int rise, int fall)
{
    fx_health_every(f, rise, fall, "300ms");
}

static bool leader_is_ctrl2(struct fx *f)
{
    return cluster_leader(f->c) == 1 && cluster_count_up(f->c) == N;
}

static bool leader_is_ctrl3(struct fx *f)
{
    return cluster_leader(f->c) == 2;
}

static bool ctrl1_down(struct fx *f)
{
    return !cluster_up(f->c, 0);
}

static bool ctrl1_up(struct fx *f)
{
    return cluster_up(f->c, 0);
}

static void test_first_round_and_leader_move(void **state)
{
    struct fx *f = *state;
    atomic_store(&f->srv.status[1], 200);
    fx_health(f, 2, 2);
    /* the first round settles the view, without waiting for rise */
    assert_true(run_until(f, leader_is_ctrl2, 3000));
    assert_true(f->n_changes >= 1);
    for (int i = 0; i < N; i++)
        assert_true(f->probes[i] >= 1);
    /* the leader moves to ctrl3 */
    atomic_store(&f->srv.status[1], 429);
    atomic_store(&f->srv.status[2], 200);
    assert_true(run_until(f, leader_is_ctrl3, 3000));
    assert_int_equal(cluster_count_up(f->c), N);
}

static void test_rise_and_fall_over_real_probes(void **state)
{
    struct fx *f = *state;
    atomic_store(&f->srv.status[1], 200);
    fx_health(f, 3, 3);
    assert_true(run_until(f, leader_is_ctrl2, 3000));
    /* ctrl1 fails (500): down only after 3 failed probes */
    int before = f->probes[0];
    atomic_store(&f->srv.status[0], 500);
    assert_true(run_until(f, ctrl1_down, 5000));
    assert_true(f->probes[0] - before >= 3);
    assert_int_equal(cluster_leader(f->c), 1);
    assert_non_null(strstr(f->c->nodes[0].last_error, "500"));
    /* it recovers: up again only after 3 good probes */
    before = f->probes[0];
    atomic_store(&f->srv.status[0], 429);
    assert_true(run_until(f, ctrl1_up, 5000));
    assert_true(f->probes[0] - before >= 3);
}

static bool ctrl1_probed(struct fx *f)
{
    return atomic_load(&f->srv.health_hits[0]) >= 1;
}

/* ctrl1's probe answered since probe_mark: the server counting the request
 * is not enough, the answer may still be on its way (a report then finds
 * the probe in flight and adds none) */
static bool ctrl1_probe_answered(struct fx *f)
{
    return f->probes[0] > f->probe_mark;
}

/* A worker's report is answered by a probe at once, not at the next
 * round (interval 2 s). */
static void test_passive_report_probes_at_once(void **state)
{
    struct fx *f = *state;
    atomic_store(&f->srv.status[1], 200);
    fx_health_every(f, 1, 2, "2s");
    assert_true(run_until(f, leader_is_ctrl2, 3000));
    /* wait for a scheduled round: the next one is then 2 s away */
    run_until(f, NULL, 100);
    f->probe_mark = f->probes[0];
    assert_true(run_until(f, ctrl1_probe_answered, 3000));
    atomic_store(&f->srv.health_hits[0], 0);
    loop_update_time(f->loop);
    uint64_t t0 = loop_now_ms(f->loop);
    health_report(f->h, 0, true);
    health_report(f->h, 0, true); /* two reports, one probe in flight */
    assert_true(run_until(f, ctrl1_probed, 1000));
    loop_update_time(f->loop);
    assert_true(loop_now_ms(f->loop) - t0 < 1000);
    run_until(f, NULL, 100);
    assert_int_equal(atomic_load(&f->srv.health_hits[0]), 1);
    /* fall 2: the report counted as one failure, the probe answered 429:
     * still up */
    assert_true(cluster_up(f->c, 0));
}

static bool members_leader_ctrl3(struct fx *f)
{
    return cluster_leader(f->c) == 2 && cluster_count_up(f->c) == N &&
           atomic_load(&f->c->nodes[0].method) == CLUSTER_BY_LIST_MEMBERS;
}

static bool all_unwatchable(struct fx *f)
{
    return f->unwatchable[0] && f->unwatchable[1] && f->unwatchable[2];
}

/* No health-checks API (404): watched through list-members with the
 * management session; without a credential, unwatchable. */
static void test_list_members_fallback(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < N; i++)
        atomic_store(&f->srv.status[i], 404);
    atomic_store(&f->srv.members_leader, 2);
    f->credential = true;
    fx_health(f, 1, 1);
    assert_true(run_until(f, members_leader_ctrl3, 3000));
    for (int i = 0; i < N; i++) {
        assert_true(atomic_load(&f->srv.members_hits[i]) >= 1);
        assert_int_equal(atomic_load(&f->srv.bad_session[i]), 0);
        assert_false(cluster_read_only(f->c, i));
    }
    assert_string_equal(f->c->nodes[0].version, "v1.5.4");
    assert_int_equal(f->unwatchable[0], 0);
    /* mixed versions: every member says readOnly */
    atomic_store(&f->srv.members_ro, 1);
    run_until(f, NULL, 400);
    assert_true(cluster_read_only(f->c, 0));
}

static void test_unwatchable_without_credential(void **state)
{
    struct fx *f = *state;
    for (int i = 0; i < N; i++)
        atomic_store(&f->srv.status[i], 404);
    f->credential = false;
    fx_health(f, 1, 1);
    assert_true(run_until(f, all_unwatchable, 3000));
    assert_non_null(strstr(f->why, "ctrl"));
    assert_non_null(strstr(f->why, "health-checks"));
    assert_non_null(strstr(f->why, "gate.management"));
    assert_int_equal(cluster_leader(f->c), -1);
    /* said once per controller, not at every probe */
    run_until(f, NULL, 200);
    assert_int_equal(f->unwatchable[0], 1);
    for (int i = 0; i < N; i++)
        assert_int_equal(atomic_load(&f->srv.members_hits[i]), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_round_and_leader_move,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_rise_and_fall_over_real_probes,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_passive_report_probes_at_once,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_list_members_fallback,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unwatchable_without_credential,
                                        fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
