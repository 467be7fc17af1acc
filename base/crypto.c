/* crypto.c - see crypto.h.  Wraps OpenSSL. */
#include "base/crypto.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
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
