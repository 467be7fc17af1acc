/* accesslog.h - one JSON line per request: time, request id, client,
 * method, path (query values redacted unless known harmless), status,
 * route class, controller, every attempt (controller, outcome, status,
 * duration), bytes, durations, and what retry/reconcile/gate did. */
#ifndef QG_ACCESSLOG_H
#define QG_ACCESSLOG_H

#include <stddef.h>

struct worker;
struct listener_exchange;
struct request;
struct buf;

/* rq may be NULL for requests the listener answered by itself. */
void accesslog_write(struct worker *w, const struct listener_exchange *ex,
                     const struct request *rq);
/* The request target with query values redacted (appends to out). */
void accesslog_redact_target(struct buf *out, const char *target);

#endif
