/* tls_sni.c - see tls_sni.h.  RFC 8446 4.1.2 / RFC 5246 7.4.1.2 (the
 * ClientHello) and RFC 6066 3 (server_name). */
#include "base/tls_sni.h"

#include <stdbool.h>

/* A bounded reader over the ClientHello body. */
struct tls_sni_rd {
    const uint8_t *p;
    size_t left;
};

static bool tls_sni_take(struct tls_sni_rd *r, size_t n, const uint8_t **out)
{
    if (r->left < n)
        return false;
    if (out)
        *out = r->p;
    r->p += n;
    r->left -= n;
    return true;
}

static bool tls_sni_u(struct tls_sni_rd *r, size_t bytes, size_t *v)
{
    const uint8_t *b;
    if (!tls_sni_take(r, bytes, &b))
        return false;
    *v = 0;
    for (size_t i = 0; i < bytes; i++)
        *v = (*v << 8) | b[i];
    return true;
}

/* Skip a vector whose length takes len_bytes. */
static bool tls_sni_skip_vec(struct tls_sni_rd *r, size_t len_bytes)
{
    size_t n;
    return tls_sni_u(r, len_bytes, &n) && tls_sni_take(r, n, NULL);
}

static enum tls_sni_result tls_sni_name(struct tls_sni_rd ext, char *name,
                                        size_t cap)
{
    size_t list_len, type, n;
    const uint8_t *host;
    if (!tls_sni_u(&ext, 2, &list_len) || list_len > ext.left)
        return TLS_SNI_NOT_TLS;
    ext.left = list_len;
    while (ext.left > 0) {
        if (!tls_sni_u(&ext, 1, &type) || !tls_sni_u(&ext, 2, &n) ||
            !tls_sni_take(&ext, n, &host))
            return TLS_SNI_NOT_TLS;
        if (type != 0)
            continue; /* host_name is the only type defined */
        if (n == 0 || n >= cap)
            return TLS_SNI_NONE;
        for (size_t i = 0; i < n; i++) {
            uint8_t c = host[i];
            if (c == 0)
                return TLS_SNI_NONE;
            name[i] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
        }
        name[n] = '\0';
        return TLS_SNI_FOUND;
    }
    return TLS_SNI_NONE;
}

enum tls_sni_result tls_sni_parse(const uint8_t *buf, size_t len, char *name,
                                  size_t name_cap)
{
    /* record header: type 22 (handshake), version 3.x, length */
    if (len >= 1 && buf[0] != 22)
        return TLS_SNI_NOT_TLS;
    if (len >= 2 && buf[1] != 3)
        return TLS_SNI_NOT_TLS;
    if (len < 5)
        return TLS_SNI_MORE;
    size_t rec_len = ((size_t)buf[3] << 8) | buf[4];
    if (rec_len < 4 || rec_len > 16384 + 2048)
        return TLS_SNI_NOT_TLS;
    if (len < 5 + 4)
        return TLS_SNI_MORE;
    if (buf[5] != 1) /* handshake type client_hello */
        return TLS_SNI_NOT_TLS;
    size_t hs_len = ((size_t)buf[6] << 16) | ((size_t)buf[7] << 8) | buf[8];
    if (hs_len + 4 > rec_len)
        return TLS_SNI_NONE; /* split over records: not looked into */
    if (len < 5 + 4 + hs_len)
        return TLS_SNI_MORE;
    struct tls_sni_rd r = {buf + 9, hs_len};
    size_t ext_total;
    if (!tls_sni_take(&r, 2 + 32, NULL) ||  /* legacy_version, random */
        !tls_sni_skip_vec(&r, 1) ||          /* session id */
        !tls_sni_skip_vec(&r, 2) ||          /* cipher suites */
        !tls_sni_skip_vec(&r, 1))            /* compression methods */
        return TLS_SNI_NOT_TLS;
    if (r.left == 0)
        return TLS_SNI_NONE;                 /* no extensions at all */
    if (!tls_sni_u(&r, 2, &ext_total) || ext_total > r.left)
        return TLS_SNI_NOT_TLS;
    r.left = ext_total;
    while (r.left > 0) {
        size_t type, n;
        const uint8_t *body;
        if (!tls_sni_u(&r, 2, &type) || !tls_sni_u(&r, 2, &n) ||
            !tls_sni_take(&r, n, &body))
            return TLS_SNI_NOT_TLS;
        if (type == 0)
            return tls_sni_name((struct tls_sni_rd){body, n}, name, name_cap);
    }
    return TLS_SNI_NONE;
}
