/* status.h - what the admin endpoints show of the app: readiness (/readyz)
 * and the JSON view of the cluster, routing and gate state (/status).
 * status_admin_ops hands them to metrics/admin.c (ctx: the struct app).
 *
 * Ownership: nothing is kept; every call reads the app on the control
 * loop. */
#ifndef QG_STATUS_H
#define QG_STATUS_H

#include <stdbool.h>

#include "metrics/admin.h"

struct app;
struct buf;

/* Appends the reasons for not being ready (JSON strings separated by
 * commas) to reasons; true if ready. */
bool status_ready(struct app *a, struct buf *reasons);
/* The /status JSON object, ending with a newline. */
void status_render(struct app *a, struct buf *out);

extern const struct admin_ops status_admin_ops;

#endif
