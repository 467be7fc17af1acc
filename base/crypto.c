/* crypto.c - see crypto.h.  Wraps OpenSSL. */
#include "base/crypto.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"

void crypto_hex(const void *data, size_t len, char *out)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        out[2 * i] = hex[p[i] >> 4];
        out[2 * i + 1] = hex[p[i] & 15];
    }
    out[2 * len] = '\0';
}

void crypto_hmac_hex(const unsigned char *key, size_t key_len,
                     const void *data, size_t len,
                     char out[CRYPTO_HMAC_HEX_LEN + 1])
{
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    if (!HMAC(EVP_sha256(), key, (int)key_len, data, len, mac, &mac_len))
        abort();
    crypto_hex(mac, mac_len, out);
}

void crypto_random(void *buf, size_t len)
{
    if (RAND_bytes(buf, (int)len) != 1)
        abort();
}

unsigned char *crypto_b64url_decode(const char *s, size_t len, size_t *out_len)
{
    /* translate to the standard alphabet and pad */
    size_t padded = (len + 3) / 4 * 4;
    char *tmp = xmalloc(padded + 1);
    unsigned char *out = NULL;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '-')
            c = '+';
        else if (c == '_')
            c = '/';
        else if (c == '=' || c == '\0')
            goto out;
        tmp[i] = c;
    }
    for (size_t i = len; i < padded; i++)
        tmp[i] = '=';
    tmp[padded] = '\0';
    if (len % 4 == 1)
        goto out;
    out = xmalloc(padded / 4 * 3 + 1);
    int n = EVP_DecodeBlock(out, (const unsigned char *)tmp, (int)padded);
    if (n < 0) {
        free(out);
        out = NULL;
        goto out;
    }
    n -= (int)(padded - len); /* EVP_DecodeBlock counts pad bytes as zeros */
    out[n] = '\0';
    if (out_len)
        *out_len = (size_t)n;
out:
    free(tmp);
    return out;
}

char *crypto_b64_encode(const void *data, size_t len)
{
    char *out = xmalloc((len + 2) / 3 * 4 + 1);
    EVP_EncodeBlock((unsigned char *)out, data, (int)len);
    return out;
}

bool crypto_check_pem(const char *path, bool want_key, char **err)
{
    bool ok = false;
    FILE *f = fopen(path, "r");
    if (!f) {
        *err = xasprintf("cannot read '%s'", path);
        return false;
    }
    if (want_key) {
        EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        ok = k != NULL;
        EVP_PKEY_free(k);
    } else {
        X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
        ok = x != NULL;
        X509_free(x);
    }
    fclose(f);
    ERR_clear_error();
    if (!ok)
        *err = xasprintf("'%s' holds no PEM %s", path,
                         want_key ? "private key" : "certificate");
    return ok;
}

bool crypto_key_matches(const char *cert_path, const char *key_path,
                        char **err)
{
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    bool ok = false;
    FILE *f = fopen(cert_path, "r");
    if (f) {
        x = PEM_read_X509(f, NULL, NULL, NULL);
        fclose(f);
    }
    f = fopen(key_path, "r");
    if (f) {
        k = PEM_read_PrivateKey(f, NULL, NULL, NULL);
        fclose(f);
    }
    ok = x && k && X509_check_private_key(x, k) == 1;
    if (!ok)
        *err = xasprintf("the key in '%s' is not the key of the certificate "
                         "in '%s'", key_path, cert_path);
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
    return ok;
}

/* ---- JSON Web Keys and JWS signatures ------------------------------------ */

struct crypto_pubkey {
    EVP_PKEY *pkey; /* owned */
    char alg[8];
    int sig_half;   /* ES*: bytes of r and of s in a JWS signature */
};

void crypto_wipe(void *p, size_t len)
{
    if (p && len)
        OPENSSL_cleanse(p, len);
}

static BIGNUM *crypto_b64url_bn(const char *s)
{
    size_t len = 0;
    unsigned char *raw = s ? crypto_b64url_decode(s, strlen(s), &len) : NULL;
    BIGNUM *bn = raw && len ? BN_bin2bn(raw, (int)len, NULL) : NULL;
    free(raw);
    return bn;
}

static EVP_PKEY *crypto_rsa_key(const char *n, const char *e)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM_BLD *bld = NULL;
    OSSL_PARAM *params = NULL;
    BIGNUM *bn = crypto_b64url_bn(n), *be = crypto_b64url_bn(e);
    if (!bn || !be || BN_num_bits(bn) < 2048 || BN_num_bits(bn) > 8192)
        goto out;
    bld = OSSL_PARAM_BLD_new();
    if (!bld || !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn) ||
        !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, be))
        goto out;
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
out:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_free(bn);
    BN_free(be);
    return pkey;
}

