/* jwks.c - see jwks.h. */
#include "routing/jwks.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/crypto.h"
#include "base/json.h"
#include "base/util.h"
#include "io/upstream.h"
#include "routing/cluster.h"

#define JWKS_KID_MAX 128
#define JWKS_KEYS_PER_NODE 16

struct jwks_key {
    char kid[JWKS_KID_MAX];
    struct crypto_pubkey *key;       /* owned */
};

struct jwks_node {
    struct jwks_key keys[JWKS_KEYS_PER_NODE];
    int n;
    bool loaded;
};

struct jwks {
    pthread_mutex_t lock;            /* guards nodes */
    struct jwks_node *nodes;         /* owned array of n */
    int n;
};

struct jwks *jwks_new(int n_nodes)
{
    struct jwks *k = xcalloc(1, sizeof(*k));
    pthread_mutex_init(&k->lock, NULL);
    k->n = n_nodes;
    k->nodes = xcalloc((size_t)(n_nodes > 0 ? n_nodes : 1),
                       sizeof(*k->nodes));
    return k;
}

static void jwks_node_clear(struct jwks_node *jn)
{
    for (int i = 0; i < jn->n; i++)
        crypto_pubkey_free(jn->keys[i].key);
    jn->n = 0;
}

void jwks_free(struct jwks *k)
{
    if (!k)
        return;
    for (int i = 0; i < k->n; i++)
        jwks_node_clear(&k->nodes[i]);
    free(k->nodes);
    pthread_mutex_destroy(&k->lock);
    free(k);
}

int jwks_load(struct jwks *k, int node, const char *text, size_t len)
{
    struct jwks_node fresh = {0};
    struct json *j = json_parse(text, len);
    struct json *keys = json_get(j, "keys");
    int result = -1;
    if (node < 0 || node >= k->n || !json_is_array(keys))
        goto out;
    for (struct json *e = json_first(keys);
         e && fresh.n < JWKS_KEYS_PER_NODE; e = json_next(e)) {
        const char *kid = json_string(json_get(e, "kid"));
        const char *use = json_string(json_get(e, "use"));
        const char *alg = json_string(json_get(e, "alg"));
        if (!kid || !*kid || strlen(kid) >= JWKS_KID_MAX ||
            (use && strcmp(use, "sig") != 0))
            continue;
        struct crypto_pubkey *pk = crypto_jwk_pubkey(
            json_string(json_get(e, "kty")), json_string(json_get(e, "n")),
            json_string(json_get(e, "e")), json_string(json_get(e, "crv")),
            json_string(json_get(e, "x")), json_string(json_get(e, "y")));
        if (pk && alg && strcmp(alg, crypto_pubkey_alg(pk)) != 0) {
            crypto_pubkey_free(pk); /* declared for another algorithm */
            pk = NULL;
        }
        if (!pk)
            continue;
        snprintf(fresh.keys[fresh.n].kid, JWKS_KID_MAX, "%s", kid);
        fresh.keys[fresh.n++].key = pk;
    }
    fresh.loaded = true;
    result = fresh.n;
    pthread_mutex_lock(&k->lock);
    jwks_node_clear(&k->nodes[node]);
    k->nodes[node] = fresh;
    pthread_mutex_unlock(&k->lock);
out:
    json_free(j);
    return result;
}

int jwks_nodes_loaded(struct jwks *k)
{
    int n = 0;
    pthread_mutex_lock(&k->lock);
    for (int i = 0; i < k->n; i++)
        n += k->nodes[i].loaded;
    pthread_mutex_unlock(&k->lock);
    return n;
}

int jwks_kid_owner(struct jwks *k, const char *kid)
{
    int owner = -1;
    pthread_mutex_lock(&k->lock);
    for (int i = 0; i < k->n && owner != -2; i++)
        for (int x = 0; x < k->nodes[i].n; x++)
            if (strcmp(k->nodes[i].keys[x].kid, kid) == 0) {
                owner = owner == -1 ? i : -2;
                break;
            }
    pthread_mutex_unlock(&k->lock);
    return owner < 0 ? -1 : owner;
}

const char *jwks_bearer(const char *value, size_t len, size_t *token_len)
{
    if (!value || len < 8 || strncasecmp(value, "Bearer ", 7) != 0)
        return NULL;
    value += 7;
    len -= 7;
    while (len && *value == ' ')
        value++, len--;
    while (len && value[len - 1] == ' ')
        len--;
    if (!len)
        return NULL;
    *token_len = len;
    return value;
}

