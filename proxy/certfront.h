/* certfront.h - what the HTTP front cannot do for identities that log in
 * with a client certificate, said clearly.  TLS ends at quorumgate, so a
 * controller behind it never sees a client's certificate (and a proxied
 * X-Client-CertPem is not honoured: see README, "Client certificates").
 * Rather than let a controller answer a confusing 401 (or, for OIDC, a
 * password form), these requests get an OpenZiti error envelope naming the
 * passthrough listener:
 *   - POST /edge/{client,management}/v1/authenticate?method=cert
 *   - anything under /oidc/login/cert
 *   - any authentication request (authenticate, /oidc/...) from a client
 *     that presented a certificate to quorumgate (listeners[].tls.client_ca)
 * Answered 400 PROXY_CERT_AUTH_UNSUPPORTED before any controller is asked. */
#ifndef QG_CERTFRONT_H
#define QG_CERTFRONT_H

#include <stdbool.h>
#include <stddef.h>

struct request;

/* True when rq is one of the above and has been answered. */
bool certfront_refuse(struct request *rq);

/* The rule itself (pure; tests): the request target and whether a client
 * certificate was presented. */
bool certfront_is_cert_login(const char *target, bool client_cert);

#endif
