/* test_errcodes.c - base/errcodes.h: the table of envelope error codes
 * (base/errcodes.def) and its lookups. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/envelope.h"
#include "base/errcodes.h"
#include "base/json.h"

static void test_lookups(void **state)
{
    (void)state;
    assert_string_equal(errcode_name(ERR_CLUSTER_NO_LEADER),
                        "CLUSTER_NO_LEADER");
    assert_int_equal(errcode_status(ERR_CLUSTER_NO_LEADER), 503);
    assert_string_equal(errcode_message(ERR_CLUSTER_NO_LEADER),
                        "Cluster has no leader, unable to make model "
                        "updates.");
    assert_string_equal(errcode_name(ERR_PROXY_UPSTREAM_TIMEOUT),
                        "PROXY_UPSTREAM_TIMEOUT");
    assert_int_equal(errcode_status(ERR_PROXY_UPSTREAM_TIMEOUT), 504);
    assert_int_equal(errcode_status(ERR_UNAUTHORIZED), 401);
    assert_int_equal(errcode_status(ERR_REQUEST_HEADER_FIELDS_TOO_LARGE), 431);
}

static void test_every_entry(void **state)
{
    (void)state;
    for (int i = 0; i < ERR__COUNT; i++) {
        const char *n = errcode_name((enum errcode)i);
        assert_non_null(n);
        assert_true(strlen(n) > 3);
        for (const char *p = n; *p; p++)
            assert_true((*p >= 'A' && *p <= 'Z') || *p == '_' ||
                        (*p >= '0' && *p <= '9'));
        assert_in_range(errcode_status((enum errcode)i), 400, 599);
        assert_true(strlen(errcode_message((enum errcode)i)) > 0);
        for (int j = 0; j < i; j++)
            assert_string_not_equal(n, errcode_name((enum errcode)j));
    }
}

/* What a client reads: the envelope carries the table's code. */
static void test_in_the_envelope(void **state)
{
    (void)state;
    size_t len;
    enum errcode e = ERR_REPLICATION_TRACKING_UNAVAILABLE;
    char *body = envelope_error(errcode_name(e), errcode_message(e), "rid-1",
                                NULL, &len);
    struct json *j = json_parse(body, len);
    assert_non_null(j);
    assert_string_equal(json_path_string(j, "error.code"),
                        "REPLICATION_TRACKING_UNAVAILABLE");
    assert_string_equal(json_path_string(j, "error.message"),
                        errcode_message(e));
    assert_string_equal(json_path_string(j, "error.requestId"), "rid-1");
    json_free(j);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lookups),
        cmocka_unit_test(test_every_entry),
        cmocka_unit_test(test_in_the_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
