/* test_keyrefusal.c - controllers refusing another controller's tokens
 * (routing/keyrefusal.h): the minter is the one controller whose own JWKS
 * names the token's kid; refusals are remembered per minter for
 * KEYREFUSAL_TTL_MS, each new one said once; only the auth layer's 401
 * envelope (code UNAUTHORIZED) counts as a refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "base/nodeset.h"
#include "routing/jwks.h"
#include "routing/keyrefusal.h"

/* the P-256 generator as a public key: a valid EC JWK under any kid */
#define EC_XY                                                              \
    "\"x\":\"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY\","               \
    "\"y\":\"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU\""
#define JWK(kid)                                                           \
    "{\"use\":\"sig\",\"kty\":\"EC\",\"crv\":\"P-256\",\"alg\":\"ES256\","  \
    "\"kid\":\"" kid "\"," EC_XY "}"

/* {"alg":"ES256","kid":"k2"}, {"kid":"zz"}, {"kid":"shared"} */
#define HDR_K2 "eyJhbGciOiJFUzI1NiIsImtpZCI6ImsyIn0"
#define HDR_ZZ "eyJhbGciOiJFUzI1NiIsImtpZCI6Inp6In0"
#define HDR_SHARED "eyJhbGciOiJFUzI1NiIsImtpZCI6InNoYXJlZCJ9"

static int minter(struct jwks *k, const char *t)
{
    return keyrefusal_minter(k, t, strlen(t));
}

static void test_minter(void **state)
{
    (void)state;
    struct jwks *k = jwks_new(3);
    const char *d0 = "{\"keys\":[" JWK("k0") "," JWK("shared") "]}";
    const char *d1 = "{\"keys\":[" JWK("k1") "]}";
    const char *d2 = "{\"keys\":[" JWK("k2") "," JWK("shared") "]}";
    assert_int_equal(minter(k, HDR_K2 ".e30.c2ln"), -1); /* nothing loaded */
    assert_int_equal(jwks_load(k, 0, d0, strlen(d0)), 2);
    assert_int_equal(jwks_load(k, 1, d1, strlen(d1)), 1);
    assert_int_equal(jwks_load(k, 2, d2, strlen(d2)), 2);
    assert_int_equal(minter(k, HDR_K2 ".e30.c2ln"), 2);
    assert_int_equal(minter(k, HDR_ZZ ".e30.c2ln"), -1);     /* nobody's */
    assert_int_equal(minter(k, HDR_SHARED ".e30.c2ln"), -1); /* two own it */
    assert_int_equal(minter(k, "not a token"), -1);
    assert_int_equal(minter(k, ".e30.c2ln"), -1);
    assert_int_equal(minter(k, "%%%.e30.c2ln"), -1);
    assert_int_equal(keyrefusal_minter(k, NULL, 0), -1);
    jwks_free(k);
}

static void test_memory(void **state)
{
    (void)state;
    struct keyrefusal r;
    memset(&r, 0, sizeof(r));
    assert_false(keyrefusal_any(&r, 1000));
    assert_true(keyrefusal_note(&r, 1, 0, 1000));  /* new: said */
    assert_false(keyrefusal_note(&r, 1, 0, 1100)); /* known: not again */
    assert_true(keyrefusal_note(&r, 1, 2, 1200));
    assert_false(keyrefusal_note(&r, 1, 1, 1200)); /* itself: never */
    assert_false(keyrefusal_note(&r, -1, 0, 1200));
    assert_false(keyrefusal_note(&r, 1, -1, 1200));
    assert_true(keyrefusal_any(&r, 1300));
    assert_true(keyrefusal_mask(&r, 1, 1300) ==
                (nodeset_of(0) | nodeset_of(2)));
    assert_true(keyrefusal_mask(&r, 0, 1300) == 0);
    assert_true(keyrefusal_mask(&r, -1, 1300) == 0);
    /* forgotten a TTL after the last refusal; a new one starts afresh */
    uint64_t later = 1200 + KEYREFUSAL_TTL_MS;
    assert_true(keyrefusal_mask(&r, 1, later - 1) != 0);
    assert_true(keyrefusal_mask(&r, 1, later) == 0);
    assert_false(keyrefusal_any(&r, later));
    assert_true(keyrefusal_note(&r, 1, 2, later));
    assert_true(keyrefusal_mask(&r, 1, later) == nodeset_of(2));
}

static void test_is_refusal(void **state)
{
    (void)state;
    const char *auth = "{\"error\":{\"code\":\"UNAUTHORIZED\",\"cause\":{"
                       "\"code\":\"UNHANDLED\"}}}";
    const char *other = "{\"error\":{\"code\":\"INVALID_AUTH\"}}";
    assert_true(keyrefusal_is_refusal(401, auth, strlen(auth)));
    assert_false(keyrefusal_is_refusal(403, auth, strlen(auth)));
    assert_false(keyrefusal_is_refusal(401, other, strlen(other)));
    assert_false(keyrefusal_is_refusal(401, "not json", 8));
    assert_false(keyrefusal_is_refusal(401, NULL, 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minter),
        cmocka_unit_test(test_memory),
        cmocka_unit_test(test_is_refusal),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
