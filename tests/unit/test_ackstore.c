/* test_ackstore.c - consistency/ackstore.c against a real redis-server:
 * gate records and their acknowledgements (hold, ack, read, outcome),
 * fences (add, clear by change age, read one, read all), what every key's
 * TTL is, and a Redis that is down (callbacks say so, nothing hangs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config_fixture.h"
#include "redis_fixture.h"

#include "base/crypto.h"
#include "base/loop.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "config/config.h"
#include "consistency/ackstore.h"
#include "io/redis.h"
#include "routing/cluster.h"

#define CID "c0ffee01"
#define ID1 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID2 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct fx {
    struct redis_fixture rs;
    char *dir;
    struct config *cfg;
    struct loop *loop;
    struct loop_timer *tick;
    struct redis *redis;
    struct cluster *cluster;
    struct ackstore_ctx ctx;
    uint64_t until_ms;
    int pending;                 /* callbacks still expected */
    /* what the callbacks got */
    bool ok;
    uint64_t mask;
    struct ackstore_record rec;
    int n_fences;                /* fence callbacks with an identity */
    char fence_ids[4][CRYPTO_HMAC_HEX_LEN + 1];
    uint64_t fence_masks[4];
    uint64_t fence_expiry;
    bool fence_done;             /* the idhex == NULL call */
    long long integer;           /* a raw command's integer reply */
    struct ackstore_orphan orphans[ACKSTORE_ORPHANS_MAX];
    size_t n_orphans;
    enum redis_status raw_status;
};

static void fx_tick(void *arg)
{
    struct fx *f = arg;
    if (f->pending <= 0 || loop_now_ms(f->loop) >= f->until_ms)
        loop_stop(f->loop);
}

/* Runs the loop until every expected callback ran (at most 5 s). */
static void fx_wait(struct fx *f)
{
    loop_update_time(f->loop);
    f->until_ms = loop_now_ms(f->loop) + 5000;
    loop_timer_start(f->tick, 2, 2);
    if (f->pending > 0)
        loop_run(f->loop);
    loop_timer_stop(f->tick);
    assert_int_equal(f->pending, 0);
}

static void on_acks(void *arg, bool ok, uint64_t mask)
{
    struct fx *f = arg;
    f->ok = ok;
    f->mask = mask;
    f->pending--;
}

static void on_record(void *arg, bool ok, const struct ackstore_record *rec)
{
    struct fx *f = arg;
    f->ok = ok;
    f->rec = *rec;
    f->pending--;
}

static void on_fence(void *arg, bool ok, const char *idhex, uint64_t mask,
                     uint64_t expiry_ms)
{
    struct fx *f = arg;
    f->ok = ok;
    if (!idhex) {
        f->fence_done = true;
        f->pending--;
        return;
    }
    assert_true(f->n_fences < 4);
    snprintf(f->fence_ids[f->n_fences], sizeof(f->fence_ids[0]), "%s",
             idhex);
    f->fence_masks[f->n_fences++] = mask;
    f->fence_expiry = expiry_ms;
}

static void on_orphans(void *arg, bool ok, const struct ackstore_orphan *o,
                       size_t n)
{
    struct fx *f = arg;
    f->ok = ok;
    f->n_orphans = n;
    memcpy(f->orphans, o, n * sizeof(*o));
    f->pending--;
}

static void on_raw(void *arg, enum redis_status st,
                   const struct redis_reply *rep)
{
    struct fx *f = arg;
    f->raw_status = st;
    f->integer = st == REDIS_STATUS_OK ? rep->integer : 0;
    f->pending--;
}

/* PTTL of key (with the configured prefix). */
static long long fx_pttl(struct fx *f, const char *key)
{
    f->pending = 1;
    redis_command(f->redis, on_raw, f, "PTTL %s%s", f->cfg->redis.key_prefix,
                  key);
    fx_wait(f);
    assert_int_equal(f->raw_status, REDIS_STATUS_OK);
    return f->integer;
}

static void fx_ready_tick(void *arg)
{
    struct fx *f = arg;
    if (redis_up(f->redis) || loop_now_ms(f->loop) >= f->until_ms)
        loop_stop(f->loop);
}

