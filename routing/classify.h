/* classify.h - every request is classified once, from its method, path and
 * headers, by the configured table (first matching row wins; the built-in
 * table is OpenZiti's), and the OpenZiti calls that need special handling
 * are recognised by fixed rules.  Pure functions. */
#ifndef QG_CLASSIFY_H
#define QG_CLASSIFY_H

#include <stdbool.h>
#include <stddef.h>

#include "config/config.h"
#include "base/http.h"

struct listener_header;

enum classify_call {
    CALL_OTHER = 0,
    CALL_MFA_CREATE,       /* POST   .../current-identity/mfa */
    CALL_MFA_VERIFY,       /* POST   .../current-identity/mfa/verify */
    CALL_MFA_DELETE,       /* DELETE .../current-identity/mfa */
    CALL_MFA_READ,         /* GET    .../current-identity/mfa* */
    CALL_AUTHENTICATE,     /* POST /edge/client/v1/authenticate (legacy) */
    CALL_CONTROLLERS,      /* GET /edge/{client,management}/v1/controllers */
    CALL_VERSION,          /* GET /version, /edge/{..}/v1/version */
    CALL_OIDC_AUTHORIZE,   /* /oidc/authorize (starts a login) */
    CALL_OIDC_TOKEN,       /* POST /oidc/oauth/token */
    CALL_OIDC_LOGIN,       /* every other /oidc/ step */
    CALL__COUNT
};

struct classify_result {
    enum route_class cls;
    enum classify_call call;
    int row;               /* table row that matched, -1 = fallback */
    /* an MFA enrollment write inside an OIDC login: CALL_MFA_CREATE (POST
     * /oidc/login/totp/enroll), CALL_MFA_VERIFY (POST .../enroll/verify),
     * CALL_MFA_DELETE (DELETE .../enroll), else CALL_OTHER; call stays
     * CALL_OIDC_LOGIN (it belongs to the login's controller) */
    enum classify_call totp_write;
};

/* path is the request target up to '?' (not NUL-terminated). */
void classify_request(const struct config_routing *rt, enum http_method m,
                      const char *path, size_t path_len,
                      const struct listener_header *headers, int n_headers,
                      struct classify_result *out);

/* Normalises a path for matching as the controller's router sees it: every
 * %XX decoded (Go's URL.Path; %00 kept), then cleaned like Go's path.Clean
 * (repeated slashes collapsed, "." and ".." segments resolved, a trailing
 * slash dropped), so that no spelling of an MFA path escapes its class.
 * Writes at most cap-1 bytes + NUL; returns the length. */
size_t classify_normalise(const char *path, size_t len, char *out,
                          size_t cap);

const char *classify_call_name(enum classify_call c);
/* The MFA writes, which the reconciler and the gate handle. */
bool classify_is_mfa_write(enum classify_call c);

#endif
