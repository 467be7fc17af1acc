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

/* What libmicrohttpd 0.9.75 lets through although RFC 9112 says to reject
 * it (400), because a peer parser could read the message differently:
 *  - a field name that is not a token, e.g. whitespace before the colon
 *    ("Transfer-Encoding : chunked" is kept as a field the library does not
 *    recognise, while others do; 5.1);
 *  - CR, LF, NUL or another control character in a value (a bare CR
 *    would split the line for a parser downstream; 5.5 of RFC 9110); the
 *    library cuts a value at a NUL, so the rest of its line is checked;
 *  - obsolete line folding (5.2): the library glues a continuation line to
 *    the field *name* of the line before ("Transfer-Encoding:" +
 *    " chunked" becomes a field "Transfer-Encodingchunked").  Fields are
 *    views into the received header block [start, start + size), where
 *    the colon became a NUL: a field whose value does not follow its name,
 *    colon and optional whitespace there was rewritten by a fold. */
const char *framing_fields(const struct listener_header *headers, int n,
                           const char *start, size_t size)
{
    const char *end = start + size;
    for (int i = 0; i < n; i++) {
        const struct listener_header *h = &headers[i];
        if (h->name_len == 0)
            return "empty header field name";
        for (size_t k = 0; k < h->name_len; k++)
            if (!http_tchar((unsigned char)h->name[k]))
                return "invalid character in a header field name";
        for (size_t k = 0; k < h->value_len; k++) {
            unsigned char c = (unsigned char)h->value[k];
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return "control character in a header field value";
        }
        const char *p = h->name + h->name_len;
        if (!start || h->name < start || p >= end || *p != '\0')
            return "obsolete line folding in the header";
        for (p++; p < h->value && (*p == ' ' || *p == '\t'); p++)
            ;
        if (p != h->value || h->value + h->value_len > end)
            return "obsolete line folding in the header";
        /* The library ends a value at a NUL byte: what follows it up to
         * the next field is the rest of the line, which must be nothing
         * but the line end (NULs where CR LF were) and whitespace. */
        const char *next = i + 1 < n && headers[i + 1].name > h->value
                               ? headers[i + 1].name
                               : end;
        for (p = h->value + h->value_len; p < next; p++)
            if (*p != '\0' && *p != '\r' && *p != '\n' && *p != ' ' &&
                *p != '\t')
                return "control character in a header field value";
    }
    return NULL;
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