static int fx_setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    char yaml[1024];
    redis_fixture_start(&f->rs);
    f->dir = fixture_make();
    snprintf(yaml, sizeof(yaml),
             "listeners:\n"
             "  - address: 127.0.0.1:8443\n"
             "secrets: {hmac_key_file: hmac.key}\n"
             "controllers:\n"
             "  - {id: ctrl1, url: 'http://127.0.0.1:9'}\n"
             "  - {id: ctrl2, url: 'http://127.0.0.2:9'}\n"
             "  - {id: ctrl3, url: 'http://127.0.0.3:9'}\n"
             "redis: {address: '127.0.0.1:%d', key_prefix: 't1:'}\n"
             "gate:\n"
             "  enabled: true\n"
             "  timeout: 10s\n"
             "  outcome_ttl: 20s\n"
             "  fence_ttl: 30s\n"
             "  source: events\n",
             f->rs.port);
    f->cfg = fixture_load(f->dir, yaml);
    f->cluster = cluster_new(f->cfg);
    f->loop = loop_new();
    f->redis = redis_new(f->loop, &f->cfg->redis,
                         &(struct redis_options){.name = "test"});
    struct loop_timer *t = loop_timer_new(f->loop, fx_ready_tick, f);
    loop_update_time(f->loop);
    f->until_ms = loop_now_ms(f->loop) + 5000;
    loop_timer_start(t, 5, 5);
    loop_run(f->loop);
    loop_timer_free(t);
    assert_true(redis_up(f->redis));
    f->tick = loop_timer_new(f->loop, fx_tick, f);
    f->ctx = (struct ackstore_ctx){.c = f->cluster,
                                   .acks = on_acks,
                                   .record = on_record,
                                   .fence = on_fence,
                                   .orphans = on_orphans,
                                   .arg = f};
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    redis_free(f->redis);
    loop_timer_free(f->tick);
    loop_free(f->loop);
    cluster_free(f->cluster);
    config_unref(f->cfg);
    redis_fixture_stop(&f->rs);
    fixture_remove(f->dir);
    free(f);
    return 0;
}

static void fx_hold(struct fx *f, const char *answered_by)
{
    f->pending = 1;
    assert_non_null(ackstore_hold(f->redis, f->cfg, CID, ID1, "verify",
                                  f->cluster, nodeset_first(3),
                                  util_mono_ms() + 10000, util_wall_ms(),
                                  answered_by, &f->ctx));
    fx_wait(f);
}

static void fx_read_record(struct fx *f, const char *cid)
{
    f->pending = 1;
    memset(&f->rec, 0xff, sizeof(f->rec));
    assert_non_null(ackstore_read_record(f->redis, f->cfg, cid, &f->ctx));
    fx_wait(f);
}

static void test_hold_ack_read(void **state)
{
    struct fx *f = *state;
    uint64_t wall = util_wall_ms();
    fx_hold(f, "ctrl2");
    assert_true(f->ok);
    assert_int_equal(f->mask, nodeset_of(1));

    ackstore_ack(f->redis, f->cfg, CID, "ctrl3");
    f->pending = 1;
    assert_non_null(ackstore_read_acks(f->redis, f->cfg, CID, &f->ctx));
    fx_wait(f);
    assert_true(f->ok);
    assert_int_equal(f->mask, nodeset_of(1) | nodeset_of(2));

    fx_read_record(f, CID);
    assert_true(f->ok);
    assert_true(f->rec.exists);
    assert_string_equal(f->rec.status, "pending");
    assert_string_equal(f->rec.replication, "");
    assert_in_range(f->rec.deadline_wall_ms, wall + 9000, wall + 11000);
    assert_int_equal(f->rec.acked, nodeset_of(1) | nodeset_of(2));

    /* another quorumgate holds the same change: the acknowledgements add
     * up, the record is not reset */
    fx_hold(f, "ctrl1");
    assert_true(f->ok);
    assert_int_equal(f->mask, nodeset_first(3));
    fx_read_record(f, CID);
    assert_string_equal(f->rec.status, "pending");

    /* every key expires: gate.timeout + gate.outcome_ttl */
    long long ttl = fx_pttl(f, "gate:" CID);
    assert_in_range(ttl, 1, 30000);
    ttl = fx_pttl(f, "gate:" CID ":acks");
    assert_in_range(ttl, 1, 30000);
}

static void test_outcome(void **state)
{
    struct fx *f = *state;
    fx_hold(f, "ctrl1");
    f->pending = 1;
    ackstore_record_outcome(f->redis, f->cfg, CID, "released",
                            "acked=ctrl1,ctrl2,ctrl3", on_raw, f);
    fx_wait(f);
    fx_read_record(f, CID);
    assert_true(f->rec.exists);
    assert_string_equal(f->rec.status, "released");
    assert_string_equal(f->rec.replication, "acked=ctrl1,ctrl2,ctrl3");
    assert_int_equal(f->rec.acked, nodeset_of(0));

    /* the outcome of a record that is gone makes one that expires too */
    f->pending = 1;
    ackstore_record_outcome(f->redis, f->cfg, "gone01", "timeout",
                            "acked=ctrl1; pending=ctrl2,ctrl3", on_raw, f);
    fx_wait(f);
    fx_read_record(f, "gone01");
    assert_true(f->rec.exists);
    assert_string_equal(f->rec.status, "timeout");
    assert_int_equal(f->rec.acked, 0);
    long long ttl = fx_pttl(f, "gate:gone01");
    assert_in_range(ttl, 1, 30000);
}

