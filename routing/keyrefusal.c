/* keyrefusal.c - see keyrefusal.h. */
#include "routing/keyrefusal.h"

#include <stdlib.h>
#include <string.h>

#include "base/crypto.h"
#include "base/json.h"
#include "base/nodeset.h"
#include "routing/jwks.h"

int keyrefusal_minter(struct jwks *k, const char *token, size_t len)
{
    int node = -1;
    size_t h_len = 0;
    const char *dot = token ? memchr(token, '.', len) : NULL;
    unsigned char *h =
        dot && dot > token
            ? crypto_b64url_decode(token, (size_t)(dot - token), &h_len)
            : NULL;
    struct json *hdr = h ? json_parse((const char *)h, h_len) : NULL;
    const char *kid = json_string(json_get(hdr, "kid"));
    if (kid && *kid)
        node = jwks_kid_owner(k, kid);
    json_free(hdr);
    free(h);
    return node;
}

bool keyrefusal_note(struct keyrefusal *r, int minter, int refuser,
                     uint64_t now_ms)
{
    if (minter < 0 || minter >= CONFIG_MAX_CONTROLLERS || refuser < 0 ||
        refuser >= NODESET_MAX || refuser == minter)
        return false;
    /* an expired entry starts afresh: its old refusers are not carried */
    if (atomic_load(&r->until_ms[minter]) <= now_ms)
        atomic_store(&r->by[minter], 0);
    uint64_t old = atomic_fetch_or(&r->by[minter], nodeset_of(refuser));
    atomic_store(&r->until_ms[minter], now_ms + KEYREFUSAL_TTL_MS);
    return !nodeset_has(old, refuser);
}

bool keyrefusal_any(struct keyrefusal *r, uint64_t now_ms)
{
    for (int i = 0; i < CONFIG_MAX_CONTROLLERS; i++)
        if (atomic_load_explicit(&r->until_ms[i], memory_order_relaxed) >
            now_ms)
            return true;
    return false;
}

uint64_t keyrefusal_mask(struct keyrefusal *r, int minter, uint64_t now_ms)
{
    if (minter < 0 || minter >= CONFIG_MAX_CONTROLLERS ||
        atomic_load(&r->until_ms[minter]) <= now_ms)
        return 0;
    return atomic_load(&r->by[minter]);
}

bool keyrefusal_is_refusal(int status, const char *body, size_t len)
{
    if (status != 401 || !body || !len)
        return false;
    struct json *j = json_parse(body, len);
    const char *code = json_path_string(j, "error.code");
    bool yes = code && strcmp(code, "UNAUTHORIZED") == 0;
    json_free(j);
    return yes;
}
