/* identity.h - the credentials a request carries, and which login state it
 * refers to, read from the request itself:
 *  - an OIDC bearer token (Authorization: Bearer <JWT>): the identity is
 *    the token's "sub" claim (common/oidc_tokens.go), taken only once its
 *    signature verified (jwks.h);
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

/* The Authorization header value (borrowed, *len bytes), or NULL.  Who a
 * bearer token speaks for is only known from its signature (jwks.h). */
const char *identity_authorization(const struct listener_header *h, int n,
                                   size_t *len);
/* NULL when the request carries at most one credential, else why not: more
 * than one Authorization or zt-session, or both (a controller would read
 * one, quorumgate could read another; refused with 400). */
const char *identity_credentials_check(const struct listener_header *h,
                                       int n);
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
