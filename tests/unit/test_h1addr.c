/* test_h1addr.c - io/h1addr.h, where a controller is for the upstream
 * client: IP literals, the resolved addresses' freshness (TTL, background
 * refresh, connect failures, failed resolutions and their pace), the order
 * a new connection tries them in, the "invalid" domain; and base/loop.h's
 * loop_resolve on a real loop (localhost from the hosts file; a failure
 * that needs no network: a service that is not a number). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>

#include "base/loop.h"
#include "io/h1addr.h"

/* An addrinfo chain over static storage: v4 / v6 text addresses. */
struct fake_ai {
    struct addrinfo ai[8];
    struct sockaddr_in in4[8];
    struct sockaddr_in6 in6[8];
};

static const struct addrinfo *fake(struct fake_ai *f, const char *const *addrs,
                                   int n)
{
    memset(f, 0, sizeof(*f));
    for (int i = 0; i < n; i++) {
        struct addrinfo *a = &f->ai[i];
        if (strchr(addrs[i], ':')) {
            f->in6[i].sin6_family = AF_INET6;
            f->in6[i].sin6_port = htons(9); /* replaced by the origin's */
            assert_int_equal(inet_pton(AF_INET6, addrs[i], &f->in6[i].sin6_addr), 1);
            a->ai_family = AF_INET6;
            a->ai_addr = (struct sockaddr *)&f->in6[i];
            a->ai_addrlen = sizeof(f->in6[i]);
        } else {
            f->in4[i].sin_family = AF_INET;
            f->in4[i].sin_port = htons(9);
            assert_int_equal(inet_pton(AF_INET, addrs[i], &f->in4[i].sin_addr), 1);
            a->ai_family = AF_INET;
            a->ai_addr = (struct sockaddr *)&f->in4[i];
            a->ai_addrlen = sizeof(f->in4[i]);
        }
        a->ai_socktype = SOCK_STREAM;
        a->ai_next = i + 1 < n ? &f->ai[i + 1] : NULL;
    }
    return n ? &f->ai[0] : NULL;
}

/* The text of address i, with its port: "1.2.3.4:443", "[::1]:443". */
static const char *text(const struct h1addr *s, int i)
{
    static char out[80];
    char ip[INET6_ADDRSTRLEN];
    const struct sockaddr_storage *ss = &s->a[i];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, sizeof(out), "%s:%u", ip, ntohs(a->sin_port));
        assert_int_equal(s->len[i], sizeof(*a));
    } else {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, sizeof(out), "[%s]:%u", ip, ntohs(a->sin6_port));
        assert_int_equal(s->len[i], sizeof(*a));
    }
    return out;
}

static void test_literals(void **state)
{
    struct h1addr s;
    assert_true(h1addr_init(&s, "127.0.0.1", 9, 1280));
    assert_int_equal(s.n, 1);
    assert_string_equal(text(&s, 0), "127.0.0.1:1280");
    assert_int_equal(h1addr_check(&s, 0), H1ADDR_USE);
    h1addr_unreachable(&s); /* a literal is never resolved again */
    assert_int_equal(h1addr_check(&s, 10u * H1ADDR_TTL_MS), H1ADDR_USE);
    assert_true(h1addr_init(&s, "[::1]", 5, 443));
    assert_string_equal(text(&s, 0), "[::1]:443");
    assert_true(h1addr_init(&s, "::1", 3, 443));
    assert_false(h1addr_init(&s, "localhost", 9, 443));
    assert_int_equal(s.n, 0);
    assert_false(s.fixed);
    assert_false(h1addr_init(&s, "127.0.0.1.example", 17, 443));
    assert_false(h1addr_init(&s, "127.0.0.1", 4, 443)); /* "127." */
}

static void test_first_resolution(void **state)
{
    struct h1addr s;
    struct fake_ai f;
    bool rec;
    const char *two[] = {"::1", "127.0.0.1"};
    assert_false(h1addr_init(&s, "ctrl.example", 12, 1280));
    uint64_t t = 5000;
    assert_int_equal(h1addr_check(&s, t), H1ADDR_RESOLVE);
    h1addr_begin(&s);
    assert_int_equal(h1addr_check(&s, t), H1ADDR_WAIT);
    assert_int_equal(h1addr_check(&s, t + 100000), H1ADDR_WAIT);
    assert_int_equal(h1addr_resolved(&s, fake(&f, two, 2), 1280, t + 3, &rec), 2);
    assert_false(rec);
    assert_string_equal(text(&s, 0), "[::1]:1280");
    assert_string_equal(text(&s, 1), "127.0.0.1:1280");
    assert_int_equal(h1addr_check(&s, t + 3), H1ADDR_USE);
    assert_int_equal(h1addr_check(&s, t + 3 + H1ADDR_TTL_MS - 1), H1ADDR_USE);
}

