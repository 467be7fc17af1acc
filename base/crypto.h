/* crypto.h - the few cryptographic operations quorumgate needs, behind one
 * small interface.  The only file that includes OpenSSL.  Stateless. */
#ifndef QG_CRYPTO_H
#define QG_CRYPTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CRYPTO_HMAC_LEN 32
#define CRYPTO_HMAC_HEX_LEN 64

/* HMAC-SHA256(key, data) as lowercase hex into out[65] (NUL-terminated). */
void crypto_hmac_hex(const unsigned char *key, size_t key_len,
                     const void *data, size_t len,
                     char out[CRYPTO_HMAC_HEX_LEN + 1]);
/* Fills buf with cryptographically strong random bytes; aborts on failure. */
void crypto_random(void *buf, size_t len);
/* Lowercase hex of len bytes into out (2*len+1 bytes). */
void crypto_hex(const void *data, size_t len, char *out);
/* base64url (no padding needed) decode; returns malloc'ed bytes, NUL
 * terminated, or NULL on bad input. */
unsigned char *crypto_b64url_decode(const char *s, size_t len, size_t *out_len);
/* base64 encode (standard alphabet, padded); malloc'ed. */
char *crypto_b64_encode(const void *data, size_t len);
/* Checks that path holds a PEM certificate (want_key false) or private key
 * (true) OpenSSL can read; on failure returns false and *err (malloc'ed). */
bool crypto_check_pem(const char *path, bool want_key, char **err);
/* The private key in key_path belongs to the (first) certificate in
 * cert_path; false with *err (malloc'ed) when not, or either is unreadable. */
bool crypto_key_matches(const char *cert_path, const char *key_path,
                        char **err);

/* A public key from a JSON Web Key (RFC 7517/7518): kty "RSA" with n, e,
 * or kty "EC" with crv P-256/P-384/P-521, x, y (base64url).  NULL when the
 * key is not one of these or does not parse.  Free with crypto_pubkey_free.
 * Thread-safe to use from several threads once built (read-only). */
struct crypto_pubkey;
struct crypto_pubkey *crypto_jwk_pubkey(const char *kty, const char *n,
                                        const char *e, const char *crv,
                                        const char *x, const char *y);
void crypto_pubkey_free(struct crypto_pubkey *k);
/* The JWS algorithm the key signs with: "RS256" (any RSA key; what
 * OpenZiti controllers use for RSA server keys) or "ES256"/"ES384"/
 * "ES512" by curve (controller/env/appenv.go getJwtSigningMethod). */
const char *crypto_pubkey_alg(const struct crypto_pubkey *k);
/* Verifies a JWS signature over input with k; alg must be the key's own
 * algorithm (no "none", no HMAC, no RSA/EC confusion).  ES* signatures are
 * the raw r||s of RFC 7518 3.4. */
bool crypto_jws_verify(const struct crypto_pubkey *k, const char *alg,
                       const void *input, size_t len,
                       const unsigned char *sig, size_t sig_len);
/* Overwrites len bytes at p with zeros in a way the compiler keeps. */
void crypto_wipe(void *p, size_t len);

#endif
