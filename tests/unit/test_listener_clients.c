/* test_listener_clients.c - io/listener_clients.c, the open connections per
 * client address behind limits.max_connections_per_client: the limit,
 * addresses kept apart (IPv4, IPv6; ports ignored; an IPv4-mapped IPv6
 * address is its IPv4 one), peers that are not IP,
 * a table grown well past its first size, and two threads taking and
 * dropping at once (every worker shares one table). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/un.h>

#include "io/listener.h"

static struct sockaddr_storage addr(const char *text, uint16_t port)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (strchr(text, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        assert_int_equal(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        assert_int_equal(inet_pton(AF_INET, text, &s4->sin_addr), 1);
    }
    return ss;
}

static void test_the_limit_counts_an_address_on_every_port(void **state)
{
    (void)state;
    struct listener_clients *c = listener_clients_new(42);
    struct sockaddr_storage a1 = addr("192.0.2.7", 1000);
    struct sockaddr_storage a2 = addr("192.0.2.7", 2000);
    struct sockaddr_storage b = addr("192.0.2.8", 1000);
    assert_int_equal(listener_clients_take(c, &a1, 2), LISTENER_CLIENT_COUNTED);
    assert_int_equal(listener_clients_take(c, &a2, 2), LISTENER_CLIENT_COUNTED);
    /* a third from the same address, whatever its port: refused */
    assert_int_equal(listener_clients_take(c, &a1, 2), LISTENER_CLIENT_REFUSED);
    assert_int_equal(listener_clients_count(c, &a1), 2);
    /* another address is not affected */
    assert_int_equal(listener_clients_take(c, &b, 2), LISTENER_CLIENT_COUNTED);
    /* one closes: one more may come */
    listener_clients_drop(c, &a2);
    assert_int_equal(listener_clients_count(c, &a1), 1);
    assert_int_equal(listener_clients_take(c, &a2, 2), LISTENER_CLIENT_COUNTED);
    /* no limit: counted all the same (a reload may set one later) */
    assert_int_equal(listener_clients_take(c, &a1, 0), LISTENER_CLIENT_COUNTED);
    assert_int_equal(listener_clients_count(c, &a1), 3);
    /* a smaller limit than what is open refuses new ones only */
    assert_int_equal(listener_clients_take(c, &a1, 1), LISTENER_CLIENT_REFUSED);
    for (int i = 0; i < 3; i++)
        listener_clients_drop(c, &a1);
    listener_clients_drop(c, &b);
    assert_int_equal(listener_clients_count(c, &a1), 0);
    assert_int_equal(listener_clients_count(c, &b), 0);
    listener_clients_free(c);
}

static void test_ipv4_and_ipv6_addresses_are_apart(void **state)
{
    (void)state;
    struct listener_clients *c = listener_clients_new(7);
    struct sockaddr_storage v4 = addr("127.0.0.1", 1);
    struct sockaddr_storage v6 = addr("::1", 1);
    struct sockaddr_storage mapped = addr("::ffff:127.0.0.1", 2);
    struct sockaddr_storage other = addr("::ffff:127.0.0.2", 2);
    assert_int_equal(listener_clients_take(c, &v4, 2), LISTENER_CLIENT_COUNTED);
    assert_int_equal(listener_clients_take(c, &v6, 2), LISTENER_CLIENT_COUNTED);
    assert_int_equal(listener_clients_take(c, &v6, 2), LISTENER_CLIENT_COUNTED);
    assert_int_equal(listener_clients_take(c, &v6, 2), LISTENER_CLIENT_REFUSED);
    /* a dual-stack listener's IPv4 client is the same client */
    assert_int_equal(listener_clients_take(c, &mapped, 2), LISTENER_CLIENT_COUNTED);
    assert_int_equal(listener_clients_count(c, &v4), 2);
    assert_int_equal(listener_clients_take(c, &v4, 2), LISTENER_CLIENT_REFUSED);
    assert_int_equal(listener_clients_take(c, &other, 2), LISTENER_CLIENT_COUNTED);
    listener_clients_drop(c, &mapped);
    assert_int_equal(listener_clients_count(c, &v4), 1);
    listener_clients_drop(c, &v4);
    listener_clients_drop(c, &v6);
    listener_clients_drop(c, &v6);
    listener_clients_drop(c, &other);
    assert_int_equal(listener_clients_count(c, &v4), 0);
    assert_int_equal(listener_clients_count(c, &v6), 0);
    listener_clients_free(c);
}

static void test_peers_that_are_not_ip_are_not_counted(void **state)
{
    (void)state;
    struct listener_clients *c = listener_clients_new(1);
    struct sockaddr_storage un;
    memset(&un, 0, sizeof(un));
    un.ss_family = AF_UNIX;
    for (int i = 0; i < 3; i++)
        assert_int_equal(listener_clients_take(c, &un, 1),
                         LISTENER_CLIENT_NOT_COUNTED);
    listener_clients_drop(c, &un); /* nothing to drop: no effect */
    assert_int_equal(listener_clients_count(c, &un), 0);
    listener_clients_free(c);
}

static void test_many_addresses_grow_the_table(void **state)
{
    (void)state;
    struct listener_clients *c = listener_clients_new(99);
    char text[64];
    for (int i = 0; i < 5000; i++) {
        snprintf(text, sizeof(text), "2001:db8::%x:%x", i >> 8, i & 0xff);
        struct sockaddr_storage a = addr(text, 1);
        assert_int_equal(listener_clients_take(c, &a, 2), LISTENER_CLIENT_COUNTED);
        assert_int_equal(listener_clients_take(c, &a, 2), LISTENER_CLIENT_COUNTED);
    }
    for (int i = 0; i < 5000; i++) {
        snprintf(text, sizeof(text), "2001:db8::%x:%x", i >> 8, i & 0xff);
        struct sockaddr_storage a = addr(text, 1);
        assert_int_equal(listener_clients_count(c, &a), 2);
        assert_int_equal(listener_clients_take(c, &a, 2), LISTENER_CLIENT_REFUSED);
        listener_clients_drop(c, &a);
        listener_clients_drop(c, &a);
        assert_int_equal(listener_clients_count(c, &a), 0);
    }
    listener_clients_free(c); /* empty: ASan checks nothing was left */
}

struct racer {
    struct listener_clients *c;
    struct sockaddr_storage a;
    int refused;
};

static void *racer_run(void *arg)
{
    struct racer *r = arg;
    for (int i = 0; i < 20000; i++) {
        if (listener_clients_take(r->c, &r->a, 1000000) != LISTENER_CLIENT_COUNTED)
            r->refused++;
        else
            listener_clients_drop(r->c, &r->a);
    }
    return NULL;
}

static void test_two_threads_share_one_table(void **state)
{
    (void)state;
    struct listener_clients *c = listener_clients_new(5);
    struct racer r[2] = {{c, addr("198.51.100.1", 1), 0},
                         {c, addr("198.51.100.1", 2), 0}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, racer_run, &r[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(r[0].refused + r[1].refused, 0);
    assert_int_equal(listener_clients_count(c, &r[0].a), 0);
    listener_clients_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_the_limit_counts_an_address_on_every_port),
        cmocka_unit_test(test_ipv4_and_ipv6_addresses_are_apart),
        cmocka_unit_test(test_peers_that_are_not_ip_are_not_counted),
        cmocka_unit_test(test_many_addresses_grow_the_table),
        cmocka_unit_test(test_two_threads_share_one_table),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
