/* test_atable.c - the lock-free affinity table: sizes, the clock, put/get/
 * del, expiry at the second boundary, reuse of expired and deleted slots
 * (a key is never held twice, so nothing stale comes back), replacement
 * when a probe window is full, atable_each, and many threads writing and
 * reading at once (run under ASan in the sanitizer build). */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <cmocka.h>

#include "base/util.h"
#include "routing/affinity.h"
#include "routing/atable.h"

/* Far in the future on the table's clock (seconds). */
#define FAR 1000000u

/* The slot a key starts probing at: found by trying, since the mixing
 * function is private. */
static uint64_t home_of(struct atable *t, uint64_t key)
{
    /* put it alone in a fresh table and look where it landed */
    struct atable probe;
    atable_init(&probe, (uint32_t)(t->mask + 1));
    atable_put(&probe, key, 1, FAR);
    uint64_t at = UINT64_MAX;
    for (uint64_t i = 0; i <= probe.mask; i++)
        if (atomic_load(&probe.slots[i].key) == key)
            at = i;
    atable_free(&probe);
    assert_true(at != UINT64_MAX);
    return at;
}

/* n distinct keys (from start) that all start probing at the same slot. */
static void same_home(struct atable *t, uint64_t start, uint64_t *keys, int n)
{
    uint64_t want = home_of(t, start);
    int k = 0;
    keys[k++] = start;
    for (uint64_t c = start + 1; k < n; c++)
        if (home_of(t, c) == want)
            keys[k++] = c;
}

static int copies(const struct atable *t, uint64_t key)
{
    int n = 0;
    for (uint64_t i = 0; i <= t->mask; i++)
        if (atomic_load(&t->slots[i].key) == key)
            n++;
    return n;
}

static void test_capacity_and_clock(void **state)
{
    (void)state;
    struct atable t;
    atable_init(&t, 1);
    assert_int_equal(t.mask + 1, 64);           /* at least 64 */
    atable_free(&t);
    atable_init(&t, 1000);
    assert_int_equal(t.mask + 1, 1024);         /* a power of two */
    /* the clock: seconds since the table was made, never 0 */
    assert_int_equal(atable_clock(&t, t.epoch_ms), 1);
    assert_int_equal(atable_clock(&t, t.epoch_ms - 5), 1);
    assert_int_equal(atable_clock(&t, t.epoch_ms + 999), 1);
    assert_int_equal(atable_clock(&t, t.epoch_ms + 1000), 2);
    assert_int_equal(atable_clock(&t, t.epoch_ms + 61500), 62);
    atable_free(&t);
    assert_null(t.slots);
}

static void test_put_get_replace_del(void **state)
{
    (void)state;
    struct atable t;
    uint32_t p = 0;
    uint64_t exp = 0;
    atable_init(&t, 64);
    assert_false(atable_get(&t, 42, 1, &p, &exp));
    atable_put(&t, 42, 7, 100);
    assert_true(atable_get(&t, 42, 1, &p, &exp));
    assert_int_equal(p, 7);
    assert_int_equal(exp, 100);
    assert_true(atable_get(&t, 42, 99, &p, NULL)); /* expiry may be NULL */
    /* replace in place: one copy */
    atable_put(&t, 42, 8, 200);
    assert_true(atable_get(&t, 42, 150, &p, &exp));
    assert_int_equal(p, 8);
    assert_int_equal(exp, 200);
    assert_int_equal(copies(&t, 42), 1);
    /* payloads are 24 bits */
    atable_put(&t, 43, 0xffffffffu, 100);
    assert_true(atable_get(&t, 43, 1, &p, NULL));
    assert_int_equal(p, 0xffffff);
    /* other keys are not disturbed */
    assert_false(atable_get(&t, 44, 1, &p, NULL));
    atable_del(&t, 42);
    assert_false(atable_get(&t, 42, 1, &p, NULL));
    assert_true(atable_get(&t, 43, 1, &p, NULL));
    atable_del(&t, 42);                          /* twice: harmless */
    atable_del(&t, 4242);                        /* absent: harmless */
    atable_free(&t);
}

static void test_expiry_boundary(void **state)
{
    (void)state;
    struct atable t;
    uint32_t p;
    atable_init(&t, 64);
    atable_put(&t, 5, 1, 10);
    assert_true(atable_get(&t, 5, 9, &p, NULL));
    assert_false(atable_get(&t, 5, 10, &p, NULL)); /* expires at its second */
    assert_false(atable_get(&t, 5, 11, &p, NULL));
    /* a refresh brings it back */
    atable_put(&t, 5, 2, 20);
    assert_true(atable_get(&t, 5, 15, &p, NULL));
    assert_int_equal(p, 2);
    atable_free(&t);
}

