/* fuzz_json.c - JSON read from controllers: the /controllers and /version
 * rewrites (rewrite_response), error envelopes (failure classes), MFA
 * state reads (reconcile and the gate's acknowledgement), JWKS documents
 * and JWS tokens (routing/jwks).  The first byte picks the reader's
 * parameters; the rest is the document. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/http.h"
#include "consistency/gate.h"
#include "fuzz/fuzz_common.h"
#include "io/headers.h"
#include "retry/failure.h"
#include "retry/reconcile.h"
#include "routing/classify.h"
#include "routing/jwks.h"
#include "routing/rewrite.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct jwks *keys;
    struct config *cfg = fuzz_config();
    if (!keys)
        keys = jwks_new(3);
    if (size < 1)
        return 0;
    uint8_t sel = data[0];
    const char *doc = (const char *)data + 1;
    size_t len = size - 1;

    struct buf body = {0};
    struct http_fields h = {0};
    char *keep;
    buf_append(&body, doc, len);
    http_fields_adds(&h, "Content-Type", "application/json");
    rewrite_response(cfg, (sel & 1) ? CALL_CONTROLLERS : CALL_VERSION, 200,
                     &body, &h, &keep);
    buf_free(&body);
    http_fields_free(&h);
    free(keep);

    struct failure f;
    static const int statuses[] = {200, 404, 409, 429, 500, 503};
    failure_classify_parts(0, true, statuses[sel % 6], doc, len,
                           (enum http_method)(sel % HTTP_OTHER), sel & 2, &f);
    char id[128];
    uint64_t created = 0;
    (void)reconcile_parse(statuses[sel % 6], doc, len, id, sizeof(id),
                          &created);
    (void)gate_acknowledges((enum gate_call)(sel % 3), "mfa-id", 200, doc,
                            len);
    (void)gate_acknowledges_mgmt((enum gate_call)(sel % 3), 200, doc, len);

    (void)jwks_load(keys, sel % 3, doc, len);
    char sub[128];
    (void)jwks_verify(keys, doc, len, 1700000000, sub, sizeof(sub));
    return 0;
}
