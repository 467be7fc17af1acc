/* test_jwks.c - identities come only from tokens a controller signed: keys
 * from JWKS documents (RSA and EC, as controllers publish them), RS256 and
 * ES256 signatures checked, forged payloads, foreign keys under a known
 * kid, algorithm confusion ("none", HS256 with the public key, ES256 for
 * an RSA key), unknown kids, expiry, key rotation per controller, bad
 * documents, and the Bearer scheme.  The test signs with OpenSSL itself
 * (keys generated at start), as a controller would. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>

#include "base/crypto.h"
#include "routing/jwks.h"

#define NOW 1700000000ULL

static EVP_PKEY *rsa_key, *rsa_other, *ec_key;

static void b64url(const unsigned char *d, size_t n, char *out)
{
    char *s = crypto_b64_encode(d, n);
    size_t o = 0;
    for (size_t i = 0; s[i] && s[i] != '='; i++)
        out[o++] = s[i] == '+' ? '-' : s[i] == '/' ? '_' : s[i];
    out[o] = '\0';
    free(s);
}

static void bn_b64url(const BIGNUM *bn, int pad, char *out)
{
    unsigned char buf[1024];
    int n = pad ? BN_bn2binpad(bn, buf, pad) : BN_bn2bin(bn, buf);
    b64url(buf, (size_t)n, out);
}

/* {"kty":"RSA","kid":kid,"alg":"RS256","use":"sig","n":..,"e":..} */
static void rsa_jwk(EVP_PKEY *k, const char *kid, char *out, size_t cap)
{
    BIGNUM *n = NULL, *e = NULL;
    char nb[1024], eb[16];
    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n);
    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e);
    bn_b64url(n, 0, nb);
    bn_b64url(e, 0, eb);
    snprintf(out, cap,
             "{\"use\":\"sig\",\"kty\":\"RSA\",\"kid\":\"%s\",\"alg\":"
             "\"RS256\",\"n\":\"%s\",\"e\":\"%s\"}",
             kid, nb, eb);
    BN_free(n);
    BN_free(e);
}

static void ec_jwk(EVP_PKEY *k, const char *kid, char *out, size_t cap)
{
    BIGNUM *x = NULL, *y = NULL;
    char xb[64], yb[64];
    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &x);
    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &y);
    bn_b64url(x, 32, xb);
    bn_b64url(y, 32, yb);
    snprintf(out, cap,
             "{\"use\":\"sig\",\"kty\":\"EC\",\"kid\":\"%s\",\"crv\":"
             "\"P-256\",\"alg\":\"ES256\",\"x\":\"%s\",\"y\":\"%s\"}",
             kid, xb, yb);
    BN_free(x);
    BN_free(y);
}

/* header.payload.signature; sig_alg says how to really sign (it may
 * differ from the alg the header claims). */
static char *token(EVP_PKEY *k, const char *hdr, const char *claims,
                   const char *how)
{
    static char out[4096];
    char h[512], p[1024], s[1024];
    unsigned char sig[1024];
    size_t sig_len = sizeof(sig);
    b64url((const unsigned char *)hdr, strlen(hdr), h);
    b64url((const unsigned char *)claims, strlen(claims), p);
    snprintf(out, sizeof(out), "%s.%s", h, p);
    if (strcmp(how, "none") == 0) {
        sig_len = 0;
    } else if (strcmp(how, "hs256") == 0) {
        /* HS256 keyed with the public key's n (the classic confusion) */
        unsigned int l = 0;
        HMAC(EVP_sha256(), "n", 1, (unsigned char *)out, strlen(out), sig, &l);
        sig_len = l;
    } else {
        EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        assert_int_equal(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, k), 1);
        assert_int_equal(EVP_DigestSign(ctx, sig, &sig_len,
                                        (unsigned char *)out, strlen(out)), 1);
        EVP_MD_CTX_free(ctx);
        if (strcmp(how, "es256") == 0) { /* DER to raw r||s */
            const unsigned char *d = sig;
            ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &d, (long)sig_len);
            BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, 32);
            BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + 32, 32);
            sig_len = 64;
            ECDSA_SIG_free(es);
        }
    }
    b64url(sig, sig_len, s);
    strcat(out, ".");
    strcat(out, s);
    return out;
}