/* An uncompressed point 04 || x || y, each coordinate padded to half. */
static EVP_PKEY *crypto_ec_key(const char *group, int half, const char *x,
                               const char *y)
{
    EVP_PKEY *pkey = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    OSSL_PARAM params[3];
    size_t xl = 0, yl = 0;
    unsigned char *xr = x ? crypto_b64url_decode(x, strlen(x), &xl) : NULL;
    unsigned char *yr = y ? crypto_b64url_decode(y, strlen(y), &yl) : NULL;
    unsigned char point[1 + 2 * 66];
    if (!xr || !yr || xl != (size_t)half || yl != (size_t)half)
        goto out;
    point[0] = 0x04;
    memcpy(point + 1, xr, xl);
    memcpy(point + 1 + half, yr, yl);
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME,
                                                 (char *)group, 0);
    params[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY,
                                                  point, 1 + 2 * (size_t)half);
    params[2] = OSSL_PARAM_construct_end();
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (!ctx || EVP_PKEY_fromdata_init(ctx) <= 0 ||
        EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
        pkey = NULL;
    /* fromdata does not check that the point is on the curve */
    if (pkey) {
        EVP_PKEY_CTX *chk = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
        if (!chk || EVP_PKEY_public_check(chk) != 1) {
            EVP_PKEY_free(pkey);
            pkey = NULL;
        }
        EVP_PKEY_CTX_free(chk);
    }
out:
    EVP_PKEY_CTX_free(ctx);
    free(xr);
    free(yr);
    return pkey;
}

struct crypto_pubkey *crypto_jwk_pubkey(const char *kty, const char *n,
                                        const char *e, const char *crv,
                                        const char *x, const char *y)
{
    static const struct {
        const char *crv, *group, *alg;
        int half;
    } curves[] = {
        {"P-256", "prime256v1", "ES256", 32},
        {"P-384", "secp384r1", "ES384", 48},
        {"P-521", "secp521r1", "ES512", 66},
    };
    struct crypto_pubkey *k = NULL;
    EVP_PKEY *pkey = NULL;
    const char *alg = NULL;
    int half = 0;
    if (kty && strcmp(kty, "RSA") == 0) {
        pkey = crypto_rsa_key(n, e);
        alg = "RS256";
    } else if (kty && strcmp(kty, "EC") == 0 && crv) {
        for (size_t i = 0; i < sizeof(curves) / sizeof(curves[0]); i++)
            if (strcmp(crv, curves[i].crv) == 0) {
                half = curves[i].half;
                alg = curves[i].alg;
                pkey = crypto_ec_key(curves[i].group, half, x, y);
            }
    }
    ERR_clear_error();
    if (!pkey)
        return NULL;
    k = xcalloc(1, sizeof(*k));
    k->pkey = pkey;
    k->sig_half = half;
    snprintf(k->alg, sizeof(k->alg), "%s", alg);
    return k;
}

void crypto_pubkey_free(struct crypto_pubkey *k)
{
    if (!k)
        return;
    EVP_PKEY_free(k->pkey);
    free(k);
}

const char *crypto_pubkey_alg(const struct crypto_pubkey *k)
{
    return k->alg;
}

/* raw r||s (JWS) to the DER ECDSA-Sig-Value OpenSSL verifies. */
static unsigned char *crypto_ecdsa_der(const struct crypto_pubkey *k,
                                       const unsigned char *sig,
                                       size_t sig_len, size_t *der_len)
{
    unsigned char *der = NULL;
    ECDSA_SIG *es = NULL;
    BIGNUM *r = NULL, *s = NULL;
    if (sig_len != 2 * (size_t)k->sig_half)
        return NULL;
    es = ECDSA_SIG_new();
    r = BN_bin2bn(sig, k->sig_half, NULL);
    s = BN_bin2bn(sig + k->sig_half, k->sig_half, NULL);
    if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
        BN_free(r);
        BN_free(s);
        goto out;
    }
    int n = i2d_ECDSA_SIG(es, &der);
    if (n <= 0) {
        der = NULL;
        goto out;
    }
    *der_len = (size_t)n;
out:
    ECDSA_SIG_free(es);
    return der;
}

bool crypto_jws_verify(const struct crypto_pubkey *k, const char *alg,
                       const void *input, size_t len,
                       const unsigned char *sig, size_t sig_len)
{
    static const struct {
        const char *alg;
        const char *md;
    } mds[] = {{"RS256", "SHA256"},
               {"ES256", "SHA256"},
               {"ES384", "SHA384"},
               {"ES512", "SHA512"}};
    bool ok = false;
    const EVP_MD *md = NULL;
    EVP_MD_CTX *ctx = NULL;
    unsigned char *der = NULL;
    size_t der_len = 0;
    if (!k || !alg || strcmp(alg, k->alg) != 0)
        return false;
    for (size_t i = 0; i < sizeof(mds) / sizeof(mds[0]); i++)
        if (strcmp(alg, mds[i].alg) == 0)
            md = EVP_get_digestbyname(mds[i].md);
    if (!md)
        return false;
    if (k->sig_half) {
        der = crypto_ecdsa_der(k, sig, sig_len, &der_len);
        if (!der)
            goto out;
        sig = der;
        sig_len = der_len;
    }
    ctx = EVP_MD_CTX_new();
    ok = ctx && EVP_DigestVerifyInit(ctx, NULL, md, NULL, k->pkey) == 1 &&
         EVP_DigestVerify(ctx, sig, sig_len, input, len) == 1;
out:
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error();
    return ok;
}
