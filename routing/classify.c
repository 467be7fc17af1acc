/* classify.c - see classify.h. */
#include "routing/classify.h"

#include <stdlib.h>
#include <string.h>

#include "io/listener.h"
#include "base/util.h"

/* Go's path.Clean, which the controller's router (go-openapi runtime,
 * middleware/router.go Lookup) applies before matching: dot segments
 * resolved, empty segments and a trailing slash dropped.  In place: the
 * result is never longer than p[0..n). */
static size_t classify_clean(char *p, size_t n)
{
    bool rooted = n > 0 && p[0] == '/';
    size_t r = rooted ? 1 : 0, w = r, back = w;
    if (n == 0)
        return 0;
    while (r < n) {
        if (p[r] == '/') {
            r++;
        } else if (p[r] == '.' && (r + 1 == n || p[r + 1] == '/')) {
            r++;
        } else if (p[r] == '.' && r + 1 < n && p[r + 1] == '.' &&
                   (r + 2 == n || p[r + 2] == '/')) {
            r += 2;
            if (w > back) {
                for (w--; w > back && p[w] != '/'; w--)
                    ;
            } else if (!rooted) {
                if (w > 0)
                    p[w++] = '/';
                p[w++] = '.';
                p[w++] = '.';
                back = w;
            }
        } else {
            if ((rooted && w != 1) || (!rooted && w != 0))
                p[w++] = '/';
            while (r < n && p[r] != '/')
                p[w++] = p[r++];
        }
    }
    if (w == 0)
        p[w++] = '.';
    p[w] = '\0';
    return w;
}

