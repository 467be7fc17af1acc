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
    struct headers h = {0};
    headers_adds(&h, "Location", loc);
    headers_adds(&h, "ziti-ctrl-address", loc);
    rewrite_response(cfg, CALL_OIDC_LOGIN, 302, &body, &h);
    const char *out = headers_get(&h, "Location");
    char tok[1024];
    if (out) {
        (void)identity_location_param(out, "authRequestID", tok, sizeof(tok));
        (void)identity_location_param(out, "code", tok, sizeof(tok));
    }
    (void)identity_location_param(loc, "id", tok, sizeof(tok));
    free(rewrite_origin(loc, "https://ziti.example.com"));
    headers_free(&h);
    buf_free(&body);
    free(loc);
    return 0;
}
