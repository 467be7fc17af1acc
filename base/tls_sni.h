/* tls_sni.h - the server name (SNI) of a TLS ClientHello, read from the
 * first bytes a client sends, without terminating TLS.  Pure function.
 *
 * Only the first TLS record is read (a ClientHello split over several
 * records is reported as "no name": such clients go to the HTTP front). */
#ifndef QG_TLS_SNI_H
#define QG_TLS_SNI_H

#include <stddef.h>
#include <stdint.h>

enum tls_sni_result {
    TLS_SNI_FOUND = 0,    /* name copied (lower-cased, NUL-terminated) */
    TLS_SNI_NONE,         /* a whole ClientHello without a host name */
    TLS_SNI_MORE,         /* not enough bytes yet */
    TLS_SNI_NOT_TLS       /* not a TLS handshake record / malformed */
};

/* buf/len: what the client sent so far.  name: out, name_cap bytes. */
enum tls_sni_result tls_sni_parse(const uint8_t *buf, size_t len, char *name,
                                  size_t name_cap);

#endif