static void test_stale_refreshed_in_background(void **state)
{
    struct h1addr s;
    struct fake_ai f;
    bool rec;
    const char *one[] = {"10.0.0.1"};
    const char *other[] = {"10.0.0.2"};
    h1addr_init(&s, "c", 1, 80);
    h1addr_begin(&s);
    h1addr_resolved(&s, fake(&f, one, 1), 80, 1000, &rec);
    uint64_t stale = 1000 + H1ADDR_TTL_MS;
    assert_int_equal(h1addr_check(&s, stale), H1ADDR_REFRESH);
    h1addr_begin(&s);
    /* the old address stays in use while the new resolution runs */
    assert_int_equal(h1addr_check(&s, stale + 1), H1ADDR_USE);
    assert_int_equal(s.n, 1);
    assert_string_equal(text(&s, 0), "10.0.0.1:80");
    /* it fails: the old one is kept; not asked again before the pause */
    assert_true(h1addr_failed(&s, stale + 2));
    assert_int_equal(s.n, 1);
    assert_int_equal(h1addr_check(&s, stale + 2), H1ADDR_USE);
    assert_int_equal(h1addr_check(&s, stale + 2 + H1ADDR_RETRY_MS), H1ADDR_REFRESH);
    h1addr_begin(&s);
    /* a second failure is the same run of failures: not logged again */
    assert_false(h1addr_failed(&s, stale + 2 + H1ADDR_RETRY_MS));
    h1addr_begin(&s);
    assert_int_equal(h1addr_resolved(&s, fake(&f, other, 1), 80, stale + 5000, &rec), 1);
    assert_true(rec);
    assert_string_equal(text(&s, 0), "10.0.0.2:80");
    assert_int_equal(h1addr_check(&s, stale + 5001), H1ADDR_USE);
}

static void test_connect_failure_resolves_again(void **state)
{
    struct h1addr s;
    struct fake_ai f;
    bool rec;
    const char *one[] = {"10.0.0.1"};
    h1addr_init(&s, "c", 1, 80);
    h1addr_begin(&s);
    h1addr_resolved(&s, fake(&f, one, 1), 80, 1000, &rec);
    h1addr_unreachable(&s);
    /* at most once per H1ADDR_RETRY_MS after the last resolution */
    assert_int_equal(h1addr_check(&s, 1000 + H1ADDR_RETRY_MS - 1), H1ADDR_USE);
    assert_int_equal(h1addr_check(&s, 1000 + H1ADDR_RETRY_MS), H1ADDR_REFRESH);
    h1addr_begin(&s);
    h1addr_resolved(&s, fake(&f, one, 1), 80, 3000, &rec);
    assert_false(s.stale);
    assert_int_equal(h1addr_check(&s, 3000 + H1ADDR_RETRY_MS), H1ADDR_USE);
}

static void test_failure_without_addresses(void **state)
{
    struct h1addr s;
    struct fake_ai f;
    bool rec;
    const char *one[] = {"10.0.0.1"};
    h1addr_init(&s, "c", 1, 80);
    h1addr_begin(&s);
    assert_true(h1addr_failed(&s, 1000));
    /* requests meanwhile fail at once; after the pause, resolve again */
    assert_int_equal(h1addr_check(&s, 1000), H1ADDR_FAILED);
    assert_int_equal(h1addr_check(&s, 1000 + H1ADDR_RETRY_MS - 1), H1ADDR_FAILED);
    assert_int_equal(h1addr_check(&s, 1000 + H1ADDR_RETRY_MS), H1ADDR_RESOLVE);
    h1addr_begin(&s);
    assert_int_equal(h1addr_check(&s, 1000 + H1ADDR_RETRY_MS), H1ADDR_WAIT);
    /* an answer without an IPv4/IPv6 address counts as a failure */
    assert_int_equal(h1addr_resolved(&s, NULL, 80, 2500, &rec), 0);
    assert_false(rec);
    assert_false(h1addr_failed(&s, 2500));
    h1addr_begin(&s);
    assert_int_equal(h1addr_resolved(&s, fake(&f, one, 1), 80, 4000, &rec), 1);
    assert_true(rec);
}

