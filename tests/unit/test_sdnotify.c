/* test_sdnotify.c - the sd_notify datagrams of base/sdnotify.c on a real
 * socket: path and abstract addresses, RELOADING's MONOTONIC_USEC, and the
 * cases that must not send (no $NOTIFY_SOCKET) or must fail (a relative or
 * too long address, nobody listening). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "base/sdnotify.h"

/* A datagram socket bound to `name` (a path, or "@x" = abstract). */
static int bind_dgram(const char *name)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    size_t len = strlen(name);
    memcpy(sa.sun_path, name, len);
    if (name[0] == '@')
        sa.sun_path[0] = '\0';
    int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa,
                          (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len)),
                     0);
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void expect_datagram(int fd, const char *want)
{
    char got[256];
    ssize_t n = recv(fd, got, sizeof(got) - 1, 0);
    assert_true(n >= 0);
    got[n] = '\0';
    assert_string_equal(got, want);
}

static void test_no_socket_sends_nothing(void **state)
{
    unsetenv("NOTIFY_SOCKET");
    assert_int_equal(sdnotify_send("READY=1"), 0);
    setenv("NOTIFY_SOCKET", "", 1);
    assert_int_equal(sdnotify_send("READY=1"), 0);
    unsetenv("NOTIFY_SOCKET");
}

static void test_path_socket(void **state)
{
    char dir[] = "/tmp/qg-sdnotify-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[64];
    snprintf(path, sizeof(path), "%s/notify", dir);
    int fd = bind_dgram(path);
    setenv("NOTIFY_SOCKET", path, 1);
    assert_int_equal(sdnotify_send("READY=1\nSTATUS=serving"), 0);
    expect_datagram(fd, "READY=1\nSTATUS=serving");
    close(fd);
    /* nobody listening any more */
    assert_int_equal(sdnotify_send("STOPPING=1"), -1);
    unsetenv("NOTIFY_SOCKET");
    unlink(path);
    rmdir(dir);
}

static void test_abstract_socket_and_reloading(void **state)
{
    char name[64];
    snprintf(name, sizeof(name), "@qg-sdnotify-test-%ld", (long)getpid());
    int fd = bind_dgram(name);
    setenv("NOTIFY_SOCKET", name, 1);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    assert_int_equal(sdnotify_reloading(), 0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    char got[128];
    ssize_t n = recv(fd, got, sizeof(got) - 1, 0);
    assert_true(n > 0);
    got[n] = '\0';
    unsigned long long usec = 0;
    assert_int_equal(sscanf(got, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec), 1);
    unsigned long long lo = (unsigned long long)a.tv_sec * 1000000ull + (unsigned long long)a.tv_nsec / 1000ull;
    unsigned long long hi = (unsigned long long)b.tv_sec * 1000000ull + (unsigned long long)b.tv_nsec / 1000ull;
    assert_true(lo <= usec && usec <= hi);
    close(fd);
    unsetenv("NOTIFY_SOCKET");
}

static void test_bad_addresses_fail(void **state)
{
    setenv("NOTIFY_SOCKET", "relative/notify", 1);
    assert_int_equal(sdnotify_send("READY=1"), -1);
    char longname[200];
    memset(longname, 'x', sizeof(longname) - 1);
    longname[0] = '/';
    longname[sizeof(longname) - 1] = '\0';
    setenv("NOTIFY_SOCKET", longname, 1);
    assert_int_equal(sdnotify_send("READY=1"), -1);
    unsetenv("NOTIFY_SOCKET");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_no_socket_sends_nothing),
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket_and_reloading),
        cmocka_unit_test(test_bad_addresses_fail),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