static struct jwks *loaded(void)
{
    static char doc[8192];
    char a[2048], b[512];
    struct jwks *k = jwks_new(2);
    rsa_jwk(rsa_key, "rsa1", a, sizeof(a));
    ec_jwk(ec_key, "ec1", b, sizeof(b));
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", a);
    assert_int_equal(jwks_load(k, 0, doc, strlen(doc)), 1);
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", b);
    assert_int_equal(jwks_load(k, 1, doc, strlen(doc)), 1);
    assert_int_equal(jwks_nodes_loaded(k), 2);
    return k;
}

static enum jwks_result verify(struct jwks *k, const char *t, char *sub)
{
    return jwks_verify(k, t, strlen(t), NOW, sub, 64);
}

#define CLAIMS "{\"sub\":\"id-alice\",\"exp\":1700000600,\"aud\":[\"openziti\"]}"

static void test_verified(void **state)
{
    (void)state;
    struct jwks *k = loaded();
    char sub[64];
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", CLAIMS, "rs256"), sub), JWKS_VERIFIED);
    assert_string_equal(sub, "id-alice");
    assert_int_equal(verify(k, token(ec_key, "{\"alg\":\"ES256\",\"kid\":\"ec1\",\"typ\":\"JWT\"}", CLAIMS, "es256"), sub), JWKS_VERIFIED);
    assert_string_equal(sub, "id-alice");
    /* no exp: valid */
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{\"sub\":\"b\"}", "rs256"), sub), JWKS_VERIFIED);
    assert_string_equal(sub, "b");
    jwks_free(k);
}

/* amr of a verified token: a list, or one string; nothing else counts. */
static void test_claim_lists(void **state)
{
    (void)state;
    const char *h = "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}";
    const char *t = token(rsa_key, h, "{\"sub\":\"a\",\"amr\":[\"password\",\"totp\"]}", "rs256");
    assert_true(jwks_claim_lists(t, strlen(t), "amr", "totp"));
    assert_true(jwks_claim_lists(t, strlen(t), "amr", "password"));
    assert_false(jwks_claim_lists(t, strlen(t), "amr", "tot"));
    assert_false(jwks_claim_lists(t, strlen(t), "acr", "totp"));
    t = token(rsa_key, h, "{\"sub\":\"a\",\"amr\":[\"password\"]}", "rs256");
    assert_false(jwks_claim_lists(t, strlen(t), "amr", "totp"));
    t = token(rsa_key, h, "{\"sub\":\"a\",\"amr\":\"totp\"}", "rs256");
    assert_true(jwks_claim_lists(t, strlen(t), "amr", "totp"));
    t = token(rsa_key, h, "{\"sub\":\"a\",\"amr\":[1,{\"totp\":1},null]}", "rs256");
    assert_false(jwks_claim_lists(t, strlen(t), "amr", "totp"));
    t = token(rsa_key, h, "{\"sub\":\"a\"}", "rs256");
    assert_false(jwks_claim_lists(t, strlen(t), "amr", "totp"));
    /* not a JWS, or a payload that is not JSON */
    assert_false(jwks_claim_lists("abc", 3, "amr", "totp"));
    assert_false(jwks_claim_lists("a.!!!.c", 7, "amr", "totp"));
    assert_false(jwks_claim_lists("a.bm90IGpzb24.c", 15, "amr", "totp"));
    assert_false(jwks_claim_lists(NULL, 0, "amr", "totp"));
}