/* Verifies under the lock: keys are freed only under it. */
static enum jwks_result jwks_check_sig(struct jwks *k, const char *kid,
                                       const char *alg, const char *input,
                                       size_t in_len,
                                       const unsigned char *sig,
                                       size_t sig_len)
{
    enum jwks_result r = JWKS_UNKNOWN_KID;
    pthread_mutex_lock(&k->lock);
    for (int i = 0; i < k->n && r == JWKS_UNKNOWN_KID; i++) {
        struct jwks_node *jn = &k->nodes[i];
        for (int x = 0; x < jn->n; x++) {
            if (strcmp(jn->keys[x].kid, kid) != 0)
                continue;
            r = crypto_jws_verify(jn->keys[x].key, alg, input, in_len, sig,
                                  sig_len)
                    ? JWKS_VERIFIED
                    : JWKS_BAD_SIGNATURE;
            break;
        }
    }
    /* No key under that kid: v1.5.4 lists peers' keys under a mangled kid
     * (jwks.h), so a controller that is down now still has its key in its
     * peers' documents.  Any key of the token's algorithm that verifies the
     * signature vouches for it (a forged token verifies under none). */
    for (int i = 0; i < k->n && r == JWKS_UNKNOWN_KID; i++) {
        struct jwks_node *jn = &k->nodes[i];
        for (int x = 0; x < jn->n && r == JWKS_UNKNOWN_KID; x++)
            if (strcmp(crypto_pubkey_alg(jn->keys[x].key), alg) == 0 &&
                crypto_jws_verify(jn->keys[x].key, alg, input, in_len, sig,
                                  sig_len))
                r = JWKS_VERIFIED;
    }
    pthread_mutex_unlock(&k->lock);
    return r;
}

enum jwks_result jwks_verify(struct jwks *k, const char *token, size_t len,
                             uint64_t now_s, char *sub, size_t cap)
{
    enum jwks_result r = JWKS_MALFORMED;
    struct json *hdr = NULL, *claims = NULL;
    unsigned char *h = NULL, *p = NULL, *sig = NULL;
    size_t h_len, p_len, sig_len;
    const char *dot1 = token ? memchr(token, '.', len) : NULL;
    const char *dot2 =
        dot1 ? memchr(dot1 + 1, '.', (size_t)(token + len - dot1 - 1)) : NULL;
    if (cap)
        sub[0] = '\0';
    if (!dot2 || dot1 == token || dot2 == dot1 + 1 ||
        dot2 + 1 == token + len ||
        memchr(dot2 + 1, '.', (size_t)(token + len - dot2 - 1)))
        goto out;
    h = crypto_b64url_decode(token, (size_t)(dot1 - token), &h_len);
    p = crypto_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &p_len);
    sig = crypto_b64url_decode(dot2 + 1, (size_t)(token + len - dot2 - 1),
                               &sig_len);
    if (!h || !p || !sig)
        goto out;
    hdr = json_parse((const char *)h, h_len);
    const char *alg = json_string(json_get(hdr, "alg"));
    const char *kid = json_string(json_get(hdr, "kid"));
    if (!alg || !kid || json_get(hdr, "crit"))
        goto out;
    r = jwks_check_sig(k, kid, alg, token, (size_t)(dot2 - token), sig,
                       sig_len);
    if (r != JWKS_VERIFIED)
        goto out;
    claims = json_parse((const char *)p, p_len);
    const char *s = json_string(json_get(claims, "sub"));
    double exp;
    bool has_exp = json_number(json_get(claims, "exp"), &exp);
    if (!json_is_object(claims) || !s || !*s || strlen(s) >= cap ||
        (has_exp && exp <= (double)now_s)) {
        r = JWKS_EXPIRED;
        goto out;
    }
    memcpy(sub, s, strlen(s) + 1);
out:
    json_free(hdr);
    json_free(claims);
    free(h);
    free(p);
    free(sig);
    return r;
}

bool jwks_claim_lists(const char *token, size_t len, const char *claim,
                      const char *value)
{
    bool found = false;
    struct json *claims = NULL;
    unsigned char *p = NULL;
    size_t p_len;
    const char *dot1 = token ? memchr(token, '.', len) : NULL;
    const char *dot2 =
        dot1 ? memchr(dot1 + 1, '.', (size_t)(token + len - dot1 - 1)) : NULL;
    if (!dot2)
        goto out;
    p = crypto_b64url_decode(dot1 + 1, (size_t)(dot2 - dot1 - 1), &p_len);
    if (!p)
        goto out;
    claims = json_parse((const char *)p, p_len);
    struct json *c = json_get(claims, claim);
    const char *one = json_string(c);
    if (one) {
        found = strcmp(one, value) == 0;
        goto out;
    }
    if (!json_is_array(c))
        goto out;
    for (struct json *e = json_first(c); e && !found; e = json_next(e)) {
        const char *v = json_string(e);
        found = v && strcmp(v, value) == 0;
    }
out:
    json_free(claims);
    if (p)
        explicit_bzero(p, p_len);
    free(p);
    return found;
}

