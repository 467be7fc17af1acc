/* keyrefusal.h - controllers that refuse another controller's OIDC tokens.
 *
 * A controller bug (v1.5.4 and v1.7.2 controller/raft/mesh/mesh.go:504,822;
 * tests/realcluster/OBSERVATIONS.md): when a member dials the leader, the
 * leader records the member's raft *client* certificate as its token-signing
 * key, and writes it to the replicated controllers table; every other member
 * then refuses that member's tokens, 401, for the life of the cluster (a
 * fresh `ziti edge quickstart ha` + `join` cluster has it for every member
 * that joined).  The refusal happens in the auth layer before any handler
 * runs (controller/env/appenv.go:1102-1106, IsAllowed: no identity, no
 * permission, 401; the token was dropped at appenv.go:983 when its kid named
 * no key), so the call can be sent again, to the member that minted the
 * token, which knows its own key.
 *
 * struct keyrefusal remembers, per minter, which members refused its tokens
 * lately, so that the minter's tokens go to the minter in the first place.
 * Process-wide and lock-free; embedded in the app. */
#ifndef QG_KEYREFUSAL_H
#define QG_KEYREFUSAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct jwks;

/* How long a refusal is remembered (re-learned by the next 401). */
#define KEYREFUSAL_TTL_MS 60000

struct keyrefusal {
    _Atomic uint64_t by[CONFIG_MAX_CONTROLLERS];       /* refusers, per minter */
    _Atomic uint64_t until_ms[CONFIG_MAX_CONTROLLERS]; /* monotonic ms */
};

/* The controller that minted token (the one whose own JWKS names its kid),
 * or -1: not a JWS, no kid, or no single owner. */
int keyrefusal_minter(struct jwks *k, const char *token, size_t len);
/* refuser answered 401 to a token of minter that quorumgate verified;
 * true when that was not known yet (say it once). */
bool keyrefusal_note(struct keyrefusal *r, int minter, int refuser,
                     uint64_t now_ms);
/* Any refusal remembered now (a cheap check before parsing tokens). */
bool keyrefusal_any(struct keyrefusal *r, uint64_t now_ms);
/* The members that refused minter's tokens in the last KEYREFUSAL_TTL_MS. */
uint64_t keyrefusal_mask(struct keyrefusal *r, int minter, uint64_t now_ms);
/* Is this answer the auth layer's refusal: 401 with the error envelope's
 * code UNAUTHORIZED (errorz.NewUnauthorized), not a handler's own 401? */
bool keyrefusal_is_refusal(int status, const char *body, size_t len);

#endif
