/* test_util.c - base/util.c: util_copy_whole never cuts an identifier. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <stdio.h>
#include <stdlib.h>

#include <cmocka.h>

#include "base/buf.h"
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

static void test_strcaseeq(void **state)
{
    (void)state;
    assert_true(util_strcaseeq("Content-Length", "content-length"));
    assert_true(util_strcaseeq("", ""));
    assert_false(util_strcaseeq("Date", "Dat"));
    assert_false(util_strcaseeq("", "a"));
    assert_false(util_strcaseeq("@", "`")); /* 0x40 and 0x60: not letters */
    assert_false(util_strcaseeq("[x", "{x"));
    assert_true(util_strncaseeq("DATE", 4, "date"));
    assert_false(util_strncaseeq("DATE", 3, "date"));
    assert_true(util_strncaseeq("", 0, ""));
    assert_false(util_strncaseeq("^ate", 4, "~ate"));
}

/* buf_printf's own formatting of plain conversions gives what snprintf
 * gives; other formats still go to vsnprintf. */
#define SAME(fmt, ...)                                                        \
    do {                                                                      \
        char want[256];                                                       \
        struct buf b = {0};                                                   \
        buf_puts(&b, "pre|");                                                 \
        snprintf(want, sizeof(want), "pre|" fmt, __VA_ARGS__);                \
        buf_printf(&b, fmt, __VA_ARGS__);                                     \
        assert_string_equal(b.data, want);                                    \
        assert_int_equal(b.len, strlen(want));                                \
        buf_free(&b);                                                         \
    } while (0)

static void test_buf_printf(void **state)
{
    (void)state;
    SAME("HTTP/1.1 %d %s\r\n", 200, "OK");
    SAME("Content-Length: %llu\r\n", 18446744073709551615ULL);
    SAME("%d %d %d %ld %lld", 0, -1, -2147483647 - 1, -9L,
         -9223372036854775807LL - 1);
    SAME("%u %lu %llu %zu", 4294967295u, 0UL, 10ULL, (size_t)12345);
    SAME("100%% %s%s|", "a", "");
    SAME("%s", "no conversion after");
    SAME("tail only%s", "");
    SAME("%5d|%-3s|%.2f|%x|%zd", 42, "a", 1.5, 255u, (ptrdiff_t)-3);
    SAME("%c%c", 'o', 'k');
    struct buf e = {0};
    buf_printf(&e, "%s", "");
    assert_non_null(e.data); /* allocated as before, even when empty */
    assert_string_equal(e.data, "");
    buf_free(&e);
    /* long output grows the buffer */
    char big[300];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    struct buf g = {0};
    buf_printf(&g, "%s%d", big, 7);
    assert_int_equal(g.len, sizeof(big));
    assert_int_equal(g.data[g.len - 1], '7');
    buf_free(&g);
}

/* Every length through buf_append's fixed-size copies and the call. */
static void test_buf_append(void **state)
{
    (void)state;
    char src[80], want[200];
    for (size_t i = 0; i < sizeof(src); i++)
        src[i] = (char)('A' + i % 50);
    for (size_t n = 0; n <= 70; n++) {
        struct buf b = {0};
        buf_puts(&b, "<");
        buf_append(&b, src, n);
        buf_append(&b, src + 3, n / 2);
        buf_puts(&b, ">");
        snprintf(want, sizeof(want), "<%.*s%.*s>", (int)n, src, (int)(n / 2),
                 src + 3);
        assert_string_equal(b.data, want);
        assert_int_equal(b.len, strlen(want));
        buf_free(&b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_copy_whole),
        cmocka_unit_test(test_strcaseeq),
        cmocka_unit_test(test_buf_printf),
        cmocka_unit_test(test_buf_append),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
