/* h1client.h - quorumgate's own HTTP/1.1 client for the request path, on
 * one loop: kept-alive connection pools per controller (at most
 * max_host_connections each, further requests wait in order), TLS through
 * h1tls, answers parsed by h1parse, no allocation per exchange once warm
 * (exchanges, buffers and connections are recycled); controllers by IP
 * address or by name (resolved without blocking).  Driven through
 * upstream.h: upstream_start() hands it the requests marked own_client.
 *
 * It never sends a request twice: an exchange that fails is reported, with
 * r->sent false when no byte of the request reached the socket (safe to
 * send anywhere) and true when some did (the controller may have it); the
 * caller's retry rules decide.
 *
 * Ownership: a struct h1client belongs to one loop and owns its
 * connections, exchanges and per-controller state; requests are borrowed
 * from start until done runs or h1client_cancel() returns. */
#ifndef QG_H1CLIENT_H
#define QG_H1CLIENT_H

#include <stdbool.h>

#include "io/upstream.h"

struct loop;
struct h1client;

struct h1client *h1client_new(struct loop *loop,
                              const struct upstream_settings *s);
/* Closes every connection; requests still running get no callback. */
void h1client_free(struct h1client *c);
void h1client_set_settings(struct h1client *c,
                           const struct upstream_settings *s);
/* false: not a request this client takes (a scheme other than http/https,
 * a URL or connect_to it cannot parse, TLS material that does not load);
 * libcurl runs it instead.  true: done runs later, never inside this call.
 * A host name (the URL's, or connect_to's address) is resolved on the loop
 * (h1addr.h has the rules); requests wait for its first resolution within
 * their timeout, and fail as UPSTREAM_CONNECT_ERROR (nothing written) when
 * it does not resolve.  Host, SNI and the certificate check use the URL's
 * host, never the address. */
bool h1client_start(struct h1client *c, struct upstream_req *r);
void h1client_cancel(struct h1client *c, struct upstream_req *r);
int h1client_active(const struct h1client *c);

#endif
