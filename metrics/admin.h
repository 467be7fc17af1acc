/* admin.h - the admin listener: /metrics (Prometheus text 0.0.4),
 * /healthz (process alive), /readyz (a leader is known and Redis answers),
 * /status (JSON view of the cluster, routing and gate state).  Runs on the
 * control loop, answers synchronously.  Optional basic auth and a client
 * address allow-list (admin.basic_auth, admin.allow).
 *
 * Ownership: owned by the app. */
#ifndef QG_ADMIN_H
#define QG_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

struct app;
struct loop;
struct admin;
struct buf;

/* fd is a bound socket (taken over).  NULL and *err on failure. */
struct admin *admin_new(struct app *app, struct loop *loop, int fd,
                        char **err);
void admin_free(struct admin *ad);

/* Decisions, exposed for unit tests. */
bool admin_client_allowed(const struct config_admin *cfg, const char *addr);
bool admin_auth_ok(const struct config_admin *cfg, const char *authorization);

/* Readiness: fills reasons (JSON array body) and returns true if ready. */
bool admin_ready(struct app *app, struct buf *reasons);

#endif
