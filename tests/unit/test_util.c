/* test_util.c - base/util.c: util_copy_whole never cuts an identifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "base/util.h"

static void test_copy_whole(void **state)
{
    (void)state;
    char d[4];
    assert_true(util_copy_whole(d, sizeof(d), "abc", 3));
    assert_string_equal(d, "abc");
    /* one byte too many: nothing, not "abc" */
    assert_false(util_copy_whole(d, sizeof(d), "abcd", 4));
    assert_string_equal(d, "");
    /* only len bytes are taken (not NUL-terminated input) */
    assert_true(util_copy_whole(d, sizeof(d), "xyz-tail", 2));
    assert_string_equal(d, "xy");
    assert_true(util_copy_whole(d, sizeof(d), "", 0));
    assert_string_equal(d, "");
    assert_false(util_copy_whole(d, sizeof(d), NULL, 0));
    assert_string_equal(d, "");
    assert_false(util_copy_whole(d, 0, "a", 1));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_whole),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
