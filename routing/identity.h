/* identity.h - who a request speaks for, and which login state it refers
 * to, read from the request itself (never verified: the controller does
 * that; quorumgate only routes by it):
 *  - an OIDC bearer token (Authorization: Bearer <JWT>): the identity is
 *    the token's "sub" claim (common/oidc_tokens.go);
 *  - a legacy session (zt-session header): valid only on its issuer;
 *  - an OIDC login step: the auth request id (query authRequestID or id,
 *    or the id field of a form or JSON body) or, at the token endpoint, the
 *    authorization code.
 * Pure functions. */
#ifndef QG_IDENTITY_H
#define QG_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

struct listener_header;

/* The "sub" of a bearer JWT in the Authorization header, into out. */
bool identity_bearer_sub(const struct listener_header *h, int n, char *out,
                         size_t cap);
/* The zt-session header value (borrowed), or NULL. */
const char *identity_session(const struct listener_header *h, int n);
/* The value of a query parameter of target (percent-decoded) into out. */
bool identity_query_param(const char *target, const char *name, char *out,
                          size_t cap);
/* A field of a form-urlencoded or JSON object body, into out. */
bool identity_body_field(const char *body, size_t len, const char *name,
                         char *out, size_t cap);
/* The auth request id an OIDC login step refers to. */
bool identity_oidc_request_id(const char *target, const char *body,
                              size_t len, char *out, size_t cap);
/* The authorization code of a token request (grant_type=authorization_code). */
bool identity_oidc_code(const char *body, size_t len, char *out, size_t cap);
/* From a Location value: authRequestID/id (kind 0) or code (kind 1). */
bool identity_location_param(const char *location, const char *name,
                             char *out, size_t cap);

#endif
