/* test_fence.c - identities fenced away from controllers: keys from the
 * identity HMAC, add (masks merge, the later deadline wins), clear (what
 * acknowledged goes; the fence goes with its last controller), set (from
 * Redis; mask 0 removes), deadlines, the mask for new logins and the
 * fenced-identities count, a lifted fence that must not come back, how
 * long a controller counts as fenced lately, and readers racing writers. */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "routing/fence.h"

#define C1 (1ull << 0)
#define C2 (1ull << 1)
#define C3 (1ull << 2)

static struct fence_key key_of(const char *hex)
{
    struct fence_key k;
    memset(&k, 0xff, sizeof(k)); /* whatever was there before */
    fence_key_from_hex(hex, &k);
    return k;
}

/* 64 hex characters from a number. */
static void hex_of(uint64_t n, char out[65])
{
    snprintf(out, 65, "%016llx%02x%046llu", (unsigned long long)n, (unsigned)(n * 7 & 0xff), 0ull);
}

/* Move the fence table's clock forward by s seconds. */
static void advance(struct fence *f, uint64_t s)
{
    f->t.epoch_ms -= s * 1000;
}

static void test_keys(void **state)
{
    (void)state;
    struct fence_key k = key_of("0123456789abcdef5a0000000000000000000000000000000000000000000000");
    assert_int_equal(k.fp, 0x0123456789abcdefull);
    assert_int_equal(k.check, 0x5a);
    k = key_of("00000000000000000100000000000000000000000000000000000000000000ff");
    assert_int_equal(k.fp, 1); /* never 0 */
    assert_int_equal(k.check, 0x01);
}