static void test_order_dedup_and_bound(void **state)
{
    struct h1addr s;
    struct fake_ai f;
    bool rec;
    const char *many[] = {"10.0.0.1", "::1", "10.0.0.1", "10.0.0.2", "10.0.0.3",
                          "10.0.0.4", "10.0.0.5", "10.0.0.6"};
    h1addr_init(&s, "c", 1, 443);
    h1addr_begin(&s);
    assert_int_equal(h1addr_resolved(&s, fake(&f, many, 8), 443, 1, &rec), 7);
    assert_string_equal(text(&s, 0), "10.0.0.1:443");
    assert_string_equal(text(&s, 1), "[::1]:443");
    assert_string_equal(text(&s, 2), "10.0.0.2:443");
    /* a new connection tries each once, in order */
    for (int k = 0; k < 7; k++)
        assert_int_equal(h1addr_pick(&s, k), k);
    assert_int_equal(h1addr_pick(&s, 7), -1);
    /* ... starting from the one the last connection reached */
    h1addr_connected(&s, 2);
    assert_int_equal(h1addr_pick(&s, 0), 2);
    assert_int_equal(h1addr_pick(&s, 4), 6);
    assert_int_equal(h1addr_pick(&s, 5), 0);
    assert_int_equal(h1addr_pick(&s, 6), 1);
    assert_int_equal(h1addr_pick(&s, 7), -1);
    /* a new answer that still has it keeps it first */
    const char *again[] = {"10.0.0.9", "10.0.0.2"};
    h1addr_begin(&s);
    assert_int_equal(h1addr_resolved(&s, fake(&f, again, 2), 443, 2, &rec), 2);
    assert_int_equal(h1addr_pick(&s, 0), 1);
    assert_string_equal(text(&s, 1), "10.0.0.2:443");
    /* one that does not starts from its first */
    const char *gone[] = {"10.0.0.7", "10.0.0.8"};
    h1addr_begin(&s);
    h1addr_resolved(&s, fake(&f, gone, 2), 443, 3, &rec);
    assert_int_equal(h1addr_pick(&s, 0), 0);
}

static void test_invalid_domain(void **state)
{
    assert_true(h1addr_never_resolves("ctrl.invalid", 12));
    assert_true(h1addr_never_resolves("CTRL.Invalid.", 13));
    assert_true(h1addr_never_resolves("invalid", 7));
    assert_true(h1addr_never_resolves("a.b.invalid", 11));
    assert_false(h1addr_never_resolves("ctrlinvalid", 11));
    assert_false(h1addr_never_resolves("ctrl.invalid.example", 20));
    assert_false(h1addr_never_resolves("localhost", 9));
    assert_false(h1addr_never_resolves("", 0));
    assert_false(h1addr_never_resolves("ctrl.invalid", 11)); /* "ctrl.invali" */
}

/* ---- loop_resolve on a real loop ---------------------------------------- */

struct got {
    struct loop *loop;
    int calls;
    int n4;
    char err[128];
};

static void on_resolved(void *arg, const struct addrinfo *ai, const char *err)
{
    struct got *g = arg;
    g->calls++;
    for (; ai; ai = ai->ai_next)
        if (ai->ai_family == AF_INET &&
            ((struct sockaddr_in *)ai->ai_addr)->sin_addr.s_addr ==
                htonl(INADDR_LOOPBACK))
            g->n4++;
    if (err)
        snprintf(g->err, sizeof(g->err), "%s", err);
    loop_stop(g->loop);
}

static void on_timeout(void *arg)
{
    loop_stop(arg);
}

static void run_bounded(struct loop *l)
{
    struct loop_timer *t = loop_timer_new(l, on_timeout, l);
    loop_timer_start(t, 10000, 0);
    loop_run(l);
    loop_timer_free(t);
}

static void test_loop_resolve(void **state)
{
    struct loop *l = loop_new();
    struct got g = {.loop = l};
    /* localhost comes from the hosts file: no network */
    assert_non_null(loop_resolve(l, "localhost", "1280", on_resolved, &g));
    assert_int_equal(g.calls, 0); /* never from inside the call */
    run_bounded(l);
    assert_int_equal(g.calls, 1);
    assert_true(g.n4 >= 1);
    assert_string_equal(g.err, "");
    /* a service by name is refused (numbers only): the resolver's error
     * comes back, without asking any server */
    memset(&g, 0, sizeof(g));
    g.loop = l;
    assert_non_null(loop_resolve(l, "localhost", "http", on_resolved, &g));
    run_bounded(l);
    assert_int_equal(g.calls, 1);
    assert_int_equal(g.n4, 0);
    assert_true(strlen(g.err) > 0);
    /* cancelled: the callback never runs, nothing leaks (ASan) */
    memset(&g, 0, sizeof(g));
    g.loop = l;
    struct loop_resolve *r = loop_resolve(l, "localhost", "80", on_resolved, &g);
    assert_non_null(r);
    loop_resolve_cancel(r);
    loop_free(l);
    assert_int_equal(g.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_literals),
        cmocka_unit_test(test_first_resolution),
        cmocka_unit_test(test_stale_refreshed_in_background),
        cmocka_unit_test(test_connect_failure_resolves_again),
        cmocka_unit_test(test_failure_without_addresses),
        cmocka_unit_test(test_order_dedup_and_bound),
        cmocka_unit_test(test_invalid_domain),
        cmocka_unit_test(test_loop_resolve),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