/* Expired and deleted slots are reused by other keys. */
static void test_reuse_of_expired_slots(void **state)
{
    (void)state;
    struct atable t;
    uint64_t keys[ATABLE_PROBE + 4];
    uint32_t p;
    atable_init(&t, 64);
    same_home(&t, 1000, keys, ATABLE_PROBE + 4);
    /* a full window of entries that are already expired (expiry 1 is
     * never after the table clock) */
    for (int i = 0; i < ATABLE_PROBE; i++)
        atable_put(&t, keys[i], (uint32_t)i, 1);
    for (int i = 0; i < ATABLE_PROBE; i++)
        assert_false(atable_get(&t, keys[i], 1, &p, NULL));
    /* new keys of the same home take those slots */
    for (int i = ATABLE_PROBE; i < ATABLE_PROBE + 4; i++) {
        atable_put(&t, keys[i], (uint32_t)i, FAR);
        assert_true(atable_get(&t, keys[i], 1, &p, NULL));
        assert_int_equal(p, i);
    }
    atable_free(&t);
}

/* A key stored behind a slot that later frees up is updated where it is,
 * not stored a second time in the freed slot: otherwise, once the newer
 * copy is deleted and its slot reused, the older copy comes back (a
 * lifted fence reappearing, a stale affinity home). */
static void test_no_second_copy_when_refreshed_behind_a_freed_slot(void **state)
{
    (void)state;
    struct atable t;
    uint64_t k[3];
    uint32_t p;
    atable_init(&t, 64);
    same_home(&t, 77, k, 3);
    uint64_t b = k[0], a = k[1], c = k[2];
    atable_put(&t, b, 1, FAR);       /* home slot */
    atable_put(&t, a, 2, FAR);       /* the next one */
    atable_del(&t, b);               /* the home slot frees up */
    atable_put(&t, a, 3, FAR);       /* refresh a */
    assert_int_equal(copies(&t, a), 1);
    assert_true(atable_get(&t, a, 1, &p, NULL));
    assert_int_equal(p, 3);
    atable_del(&t, a);
    atable_put(&t, c, 4, FAR);       /* reuses a freed slot */
    assert_false(atable_get(&t, a, 1, &p, NULL)); /* a stays deleted */
    assert_true(atable_get(&t, c, 1, &p, NULL));
    assert_int_equal(p, 4);
    atable_free(&t);
}

/* The same with an entry that expired rather than being deleted. */
static void test_no_second_copy_behind_an_expired_slot(void **state)
{
    (void)state;
    struct atable t;
    uint64_t k[2];
    uint32_t p;
    uint64_t exp;
    atable_init(&t, 64);
    same_home(&t, 500, k, 2);
    atable_put(&t, k[0], 1, FAR);    /* home slot */
    atable_put(&t, k[1], 2, 50);     /* the next one */
    atable_put(&t, k[0], 1, 1);      /* k[0] expires */
    atable_put(&t, k[1], 3, 60);     /* refresh k[1] */
    assert_int_equal(copies(&t, k[1]), 1);
    assert_true(atable_get(&t, k[1], 1, &p, &exp));
    assert_int_equal(p, 3);
    assert_int_equal(exp, 60);
    atable_free(&t);
}

/* When the window is full of live entries, the one expiring first goes. */
static void test_full_window_replaces_the_soonest_to_expire(void **state)
{
    (void)state;
    struct atable t;
    uint64_t keys[ATABLE_PROBE + 1];
    uint32_t p;
    atable_init(&t, 64);
    same_home(&t, 9000, keys, ATABLE_PROBE + 1);
    for (int i = 0; i < ATABLE_PROBE; i++)
        atable_put(&t, keys[i], (uint32_t)i, i == 5 ? 500 : 1000 + (uint64_t)i);
    atable_put(&t, keys[ATABLE_PROBE], 99, 2000);
    assert_false(atable_get(&t, keys[5], 1, &p, NULL));
    assert_true(atable_get(&t, keys[ATABLE_PROBE], 1, &p, NULL));
    assert_int_equal(p, 99);
    for (int i = 0; i < ATABLE_PROBE; i++)
        if (i != 5)
            assert_true(atable_get(&t, keys[i], 1, &p, NULL));
    atable_free(&t);
}

struct each_acc {
    int n;
    uint64_t keys;
};

static void each_one(void *arg, uint64_t key, uint32_t payload, uint64_t expiry)
{
    struct each_acc *a = arg;
    a->n++;
    a->keys += key;
    assert_int_equal(payload, (uint32_t)key * 3);
    assert_true(expiry > 10);
}

