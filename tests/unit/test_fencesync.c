/* test_fencesync.c - consistency/fencesync.c against a real redis-server:
 * the control loop's Redis keeps the process-wide fence table in step with
 * what other quorumgate processes write (published fences, and every fence
 * read again when the subscriber connects), and watches Redis for
 * readiness (PING answered; maxmemory-policy other than noeviction). */
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

#include "base/log.h"
#include "base/loop.h"
#include "base/nodeset.h"
#include "base/util.h"
#include "config/config.h"
#include "consistency/ackstore.h"
#include "consistency/fencesync.h"
#include "io/redis.h"
#include "metrics/metrics.h"
#include "routing/cluster.h"
#include "routing/fence.h"

#define ID1 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define ID2 "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

struct fx {
    struct redis_fixture rs;
    char *dir;
    struct config *cfg;
    struct log *log;
    struct loop *loop;
    struct loop_timer *tick;
    struct cluster *cluster;
    struct metrics *metrics;
    struct fence fence;
    struct redis *other;          /* another quorumgate process's */
    struct fencesync *fs;
    int pending;
    uint64_t until_ms;
    bool (*pred)(struct fx *);
};

static void fx_tick(void *arg)
{
    struct fx *f = arg;
    if ((f->pred && f->pred(f)) || loop_now_ms(f->loop) >= f->until_ms)
        loop_stop(f->loop);
}

static bool run_until(struct fx *f, bool (*pred)(struct fx *),
                      uint64_t max_ms)
{
    loop_update_time(f->loop);
    f->until_ms = loop_now_ms(f->loop) + max_ms;
    f->pred = pred;
    if (pred(f))
        return true;
    loop_timer_start(f->tick, 5, 5);
    loop_run(f->loop);
    loop_timer_stop(f->tick);
    return pred(f);
}

static bool other_up(struct fx *f)
{
    return redis_up(f->other);
}

static bool nothing_pending(struct fx *f)
{
    return f->pending == 0;
}

static bool redis_ok(struct fx *f)
{
    return fencesync_redis_ok(f->fs);
}

static bool redis_not_ok(struct fx *f)
{
    return !fencesync_redis_ok(f->fs);
}

/* The subscriber's SUBSCRIBE was confirmed. */
static bool subscribed(struct fx *f)
{
    struct redis_stats st[2];
    fencesync_stats(f->fs, st);
    return st[1].ops[REDIS_OP_SUBSCRIBE][REDIS_RESULT_OK] >= 1;
}

static bool redis_evicts(struct fx *f)
{
    return fencesync_redis_evicts(f->fs);
}

static uint64_t fx_fenced(struct fx *f, const char *id)
{
    struct fence_key k;
    fence_key_from_hex(id, &k);
    return fence_mask(&f->fence, &k, fence_now(&f->fence));
}

static bool id1_fenced_at_ctrl2(struct fx *f)
{
    return fx_fenced(f, ID1) == nodeset_of(1);
}

static bool both_fenced(struct fx *f)
{
    return fx_fenced(f, ID1) == nodeset_of(0) &&
           fx_fenced(f, ID2) == (nodeset_of(1) | nodeset_of(2));
}

static bool id1_not_fenced(struct fx *f)
{
    return fx_fenced(f, ID1) == 0;
}

static void on_done(void *arg, enum redis_status st,
                    const struct redis_reply *rep)
{
    struct fx *f = arg;
    assert_int_equal(st, REDIS_STATUS_OK);
    f->pending--;
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
             "redis: {address: '127.0.0.1:%d'}\n"
             "gate: {enabled: true, source: events, fence_ttl: 60s}\n",
             f->rs.port);
    f->cfg = fixture_load(f->dir, yaml);
    f->cluster = cluster_new(f->cfg);
    const char *ids[] = {"ctrl1", "ctrl2", "ctrl3"};
    f->metrics = metrics_create(ids, 3);
    f->log = log_new(NULL, NULL);
    f->loop = loop_new();
    f->tick = loop_timer_new(f->loop, fx_tick, f);
    fence_init(&f->fence, 64);
    f->other = redis_new(f->loop, &f->cfg->redis,
                         &(struct redis_options){.name = "other"});
    assert_true(run_until(f, other_up, 5000));
    *state = f;
    return 0;
}

