/* admin.h - the admin listener: /metrics (Prometheus text 0.0.4),
 * /healthz (process alive), /readyz (a leader is known and Redis answers),
 * /status (JSON view of the cluster, routing and gate state).  Runs on the
 * control loop, answers synchronously.  Optional basic auth and a client
 * address allow-list (admin.basic_auth, admin.allow).
 *
 * The admin knows nothing of the process it reports on: what it shows
 * comes through struct admin_ops (proxy/status.c fills it for the app).
 *
 * Ownership: owned by whoever called admin_new (the app); ops and ctx are
 * borrowed and must outlive the admin. */
#ifndef QG_ADMIN_H
#define QG_ADMIN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config/config.h"

struct loop;
struct admin;
struct buf;
struct metrics;

/* What the endpoints show, asked for on the control loop at each request. */
struct admin_ops {
    /* The configuration in force, with a reference the admin drops
     * (config_unref): admin.allow and admin.basic_auth are read from it. */
    struct config *(*config)(void *ctx);
    /* /metrics: refresh the gauges computed at scrape time. */
    void (*scrape)(void *ctx);
    /* /readyz: append the reasons for not being ready to reasons (the body
     * of a JSON array, strings separated by commas); true if ready. */
    bool (*ready)(void *ctx, struct buf *reasons);
    /* /status: the whole JSON object, ending with a newline. */
    void (*status)(void *ctx, struct buf *out);
};

/* fd is a bound socket (taken over); /metrics renders m (borrowed).
 * NULL and *err on failure. */
struct admin *admin_new(const struct admin_ops *ops, void *ctx,
                        struct metrics *m, struct loop *loop, int fd,
                        char **err);
void admin_free(struct admin *ad);

/* Decisions, exposed for unit tests. */
bool admin_client_allowed(const struct config_admin *cfg, const char *addr);
bool admin_peer_allowed(const struct config_admin *cfg,
                        const struct sockaddr *sa, socklen_t len);
bool admin_auth_ok(const struct config_admin *cfg, const char *authorization);

#endif
