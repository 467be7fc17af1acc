/* identity.c - see identity.h. */
#include "routing/identity.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/json.h"
#include "base/util.h"
#include "io/listener.h"

static const char *identity_header(const struct listener_header *h, int n,
                                   const char *name, size_t *len)
{
    for (int i = 0; i < n; i++)
        if (util_strncaseeq(h[i].name, h[i].name_len, name)) {
            *len = h[i].value_len;
            return h[i].value;
        }
    return NULL;
}

const char *identity_authorization(const struct listener_header *h, int n,
                                   size_t *len)
{
    return identity_header(h, n, "Authorization", len);
}

const char *identity_credentials_check(const struct listener_header *h,
                                       int n)
{
    int auth = 0, sess = 0;
    for (int i = 0; i < n; i++) {
        auth += util_strncaseeq(h[i].name, h[i].name_len, "Authorization");
        sess += util_strncaseeq(h[i].name, h[i].name_len, "zt-session");
    }
    if (auth > 1)
        return "more than one Authorization header";
    if (sess > 1)
        return "more than one zt-session header";
    if (auth && sess)
        return "both a zt-session and an Authorization header";
    return NULL;
}

const char *identity_session(const struct listener_header *h, int n)
{
    size_t len;
    const char *v = identity_header(h, n, "zt-session", &len);
    return v && len ? v : NULL;
}

/* Percent-decodes (and '+' -> ' ') len bytes into out; false if too long. */
static bool identity_unescape(const char *s, size_t len, char *out,
                              size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '+') {
            c = ' ';
        } else if (c == '%' && i + 2 < len) {
            int hi = util_hexval(s[i + 1]), lo = util_hexval(s[i + 2]);
            if (hi >= 0 && lo >= 0) {
                c = (char)(hi * 16 + lo);
                i += 2;
            }
        }
        if (o + 1 >= cap)
            return false;
        out[o++] = c;
    }
    out[o] = '\0';
    return o > 0;
}

/* name=value in an &-separated list. */
static bool identity_form_param(const char *q, size_t len, const char *name,
                                char *out, size_t cap)
{
    size_t nlen = strlen(name);
    const char *end = q + len;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        if (eq && (size_t)(eq - q) == nlen && memcmp(q, name, nlen) == 0)
            return identity_unescape(eq + 1, (size_t)(stop - eq - 1), out,
                                     cap);
        q = amp ? amp + 1 : end;
    }
    return false;
}

bool identity_query_param(const char *target, const char *name, char *out,
                          size_t cap)
{
    const char *q = strchr(target, '?');
    if (!q)
        return false;
    q++;
    size_t len = strcspn(q, "#");
    return identity_form_param(q, len, name, out, cap);
}

bool identity_body_field(const char *body, size_t len, const char *name,
                         char *out, size_t cap)
{
    size_t i = 0;
    if (!body || !len)
        return false;
    while (i < len && (body[i] == ' ' || body[i] == '\n' || body[i] == '\t' ||
                       body[i] == '\r'))
        i++;
    if (i < len && body[i] == '{') {
        struct json *j = json_parse(body, len);
        const char *v = json_string(json_get(j, name));
        bool ok = v && *v && strlen(v) < cap;
        if (ok)
            strcpy(out, v);
        json_free(j);
        return ok;
    }
    return identity_form_param(body, len, name, out, cap);
}

bool identity_oidc_request_id(const char *target, const char *body,
                              size_t len, char *out, size_t cap)
{
    /* login.go / parse.go: query authRequestID (alternative name id), or
     * the id of the form/JSON body */
    return identity_query_param(target, "authRequestID", out, cap) ||
           identity_query_param(target, "id", out, cap) ||
           identity_body_field(body, len, "id", out, cap) ||
           identity_body_field(body, len, "authRequestID", out, cap);
}

bool identity_oidc_code(const char *body, size_t len, char *out, size_t cap)
{
    char grant[64];
    if (!identity_body_field(body, len, "grant_type", grant, sizeof(grant)) ||
        strcmp(grant, "authorization_code") != 0)
        return false;
    return identity_body_field(body, len, "code", out, cap);
}

bool identity_location_param(const char *location, const char *name,
                             char *out, size_t cap)
{
    return identity_query_param(location, name, out, cap);
}
