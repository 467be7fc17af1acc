/* test_envelope.c - the OpenZiti error envelope quorumgate answers its own
 * errors with (base/envelope.c): valid JSON with code, message, requestId,
 * an optional cause and the controller's meta, whatever the strings hold. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "base/envelope.h"
#include "base/json.h"

static struct json *parse(const char *body, size_t len)
{
    assert_int_equal(strlen(body), len);
    assert_true(len > 0 && body[len - 1] == '\n');
    struct json *j = json_parse(body, len);
    assert_non_null(j);
    return j;
}

static void test_error_envelope(void **state)
{
    (void)state;
    size_t len;
    char *body = envelope_error("PROXY_OVERLOADED",
                                "too many requests in flight, retry later",
                                "rid-42", NULL, &len);
    struct json *j = parse(body, len);
    assert_string_equal(json_path_string(j, "error.code"), "PROXY_OVERLOADED");
    assert_string_equal(json_path_string(j, "error.message"),
                        "too many requests in flight, retry later");
    assert_string_equal(json_path_string(j, "error.requestId"), "rid-42");
    assert_null(json_path(j, "error.cause"));
    /* the controller's own meta (controller/response/responder.go) */
    assert_true(json_is_object(json_get(j, "meta")));
    assert_string_equal(json_path_string(j, "meta.apiVersion"), "0.0.1");
    assert_string_equal(json_path_string(j, "meta.apiEnrollmentVersion"),
                        "0.0.1");
    /* nothing else at the top */
    int n = 0;
    for (struct json *c = json_first(j); c; c = json_next(c))
        n++;
    assert_int_equal(n, 2);
    json_free(j);
    free(body);
    assert_string_equal(ENVELOPE_CONTENT_TYPE, "application/json");
}

static void test_error_envelope_cause_and_escaping(void **state)
{
    (void)state;
    size_t len;
    char *body = envelope_error(
        "PROXY_UPSTREAM_ERROR",
        "controller \"c1\": reset\n\t(back\\slash) \x01 caf\xc3\xa9", NULL,
        "{\"code\":\"UNHANDLED\",\"message\":\"timed out\"}", &len);
    struct json *j = parse(body, len);
    assert_string_equal(json_path_string(j, "error.message"),
                        "controller \"c1\": reset\n\t(back\\slash) \x01 "
                        "caf\xc3\xa9");
    assert_string_equal(json_path_string(j, "error.requestId"), "");
    assert_string_equal(json_path_string(j, "error.cause.code"), "UNHANDLED");
    assert_string_equal(json_path_string(j, "error.cause.message"),
                        "timed out");
    json_free(j);
    free(body);
}

static void test_data_envelope(void **state)
{
    (void)state;
    size_t len;
    char *body = envelope_data("{\"id\":\"x\"}", &len);
    struct json *j = parse(body, len);
    assert_string_equal(json_path_string(j, "data.id"), "x");
    assert_true(json_is_object(json_get(j, "meta")));
    json_free(j);
    free(body);
    body = envelope_data("[]", &len);
    j = parse(body, len);
    assert_true(json_is_array(json_get(j, "data")));
    json_free(j);
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_error_envelope),
        cmocka_unit_test(test_error_envelope_cause_and_escaping),
        cmocka_unit_test(test_data_envelope),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
