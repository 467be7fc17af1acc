/* test_cluster.c - the cluster view (routing/cluster.c): probe results with
 * rise and fall counts, who leads (the newest claim, never a controller
 * that is down, never one whose body says follower), passive failures
 * counted like failed probes, the generation that tells workers the view
 * changed, and the first probe round that settles the view (before it,
 * leader-pinned requests wait rather than guess). */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "routing/cluster.h"
#include "routing/route.h"

#define N 3

struct fix {
    struct cluster c;
    struct cluster_node nodes[N];
    int outstanding[N];
    uint64_t rng;
};

/* A view as cluster_new leaves it: everyone counts as up until probed, no
 * leader, not settled. */
static struct fix *fix_new(void)
{
    struct fix *f = calloc(1, sizeof(*f));
    f->c.n = N;
    f->c.nodes = f->nodes;
    for (int i = 0; i < N; i++) {
        f->nodes[i].index = i;
        snprintf(f->nodes[i].id, sizeof(f->nodes[i].id), "c%d", i + 1);
        atomic_store(&f->nodes[i].up, 1);
    }
    atomic_store(&f->c.leader, -1);
    atomic_store(&f->c.no_leader_since_ms, 1);
    f->rng = 12345;
    return f;
}

static struct route_out pick(struct fix *f, enum route_pin pin)
{
    struct route_in in = {.pin = pin, .home = -1, .not_leader = -1};
    struct route_out out;
    route_pick(&f->c, &in, f->outstanding, &f->rng, &out);
    return out;
}

static void test_rise_fall_and_leader(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct cluster *c = &f->c;
    /* the first answer of each controller decides at once */
    assert_true(cluster_probe_result(c, 0, 200, true, NULL, 2, 2, 10));
    assert_int_equal(cluster_leader(c), 0);
    assert_int_equal(atomic_load(&c->leader_changes), 1);
    assert_int_equal(atomic_load(&c->no_leader_since_ms), 0);
    assert_int_equal(atomic_load(&c->leader_known_since_ms), 10);
    assert_false(cluster_probe_result(c, 1, 429, false, NULL, 2, 2, 10));
    assert_true(cluster_up(c, 1));
    assert_true(cluster_probe_result(c, 2, 0, false, "refused", 2, 2, 10));
    assert_false(cluster_up(c, 2));
    assert_int_equal(cluster_count_up(c), 2);
    assert_int_equal(atomic_load(&c->nodes[2].last_status), 0);
    assert_string_equal(c->nodes[2].last_error, "refused");

    /* fall 2: one failure is not enough, and changes nothing visible */
    uint64_t gen = atomic_load(&c->generation);
    assert_false(cluster_probe_result(c, 1, 503, false, "x", 2, 2, 20));
    assert_true(cluster_up(c, 1));
    assert_int_equal(atomic_load(&c->generation), gen);
    assert_true(cluster_probe_result(c, 1, 0, false, "x", 2, 2, 30));
    assert_false(cluster_up(c, 1));
    assert_true(atomic_load(&c->generation) > gen);

    /* one failed probe of the leader (fall 2): still up, and still the
     * leader (a 429 would end its claim; a failure does not, until fall) */
    assert_false(cluster_probe_result(c, 0, 0, false, "x", 2, 2, 40));
    assert_true(cluster_up(c, 0));
    assert_int_equal(cluster_leader(c), 0);
    /* a success in between resets the count */
    cluster_probe_result(c, 0, 200, true, NULL, 2, 2, 50);
    assert_int_equal(cluster_leader(c), 0);
    cluster_probe_result(c, 0, 0, false, "x", 2, 2, 60);
    assert_true(cluster_up(c, 0));
    assert_int_equal(cluster_leader(c), 0);
    /* the second failure in a row: down, and no leader */
    assert_true(cluster_probe_result(c, 0, 0, false, "x", 2, 2, 65));
    assert_false(cluster_up(c, 0));
    assert_int_equal(cluster_leader(c), -1);
    assert_int_equal(atomic_load(&c->no_leader_since_ms), 65);
    cluster_probe_result(c, 0, 200, true, NULL, 2, 2, 66);
    cluster_probe_result(c, 0, 200, true, NULL, 2, 2, 67);
    assert_int_equal(cluster_leader(c), 0);

    /* rise 2 */
    assert_false(cluster_probe_result(c, 2, 429, false, NULL, 2, 2, 70));
    assert_false(cluster_up(c, 2));
    assert_true(cluster_probe_result(c, 2, 429, false, NULL, 2, 2, 80));
    assert_true(cluster_up(c, 2));
    /* any other status is unhealthy (fall 1 here) */
    cluster_probe_result(c, 2, 500, false, "status 500", 2, 1, 90);
    assert_false(cluster_up(c, 2));
    free(f);
}

static void test_newest_claim_leads(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct cluster *c = &f->c;
    cluster_probe_result(c, 0, 200, true, NULL, 1, 1, 100);
    cluster_probe_result(c, 1, 429, false, NULL, 1, 1, 100);
    assert_int_equal(cluster_leader(c), 0);
    /* the old leader has not stepped down yet: the newer claim wins */
    cluster_probe_result(c, 1, 200, true, NULL, 1, 1, 200);
    assert_int_equal(cluster_leader(c), 1);
    cluster_probe_result(c, 0, 429, false, NULL, 1, 1, 210);
    assert_int_equal(cluster_leader(c), 1);
    /* a claim from a controller that is down does not count */
    cluster_probe_result(c, 2, 200, true, NULL, 2, 2, 215);
    assert_int_equal(cluster_leader(c), 2); /* (its first answer: up) */
    cluster_probe_result(c, 2, 0, false, "x", 1, 1, 216);
    assert_int_equal(cluster_leader(c), 1);
    /* the body says follower although the status says 200 */
    cluster_probe_result(c, 1, 200, false, NULL, 1, 1, 220);
    assert_int_equal(cluster_leader(c), -1);
    assert_int_equal(atomic_load(&c->no_leader_since_ms), 220);
    free(f);
}