/* ---- fetching ------------------------------------------------------------- */

struct jwks_waiter {
    jwks_cb cb;
    void *arg;
    struct jwks_waiter *next;
};

struct jwks_fetch_node {
    struct upstream_req req;         /* owned response buffers */
    char *url;                       /* owned */
    bool in_flight;
    struct jwks_fetch *f;            /* borrowed */
    int node;
};

struct jwks_fetch {
    struct jwks *k;                  /* borrowed (the app's) */
    struct upstream *up;             /* borrowed (the worker's) */
    const struct cluster *c;         /* borrowed */
    struct jwks_fetch_node *nodes;   /* owned array of c->n */
    int pending;                     /* fetches in flight */
    uint64_t last_ms;                /* start of the last round; 0 = none */
    uint64_t min_interval_ms, timeout_ms;
    struct jwks_waiter *waiters;     /* owned list */
};

static const char *const jwks_headers[] = {"Accept: application/json"};

struct jwks_fetch *jwks_fetch_new(struct jwks *k, struct upstream *up,
                                  const struct cluster *c,
                                  uint64_t min_interval_ms,
                                  uint64_t timeout_ms)
{
    struct jwks_fetch *f = xcalloc(1, sizeof(*f));
    f->k = k;
    f->up = up;
    f->c = c;
    f->min_interval_ms = min_interval_ms;
    f->timeout_ms = timeout_ms;
    f->nodes = xcalloc((size_t)(c->n > 0 ? c->n : 1), sizeof(*f->nodes));
    for (int i = 0; i < c->n; i++) {
        f->nodes[i].f = f;
        f->nodes[i].node = i;
        f->nodes[i].url = xasprintf("%s/oidc/keys", c->nodes[i].base_url);
    }
    return f;
}

static void jwks_drop_waiters(struct jwks_fetch *f)
{
    while (f->waiters) {
        struct jwks_waiter *w = f->waiters;
        f->waiters = w->next;
        free(w);
    }
}

void jwks_fetch_free(struct jwks_fetch *f)
{
    if (!f)
        return;
    for (int i = 0; i < f->c->n; i++) {
        if (f->nodes[i].in_flight)
            upstream_cancel(f->up, &f->nodes[i].req);
        upstream_req_free(&f->nodes[i].req);
        free(f->nodes[i].url);
    }
    jwks_drop_waiters(f);
    free(f->nodes);
    free(f);
}

static void jwks_fetch_done(struct upstream_req *r, void *arg)
{
    struct jwks_fetch_node *fn = arg;
    struct jwks_fetch *f = fn->f;
    fn->in_flight = false;
    if (r->result == UPSTREAM_OK && r->status == 200)
        jwks_load(f->k, fn->node, r->resp_body.data, r->resp_body.len);
    upstream_req_reset(r);
    if (--f->pending > 0)
        return;
    struct jwks_waiter *w = f->waiters;
    f->waiters = NULL;
    while (w) {
        struct jwks_waiter *next = w->next;
        w->cb(w->arg);
        free(w);
        w = next;
    }
}

bool jwks_refresh(struct jwks_fetch *f, uint64_t now_ms, jwks_cb cb,
                  void *arg)
{
    if (!f->pending && f->last_ms && now_ms < f->last_ms + f->min_interval_ms)
        return false;
    if (cb) {
        struct jwks_waiter *w = xcalloc(1, sizeof(*w));
        w->cb = cb;
        w->arg = arg;
        w->next = f->waiters;
        f->waiters = w;
    }
    if (f->pending)
        return true;
    f->last_ms = now_ms ? now_ms : 1;
    for (int i = 0; i < f->c->n; i++) {
        struct jwks_fetch_node *fn = &f->nodes[i];
        fn->req.method = HTTP_GET;
        fn->req.url = fn->url;
        fn->req.connect_to = f->c->nodes[i].connect_to;
        fn->req.headers = jwks_headers;
        fn->req.n_headers = 1;
        fn->req.body = NULL;
        fn->req.body_len = 0;
        fn->req.timeout_ms = f->timeout_ms;
        fn->req.max_response = 256 * 1024;
        fn->req.fresh_connection = false;
        fn->req.done = jwks_fetch_done;
        fn->req.arg = fn;
        fn->in_flight = true;
        f->pending++;
        upstream_start(f->up, &fn->req);
    }
    if (!f->pending) { /* no controllers: nothing will call back */
        jwks_drop_waiters(f);
        return false;
    }
    return true;
}

void jwks_cancel(struct jwks_fetch *f, void *arg)
{
    struct jwks_waiter **pp = &f->waiters;
    while (*pp) {
        if ((*pp)->arg == arg) {
            struct jwks_waiter *w = *pp;
            *pp = w->next;
            free(w);
        } else {
            pp = &(*pp)->next;
        }
    }
}
