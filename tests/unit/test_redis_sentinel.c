/* test_redis_sentinel.c - the +switch-master message parser of
 * io/redis_sentinel.c (the sentinels themselves are real processes in
 * tests/integration/test_redis_sentinel.py). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "io/redis_sentinel.h"

static bool parse(const char *msg, const char *name, char *host,
                  uint16_t *port)
{
    return redis_sentinel_parse_switch(msg, strlen(msg), name, host,
                                       REDIS_SENTINEL_ADDR_MAX, port);
}

static void test_switch_messages(void **state)
{
    (void)state;
    char host[REDIS_SENTINEL_ADDR_MAX];
    uint16_t port = 0;
    assert_true(parse("qg 127.0.0.1 6379 127.0.0.1 6380", "qg", host, &port));
    assert_string_equal(host, "127.0.0.1");
    assert_int_equal(port, 6380);
    assert_true(parse("qg 10.0.0.1 6379 ::1 7000", "qg", host, &port));
    assert_string_equal(host, "::1");
    assert_int_equal(port, 7000);
    /* another master, or not the message's shape */
    assert_false(parse("other 127.0.0.1 6379 127.0.0.1 6380", "qg", host,
                       &port));
    assert_false(parse("qg2 127.0.0.1 6379 127.0.0.1 6380", "qg", host,
                       &port));
    assert_false(parse("qg 127.0.0.1 6379 127.0.0.1", "qg", host, &port));
    assert_false(parse("qg 127.0.0.1 6379 127.0.0.1 6380 x", "qg", host,
                       &port));
    assert_false(parse("qg 127.0.0.1 6379 127.0.0.1 0", "qg", host, &port));
    assert_false(parse("qg 127.0.0.1 6379 127.0.0.1 65536", "qg", host,
                       &port));
    assert_false(parse("qg 127.0.0.1 6379 127.0.0.1 63x", "qg", host,
                       &port));
    assert_false(parse("", "qg", host, &port));
    char big[2048];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    assert_false(parse(big, "qg", host, &port));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_switch_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