/* The attack of issue 17: a token that names someone else's sub. */
static void test_forged(void **state)
{
    (void)state;
    struct jwks *k = loaded();
    char sub[64];
    char *t = token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", CLAIMS, "rs256");
    /* swap the payload for another identity, keep the signature */
    char forged[4096], p[256];
    const char *claims = "{\"sub\":\"id-victim\",\"exp\":1700000600}";
    b64url((const unsigned char *)claims, strlen(claims), p);
    char *dot1 = strchr(t, '.'), *dot2 = strchr(dot1 + 1, '.');
    snprintf(forged, sizeof(forged), "%.*s.%s%s", (int)(dot1 - t), t, p, dot2);
    assert_int_equal(verify(k, forged, sub), JWKS_BAD_SIGNATURE);
    assert_string_equal(sub, "");
    /* signed with another key under a known kid */
    assert_int_equal(verify(k, token(rsa_other, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", CLAIMS, "rs256"), sub), JWKS_BAD_SIGNATURE);
    /* algorithm confusion */
    assert_int_equal(verify(k, token(NULL, "{\"alg\":\"none\",\"kid\":\"rsa1\"}", CLAIMS, "none"), sub), JWKS_MALFORMED);
    assert_int_equal(verify(k, token(NULL, "{\"alg\":\"HS256\",\"kid\":\"rsa1\"}", CLAIMS, "hs256"), sub), JWKS_BAD_SIGNATURE);
    assert_int_equal(verify(k, token(ec_key, "{\"alg\":\"ES256\",\"kid\":\"rsa1\"}", CLAIMS, "es256"), sub), JWKS_BAD_SIGNATURE);
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"ec1\"}", CLAIMS, "rs256"), sub), JWKS_BAD_SIGNATURE);
    /* ES256 signature in DER instead of r||s */
    assert_int_equal(verify(k, token(ec_key, "{\"alg\":\"ES256\",\"kid\":\"ec1\"}", CLAIMS, "der"), sub), JWKS_BAD_SIGNATURE);
    /* critical extensions are not understood */
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\",\"crit\":[\"x\"]}", CLAIMS, "rs256"), sub), JWKS_MALFORMED);
    jwks_free(k);
}

