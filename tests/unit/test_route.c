/* test_route.c - precedence when constraints meet (routing/route.c): a
 * hard home beats leader pinning and fences and is sent to even when the
 * probes mark it down (flagged home_down), only a home not configured is
 * HOME_GONE;
 * MFA waits for a leader (also when the leader is down, fenced, or just
 * said it is not leading); writes prefer the leader and fall back to
 * balancing; balancing skips controllers that are down, fenced or
 * already tried, and prefers the less loaded of two. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "config_fixture.h"
#include "routing/cluster.h"
#include "routing/route.h"

#define YAML                                                                 \
    "listeners:\n"                                                           \
    "  - address: 127.0.0.1:8080\n"                                          \
    "controllers:\n"                                                         \
    "  - {id: c1, url: \"http://127.0.0.1:1281\"}\n"                         \
    "  - {id: c2, url: \"http://127.0.0.1:1282\"}\n"                         \
    "  - {id: c3, url: \"http://127.0.0.1:1283\"}\n"                         \
    "gate: {legacy_sessions: unconfirmed}\n"                                \
    "secrets: {hmac_key_file: hmac.key}\n"

struct fx {
    char *dir;
    struct config *cfg;
    struct cluster *c;
    int outstanding[3];
    uint64_t rng;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct config_errors errs = {0};
    f->dir = fixture_make();
    f->cfg = config_load_string_dir("q.yaml", YAML, f->dir, &errs);
    if (!f->cfg)
        fixture_dump(&errs);
    assert_non_null(f->cfg);
    f->c = cluster_new(f->cfg);
    f->rng = 0x1234567;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    cluster_free(f->c);
    config_unref(f->cfg);
    fixture_remove(f->dir);
    free(f);
    return 0;
}

/* up: bitmask of live nodes; leader: index or -1 */
static void view(struct fx *f, unsigned up, int leader)
{
    for (int i = 0; i < 3; i++)
        atomic_store(&f->c->nodes[i].up, (up >> i) & 1);
    atomic_store(&f->c->leader, leader);
    atomic_store(&f->c->settled, true); /* every controller probed once */
    atomic_fetch_add(&f->c->generation, 1);
}

static struct route_out pick(struct fx *f, enum route_pin pin, int home, uint64_t fenced, uint64_t tried)
{
    struct route_in in = {.pin = pin, .home = home, .fenced = fenced, .tried = tried, .not_leader = -1};
    struct route_out out;
    route_pick(f->c, &in, f->outstanding, &f->rng, &out);
    return out;
}

static void test_home_is_a_hard_constraint(void **state)
{
    struct fx *f = *state;
    view(f, 7, 0);
    for (int pin = PIN_NONE; pin <= PIN_REQUIRE_LEADER; pin++) {
        struct route_out o = pick(f, (enum route_pin)pin, 2, 0, 0);
        assert_int_equal(o.kind, ROUTE_TO);
        assert_int_equal(o.node, 2);
        assert_int_equal(o.decision, DECISION_STICKY_HIT);
        /* the state exists nowhere else: fences and tries do not move it */
        o = pick(f, (enum route_pin)pin, 2, 1u << 2, 1u << 2);
        assert_int_equal(o.kind, ROUTE_TO);
        assert_int_equal(o.node, 2);
    }
    struct route_out o = pick(f, PIN_NONE, 2, 0, 0);
    assert_false(o.home_down);
    /* home (2) marked down by its probes: slow is not gone, it still gets
     * the requests of the state only it holds, flagged */
    view(f, 3, 0);
    for (int pin = PIN_NONE; pin <= PIN_REQUIRE_LEADER; pin++) {
        o = pick(f, (enum route_pin)pin, 2, 0, 1u << 2);
        assert_int_equal(o.kind, ROUTE_TO);
        assert_int_equal(o.node, 2);
        assert_int_equal(o.decision, DECISION_STICKY_HIT);
        assert_true(o.home_down);
    }
    view(f, 0, -1); /* nobody up, no leader, not even settled */
    atomic_store(&f->c->settled, false);
    o = pick(f, PIN_REQUIRE_LEADER, 1, 0, 0);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 1);
    assert_true(o.home_down);
    /* the entry names a controller this process does not have */
    struct route_in in = {.pin = PIN_NONE, .home = -1, .home_gone = true,
                          .not_leader = -1};
    view(f, 7, 0);
    route_pick(f->c, &in, f->outstanding, &f->rng, &o);
    assert_int_equal(o.kind, ROUTE_HOME_GONE);
    assert_int_equal(o.node, -1);
    assert_int_equal(o.decision, DECISION_STICKY_HIT);
}

static void test_leader_required(void **state)
{
    struct fx *f = *state;
    view(f, 7, 1);
    struct route_out o = pick(f, PIN_REQUIRE_LEADER, -1, 0, 0);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 1);
    assert_int_equal(o.decision, DECISION_PINNED);
    /* tried already (a retry): still the leader */
    o = pick(f, PIN_REQUIRE_LEADER, -1, 0, 1u << 1);
    assert_int_equal(o.node, 1);
    /* none known, or known but down: wait */
    view(f, 7, -1);
    o = pick(f, PIN_REQUIRE_LEADER, -1, 0, 0);
    assert_int_equal(o.kind, ROUTE_WAIT_LEADER);
    assert_int_equal(o.decision, DECISION_NO_LEADER_WAIT);
    view(f, 5, 1);
    o = pick(f, PIN_REQUIRE_LEADER, -1, 0, 0);
    assert_int_equal(o.kind, ROUTE_WAIT_LEADER);
    /* fenced from this identity: wait too (it says so) */
    view(f, 7, 1);
    o = pick(f, PIN_REQUIRE_LEADER, -1, 1u << 1, 0);
    assert_int_equal(o.kind, ROUTE_WAIT_LEADER);
    assert_true(o.fenced_skip);
}

