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

#endif
