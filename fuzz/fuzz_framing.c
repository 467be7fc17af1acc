/* fuzz_framing.c - the request rules checked once a head is parsed: the
 * request target,
 * Content-Length / Transfer-Encoding framing, the one-credential rule,
 * the upstream header set, classification and the OIDC/session parameters
 * read from the target and the body.
 *
 * Input: a request head as a client would send it ("METHOD target VERSION",
 * then "name: value" lines, an empty line, a body), split into fields
 * loosely (the colon replaced by NUL, the value after optional
 * whitespace), so that odd fields reach the checks too. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/http.h"
#include "config/config.h"
#include "fuzz/fuzz_common.h"
#include "io/framing.h"
#include "io/headers.h"
#include "io/listener.h"
#include "routing/classify.h"
#include "routing/identity.h"

#define MAX_FIELDS 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *buf = malloc(size + 1);
    struct listener_header h[MAX_FIELDS];
    int n = 0;
    memcpy(buf, data, size);
    buf[size] = '\0';
    char *line_end = memchr(buf, '\n', size);
    size_t first = line_end ? (size_t)(line_end - buf) : size;
    /* request line: method SP target SP version */
    char *sp1 = memchr(buf, ' ', first);
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(buf + first - sp1 - 1))
                    : NULL;
    /* without a request line: no layout to check the target against */
    const char *method = NULL, *target = "/", *version = "HTTP/1.1";
    if (sp1 && sp2) {
        *sp1 = *sp2 = '\0';
        if (line_end)
            *line_end = '\0';
        if (line_end && line_end > sp2 && line_end[-1] == '\r')
            line_end[-1] = '\0';
        method = buf;
        target = sp1 + 1;
        version = sp2 + 1;
    }
    char *block = line_end ? line_end + 1 : buf + size;
    char *end = buf + size, *p = block;
    const char *body = end;
    while (p < end && n < MAX_FIELDS) {
        char *nl = memchr(p, '\n', (size_t)(end - p));
        char *stop = nl ? nl : end;
        size_t len = (size_t)(stop - p);
        if (len && p[len - 1] == '\r')
            len--;
        if (len == 0) { /* end of the head */
            body = nl ? nl + 1 : end;
            break;
        }
        char *colon = memchr(p, ':', len);
        if (colon) {
            *colon = '\0';
            char *v = colon + 1;
            while (v < p + len && (*v == ' ' || *v == '\t'))
                v++;
            h[n++] = (struct listener_header){p, (size_t)(colon - p), v,
                                              (size_t)(p + len - v)};
        }
        p = nl ? nl + 1 : end;
    }
    uint64_t clen = 0;
    bool has_clen = false;
    (void)framing_check(h, n, version, &clen, &has_clen);
    (void)framing_target(target, method, version);
    (void)identity_credentials_check(h, n);

    struct headers up = {0};
    struct headers_up_ctx hc = {.client_addr = "127.0.0.1",
                                .request_id = "rid",
                                .request_id_header = "X-Request-Id",
                                .trust_forwarded = size & 1};
    headers_for_upstream(&up, h, n, &hc);
    (void)headers_lines(&up);
    headers_free(&up);

    struct classify_result cls;
    size_t tlen = strlen(target);
    classify_request(&fuzz_config()->routing, http_method_parse(method ? method : "GET"), target,
                     strcspn(target, "?"), h, n, &cls);
    (void)tlen;
    char out[256];
    size_t body_len = (size_t)(end - body);
    (void)identity_oidc_request_id(target, body, body_len, out, sizeof(out));
    (void)identity_oidc_code(body, body_len, out, sizeof(out));
    (void)identity_location_param(target, "code", out, sizeof(out));
    (void)identity_session(h, n);
    free(buf);
    return 0;
}