static int fx_teardown(void **state)
{
    struct fx *f = *state;
    fencesync_free(f->fs);
    redis_free(f->other);
    loop_timer_free(f->tick);
    loop_free(f->loop);
    fence_free(&f->fence);
    metrics_free(f->metrics);
    log_free(f->log);
    cluster_free(f->cluster);
    config_unref(f->cfg);
    redis_fixture_stop(&f->rs);
    fixture_remove(f->dir);
    free(f);
    return 0;
}

static void fx_start(struct fx *f)
{
    f->fs = fencesync_new(&(struct fencesync_args){
        .loop = f->loop,
        .cfg = f->cfg,
        .cluster = f->cluster,
        .fence = &f->fence,
        .metrics = f->metrics,
        .log = f->log,
    });
}

/* The other process fences id at the controllers in mask (change cid). */
static void fx_other_fences(struct fx *f, const char *id, const char *cid,
                            uint64_t mask, bool add)
{
    f->pending = 1;
    if (add)
        ackstore_fence_add(f->other, f->cfg, id, cid, util_wall_ms(),
                           f->cluster, mask, on_done, f);
    else
        ackstore_fence_clear(f->other, f->cfg, id, cid, util_wall_ms(),
                             f->cluster, mask, on_done, f);
    assert_true(run_until(f, nothing_pending, 5000));
}

static void test_ready_and_published_fences(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    assert_false(fencesync_redis_evicts(f->fs));
    assert_true(run_until(f, redis_ok, 5000));
    /* subscribed before the other process writes: what follows comes
     * through the publish, not through the read at connect */
    assert_true(run_until(f, subscribed, 5000));
    fx_other_fences(f, ID1, "0a0a", nodeset_of(1), true);
    assert_true(run_until(f, id1_fenced_at_ctrl2, 3000));
    /* the same change acknowledged there: the fence goes here too */
    fx_other_fences(f, ID1, "0a0a", nodeset_of(1), false);
    assert_true(run_until(f, id1_not_fenced, 3000));
}

/* Fences written while nobody listened are read when the subscriber
 * connects (a restart, a reconnection). */
static void test_fences_read_at_connect(void **state)
{
    struct fx *f = *state;
    fx_other_fences(f, ID1, "0a0a", nodeset_of(0), true);
    fx_other_fences(f, ID2, "0b0b", nodeset_of(1) | nodeset_of(2), true);
    assert_int_equal(fx_fenced(f, ID1), 0);
    fx_start(f);
    assert_true(run_until(f, both_fenced, 5000));
}

static void test_evicting_redis_is_flagged(void **state)
{
    struct fx *f = *state;
    f->pending = 1;
    redis_command(f->other, on_done, f, "CONFIG SET maxmemory-policy %s",
                  "allkeys-lru");
    assert_true(run_until(f, nothing_pending, 5000));
    fx_start(f);
    assert_true(run_until(f, redis_evicts, 5000));
    assert_true(run_until(f, redis_ok, 5000)); /* it answers all the same */
}

static void test_redis_down_is_seen(void **state)
{
    struct fx *f = *state;
    fx_start(f);
    assert_true(run_until(f, redis_ok, 5000));
    redis_fixture_stop(&f->rs);
    /* a PING every second: seen within a few */
    assert_true(run_until(f, redis_not_ok, 5000));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ready_and_published_fences,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_fences_read_at_connect,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_evicting_redis_is_flagged,
                                        fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_redis_down_is_seen, fx_setup,
                                        fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
