/* passthrough.h - one worker's share of the passthrough listener: client
 * TCP connections spliced untouched (io/splice) to the current raft leader
 * of the shared cluster view, so that certificate logins, certificate-bound
 * tokens and MFA over them reach a controller that sees the client's own
 * TLS.  New connections go to whoever leads when they arrive; when the
 * leader moves, connections to the old one are closed once no exchange is
 * in flight on them (at the latest after passthrough.leader_change.grace),
 * unless leader_change.action is keep.  Counted in metrics
 * (passthrough_*) and written to the access log, one line per connection.
 *
 * Ownership: the worker owns its struct passthrough (w->pt); everything
 * runs on the worker's loop.  The count of open connections is kept in
 * w->pt_open (read by the control thread for the drain). */
#ifndef QG_PASSTHROUGH_H
#define QG_PASSTHROUGH_H

#include <stdint.h>

struct worker;
struct listener;
struct passthrough;

/* fd: this worker's listening socket for passthrough.address, sni_fd the
 * one of the TLS listener whose port it splits by SNI (passthrough.sni;
 * what it does not splice goes to sni_listener); -1 = none; both taken
 * over.  NULL with *err when the controllers' addresses cannot be
 * resolved. */
struct passthrough *passthrough_new(struct worker *w, int fd, int sni_fd,
                                    struct listener *sni_listener, char **err);
/* w->cfg changed (reload): limits and leader-change settings. */
void passthrough_config(struct passthrough *pt);
/* The cluster view changed: retire connections to a former leader. */
void passthrough_cluster_changed(struct passthrough *pt);
/* SIGTERM: stop accepting; close connections once idle, within grace_ms. */
void passthrough_drain(struct passthrough *pt, uint64_t grace_ms);
void passthrough_free(struct passthrough *pt);

#endif
