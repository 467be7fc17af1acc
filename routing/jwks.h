/* jwks.h - the identity a request's bearer token speaks for, taken only
 * from tokens the controllers signed.
 *
 * OpenZiti controllers sign their OIDC tokens with their TLS server key
 * (RS256 for RSA keys, ES256/ES384/ES512 by curve; kid = hex SHA-1 of the
 * server certificate: controller/env/appenv.go SetServerCert,
 * getJwtSigningMethod) and publish the public keys as a JWKS at
 * GET /oidc/keys (the zitadel op "keys" endpoint, jwks_uri of
 * /oidc/.well-known/openid-configuration; controller/oidc_auth/storage.go
 * KeySet).  v1.5.4 lists peer controllers' keys under a kid that is the raw
 * SHA-1 bytes, not hex (storage.go: fmt.Sprintf("%s", sha1.Sum(..))), so a
 * controller's own JWKS is the only one that names its key right: the key
 * set here is the union of every controller's own document, and a token
 * whose kid names no key is checked against every key of its algorithm
 * (its issuer's key may be known only under the mangled kid while the
 * issuer is down).
 *
 * Two parts:
 *  - struct jwks, the process-wide key set.  Owned by the app; any thread
 *    may verify and load (a mutex guards the keys; loads are rare);
 *  - struct jwks_fetch, one per worker loop: fetches every controller's
 *    JWKS (at most once per min_interval_ms, so a stream of tokens with
 *    unknown kids cannot make quorumgate hammer the controllers) and calls
 *    back the requests that waited for it.  Owned by its worker. */
#ifndef QG_JWKS_H
#define QG_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct jwks;
struct jwks_fetch;
struct upstream;
struct cluster;

enum jwks_result {
    JWKS_VERIFIED = 0,   /* signature good, not expired: sub is set */
    JWKS_MALFORMED,      /* not a JWS with a header, payload and signature */
    JWKS_UNKNOWN_KID,    /* no key with that kid (yet) */
    JWKS_BAD_SIGNATURE,  /* wrong algorithm for the key, or bad signature */
    JWKS_EXPIRED,        /* exp in the past, or no sub */
};

struct jwks *jwks_new(int n_nodes);
void jwks_free(struct jwks *k);
/* Replaces the keys learned from node with those of a JWKS document
 * ({"keys":[...]}); keys it cannot use are skipped.  Returns the number
 * of usable keys, or -1 when the text is not a JWKS (the old keys stay). */
int jwks_load(struct jwks *k, int node, const char *json, size_t len);
/* Number of controllers whose JWKS has been loaded at least once. */
int jwks_nodes_loaded(struct jwks *k);
/* Verifies a compact JWS (the token of "Authorization: Bearer <token>"):
 * its kid must name a loaded key (or, when none has that kid, any key of
 * its algorithm must verify it), its alg be that key's algorithm, its
 * signature verify and its exp (if any) be after now_s; then its "sub"
 * goes into sub (NUL-terminated; JWKS_EXPIRED when missing or too long). */
enum jwks_result jwks_verify(struct jwks *k, const char *token, size_t len,
                             uint64_t now_s, char *sub, size_t cap);
/* The token's claim (an array of strings, or a string) lists value.  Reads
 * the payload only: for a token jwks_verify verified. */
bool jwks_claim_lists(const char *token, size_t len, const char *claim,
                      const char *value);
/* The controller whose own JWKS names kid exactly: the token's minter (a
 * controller's own document is the only one that names its key the way
 * its tokens do, see above).  -1 when none does, or more than one. */
int jwks_kid_owner(struct jwks *k, const char *kid);
/* The bearer token of an Authorization value ("Bearer <token>"), or NULL. */
const char *jwks_bearer(const char *value, size_t len, size_t *token_len);

typedef void (*jwks_cb)(void *arg);

struct jwks_fetch *jwks_fetch_new(struct jwks *k, struct upstream *up,
                                  const struct cluster *c,
                                  uint64_t min_interval_ms,
                                  uint64_t timeout_ms);
/* Cancels what is in flight; pending callbacks are dropped (not called). */
void jwks_fetch_free(struct jwks_fetch *f);
/* Fetches every controller's keys unless that was done less than
 * min_interval_ms before now_ms; cb(arg) runs on the loop once every
 * controller answered or failed.  Returns false (cb never runs) when rate
 * limited; true when cb will run (also when a fetch was already going).
 * cb may be NULL: fetch only (at start, so that keys are known before a
 * controller goes away). */
bool jwks_refresh(struct jwks_fetch *f, uint64_t now_ms, jwks_cb cb,
                  void *arg);
/* Drops every pending callback with this arg. */
void jwks_cancel(struct jwks_fetch *f, void *arg);

#endif
