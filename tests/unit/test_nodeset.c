/* test_nodeset.c - base/nodeset.h: controller sets as bit masks, counted
 * without compiler builtins. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "base/nodeset.h"

static void test_members(void **state)
{
    (void)state;
    uint64_t s = nodeset_of(0) | nodeset_of(5) | nodeset_of(63);
    assert_true(nodeset_has(s, 0));
    assert_true(nodeset_has(s, 5));
    assert_true(nodeset_has(s, 63));
    assert_false(nodeset_has(s, 1));
    assert_false(nodeset_has(s, 62));
    assert_int_equal(nodeset_of(63), (uint64_t)1 << 63);
}

static void test_first(void **state)
{
    (void)state;
    assert_int_equal(nodeset_first(0), 0);
    assert_int_equal(nodeset_first(1), 1);
    assert_int_equal(nodeset_first(3), 7);
    assert_int_equal(nodeset_first(63), ~(uint64_t)0 >> 1);
    assert_int_equal(nodeset_first(64), ~(uint64_t)0);
}

static void test_count(void **state)
{
    (void)state;
    assert_int_equal(nodeset_count(0), 0);
    assert_int_equal(nodeset_count(nodeset_of(63)), 1);
    assert_int_equal(nodeset_count(nodeset_first(3)), 3);
    assert_int_equal(nodeset_count(~(uint64_t)0), 64);
    assert_int_equal(nodeset_count(0xAAAAAAAAAAAAAAAAull), 32);
    /* as many as a slow count says, over a spread of values */
    uint64_t x = 0x9E3779B97F4A7C15ull;
    for (int k = 0; k < 1000; k++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        int slow = 0;
        for (int i = 0; i < 64; i++)
            slow += nodeset_has(x, i);
        assert_int_equal(nodeset_count(x), slow);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_members),
        cmocka_unit_test(test_first),
        cmocka_unit_test(test_count),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