static void fx_orphans(struct fx *f, uint64_t cutoff_wall_ms)
{
    f->pending = 1;
    f->n_orphans = 99;
    assert_non_null(ackstore_orphans(f->redis, f->cfg, cutoff_wall_ms,
                                     &f->ctx));
    fx_wait(f);
    assert_true(f->ok);
}

/* A change still open after its deadline was held by a quorumgate that
 * went away: claimed once, with what it needs to be fenced; one whose
 * outcome was recorded, or whose deadline is still ahead, is not. */
static void test_orphans(void **state)
{
    struct fx *f = *state;
    uint64_t held = util_wall_ms() - 5000;
    f->pending = 1;
    assert_non_null(ackstore_hold(f->redis, f->cfg, CID, ID1, "delete",
                                  f->cluster, nodeset_first(3),
                                  util_mono_ms(), held, "ctrl2", &f->ctx));
    fx_wait(f);
    ackstore_ack(f->redis, f->cfg, CID, "ctrl3");
    /* released in time: not open */
    f->pending = 1;
    assert_non_null(ackstore_hold(f->redis, f->cfg, "c0ffee02", ID2, "verify",
                                  f->cluster, nodeset_first(3),
                                  util_mono_ms(), held, "ctrl1", &f->ctx));
    fx_wait(f);
    f->pending = 1;
    ackstore_record_outcome(f->redis, f->cfg, "c0ffee02", "released",
                            "acked=ctrl1,ctrl2,ctrl3", on_raw, f);
    fx_wait(f);
    /* its deadline ahead: not yet */
    fx_hold(f, "ctrl1"); /* CID again: the record and its deadline stay */
    f->pending = 1;
    assert_non_null(ackstore_hold(f->redis, f->cfg, "c0ffee03", ID2, "verify",
                                  f->cluster, nodeset_first(3),
                                  util_mono_ms() + 60000, held, "ctrl1",
                                  &f->ctx));
    fx_wait(f);

    long long ttl = fx_pttl(f, "gate-open"); /* expires like the records */
    assert_true(ttl > 0 && ttl <= 30000);

    fx_orphans(f, util_wall_ms() - 10000);
    assert_int_equal(f->n_orphans, 0);
    fx_orphans(f, util_wall_ms());
    assert_int_equal(f->n_orphans, 1);
    assert_string_equal(f->orphans[0].cid, CID);
    assert_string_equal(f->orphans[0].idhex, ID1);
    assert_string_equal(f->orphans[0].call, "delete");
    assert_int_equal(f->orphans[0].held_ms, held);
    assert_int_equal(f->orphans[0].acked,
                     nodeset_of(0) | nodeset_of(1) | nodeset_of(2));
    fx_read_record(f, CID);
    assert_string_equal(f->rec.status, "timeout");
    /* claimed once */
    fx_orphans(f, util_wall_ms());
    assert_int_equal(f->n_orphans, 0);
    /* a hold of a claimed change (a repeat) does not open it again */
    fx_hold(f, "ctrl1");
    fx_orphans(f, util_wall_ms() + 120000);
    assert_int_equal(f->n_orphans, 1);
    assert_string_equal(f->orphans[0].cid, "c0ffee03");
    /* nothing open is left: the set is gone */
    assert_true(fx_pttl(f, "gate-open") == -2);
}

static void test_unknown_record(void **state)
{
    struct fx *f = *state;
    fx_read_record(f, "nosuch");
    assert_true(f->ok);
    assert_false(f->rec.exists);
    assert_int_equal(f->rec.acked, 0);
    assert_string_equal(f->rec.status, "");
}

static void fx_fence(struct fx *f, bool add, const char *id, const char *cid,
                     uint64_t held_ms, uint64_t mask)
{
    f->pending = 1;
    if (add)
        ackstore_fence_add(f->redis, f->cfg, id, cid, held_ms, f->cluster,
                           mask, on_raw, f);
    else
        ackstore_fence_clear(f->redis, f->cfg, id, cid, held_ms, f->cluster,
                             mask, on_raw, f);
    fx_wait(f);
    assert_int_equal(f->raw_status, REDIS_STATUS_OK);
}

/* The fence of id: its mask (and f->fence_expiry).  A read reports the
 * identity, then ends with a call without one. */
