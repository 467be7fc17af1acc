/* framing.h - the request rules the listener enforces once a head is
 * parsed (base/h1req.c checks the field syntax), so that no peer parser
 * can read a message differently from quorumgate (request smuggling): the
 * request target, and Content-Length / Transfer-Encoding framing.
 * Each returns NULL when the request is fine, else the reason for its 400.
 * Pure functions over the parsed request. */
#ifndef QG_FRAMING_H
#define QG_FRAMING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct listener_header;

/* An origin-form target without control characters, spaces or '#'. */
const char *framing_target(const char *url, const char *method,
                           const char *version);
/* One Transfer-Encoding, exactly chunked, never with Content-Length nor in
 * HTTP/1.0; equal Content-Lengths; one Host.  *clen / *has_clen get the
 * Content-Length. */
const char *framing_check(const struct listener_header *headers, int n,
                          const char *version, uint64_t *clen,
                          bool *has_clen);

#endif
