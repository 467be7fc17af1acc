/* test_uring.c - base/uring.c: batches of sends through io_uring, on real
 * sockets.  Every result is known when uring_send_all() returns, a full
 * socket takes nothing (and nothing arrives later), a closed peer is an
 * error without SIGPIPE, a partial write says how much went. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/uring.h"

static struct uring *ring_or_skip(unsigned entries)
{
    const char *why = NULL;
    struct uring *u = uring_new(entries, &why);
    if (!u) {
        print_message("io_uring unavailable here: %s\n", why);
        skip();
    }
    assert_int_equal(uring_capacity(u), entries);
    return u;
}

static void pair(int sv[2])
{
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
    assert_int_equal(fcntl(sv[1], F_SETFL, O_NONBLOCK), 0);
}

/* Everything that can be read from fd within ms milliseconds of quiet. */
static size_t drain(int fd, char *out, size_t cap, int ms)
{
    size_t got = 0;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, ms) <= 0)
            return got;
        char tmp[65536];
        ssize_t n = recv(fd, tmp, sizeof(tmp), 0);
        if (n <= 0)
            return got;
        if (out && got + (size_t)n <= cap)
            memcpy(out + got, tmp, (size_t)n);
        got += (size_t)n;
    }
}

/* TCP over loopback, as to a controller: a connected pair. */
static void tcp_pair(int sv[2])
{
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 4), 0);
    assert_int_equal(getsockname(l, (struct sockaddr *)&a, &len), 0);
    sv[0] = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(connect(sv[0], (struct sockaddr *)&a, sizeof(a)), 0);
    sv[1] = accept(l, NULL, NULL);
    assert_true(sv[1] >= 0);
    close(l);
    assert_int_equal(fcntl(sv[0], F_SETFL, O_NONBLOCK), 0);
}

static void test_batch_arrives(void **state)
{
    (void)state;
    struct uring *u = ring_or_skip(8);
    int sv[8][2];
    char msg[8][32];
    struct uring_send s[8];
    for (int i = 0; i < 8; i++) {
        if (i < 6)
            pair(sv[i]);
        else
            tcp_pair(sv[i]);
        snprintf(msg[i], sizeof(msg[i]), "GET /%d HTTP/1.1\r\n\r\n", i);
        s[i] = (struct uring_send){sv[i][0], msg[i], strlen(msg[i]), 0};
    }
    assert_true(uring_send_all(u, s, 8));
    for (int i = 0; i < 8; i++) {
        char got[64] = {0};
        assert_int_equal(s[i].result, (long)strlen(msg[i]));
        assert_int_equal(drain(sv[i][1], got, sizeof(got), 200),
                         strlen(msg[i]));
        assert_string_equal(got, msg[i]);
        close(sv[i][0]);
        close(sv[i][1]);
    }
    /* the ring is reusable: a second batch of fewer */
    int p[2];
    pair(p);
    struct uring_send one = {p[0], "x", 1, 0};
    assert_true(uring_send_all(u, &one, 1));
    assert_int_equal(one.result, 1);
    assert_int_equal(drain(p[1], NULL, 0, 100), 1);
    close(p[0]);
    close(p[1]);
    uring_free(u);
}

/* A socket with no room takes nothing, now or later; the others in the
 * same batch go. */
static void test_full_socket_takes_nothing(void **state)
{
    (void)state;
    struct uring *u = ring_or_skip(4);
    int full[2], ok[2];
    pair(full);
    pair(ok);
    static char block[4096];
    memset(block, 'f', sizeof(block));
    size_t filled = 0;
    for (int i = 0; i < 100000; i++) {
        ssize_t n = send(full[0], block, sizeof(block), MSG_DONTWAIT);
        if (n < 0) {
            assert_true(errno == EAGAIN || errno == EWOULDBLOCK);
            break;
        }
        filled += (size_t)n;
    }
    assert_true(filled > 0);
    struct uring_send s[2] = {{full[0], "late", 4, 0}, {ok[0], "on time", 7, 0}};
    assert_true(uring_send_all(u, s, 2));
    assert_int_equal(s[0].result, -EAGAIN);
    assert_int_equal(s[1].result, 7);
    /* read it all: exactly what filled it, "late" never comes */
    assert_int_equal(drain(full[1], NULL, 0, 300), filled);
    assert_int_equal(drain(ok[1], NULL, 0, 100), 7);
    close(full[0]);
    close(full[1]);
    close(ok[0]);
    close(ok[1]);
    uring_free(u);
}

/* A closed peer and a closed descriptor are errors of their own sends
 * (without SIGPIPE: this process keeps its default action); a good one in
 * between goes. */
static void test_errors_are_per_send(void **state)
{
    (void)state;
    struct uring *u = ring_or_skip(4);
    int gone[2], ok[2], tcp[2];
    pair(gone);
    pair(ok);
    tcp_pair(tcp);
    close(gone[1]);
    /* a reset TCP peer: SO_LINGER 0 closes with RST */
    struct linger lg = {1, 0};
    assert_int_equal(setsockopt(tcp[1], SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)), 0);
    close(tcp[1]);
    struct pollfd pf = {.fd = tcp[0], .events = POLLIN};
    assert_int_equal(poll(&pf, 1, 1000), 1); /* the RST is here */
    int bad = dup(ok[0]);
    close(bad);
    struct uring_send s[4] = {{gone[0], "a", 1, 0},
                              {ok[0], "b", 1, 0},
                              {bad, "c", 1, 0},
                              {tcp[0], "d", 1, 0}};
    assert_true(uring_send_all(u, s, 4));
    assert_int_equal(s[0].result, -EPIPE);
    assert_int_equal(s[1].result, 1);
    assert_int_equal(s[2].result, -EBADF);
    assert_true(s[3].result == -ECONNRESET || s[3].result == -EPIPE);
    assert_int_equal(drain(ok[1], NULL, 0, 100), 1);
    close(gone[0]);
    close(ok[0]);
    close(ok[1]);
    close(tcp[0]);
    uring_free(u);
}

/* More than the socket holds: a partial write, and it says how much. */
static void test_partial_write(void **state)
{
    (void)state;
    struct uring *u = ring_or_skip(2);
    int sv[2];
    pair(sv);
    int small = 4096;
    assert_int_equal(setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
    size_t len = 4u << 20;
    char *big = malloc(len);
    assert_non_null(big);
    memset(big, 'b', len);
    struct uring_send s = {sv[0], big, len, 0};
    assert_true(uring_send_all(u, &s, 1));
    assert_true(s.result > 0);
    assert_true((size_t)s.result < len);
    assert_int_equal(drain(sv[1], NULL, 0, 200), (size_t)s.result);
    free(big);
    close(sv[0]);
    close(sv[1]);
    uring_free(u);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batch_arrives),
        cmocka_unit_test(test_full_socket_takes_nothing),
        cmocka_unit_test(test_errors_are_per_send),
        cmocka_unit_test(test_partial_write),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