static uint64_t fx_fence_read(struct fx *f, const char *id)
{
    f->n_fences = 0;
    f->fence_done = false;
    f->pending = 1;
    assert_non_null(ackstore_fence_read(f->redis, f->cfg, id, &f->ctx));
    fx_wait(f);
    assert_true(f->ok);
    assert_true(f->fence_done);
    assert_int_equal(f->n_fences, 1);
    assert_string_equal(f->fence_ids[0], id);
    return f->fence_masks[0];
}

static void test_fences(void **state)
{
    struct fx *f = *state;
    uint64_t wall = util_wall_ms();
    /* change ids are hex, as the HMACs the gate makes */
    /* change A (held at 1000) fences ctrl1 and ctrl3 */
    fx_fence(f, true, ID1, "0a0a", 1000, nodeset_of(0) | nodeset_of(2));
    assert_int_equal(fx_fence_read(f, ID1), nodeset_of(0) | nodeset_of(2));
    assert_in_range(f->fence_expiry, wall + 29000, wall + 31000);
    /* change B, newer (2000), acknowledged by ctrl1: A's fence there goes */
    fx_fence(f, false, ID1, "0b0b", 2000, nodeset_of(0));
    assert_int_equal(fx_fence_read(f, ID1), nodeset_of(2));
    /* change C (3000) fences ctrl3 again; an older change's ack (2500)
     * must not lift it: ctrl3 may not have C yet */
    fx_fence(f, true, ID1, "0c0c", 3000, nodeset_of(2));
    fx_fence(f, false, ID1, "0b2b", 2500, nodeset_of(2));
    assert_int_equal(fx_fence_read(f, ID1), nodeset_of(2));
    /* C's own acknowledgement lifts it */
    fx_fence(f, false, ID1, "0c0c", 3000, nodeset_of(2));
    assert_int_equal(fx_fence_read(f, ID1), 0);
    /* an identity never fenced */
    assert_int_equal(fx_fence_read(f, ID2), 0);
}

static void test_fence_read_all(void **state)
{
    struct fx *f = *state;
    fx_fence(f, true, ID1, "0a0a", 1000, nodeset_of(1));
    fx_fence(f, true, ID2, "0b0b", 1000, nodeset_of(0) | nodeset_of(1));
    f->n_fences = 0;
    f->fence_done = false;
    f->pending = 1;
    assert_non_null(ackstore_fence_read_all(f->redis, f->cfg, &f->ctx));
    fx_wait(f);
    assert_true(f->fence_done);
    assert_true(f->ok);
    assert_int_equal(f->n_fences, 2);
    for (int i = 0; i < 2; i++) {
        if (strcmp(f->fence_ids[i], ID1) == 0)
            assert_int_equal(f->fence_masks[i], nodeset_of(1));
        else {
            assert_string_equal(f->fence_ids[i], ID2);
            assert_int_equal(f->fence_masks[i],
                             nodeset_of(0) | nodeset_of(1));
        }
    }
    long long ttl = fx_pttl(f, "fence-index");
    assert_in_range(ttl, 1, 31000);
    ttl = fx_pttl(f, "fence:" ID2);
    assert_in_range(ttl, 1, 31000);
}

/* Redis down: every callback says so, promptly. */
static void test_redis_down(void **state)
{
    struct fx *f = *state;
    redis_fixture_stop(&f->rs);
    /* the connection notices on its next command: fail fast after that */
    for (int i = 0; i < 2; i++) {
        f->pending = 1;
        redis_command(f->redis, on_raw, f, "PING");
        fx_wait(f);
    }
    assert_int_not_equal(f->raw_status, REDIS_STATUS_OK);
    fx_hold(f, "ctrl1");
    assert_false(f->ok);
    fx_read_record(f, CID);
    assert_false(f->ok);
    assert_false(f->rec.exists);
}

static void test_mask_of(void **state)
{
    struct fx *f = *state;
    assert_int_equal(ackstore_mask_of(f->cluster, "ctrl1,ctrl3", 11),
                     nodeset_of(0) | nodeset_of(2));
    assert_int_equal(ackstore_mask_of(f->cluster, "ctrl2", 5),
                     nodeset_of(1));
    assert_int_equal(ackstore_mask_of(f->cluster, "ctrl9,ctrl2", 11),
                     nodeset_of(1));
    assert_int_equal(ackstore_mask_of(f->cluster, "", 0), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_hold_ack_read, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_outcome, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_orphans, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_unknown_record, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_fences, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fence_read_all, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_redis_down, fx_setup,
                                        fx_teardown),
        cmocka_unit_test_setup_teardown(test_mask_of, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
