/* fuzz_location.c - Location values the controllers send: the rewrite to
 * the public address when one points at a controller (rewrite_response),
 * and the OIDC parameters (authRequestID, id, code) read from them. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/util.h"
#include "fuzz/fuzz_common.h"
#include "io/headers.h"
#include "routing/classify.h"
#include "routing/identity.h"
#include "routing/rewrite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = fuzz_config();
    char *loc = xstrndup((const char *)data, size); /* a header value */
    struct buf body = {0};
    struct http_fields h = {0};
    char *keep;
    http_fields_adds(&h, "Location", loc);
    http_fields_adds(&h, "ziti-ctrl-address", loc);
    rewrite_response(cfg, CALL_OIDC_LOGIN, 302, &body, &h, &keep);
    const struct http_field *f = http_fields_get(&h, "Location");
    char tok[1024];
    if (f) {
        char *out = xstrndup(f->value, f->value_len);
        (void)identity_location_param(out, "authRequestID", tok, sizeof(tok));
        (void)identity_location_param(out, "code", tok, sizeof(tok));
        free(out);
    }
    (void)identity_location_param(loc, "id", tok, sizeof(tok));
    free(rewrite_origin(loc, "https://ziti.example.com"));
    http_fields_free(&h);
    free(keep);
    buf_free(&body);
    free(loc);
    return 0;
}
