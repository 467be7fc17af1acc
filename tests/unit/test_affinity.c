/* test_affinity.c - affinity keys (HMAC-SHA256 of "<kind>:<token>", known
 * vectors), the table key and check bits, put/get per kind, entries that
 * look alike in the table but are not the key's, Redis key names, counts
 * per kind, and tokens long enough to have been truncated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "routing/affinity.h"
#include "routing/atable.h"

static const unsigned char KEY[] = "0123456789abcdef0123456789abcdef";
#define KEYLEN 32

static void mk(enum affinity_kind kind, const char *tok, struct affinity_key *k)
{
    affinity_key(KEY, KEYLEN, kind, tok, strlen(tok), k);
}

static void test_keys_are_hmac_of_kind_and_token(void **state)
{
    (void)state;
    struct affinity_key k;
    /* python3: hmac.new(KEY, b"sess:tok-1", hashlib.sha256).hexdigest() */
    mk(AFF_SESS, "tok-1", &k);
    assert_string_equal(k.hex, "7c483e3043cc3c0a61fb97ceb33bf931ec37c74fab03665b45249f6d980ba28c");
    assert_int_equal(k.kind, AFF_SESS);
    assert_int_equal(k.fp, 0x7c483e3043cc3c0aull);
    assert_int_equal(k.check, 0x61fb97ceb33bf931ull & 0x3fff);
    mk(AFF_OIDC, "tok-1", &k);
    assert_string_equal(k.hex, "14898c781072d9d28b64c1d61196537c7433399e34d01c6cb90d662d7333a6cf");
    mk(AFF_CODE, "tok-1", &k);
    assert_string_equal(k.hex, "676dd0421b7c72dd76a5824b405deb238ac99b910ed7d50fd2a3fd52f5b9a634");
    /* only len bytes of the token count */
    affinity_key(KEY, KEYLEN, AFF_SESS, "tok-1-and-more", 5, &k);
    assert_string_equal(k.hex, "7c483e3043cc3c0a61fb97ceb33bf931ec37c74fab03665b45249f6d980ba28c");
    affinity_key(KEY, KEYLEN, AFF_SESS, "", 0, &k);
    assert_string_equal(k.hex, "49df8b2316e4670253cbff9db97f9fcd6f8d1b244e6336315c5a62f38ce820b7");
    /* another secret, another key */
    static const unsigned char other[] = "fedcba9876543210fedcba9876543210";
    affinity_key(other, KEYLEN, AFF_SESS, "tok-1", 5, &k);
    assert_string_not_equal(k.hex, "7c483e3043cc3c0a61fb97ceb33bf931ec37c74fab03665b45249f6d980ba28c");
    /* the hex never contains the token */
    mk(AFF_SESS, "abc", &k);
    assert_int_equal(strlen(k.hex), 64);
    assert_null(strstr(k.hex, "abc"));
}

/* Tokens that differ only past 4 KB are still different keys. */
static void test_long_tokens_are_not_truncated(void **state)
{
    (void)state;
    size_t n = 10000;
    char *a = malloc(n), *b = malloc(n);
    memset(a, 'x', n);
    memset(b, 'x', n);
    b[n - 1] = 'y';
    struct affinity_key ka, kb;
    affinity_key(KEY, KEYLEN, AFF_SESS, a, n, &ka);
    affinity_key(KEY, KEYLEN, AFF_SESS, b, n, &kb);
    assert_string_not_equal(ka.hex, kb.hex);
    free(a);
    free(b);
}

static void test_put_get_per_kind(void **state)
{
    (void)state;
    struct atable t;
    struct affinity_key s, o, c;
    uint64_t exp = 0;
    atable_init(&t, 256);
    mk(AFF_SESS, "same-token", &s);
    mk(AFF_OIDC, "same-token", &o);
    mk(AFF_CODE, "same-token", &c);
    assert_int_equal(affinity_get(&t, &s, 1, NULL), -1);
    affinity_put(&t, &s, 0, 100);
    affinity_put(&t, &o, 2, 100);
    affinity_put(&t, &c, 15, 200);
    assert_int_equal(affinity_get(&t, &s, 1, &exp), 0);
    assert_int_equal(exp, 100);
    assert_int_equal(affinity_get(&t, &o, 1, NULL), 2);
    assert_int_equal(affinity_get(&t, &c, 1, &exp), 15);
    assert_int_equal(exp, 200);
    /* expired */
    assert_int_equal(affinity_get(&t, &s, 100, NULL), -1);
    assert_int_equal(affinity_get(&t, &c, 150, NULL), 15);
    /* moved */
    affinity_put(&t, &s, 1, 300);
    assert_int_equal(affinity_get(&t, &s, 150, NULL), 1);
    atable_free(&t);
}

