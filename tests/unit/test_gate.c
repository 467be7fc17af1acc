/* test_gate.c - the replication gate's pure parts: what a controller's
 * GET .../current-identity/mfa answer acknowledges (gate_acknowledges), and
 * what an entity-change event line means to the relay (relay_parse_line),
 * with events shaped as the controller writes them
 * (controller/event/entity_change.go: a typed nil state is written as
 * null, e.g. "initialState": null on a create). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "consistency/gate.h"
#include "consistency/relay.h"

/* ---- gate_acknowledges --------------------------------------------------- */

static bool acks(enum gate_call call, int status, const char *body)
{
    return gate_acknowledges(call, "mfa1", status, body, body ? strlen(body) : 0);
}

static const char unverified[] =
    "{\"data\":{\"id\":\"mfa1\",\"isVerified\":false,\"provisioningUrl\":\"otpauth://x\"},\"meta\":{}}";
static const char verified[] = "{\"data\":{\"id\":\"mfa1\",\"isVerified\":true},\"meta\":{}}";
static const char newer[] = "{\"data\":{\"id\":\"mfa2\",\"isVerified\":false},\"meta\":{}}";

static void test_create_acknowledged_by_the_enrollment_verified_or_not(void **state)
{
    (void)state;
    assert_true(acks(GATE_CREATE, 200, unverified));
    assert_true(acks(GATE_CREATE, 200, verified));
    assert_false(acks(GATE_CREATE, 200, newer));
    assert_false(acks(GATE_CREATE, 404, "{\"error\":{\"code\":\"NOT_FOUND\"}}"));
}

static void test_verify_acknowledged_only_when_verified(void **state)
{
    (void)state;
    assert_true(acks(GATE_VERIFY, 200, verified));
    assert_false(acks(GATE_VERIFY, 200, unverified));
    assert_false(acks(GATE_VERIFY, 200, newer));
    assert_false(acks(GATE_VERIFY, 404, ""));
}

static void test_delete_acknowledged_by_absence_or_a_newer_enrollment(void **state)
{
    (void)state;
    assert_true(acks(GATE_DELETE, 404, "{\"error\":{\"code\":\"NOT_FOUND\"}}"));
    assert_true(acks(GATE_DELETE, 200, newer));
    assert_false(acks(GATE_DELETE, 200, verified));
    assert_false(acks(GATE_DELETE, 200, unverified));
}

static void test_errors_and_garbage_acknowledge_nothing(void **state)
{
    (void)state;
    for (int call = GATE_CREATE; call <= GATE_DELETE; call++) {
        assert_false(acks(call, 401, "{\"error\":{\"code\":\"UNAUTHORIZED\"}}"));
        assert_false(acks(call, 500, "{\"error\":{\"code\":\"UNHANDLED\"}}"));
        assert_false(acks(call, 503, "{\"error\":{\"code\":\"CLUSTER_NO_LEADER\"}}"));
        assert_false(acks(call, 0, NULL));
        assert_false(acks(call, 429, ""));
    }
    assert_false(acks(GATE_VERIFY, 200, "not json"));
    assert_false(acks(GATE_VERIFY, 200, "{\"data\":null}"));
    assert_false(acks(GATE_VERIFY, 200, "{\"data\":{\"id\":\"mfa1\",\"isVerified\":\"true\"}}"));
    assert_false(acks(GATE_CREATE, 200, "{\"data\":{\"id\":7}}"));
}

/* ---- relay_parse_line ------------------------------------------------------ */

#define MFA(verified)                                                          \
    "{\"id\":\"m1\",\"createdAt\":\"2026-01-01T00:00:00Z\",\"tags\":{},"      \
    "\"isSystem\":false,\"identityId\":\"i1\",\"isVerified\":" verified ","  \
    "\"secret\":\"JBSWY3DPEHPK3PXP\",\"salt\":\"salty\","                     \
    "\"recoveryCodes\":[\"ABCDEF\",\"GHIJKL\"]}"
#define HEAD(type)                                                             \
    "{\"namespace\":\"entityChange\",\"event_src_id\":\"ctrl2\","             \
    "\"timestamp\":\"2026-01-01T00:00:01.250Z\",\"eventId\":\"e1\","          \
    "\"eventType\":\"" type "\",\"metadata\":{\"raft_index\":4711,"          \
    "\"version\":\"v1.5.4\"},\"entityType\":\"mfas\",\"isParentEvent\":false,"

static void parse(const char *line, struct relay_event *ev)
{
    relay_parse_line(line, strlen(line), ev);
}

static void assert_names_only(const struct relay_event *ev)
{
    assert_string_equal(ev->identity, "i1");
    assert_string_equal(ev->mfa_id, "m1");
    assert_string_equal(ev->source, "ctrl2");
    assert_int_equal(ev->raft_index, 4711);
    /* nothing else of the state is kept anywhere in the event */
    assert_null(memmem(ev, sizeof(*ev), "JBSWY3DP", 8));
    assert_null(memmem(ev, sizeof(*ev), "salty", 5));
    assert_null(memmem(ev, sizeof(*ev), "ABCDEF", 6));
}