size_t classify_normalise(const char *path, size_t len, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 1 < cap; i++) {
        char c = path[i];
        if (c == '%' && i + 2 < len) {
            int hi = util_hexval(path[i + 1]), lo = util_hexval(path[i + 2]);
            if (hi >= 0 && lo >= 0 && hi * 16 + lo != 0) {
                c = (char)(hi * 16 + lo);
                i += 2;
            }
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return classify_clean(out, o);
}

static bool classify_has_header(const struct listener_header *h, int n,
                                const char *name)
{
    for (int i = 0; i < n; i++)
        if (util_strncaseeq(h[i].name, h[i].name_len, name))
            return true;
    return false;
}

/* A literal and its length, for the prefix tables below. */
struct classify_prefix {
    const char *s;
    size_t len;
};
#define CLASSIFY_PREFIX(s) {s, sizeof(s) - 1}

/* Whether p starts with s[0..len), len >= 2: the second byte first, since
 * every path starts with '/' (p[1] is read only after p[0] matched). */
static bool classify_prefixed(const char *p, const char *s, size_t len)
{
    return p[0] == s[0] && p[1] == s[1] && strncmp(p, s, len) == 0;
}

/* "/edge/client/v1/..." or "/edge/management/v1/..." -> the rest, or NULL */
static const char *classify_api_rest(const char *p)
{
    static const struct classify_prefix bases[] = {
        CLASSIFY_PREFIX("/edge/client/v1"),
        CLASSIFY_PREFIX("/edge/management/v1"),
    };
    for (size_t i = 0; i < ARRAY_LEN(bases); i++)
        if (classify_prefixed(p, bases[i].s, bases[i].len))
            return p + bases[i].len;
    return NULL;
}

static enum classify_call classify_call_of(enum http_method m, const char *p)
{
    const char *rest = classify_api_rest(p);
    if (rest) {
        if (strcmp(rest, "/current-identity/mfa") == 0) {
            if (m == HTTP_POST)
                return CALL_MFA_CREATE;
            if (m == HTTP_DELETE)
                return CALL_MFA_DELETE;
            return CALL_MFA_READ;
        }
        if (strcmp(rest, "/current-identity/mfa/verify") == 0 &&
            m == HTTP_POST)
            return CALL_MFA_VERIFY;
        if (util_has_prefix(rest, "/current-identity/mfa/"))
            return CALL_MFA_READ;
        if (strcmp(rest, "/controllers") == 0 && m == HTTP_GET)
            return CALL_CONTROLLERS;
        if (strcmp(rest, "/version") == 0 && m == HTTP_GET)
            return CALL_VERSION;
        if (strcmp(rest, "/authenticate") == 0 && m == HTTP_POST &&
            util_has_prefix(p, "/edge/client/"))
            return CALL_AUTHENTICATE;
        return CALL_OTHER;
    }
    if (strcmp(p, "/version") == 0 && m == HTTP_GET)
        return CALL_VERSION;
    if (!classify_prefixed(p, "/oidc/", 6))
        return CALL_OTHER; /* the rest are all under /oidc/ */
    if (strcmp(p, "/oidc/authorize") == 0)
        return CALL_OIDC_AUTHORIZE;
    if (strcmp(p, "/oidc/oauth/token") == 0 || strcmp(p, "/oidc/token") == 0)
        return CALL_OIDC_TOKEN;
    return CALL_OIDC_LOGIN;
}

/* Whether the path belongs to another API than the client one (the
 * controller's client API is its default handler: it serves every other
 * path as if under /edge/client/v1, webapis/client-api.go newHandler). */
static bool classify_not_client_default(const char *p)
{
    static const struct classify_prefix others[] = {
        CLASSIFY_PREFIX("/edge"), CLASSIFY_PREFIX("/fabric"),
        CLASSIFY_PREFIX("/.well-known"), CLASSIFY_PREFIX("/oidc"),
        CLASSIFY_PREFIX("/health-checks"),
    };
    for (size_t i = 0; i < ARRAY_LEN(others); i++)
        if (classify_prefixed(p, others[i].s, others[i].len))
            return true;
    return strcmp(p, "/") == 0 || strcmp(p, "/version") == 0;
}

/* Room classify_client_path needs for a path of len bytes. */
#define CLASSIFY_CLIENT_ROOM(len) ((len) + sizeof("/edge/client/v1"))

/* The client API's own rewriting: /edge/v1 is the client API, and a path
 * outside /edge, /fabric and /.well-known goes under /edge/client/v1.
 * Written to out, which has CLASSIFY_CLIENT_ROOM(strlen(p)) bytes. */
static void classify_client_path(const char *p, char *out)
{
    const char *prefix = "", *rest = p;
    if (classify_prefixed(p, "/edge/v1", 8) && (p[8] == '/' || p[8] == '\0')) {
        prefix = "/edge/client/v1";
        rest = p + 8;
    } else if (!classify_not_client_default(p)) {
        prefix = "/edge/client/v1";
    }
    size_t plen = strlen(prefix), rlen = strlen(rest);
    memcpy(out, prefix, plen);
    memcpy(out + plen, rest, rlen + 1);
}

static bool classify_is_mfa(enum classify_call c)
{
    return c == CALL_MFA_CREATE || c == CALL_MFA_VERIFY ||
           c == CALL_MFA_DELETE || c == CALL_MFA_READ;
}

/* The path as the controller routes it.  Two readings, since the
 * controller rewrites the decoded path before it cleans it: rewritten then
 * cleaned (what it does), and cleaned then rewritten; an MFA call in either
 * wins (classifying a path the controller will 404 as MFA costs nothing,
 * missing one that reaches the MFA handlers loses the gate).  scratch has
 * CLASSIFY_SCRATCH(len) bytes; the path returned is in it. */
#define CLASSIFY_SCRATCH(len) (4 * CLASSIFY_CLIENT_ROOM(len))
static char *classify_canonical(enum http_method m, const char *path,
                                size_t len, enum classify_call *call,
                                char *scratch)
{
    char *dec = scratch, *b = dec + CLASSIFY_CLIENT_ROOM(len),
         *a = b + CLASSIFY_CLIENT_ROOM(len),
         *a2 = a + CLASSIFY_CLIENT_ROOM(len);
    size_t n = 0;
    for (size_t i = 0; i < len; i++) { /* decoded, not cleaned */
        int hi = i + 2 < len ? util_hexval(path[i + 1]) : -1;
        int lo = i + 2 < len ? util_hexval(path[i + 2]) : -1;
        if (path[i] == '%' && hi >= 0 && lo >= 0 && hi * 16 + lo != 0) {
            dec[n++] = (char)(hi * 16 + lo);
            i += 2;
        } else {
            dec[n++] = path[i];
        }
    }
    dec[n] = '\0';
    classify_client_path(dec, b);
    classify_clean(b, strlen(b));
    classify_normalise(path, len, a, len + 1);
    classify_client_path(a, a2);
    enum classify_call cb = classify_call_of(m, b);
    enum classify_call ca = classify_call_of(m, a2);
    if (classify_is_mfa(cb) && !classify_is_mfa(ca)) {
        *call = cb;
        return b;
    }
    *call = ca;
    return a2;
}

void classify_request(const struct config_routing *rt, enum http_method m,
                      const char *path, size_t path_len,
                      const struct listener_header *headers, int n_headers,
                      struct classify_result *out)
{
    /* on the stack for ordinary paths (this runs for every request) */
    char stack[CLASSIFY_SCRATCH(256)];
    char *heap = CLASSIFY_SCRATCH(path_len) > sizeof(stack)
                     ? xmalloc(CLASSIFY_SCRATCH(path_len))
                     : NULL;
    char *p = classify_canonical(m, path, path_len, &out->call,
                                 heap ? heap : stack);
    out->row = -1;
    out->totp_write = CALL_OTHER;
    if (classify_prefixed(p, "/oidc/", 6)) {
        if (strcmp(p, "/oidc/login/totp/enroll") == 0)
            out->totp_write = m == HTTP_POST     ? CALL_MFA_CREATE
                              : m == HTTP_DELETE ? CALL_MFA_DELETE
                                                 : CALL_OTHER;
        else if (strcmp(p, "/oidc/login/totp/enroll/verify") == 0 &&
                 m == HTTP_POST)
            out->totp_write = CALL_MFA_VERIFY;
    }
    out->cls = (m == HTTP_GET || m == HTTP_HEAD || m == HTTP_OPTIONS)
                   ? ROUTE_READ
                   : ROUTE_WRITE;
    for (int i = 0; i < rt->n_routes; i++) {
        const struct config_route *r = &rt->routes[i];
        if (r->methods && !(r->methods & HTTP_M(m)))
            continue;
        if (r->path_prefix && *r->path_prefix &&
            !util_has_prefix(p, r->path_prefix))
            continue;
        if (r->header && !classify_has_header(headers, n_headers, r->header))
            continue;
        out->cls = r->cls;
        out->row = i;
        break;
    }
    free(heap);
}

const char *classify_call_name(enum classify_call c)
{
    static const char *const names[CALL__COUNT] = {
        "other",      "mfa_create",  "mfa_verify",    "mfa_delete",
        "mfa_read",   "authenticate", "controllers",  "version",
        "oidc_authorize", "oidc_token", "oidc_login",
    };
    return (unsigned)c < CALL__COUNT ? names[c] : "other";
}

bool classify_is_mfa_write(enum classify_call c)
{
    return c == CALL_MFA_CREATE || c == CALL_MFA_VERIFY ||
           c == CALL_MFA_DELETE;
}
