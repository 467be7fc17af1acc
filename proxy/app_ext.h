/* app_ext.h - process-wide state of the optional stages (the control
 * thread's Redis connection, fences, gate bookkeeping), owned by the app
 * through a->ext. */
#ifndef QG_APP_EXT_H
#define QG_APP_EXT_H

#include <stdbool.h>

struct app;
struct buf;

void app_ext_init(struct app *a);
/* a->cfg changed (reload, control thread). */
void app_ext_config(struct app *a);
/* Readiness: append JSON strings (with a leading comma unless first) to
 * reasons for what is not ready; returns ready && (its own readiness). */
bool app_ext_ready(struct app *a, struct buf *reasons, bool ready);
/* Append ,"key":value members to the /status object. */
void app_ext_status(struct app *a, struct buf *b);
void app_ext_free(struct app *a);

#endif