static void test_each_visits_live_entries(void **state)
{
    (void)state;
    struct atable t;
    struct each_acc acc = {0};
    atable_init(&t, 256);
    for (uint64_t k = 1; k <= 20; k++)
        atable_put(&t, k, (uint32_t)k * 3, k <= 10 ? 5 : 100);
    atable_del(&t, 20);
    atable_each(&t, 10, each_one, &acc);
    assert_int_equal(acc.n, 9);                  /* 11..19 */
    assert_int_equal(acc.keys, 11 + 12 + 13 + 14 + 15 + 16 + 17 + 18 + 19);
    atable_free(&t);
}

/* ---- threads ---------------------------------------------------------- */

#define THREADS 4
#define KEYS_PER_THREAD 300
#define OPS 200000

struct worker_arg {
    struct atable *t;
    int id;
    uint64_t rng;
    int errors;
    uint64_t hits;
};

static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Affinity keys for "token <thread>-<i>"; the node is a function of the
 * key, so any thread can check what it reads. */
static struct affinity_key keyset[THREADS][KEYS_PER_THREAD];

static int node_of(int th, int i)
{
    return (th * 7 + i) % 16;
}

static void *worker(void *p)
{
    struct worker_arg *w = p;
    /* the latest expiry this thread wrote for each of its keys; 0 = the
     * key is deleted */
    uint64_t latest[KEYS_PER_THREAD] = {0};
    uint64_t version = 100;
    for (int op = 0; op < OPS; op++) {
        uint64_t r = next_rand(&w->rng);
        int i = (int)((r >> 8) % KEYS_PER_THREAD);
        switch (r % 8) {
        case 0:
        case 1:
        case 2: { /* write one of ours (expiries only grow: versions) */
            version++;
            affinity_put(w->t, &keyset[w->id][i], node_of(w->id, i),
                         FAR + version);
            latest[i] = FAR + version;
            break;
        }
        case 3: /* delete one of ours */
            atable_del(w->t, keyset[w->id][i].fp);
            latest[i] = 0;
            break;
        case 4:
        case 5: { /* read one of ours: absent, or exactly what we wrote */
            uint64_t exp = 0;
            int n = affinity_get(w->t, &keyset[w->id][i], 1, &exp);
            if (n >= 0) {
                w->hits++;
                if (n != node_of(w->id, i) || exp != latest[i])
                    w->errors++;
            }
            break;
        }
        default: { /* read anybody's: absent or its node */
            int th = (int)((r >> 40) % THREADS);
            int n = affinity_get(w->t, &keyset[th][i], 1, NULL);
            if (n >= 0 && n != node_of(th, i))
                w->errors++;
            break;
        }
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    static const unsigned char key[32] = "atable-test-hmac-key-32-bytes...";
    struct atable t;
    pthread_t th[THREADS];
    struct worker_arg args[THREADS];
    /* a table small enough that windows collide and slots are reused */
    atable_init(&t, 1024);
    for (int a = 0; a < THREADS; a++)
        for (int i = 0; i < KEYS_PER_THREAD; i++) {
            char tok[32];
            int n = snprintf(tok, sizeof(tok), "token %d-%d", a, i);
            affinity_key(key, sizeof(key), AFF_SESS, tok, (size_t)n,
                         &keyset[a][i]);
        }
    for (int a = 0; a < THREADS; a++) {
        args[a] = (struct worker_arg){&t, a, 0x9e3779b97f4a7c15ull * (uint64_t)(a + 1), 0, 0};
        assert_int_equal(pthread_create(&th[a], NULL, worker, &args[a]), 0);
    }
    uint64_t hits = 0;
    for (int a = 0; a < THREADS; a++) {
        pthread_join(th[a], NULL);
        assert_int_equal(args[a].errors, 0);
        hits += args[a].hits;
    }
    assert_true(hits > OPS / 10); /* the reads did find entries */
    /* quiet again: no key is held twice */
    for (int a = 0; a < THREADS; a++)
        for (int i = 0; i < KEYS_PER_THREAD; i++)
            assert_true(copies(&t, keyset[a][i].fp) <= 1);
    atable_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity_and_clock),
        cmocka_unit_test(test_put_get_replace_del),
        cmocka_unit_test(test_expiry_boundary),
        cmocka_unit_test(test_reuse_of_expired_slots),
        cmocka_unit_test(test_no_second_copy_when_refreshed_behind_a_freed_slot),
        cmocka_unit_test(test_no_second_copy_behind_an_expired_slot),
        cmocka_unit_test(test_full_window_replaces_the_soonest_to_expire),
        cmocka_unit_test(test_each_visits_live_entries),
        cmocka_unit_test(test_threads),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