/* An entry under the same table key whose check bits or kind differ is
 * not the key's (a fingerprint collision, or a slot reused under a
 * reader's feet). */
static void test_check_bits_and_kind_guard_reads(void **state)
{
    (void)state;
    struct atable t;
    struct affinity_key k, fake;
    atable_init(&t, 256);
    mk(AFF_OIDC, "request-1", &k);
    affinity_put(&t, &k, 3, 100);
    fake = k;
    fake.check = (uint16_t)((k.check + 1) & 0x3fff);
    assert_int_equal(affinity_get(&t, &fake, 1, NULL), -1);
    fake = k;
    fake.kind = AFF_CODE;
    assert_int_equal(affinity_get(&t, &fake, 1, NULL), -1);
    assert_int_equal(affinity_get(&t, &k, 1, NULL), 3);
    atable_free(&t);
}

static void test_redis_key_names(void **state)
{
    (void)state;
    struct affinity_key k;
    char out[160];
    mk(AFF_SESS, "tok-1", &k);
    affinity_redis_key("qg:", &k, out, sizeof(out));
    assert_string_equal(out, "qg:aff:sess:7c483e3043cc3c0a61fb97ceb33bf931ec37c74fab03665b45249f6d980ba28c");
    mk(AFF_OIDC, "tok-1", &k);
    affinity_redis_key("", &k, out, sizeof(out));
    assert_string_equal(out, "aff:oidc:14898c781072d9d28b64c1d61196537c7433399e34d01c6cb90d662d7333a6cf");
    mk(AFF_CODE, "tok-1", &k);
    affinity_redis_key("prod:qg:", &k, out, sizeof(out));
    assert_string_equal(out, "prod:qg:aff:code:676dd0421b7c72dd76a5824b405deb238ac99b910ed7d50fd2a3fd52f5b9a634");
    /* a short buffer is cut, never overrun */
    char small[12];
    memset(small, '#', sizeof(small));
    affinity_redis_key("qg:", &k, small, 8);
    assert_string_equal(small, "qg:aff:");
    assert_int_equal(small[8], '#');
    assert_string_equal(affinity_kind_name(AFF_SESS), "sess");
    assert_string_equal(affinity_kind_name(AFF_OIDC), "oidc");
    assert_string_equal(affinity_kind_name(AFF_CODE), "code");
    assert_string_equal(affinity_kind_name((enum affinity_kind)7), "sess");
}

static void test_count_per_kind(void **state)
{
    (void)state;
    struct atable t;
    int counts[AFF__COUNT];
    atable_init(&t, 1024);
    affinity_count(&t, 1, counts);
    assert_int_equal(counts[AFF_SESS] + counts[AFF_OIDC] + counts[AFF_CODE], 0);
    for (int i = 0; i < 30; i++) {
        char tok[16];
        struct affinity_key k;
        snprintf(tok, sizeof(tok), "t%d", i);
        mk((enum affinity_kind)(i % 3), tok, &k);
        affinity_put(&t, &k, i % 16, i < 15 ? 50 : 500);
    }
    affinity_count(&t, 1, counts);
    assert_int_equal(counts[AFF_SESS], 10);
    assert_int_equal(counts[AFF_OIDC], 10);
    assert_int_equal(counts[AFF_CODE], 10);
    affinity_count(&t, 60, counts); /* the first 15 expired */
    assert_int_equal(counts[AFF_SESS] + counts[AFF_OIDC] + counts[AFF_CODE], 15);
    assert_int_equal(counts[AFF_SESS], 5);
    atable_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_keys_are_hmac_of_kind_and_token),
        cmocka_unit_test(test_long_tokens_are_not_truncated),
        cmocka_unit_test(test_put_get_per_kind),
        cmocka_unit_test(test_check_bits_and_kind_guard_reads),
        cmocka_unit_test(test_redis_key_names),
        cmocka_unit_test(test_count_per_kind),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
