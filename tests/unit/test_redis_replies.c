/* test_redis_replies.c - replies from Redis read by the acknowledgement
 * store whatever their shape (found by fuzz/fuzz_redis.c): a fence whose
 * expiry is an array or nil, a gate record whose field names are integers,
 * an identity that is not a string, are skipped, never dereferenced; the
 * well-formed ones still read.  Through hiredis' own reader
 * (redis_reply_parse) and the store's readers (ackstore_reply_reader);
 * arrays announcing more elements than anyone sends are refused. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/buf.h"
#include "config_fixture.h"
#include "consistency/ackstore.h"
#include "io/redis.h"
#include "routing/cluster.h"

#define YAML                                                                 \
    "listeners:\n"                                                           \
    "  - address: 127.0.0.1:8080\n"                                          \
    "controllers:\n"                                                         \
    "  - {id: c1, url: \"http://127.0.0.1:1280\"}\n"                         \
    "  - {id: c2, url: \"http://127.0.0.1:1281\"}\n"                         \
    "secrets: {hmac_key_file: hmac.key}\n"                                 \
    "gate: {legacy_sessions: unconfirmed}\n"

#define ID64 "abababababababababababababababababababababababababababababababab"

struct seen {
    int calls, fences, orphans;
    struct ackstore_orphan orphan;
    uint64_t mask;
    char idhex[80];
    struct ackstore_record rec;
};

static void on_fence(void *arg, bool ok, const char *idhex, uint64_t mask,
                     uint64_t expiry_ms)
{
    struct seen *s = arg;
    (void)ok; (void)expiry_ms;
    s->calls++;
    if (idhex) {
        s->fences++;
        s->mask |= mask;
        snprintf(s->idhex, sizeof(s->idhex), "%s", idhex);
    }
}

static void on_record(void *arg, bool ok, const struct ackstore_record *rec)
{
    struct seen *s = arg;
    (void)ok;
    s->calls++;
    s->rec = *rec;
}

static void on_orphans(void *arg, bool ok, const struct ackstore_orphan *o,
                       size_t n)
{
    struct seen *s = arg;
    (void)ok;
    s->calls++;
    s->orphans = (int)n;
    if (n)
        s->orphan = o[0];
}

static struct seen feed(struct cluster *c, enum ackstore_reply which,
                        const char *bytes, size_t len)
{
    struct seen s = {0};
    struct ackstore_ctx ctx = {.c = c, .fence = on_fence,
                               .record = on_record, .orphans = on_orphans,
                               .arg = &s};
    assert_true(redis_reply_parse(bytes, len, ackstore_reply_reader(which),
                                  &ctx));
    return s;
}

#define FEED(c, w, lit) feed(c, w, lit, sizeof(lit) - 1)

static void test_odd_shapes(void **state)
{
    struct config *cfg = fixture_load(*state, YAML);
    struct cluster *c = cluster_new(cfg);
    /* the fuzzer's find: a fence whose expiry is an array, then nil */
    struct seen s = FEED(c, ACKSTORE_REPLY_FENCE,
                         "*1\r\n*2\r\n$64\r\n" ID64 "\r\n*2\r\n$2\r\nc1\r\n*0\r\n");
    assert_int_equal(s.fences, 1);
    assert_int_equal(s.mask, 0);
    s = FEED(c, ACKSTORE_REPLY_FENCE,
             "*1\r\n*2\r\n$64\r\n" ID64 "\r\n*2\r\n$2\r\nc1\r\n$-1\r\n");
    assert_int_equal(s.mask, 0);
    /* an identity that is not a string: skipped */
    s = FEED(c, ACKSTORE_REPLY_FENCE, "*1\r\n*2\r\n:7\r\n*2\r\n$2\r\nc1\r\n$13\r\n9999999999999\r\n");
    assert_int_equal(s.fences, 0);
    assert_int_equal(s.calls, 1);
    /* a gate record with an integer field name and an array value */
    s = FEED(c, ACKSTORE_REPLY_RECORD, "*2\r\n*4\r\n:1\r\n$1\r\nx\r\n$6\r\nstatus\r\n*0\r\n*0\r\n");
    assert_true(s.rec.exists);
    assert_string_equal(s.rec.status, "");
    /* well-formed ones still read */
    s = FEED(c, ACKSTORE_REPLY_FENCE,
             "*1\r\n*2\r\n$64\r\n" ID64 "\r\n*2\r\n$2\r\nc2\r\n$13\r\n9999999999999\r\n");
    assert_int_equal(s.mask, 2);
    assert_string_equal(s.idhex, ID64);
    s = FEED(c, ACKSTORE_REPLY_RECORD,
             "*2\r\n*4\r\n$6\r\nstatus\r\n$7\r\npending\r\n$8\r\ndeadline\r\n$2\r\n12\r\n*1\r\n$2\r\nc1\r\n");
    assert_string_equal(s.rec.status, "pending");
    assert_int_equal(s.rec.deadline_wall_ms, 12);
    assert_int_equal(s.rec.acked, 1);
    /* claimed orphans: one of the wrong shape, one without a cid, one
     * whose acks are not an array, one well formed */
    s = FEED(c, ACKSTORE_REPLY_ORPHANS,
             "*4\r\n*2\r\n$1\r\nx\r\n$1\r\ny\r\n"
             "*5\r\n$0\r\n\r\n$64\r\n" ID64 "\r\n$1\r\n5\r\n$6\r\nverify\r\n*0\r\n"
             "*5\r\n$2\r\nc7\r\n$64\r\n" ID64 "\r\n:5\r\n$6\r\nverify\r\n:1\r\n"
             "*5\r\n$2\r\nc8\r\n$64\r\n" ID64 "\r\n$2\r\n42\r\n$6\r\ndelete\r\n*1\r\n$2\r\nc2\r\n");
    assert_int_equal(s.calls, 1);
    assert_int_equal(s.orphans, 2);
    assert_string_equal(s.orphan.cid, "c7");
    assert_int_equal(s.orphan.held_ms, 0);
    assert_int_equal(s.orphan.acked, 0);
    s = FEED(c, ACKSTORE_REPLY_ORPHANS,
             "*1\r\n*5\r\n$2\r\nc8\r\n$64\r\n" ID64 "\r\n$2\r\n42\r\n$6\r\ndelete\r\n*1\r\n$2\r\nc2\r\n");
    assert_int_equal(s.orphans, 1);
    assert_string_equal(s.orphan.call, "delete");
    assert_int_equal(s.orphan.held_ms, 42);
    assert_int_equal(s.orphan.acked, 2);
    /* not one complete reply: nothing is called */
    struct ackstore_ctx ctx = {.c = c, .fence = on_fence, .arg = &s};
    assert_false(redis_reply_parse("*2\r\n$1\r\n", 8, ackstore_reply_reader(ACKSTORE_REPLY_FENCE), &ctx));
    assert_false(redis_reply_parse("%%%\r\n", 5, ackstore_reply_reader(ACKSTORE_REPLY_FENCE), &ctx));
    cluster_free(c);
    config_unref(cfg);
}

static void count_calls(void *arg, enum redis_status st,
                        const struct redis_reply *rep)
{
    (void)st; (void)rep;
    (*(int *)arg)++;
}

/* hiredis 0.14 allocates what an array announces (fuzz_redis: *300000000
 * asked for 2.4 GB): more than 2^20 elements is refused as an error. */
static void test_huge_array_refused(void **state)
{
    (void)state;
    size_t n = (1u << 20) + 1;
    struct buf b = {0};
    buf_printf(&b, "*%zu\r\n", n);
    for (size_t i = 0; i < n; i++)
        buf_puts(&b, ":1\r\n");
    int calls = 0;
    assert_false(redis_reply_parse(b.data, b.len, count_calls, &calls));
    assert_int_equal(calls, 0);
    assert_false(redis_reply_parse("*300000000\r\n:1\r\n", 16, count_calls, &calls));
    assert_true(redis_reply_parse("*2\r\n:1\r\n:2\r\n", 12, count_calls, &calls));
    assert_int_equal(calls, 1);
    buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_odd_shapes),
        cmocka_unit_test(test_huge_array_refused),
    };
    return cmocka_run_group_tests(tests, fixture_group_setup,
                                  fixture_group_teardown);
}