/* The leader answered CLUSTER_NO_LEADER: not it again until the view
 * changes. */
static void test_not_leader_until_the_view_changes(void **state)
{
    struct fx *f = *state;
    view(f, 7, 0);
    struct route_in in = {.pin = PIN_REQUIRE_LEADER, .home = -1, .not_leader = 0,
                          .not_leader_gen = atomic_load(&f->c->generation)};
    struct route_out o;
    route_pick(f->c, &in, f->outstanding, &f->rng, &o);
    assert_int_equal(o.kind, ROUTE_WAIT_LEADER);
    in.pin = PIN_PREFER_LEADER;
    route_pick(f->c, &in, f->outstanding, &f->rng, &o);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.decision, DECISION_BALANCED);
    view(f, 7, 0); /* a new view, the same leader */
    in.pin = PIN_REQUIRE_LEADER;
    route_pick(f->c, &in, f->outstanding, &f->rng, &o);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 0);
}

static void test_leader_preferred(void **state)
{
    struct fx *f = *state;
    view(f, 7, 2);
    struct route_out o = pick(f, PIN_PREFER_LEADER, -1, 0, 0);
    assert_int_equal(o.node, 2);
    assert_int_equal(o.decision, DECISION_PINNED);
    view(f, 7, -1);
    for (int i = 0; i < 50; i++) {
        o = pick(f, PIN_PREFER_LEADER, -1, 0, 0);
        assert_int_equal(o.kind, ROUTE_TO);
        assert_int_equal(o.decision, DECISION_BALANCED);
    }
    view(f, 7, 2);
    for (int i = 0; i < 50; i++) {
        o = pick(f, PIN_PREFER_LEADER, -1, 1u << 2, 0);
        assert_int_equal(o.kind, ROUTE_TO);
        assert_true(o.node != 2);
        assert_int_equal(o.decision, DECISION_FENCED_SKIP);
    }
}

static void test_balancing(void **state)
{
    struct fx *f = *state;
    int seen[3] = {0};
    view(f, 7, 0);
    for (int i = 0; i < 300; i++) {
        struct route_out o = pick(f, PIN_NONE, -1, 0, 0);
        assert_int_equal(o.kind, ROUTE_TO);
        assert_int_equal(o.decision, DECISION_BALANCED);
        assert_false(o.fenced_skip);
        seen[o.node]++;
    }
    for (int i = 0; i < 3; i++)
        assert_true(seen[i] > 50);
    /* down and fenced controllers are skipped */
    view(f, 6, 0);
    for (int i = 0; i < 100; i++) {
        struct route_out o = pick(f, PIN_NONE, -1, 1u << 2, 0);
        assert_int_equal(o.node, 1);
        assert_int_equal(o.decision, DECISION_FENCED_SKIP);
    }
    /* a fence on a controller that is down changes nothing */
    view(f, 3, 0);
    struct route_out o = pick(f, PIN_NONE, -1, 1u << 2, 0);
    assert_true(o.node == 0 || o.node == 1);
    /* tried ones are avoided while others remain, then tried again */
    view(f, 7, 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(pick(f, PIN_NONE, -1, 0, 3).node, 2);
    int again = 0;
    for (int i = 0; i < 100; i++)
        again += pick(f, PIN_NONE, -1, 0, 7).kind == ROUTE_TO;
    assert_int_equal(again, 100);
    /* nobody */
    view(f, 0, -1);
    o = pick(f, PIN_NONE, -1, 0, 0);
    assert_int_equal(o.kind, ROUTE_NO_HEALTHY);
    /* fences never cover every healthy controller (issue 17): where all
     * of them are fenced, none is */
    view(f, 1, 0);
    o = pick(f, PIN_NONE, -1, 1, 0);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 0);
    assert_false(o.fenced_skip);
    view(f, 7, 0);
    for (int i = 0; i < 30; i++) {
        o = pick(f, PIN_NONE, -1, 7, 0);
        assert_int_equal(o.kind, ROUTE_TO);
        assert_int_equal(o.decision, DECISION_BALANCED);
    }
    o = pick(f, PIN_REQUIRE_LEADER, -1, 7, 0);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 0);
}

static void test_two_choices_prefer_the_less_loaded(void **state)
{
    struct fx *f = *state;
    int seen[3] = {0};
    view(f, 7, 0);
    f->outstanding[0] = 0;
    f->outstanding[1] = 40;
    f->outstanding[2] = 40;
    for (int i = 0; i < 3000; i++)
        seen[pick(f, PIN_NONE, -1, 0, 0).node]++;
    /* node 0 wins every pair it is in: 2 of 3 pairs */
    assert_true(seen[0] > 1800);
    assert_true(seen[1] > 300 && seen[2] > 300);
    memset(f->outstanding, 0, sizeof(f->outstanding));
    assert_int_equal(route_p2c(f->outstanding, 0, 3, &f->rng), -1);
    assert_int_equal(route_p2c(f->outstanding, 4, 3, &f->rng), 2);
    assert_string_equal(route_decision_name(DECISION_STICKY_MISS), "sticky_miss");
    assert_string_equal(route_decision_name(DECISION_NO_LEADER_WAIT), "no_leader_wait");
    assert_string_equal(route_decision_name((enum route_decision)42), "balanced");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_home_is_a_hard_constraint, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_required, setup, teardown),
        cmocka_unit_test_setup_teardown(test_not_leader_until_the_view_changes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_leader_preferred, setup, teardown),
        cmocka_unit_test_setup_teardown(test_balancing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_choices_prefer_the_less_loaded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