static void test_passive_failure(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct cluster *c = &f->c;
    for (int i = 0; i < N; i++)
        cluster_probe_result(c, i, i == 0 ? 200 : 429, i == 0, NULL, 2, 2, 1);
    /* one refusal counts as one failed probe: with fall 2, not yet down */
    assert_false(cluster_passive_failure(c, 0, "refused", 2, 5));
    assert_true(cluster_up(c, 0));
    assert_int_equal(cluster_leader(c), 0);
    assert_true(cluster_passive_failure(c, 0, "refused", 2, 6));
    assert_false(cluster_up(c, 0));
    assert_int_equal(cluster_leader(c), -1);
    assert_string_equal(c->nodes[0].last_error, "passive: refused");
    assert_true(cluster_passive_failure(c, 1, "refused", 1, 7));
    assert_int_equal(cluster_count_up(c), 1);
    /* the next good probe brings it back (rise 1) */
    cluster_probe_result(c, 1, 429, false, NULL, 1, 1, 8);
    assert_true(cluster_up(c, 1));
    free(f);
}

/* Logged once per episode: from the first note until the controller is
 * marked up again; each kind of note on its own. */
static void test_notes_once_per_episode(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct cluster *c = &f->c;
    for (int k = 0; k < 2; k++)
        cluster_probe_result(c, 1, 500, false, "boom", 2, 2, 10);
    assert_int_equal(atomic_load(&c->nodes[1].up), 0);
    assert_true(cluster_note_once(c, 1, CLUSTER_NOTE_HOME_DOWN));
    assert_false(cluster_note_once(c, 1, CLUSTER_NOTE_HOME_DOWN));
    assert_true(cluster_note_once(c, 1, CLUSTER_NOTE_HOME_UNREACHABLE));
    assert_false(cluster_note_once(c, 1, CLUSTER_NOTE_HOME_UNREACHABLE));
    assert_true(cluster_note_once(c, 0, CLUSTER_NOTE_HOME_DOWN));
    /* one success (rise 2) is not a recovery; more failures are the same
     * episode */
    cluster_probe_result(c, 1, 429, false, NULL, 2, 2, 20);
    cluster_probe_result(c, 1, 500, false, "boom", 2, 2, 30);
    assert_false(cluster_note_once(c, 1, CLUSTER_NOTE_HOME_DOWN));
    /* up again: the next trouble is a new episode */
    cluster_probe_result(c, 1, 429, false, NULL, 2, 2, 40);
    cluster_probe_result(c, 1, 429, false, NULL, 2, 2, 50);
    assert_int_equal(atomic_load(&c->nodes[1].up), 1);
    for (int k = 0; k < 2; k++)
        cluster_probe_result(c, 1, 0, false, "timeout", 2, 2, 60);
    assert_true(cluster_note_once(c, 1, CLUSTER_NOTE_HOME_DOWN));
    assert_false(cluster_note_once(c, 1, CLUSTER_NOTE_HOME_DOWN));
    assert_true(cluster_note_once(c, 1, CLUSTER_NOTE_HOME_UNREACHABLE));
    free(f);
}

static void test_first_probe_round_settles_the_view(void **state)
{
    (void)state;
    struct fix *f = fix_new();
    struct cluster *c = &f->c;
    /* just started: reads go anywhere, leader-pinned requests wait */
    assert_false(atomic_load(&c->settled));
    assert_int_equal(pick(f, PIN_NONE).kind, ROUTE_TO);
    assert_int_equal(pick(f, PIN_PREFER_LEADER).kind, ROUTE_WAIT_LEADER);
    assert_int_equal(pick(f, PIN_REQUIRE_LEADER).kind, ROUTE_WAIT_LEADER);
    /* two of three answered, no leader among them: still waiting */
    assert_false(cluster_probe_result(c, 0, 429, false, NULL, 2, 2, 1));
    cluster_probe_result(c, 1, 0, false, "x", 2, 2, 1);
    assert_false(atomic_load(&c->settled));
    assert_int_equal(pick(f, PIN_PREFER_LEADER).kind, ROUTE_WAIT_LEADER);
    /* the last one: settled (a visible change), writes balance now */
    uint64_t gen = atomic_load(&c->generation);
    assert_true(cluster_probe_result(c, 2, 429, false, NULL, 2, 2, 2));
    assert_true(atomic_load(&c->settled));
    assert_true(atomic_load(&c->generation) > gen);
    struct route_out o = pick(f, PIN_PREFER_LEADER);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.decision, DECISION_BALANCED);
    assert_int_equal(pick(f, PIN_REQUIRE_LEADER).kind, ROUTE_WAIT_LEADER);
    free(f);

    /* a leader found before the round is over is used at once */
    f = fix_new();
    cluster_probe_result(&f->c, 1, 200, true, NULL, 2, 2, 1);
    assert_false(atomic_load(&f->c.settled));
    o = pick(f, PIN_PREFER_LEADER);
    assert_int_equal(o.kind, ROUTE_TO);
    assert_int_equal(o.node, 1);
    free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rise_fall_and_leader),
        cmocka_unit_test(test_newest_claim_leads),
        cmocka_unit_test(test_passive_failure),
        cmocka_unit_test(test_notes_once_per_episode),
        cmocka_unit_test(test_first_probe_round_settles_the_view),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