static void test_unknown_expired_malformed(void **state)
{
    (void)state;
    struct jwks *k = loaded();
    char sub[64];
    /* a kid no key has: any key of the algorithm that verifies it (v1.5.4
     * lists a down controller's key under a mangled kid at its peers) */
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa2\"}", CLAIMS, "rs256"), sub), JWKS_VERIFIED);
    assert_string_equal(sub, "id-alice");
    assert_int_equal(verify(k, token(rsa_other, "{\"alg\":\"RS256\",\"kid\":\"rsa2\"}", CLAIMS, "rs256"), sub), JWKS_UNKNOWN_KID);
    assert_int_equal(verify(k, token(ec_key, "{\"alg\":\"RS256\",\"kid\":\"rsa2\"}", CLAIMS, "es256"), sub), JWKS_UNKNOWN_KID);
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\"}", CLAIMS, "rs256"), sub), JWKS_MALFORMED);
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{\"sub\":\"a\",\"exp\":1699999999}", "rs256"), sub), JWKS_EXPIRED);
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{\"exp\":1700000600}", "rs256"), sub), JWKS_EXPIRED);
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "{\"sub\":12}", "rs256"), sub), JWKS_EXPIRED);
    assert_int_equal(verify(k, token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", "[1]", "rs256"), sub), JWKS_EXPIRED);
    /* a sub too long for the caller */
    char *t = token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", CLAIMS, "rs256");
    assert_int_equal(jwks_verify(k, t, strlen(t), NOW, sub, 8), JWKS_EXPIRED);
    const char *bad[] = {"", "a", "a.b", "a.b.c.d", ".b.c", "a..c", "a.b.",
                         "!!.b.c", "eyJhbGciOiJSUzI1NiJ9.e30.!!!"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(verify(k, bad[i], sub), JWKS_MALFORMED);
    /* the token length is what counts, not a NUL */
    assert_int_equal(jwks_verify(k, t, strlen(t) - 3, NOW, sub, 64), JWKS_BAD_SIGNATURE);
    jwks_free(k);
}

/* A controller's new document replaces what it published before. */
static void test_rotation_and_documents(void **state)
{
    (void)state;
    struct jwks *k = loaded();
    char sub[64], a[2048], doc[8192];
    char *old = strdup(token(rsa_key, "{\"alg\":\"RS256\",\"kid\":\"rsa1\"}", CLAIMS, "rs256"));
    rsa_jwk(rsa_other, "rsa-new", a, sizeof(a));
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", a);
    assert_int_equal(jwks_load(k, 0, doc, strlen(doc)), 1);
    assert_int_equal(verify(k, old, sub), JWKS_UNKNOWN_KID);
    assert_int_equal(verify(k, token(rsa_other, "{\"alg\":\"RS256\",\"kid\":\"rsa-new\"}", CLAIMS, "rs256"), sub), JWKS_VERIFIED);
    free(old);
    /* not a JWKS: the keys stay */
    assert_int_equal(jwks_load(k, 0, "{\"keys\":{}}", 11), -1);
    assert_int_equal(jwks_load(k, 0, "nope", 4), -1);
    assert_int_equal(jwks_load(k, 5, doc, strlen(doc)), -1);
    assert_int_equal(verify(k, token(rsa_other, "{\"alg\":\"RS256\",\"kid\":\"rsa-new\"}", CLAIMS, "rs256"), sub), JWKS_VERIFIED);
    /* unusable keys are skipped: encryption keys, a declared alg that is
     * not the key's, a point off the curve, a short RSA modulus, no kid */
    const char *skip[] = {
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"use\":\"enc\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
        "{\"kty\":\"RSA\",\"kid\":\"x\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
        "{\"kty\":\"EC\",\"kid\":\"x\",\"crv\":\"P-256\",\"x\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\",\"y\":\"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\"}",
        "{\"kty\":\"EC\",\"kid\":\"x\",\"crv\":\"P-999\",\"x\":\"AA\",\"y\":\"AA\"}",
        "{\"kty\":\"oct\",\"kid\":\"x\",\"k\":\"AAAA\"}",
        "7",
    };
    for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++) {
        snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", skip[i]);
        assert_int_equal(jwks_load(k, 1, doc, strlen(doc)), 0);
    }
    ec_jwk(ec_key, "ec1", a, sizeof(a));
    char *p = strstr(a, "\"ES256\"");
    memcpy(p, "\"ES384\"", 7);
    snprintf(doc, sizeof(doc), "{\"keys\":[%s]}", a);
    assert_int_equal(jwks_load(k, 1, doc, strlen(doc)), 0);
    jwks_free(k);
}

static void test_bearer(void **state)
{
    (void)state;
    size_t n = 0;
    const char *v = "Bearer abc.def.ghi";
    assert_ptr_equal(jwks_bearer(v, strlen(v), &n), v + 7);
    assert_int_equal(n, 11);
    v = "bearer   abc ";
    assert_ptr_equal(jwks_bearer(v, strlen(v), &n), v + 9);
    assert_int_equal(n, 3);
    assert_null(jwks_bearer("Basic YWxpY2U6cHc=", 18, &n));
    assert_null(jwks_bearer("Bearer ", 7, &n));
    assert_null(jwks_bearer("Bearer   ", 9, &n));
    assert_null(jwks_bearer(NULL, 0, &n));
}

static int setup(void **state)
{
    (void)state;
    rsa_key = EVP_RSA_gen(2048);
    rsa_other = EVP_RSA_gen(2048);
    ec_key = EVP_EC_gen("P-256");
    return rsa_key && rsa_other && ec_key ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(rsa_key);
    EVP_PKEY_free(rsa_other);
    EVP_PKEY_free(ec_key);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_verified),
        cmocka_unit_test(test_forged),
        cmocka_unit_test(test_unknown_expired_malformed),
        cmocka_unit_test(test_rotation_and_documents),
        cmocka_unit_test(test_bearer),
        cmocka_unit_test(test_claim_lists),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