static void test_relay_created(void **state)
{
    (void)state;
    struct relay_event ev;
    parse(HEAD("created") "\"initialState\":null,\"finalState\":" MFA("false") "}", &ev);
    assert_false(ev.malformed);
    assert_int_equal(ev.call, RELAY_CREATE);
    assert_names_only(&ev);
    assert_true(ev.ts_ms > 0);
}

static void test_relay_ids_too_long_are_not_cut(void **state)
{
    (void)state;
    struct relay_event ev;
    char line[4096], longid[200];
    memset(longid, 'a', sizeof(longid) - 1);
    longid[sizeof(longid) - 1] = '\0';
    /* an identity id longer than the event holds: not acknowledged under a
     * cut id (which could be another identity's) */
    snprintf(line, sizeof(line),
             HEAD("created") "\"initialState\":null,\"finalState\":"
             "{\"id\":\"m1\",\"identityId\":\"%s\",\"isVerified\":false}}",
             longid);
    parse(line, &ev);
    assert_int_equal(ev.call, RELAY_NONE);
    assert_string_equal(ev.identity, "");
    snprintf(line, sizeof(line),
             HEAD("created") "\"initialState\":null,\"finalState\":"
             "{\"id\":\"%s\",\"identityId\":\"i1\",\"isVerified\":false}}",
             longid);
    parse(line, &ev);
    assert_int_equal(ev.call, RELAY_NONE);
    /* the longest that fits is kept whole */
    longid[sizeof(ev.mfa_id) - 1] = '\0';
    snprintf(line, sizeof(line),
             HEAD("created") "\"initialState\":null,\"finalState\":"
             "{\"id\":\"%s\",\"identityId\":\"i1\",\"isVerified\":false}}",
             longid);
    parse(line, &ev);
    assert_int_equal(ev.call, RELAY_CREATE);
    assert_string_equal(ev.mfa_id, longid);
}

static void test_relay_verified(void **state)
{
    (void)state;
    struct relay_event ev;
    parse(HEAD("updated") "\"initialState\":" MFA("false") ",\"finalState\":" MFA("true") "}", &ev);
    assert_false(ev.malformed);
    assert_int_equal(ev.call, RELAY_VERIFY);
    assert_names_only(&ev);
    /* an update that is not the verification (new recovery codes) */
    parse(HEAD("updated") "\"initialState\":" MFA("true") ",\"finalState\":" MFA("true") "}", &ev);
    assert_false(ev.malformed);
    assert_int_equal(ev.call, RELAY_NONE);
}

static void test_relay_deleted_with_a_null_final_state(void **state)
{
    (void)state;
    struct relay_event ev;
    parse(HEAD("deleted") "\"initialState\":" MFA("true") ",\"finalState\":null}", &ev);
    assert_false(ev.malformed);
    assert_int_equal(ev.call, RELAY_DELETE);
    assert_names_only(&ev);
    /* and with the state left out (omitempty) */
    parse(HEAD("deleted") "\"initialState\":" MFA("true") "}", &ev);
    assert_false(ev.malformed);
    assert_int_equal(ev.call, RELAY_DELETE);
    assert_names_only(&ev);
}

static void test_relay_ignores_what_is_not_an_mfa_change(void **state)
{
    (void)state;
    struct relay_event ev;
    parse("{\"namespace\":\"entityChange\",\"event_src_id\":\"ctrl2\",\"timestamp\":"
          "\"2026-01-01T00:00:01Z\",\"eventId\":\"e1\",\"eventType\":\"committed\"}", &ev);
    assert_false(ev.malformed);
    assert_int_equal(ev.call, RELAY_NONE);
    parse("{\"namespace\":\"entityChange\",\"eventType\":\"created\",\"entityType\":\"identities\","
          "\"finalState\":{\"id\":\"i9\"}}", &ev);
    assert_false(ev.malformed);
    assert_int_equal(ev.call, RELAY_NONE);
    parse("{\"namespace\":\"cluster\",\"eventType\":\"leadership.gained\"}", &ev);
    assert_false(ev.malformed);
    assert_int_equal(ev.call, RELAY_NONE);
}

static void test_relay_malformed(void **state)
{
    (void)state;
    struct relay_event ev;
    parse("not json", &ev);
    assert_true(ev.malformed);
    parse("[1,2]", &ev);
    assert_true(ev.malformed);
    parse(HEAD("created") "\"finalState\":{\"id\":\"m1\"}}", &ev); /* no identity */
    assert_true(ev.malformed);
    parse(HEAD("deleted") "\"initialState\":null,\"finalState\":null}", &ev);
    assert_true(ev.malformed);
    assert_int_equal(ev.call, RELAY_NONE);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create_acknowledged_by_the_enrollment_verified_or_not),
        cmocka_unit_test(test_verify_acknowledged_only_when_verified),
        cmocka_unit_test(test_delete_acknowledged_by_absence_or_a_newer_enrollment),
        cmocka_unit_test(test_errors_and_garbage_acknowledge_nothing),
        cmocka_unit_test(test_relay_created),
        cmocka_unit_test(test_relay_verified),
        cmocka_unit_test(test_relay_ids_too_long_are_not_cut),
        cmocka_unit_test(test_relay_deleted_with_a_null_final_state),
        cmocka_unit_test(test_relay_ignores_what_is_not_an_mfa_change),
        cmocka_unit_test(test_relay_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
