/* rewrite.h - keeping clients on the proxy.  SDKs learn controller
 * addresses from GET .../controllers (apiAddresses), from /version
 * (apiBaseUrls), from Location headers and from ziti-ctrl-address, and then
 * go straight to the controllers (ziti-sdk-c library/ziti_ctrl.c).  These
 * are rewritten to the configured public URL, and ziti-ctrl-address is
 * dropped. */
#ifndef QG_REWRITE_H
#define QG_REWRITE_H

#include <stdbool.h>
#include <stddef.h>

#include "routing/classify.h"

struct config;
struct headers;
struct http_fields;
struct buf;

/* Prepares the upstream headers of a call for the rewrite: the calls whose
 * bodies are rewritten ask for an uncompressed answer (a body in a
 * Content-Encoding could not be read, and would reach the client with the
 * controllers' addresses in it). */
void rewrite_request(enum classify_call call, struct headers *up_headers);
/* Rewrites a call's upstream answer (status, body: rewritten in place)
 * and the fields h about to be sent to the client.  A rewritten Location
 * points into *keep (malloc'ed, or NULL): the caller frees it once h has
 * been sent. */
void rewrite_response(const struct config *cfg, enum classify_call call,
                      int status, struct buf *body, struct http_fields *h,
                      char **keep);

/* Replaces the origin (scheme://host:port) of url by public_url; malloc'ed.
 * Returns NULL when url is not absolute. */
char *rewrite_origin(const char *url, const char *public_url);
/* Rewrites every "url" in data[].apiAddresses.*[] (controllers) or every
 * element of data.apiVersions.*.*.apiBaseUrls (version).  Returns a new
 * malloc'ed body, or NULL when the body was not of that shape. */
char *rewrite_controllers_body(const char *body, size_t len,
                               const char *public_url, size_t *out_len);
char *rewrite_version_body(const char *body, size_t len,
                           const char *public_url, size_t *out_len);

#endif