static void test_add_clear_set(void **state)
{
    (void)state;
    struct fence f;
    fence_init(&f, 256);
    struct fence_key a = key_of("aaaaaaaaaaaaaaaa11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    struct fence_key b = key_of("bbbbbbbbbbbbbbbb22bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb");
    uint64_t now = fence_now(&f);
    assert_int_equal(fence_mask(&f, &a, now), 0);
    assert_int_equal(atomic_load(&f.identities), 0);
    assert_int_equal(fence_login_mask(&f, now), 0);

    fence_add(&f, &a, C2, now + 60);
    assert_int_equal(fence_mask(&f, &a, now), C2);
    assert_int_equal(fence_mask(&f, &b, now), 0);
    assert_int_equal(atomic_load(&f.identities), 1);
    assert_int_equal(fence_login_mask(&f, now), C2);
    /* masks merge; the later deadline wins, an earlier one does not cut it */
    fence_add(&f, &a, C3, now + 30);
    assert_int_equal(fence_mask(&f, &a, now), C2 | C3);
    assert_int_equal(fence_mask(&f, &a, now + 59), C2 | C3);
    assert_int_equal(fence_mask(&f, &a, now + 60), 0);
    fence_add(&f, &b, C1, now + 90);
    assert_int_equal(atomic_load(&f.identities), 2);
    assert_int_equal(fence_login_mask(&f, now), C1 | C2 | C3);

    /* acknowledgements lift what they name */
    fence_clear(&f, &a, C2);
    assert_int_equal(fence_mask(&f, &a, now), C3);
    assert_int_equal(fence_mask(&f, &a, now + 59), C3);   /* deadline kept */
    fence_clear(&f, &a, C1);                             /* not fenced: no-op */
    assert_int_equal(fence_mask(&f, &a, now), C3);
    fence_clear(&f, &a, C3);
    assert_int_equal(fence_mask(&f, &a, now), 0);
    assert_int_equal(atomic_load(&f.identities), 1);
    assert_int_equal(fence_login_mask(&f, now), C1);
    fence_clear(&f, &a, C3);                             /* twice: no-op */

    /* set replaces (Redis has the whole picture), 0 removes */
    fence_set(&f, &b, C2 | C3, now + 10);
    assert_int_equal(fence_mask(&f, &b, now), C2 | C3);
    assert_int_equal(fence_mask(&f, &b, now + 10), 0);
    assert_int_equal(fence_login_mask(&f, now), C2 | C3);
    fence_set(&f, &b, 0, now + 10);
    assert_int_equal(fence_mask(&f, &b, now), 0);
    assert_int_equal(atomic_load(&f.identities), 0);
    assert_int_equal(fence_login_mask(&f, now), 0);
    fence_free(&f);
}

/* Hints: a client address avoids what is fenced for the identities whose
 * calls came from it, and only while those fences last. */
static void test_hints(void **state)
{
    (void)state;
    struct fence f;
    fence_init(&f, 256);
    struct fence_key id = key_of("aaaaaaaaaaaaaaaa11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    struct fence_key p1 = key_of("cccccccccccccccc33cccccccccccccccccccccccccccccccccccccccccccccccc");
    struct fence_key p2 = key_of("dddddddddddddddd44dddddddddddddddddddddddddddddddddddddddddddddddd");
    struct fence_key p1x = key_of("cccccccccccccccc99cccccccccccccccccccccccccccccccccccccccccccccccc");
    uint64_t now = fence_now(&f);
    fence_add(&f, &id, C2, now + 60);
    assert_int_equal(fence_hint_mask(&f, &p1, now), 0);   /* no hint: nothing */
    fence_hint_add(&f, &p1, C2, now + 600);
    assert_int_equal(fence_hint_mask(&f, &p1, now), C2);
    assert_int_equal(fence_hint_mask(&f, &p2, now), 0);   /* another address */
    assert_int_equal(fence_hint_mask(&f, &p1x, now), 0);  /* same slot, other check */
    fence_hint_add(&f, &p1, C3, now + 10);                /* merges, keeps the later end */
    fence_add(&f, &id, C3, now + 60);
    assert_int_equal(fence_hint_mask(&f, &p1, now + 20), C2 | C3);
    /* the fence lifted: the hint means nothing any more */
    fence_clear(&f, &id, C2);
    assert_int_equal(fence_hint_mask(&f, &p1, now), C3);
    fence_clear(&f, &id, C3);
    assert_int_equal(fence_hint_mask(&f, &p1, now), 0);
    fence_add(&f, &id, C2, now + 60);
    assert_int_equal(fence_hint_mask(&f, &p1, now + 600), 0); /* hint ended */
    fence_free(&f);
}

/* Another identity whose table key is the same is not fenced by it. */
static void test_check_guards_reads(void **state)
{
    (void)state;
    struct fence f;
    fence_init(&f, 64);
    struct fence_key a = key_of("1111111111111111aa00000000000000000000000000000000000000000000000");
    struct fence_key b = a;
    b.check = 0xbb;
    fence_add(&f, &a, C1, fence_now(&f) + 60);
    assert_int_equal(fence_mask(&f, &a, fence_now(&f)), C1);
    assert_int_equal(fence_mask(&f, &b, fence_now(&f)), 0);
    fence_clear(&f, &b, C1); /* not b's fence: untouched */
    assert_int_equal(fence_mask(&f, &a, fence_now(&f)), C1);
    fence_free(&f);
}

/* Fences end at their deadline: the mask for new logins and the count
 * follow on the next read. */
static void test_deadlines(void **state)
{
    (void)state;
    struct fence f;
    fence_init(&f, 256);
    struct fence_key a = key_of("a1a1a1a1a1a1a1a1a100000000000000000000000000000000000000000000000");
    struct fence_key b = key_of("b2b2b2b2b2b2b2b2b200000000000000000000000000000000000000000000000");
    uint64_t now = fence_now(&f);
    fence_add(&f, &a, C1, now + 5);
    fence_add(&f, &b, C2, now + 20);
    assert_int_equal(fence_login_mask(&f, fence_now(&f)), C1 | C2);
    advance(&f, 6);
    assert_int_equal(fence_mask(&f, &a, fence_now(&f)), 0);
    assert_int_equal(fence_login_mask(&f, fence_now(&f)), C2);
    assert_int_equal(atomic_load(&f.identities), 1);
    advance(&f, 20);
    assert_int_equal(fence_login_mask(&f, fence_now(&f)), 0);
    assert_int_equal(atomic_load(&f.identities), 0);
    /* a fence added after one expired is a new fence, not a merge */
    fence_add(&f, &a, C3, fence_now(&f) + 5);
    assert_int_equal(fence_mask(&f, &a, fence_now(&f)), C3);
    fence_free(&f);
}

/* A lifted fence stays lifted, whatever happened to the slots around it:
 * identity a was refreshed while sitting behind a slot that had been
 * freed, then lifted; a new fence reused the freed slot. */
static void test_lifted_fence_does_not_come_back(void **state)
{
    (void)state;
    struct fence f;
    fence_init(&f, 64);
    /* three identities whose table keys start probing at the same slot */
    struct fence_key ks[3];
    int found = 0;
    int want_home = -1;
    char hex[65];
    for (uint64_t n = 1; found < 3; n++) {
        hex_of(n * 0x9e3779b97f4a7c15ull, hex);
        struct fence_key k = key_of(hex);
        struct fence probe;
        fence_init(&probe, 64);
        fence_add(&probe, &k, C1, fence_now(&probe) + 60);
        int home = -1;
        for (uint64_t i = 0; i <= probe.t.mask; i++)
            if (atomic_load(&probe.t.slots[i].key) == k.fp)
                home = (int)i;
        fence_free(&probe);
        if (want_home < 0)
            want_home = home;
        if (home == want_home)
            ks[found++] = k;
    }
    uint64_t now = fence_now(&f);
    struct fence_key *b = &ks[0], *a = &ks[1], *c = &ks[2];
    fence_add(&f, b, C1, now + 600);
    fence_add(&f, a, C2, now + 600);
    fence_clear(&f, b, C1);          /* b acknowledged: its slot frees up */
    fence_add(&f, a, C3, now + 600); /* a fenced from one more */
    assert_int_equal(fence_mask(&f, a, now), C2 | C3);
    fence_clear(&f, a, C2 | C3);     /* a acknowledged everything */
    assert_int_equal(fence_mask(&f, a, now), 0);
    fence_add(&f, c, C1, now + 600);
    assert_int_equal(fence_mask(&f, a, now), 0);
    assert_int_equal(fence_mask(&f, c, now), C1);
    assert_int_equal(atomic_load(&f.identities), 1);
    fence_free(&f);
}

/* ---- threads ---------------------------------------------------------- */

#define IDS 64

struct race {
    struct fence *f;
    struct fence_key keys[IDS];
    atomic_bool stop;
    int errors;
};

static void *reader(void *p)
{
    struct race *r = p;
    while (!atomic_load(&r->stop)) {
        for (int i = 0; i < IDS; i++) {
            uint64_t m = fence_mask(r->f, &r->keys[i], fence_now(r->f));
            /* identity i is only ever fenced from controller i % 16 */
            if (m & ~(1ull << (i % 16)))
                r->errors++;
        }
        if (fence_login_mask(r->f, fence_now(r->f)) & ~0xffffull)
            r->errors++;
    }
    return NULL;
}

static void *writer(void *p)
{
    struct race *r = p;
    for (int round = 0; round < 2000; round++)
        for (int i = 0; i < IDS; i++) {
            uint64_t m = 1ull << (i % 16);
            if ((round + i) % 3 == 0)
                fence_clear(r->f, &r->keys[i], m);
            else if ((round + i) % 3 == 1)
                fence_add(r->f, &r->keys[i], m, fence_now(r->f) + 60);
            else
                fence_set(r->f, &r->keys[i], round % 2 ? m : 0, fence_now(r->f) + 60);
        }
    return NULL;
}

static void test_readers_and_writers(void **state)
{
    (void)state;
    struct fence f;
    static struct race r;
    pthread_t rd[2], wr[2];
    fence_init(&f, 128);
    r.f = &f;
    atomic_store(&r.stop, false);
    for (int i = 0; i < IDS; i++) {
        char hex[65];
        hex_of((uint64_t)i * 0x2545f4914f6cdd1dull + 1, hex);
        r.keys[i] = key_of(hex);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&rd[i], NULL, reader, &r), 0);
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&wr[i], NULL, writer, &r), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(wr[i], NULL);
    atomic_store(&r.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(rd[i], NULL);
    assert_int_equal(r.errors, 0);
    /* quiet: the count matches what the table holds */
    int n = 0;
    for (int i = 0; i < IDS; i++)
        n += fence_mask(&f, &r.keys[i], fence_now(&f)) != 0;
    fence_login_mask(&f, fence_now(&f));
    assert_int_equal(atomic_load(&f.identities), n);
    fence_free(&f);
}

/* A controller fenced for someone stays "recent" for the window after its
 * last fence went (cleared or expired), and only that controller. */
static void test_node_recent(void **state)
{
    (void)state;
    struct fence f;
    fence_init(&f, 256);
    struct fence_key a = key_of("aaaaaaaaaaaaaaaa11aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    uint64_t now = fence_now(&f);
    for (int i = 0; i < 3; i++)
        assert_false(fence_node_recent(&f, i, now, 600));
    assert_false(fence_node_recent(&f, -1, now, 600));
    assert_false(fence_node_recent(&f, 64, now, 600));
    fence_add(&f, &a, C2, now + 30);
    advance(&f, 20); /* fenced all along: recent whatever the window */
    now = fence_now(&f);
    assert_true(fence_node_recent(&f, 1, now, 0));
    assert_false(fence_node_recent(&f, 0, now, 600));
    fence_clear(&f, &a, C2); /* lifted at 20 s */
    assert_true(fence_node_recent(&f, 1, now, 600));
    advance(&f, 600);
    assert_true(fence_node_recent(&f, 1, fence_now(&f), 600));
    advance(&f, 2);
    assert_false(fence_node_recent(&f, 1, fence_now(&f), 600));
    /* a fence that expires counts until it is seen gone */
    now = fence_now(&f);
    fence_add(&f, &a, C3, now + 5);
    advance(&f, 10);
    assert_true(fence_node_recent(&f, 2, fence_now(&f), 600));
    assert_int_equal(fence_login_mask(&f, fence_now(&f)), 0);
    advance(&f, 601);
    assert_false(fence_node_recent(&f, 2, fence_now(&f), 600));
    fence_free(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys),
        cmocka_unit_test(test_add_clear_set),
        cmocka_unit_test(test_check_guards_reads),
        cmocka_unit_test(test_hints),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_lifted_fence_does_not_come_back),
        cmocka_unit_test(test_node_recent),
        cmocka_unit_test(test_readers_and_writers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
