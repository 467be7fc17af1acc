/* framing.c - see framing.h. */
#include "io/framing.h"

#include <string.h>

#include "base/http.h"
#include "base/util.h"
#include "io/listener.h"

static bool framing_token_chunked(const char *v, size_t n)
{
    http_trim(&v, &n);
    return util_strncaseeq(v, n, "chunked");
}

/* The request target (RFC 9112 3.2.1 origin-form), as received: an
 * absolute path and query without control characters, spaces or a
 * fragment (bytes above 0x7f are let through, as most servers do).  The
 * library cuts the target at a NUL byte, so a NUL shows as a target
 * shorter than the room between the method and the version; libcurl would
 * cut a '#' off on the way up while the classifier saw it. */
const char *framing_target(const char *url, const char *method,
                           const char *version)
{
    const unsigned char *u = (const unsigned char *)url;
    if (u[0] != '/')
        return "request target must be an absolute path";
    for (; *u; u++)
        if (*u <= 0x20 || *u == 0x7f || *u == '#')
            return "invalid character in the request target";
    if (method && version && version[0]) {
        const char *start = method + strlen(method) + 1;
        while (*start == ' ')
            start++;
        if (version > start &&
            (size_t)(version - 1 - start) != strlen(url))
            return "invalid character in the request target";
    }
    return NULL;
}

/* RFC 9112 6.1/6.3 framing rules; returns a message or NULL when fine. */
const char *framing_check(const struct listener_header *headers, int n,
                          const char *version, uint64_t *clen, bool *has_clen)
{
    int n_te = 0, n_host = 0;
    const char *cl = NULL;
    size_t cl_len = 0;
    *has_clen = false;
    for (int i = 0; i < n; i++) {
        const struct listener_header *h = &headers[i];
        if (util_strncaseeq(h->name, h->name_len, "Transfer-Encoding")) {
            n_te++;
            if (!framing_token_chunked(h->value, h->value_len))
                return "unsupported Transfer-Encoding (only chunked)";
        } else if (util_strncaseeq(h->name, h->name_len, "Host")) {
            if (++n_host > 1)
                return "more than one Host header"; /* RFC 9112 3.2 */
        } else if (util_strncaseeq(h->name, h->name_len, "Content-Length")) {
            if (cl && (cl_len != h->value_len ||
                       memcmp(cl, h->value, cl_len) != 0))
                return "conflicting Content-Length headers";
            cl = h->value;
            cl_len = h->value_len;
        }
    }
    if (n_te > 1)
        return "repeated Transfer-Encoding header";
    if (n_te && cl)
        return "both Content-Length and Transfer-Encoding";
    if (n_te && version && strcmp(version, "HTTP/1.0") == 0)
        return "Transfer-Encoding in an HTTP/1.0 request";
    if (cl) {
        uint64_t v = 0;
        for (size_t i = 0; i < cl_len; i++) {
            if (cl[i] < '0' || cl[i] > '9' || v > UINT64_MAX / 10 - 10)
                return "invalid Content-Length";
            v = v * 10 + (uint64_t)(cl[i] - '0');
        }
        if (cl_len == 0)
            return "invalid Content-Length";
        *clen = v;
        *has_clen = true;
    }
    return NULL;
}
