/* app_ext.c - see app_ext.h. */
#include "proxy/app_ext.h"

#include "proxy/app.h"
#include "proxy/buf.h"

void app_ext_init(struct app *a)
{
    (void)a;
}

void app_ext_config(struct app *a)
{
    (void)a;
}

bool app_ext_ready(struct app *a, struct buf *reasons, bool ready)
{
    (void)a;
    (void)reasons;
    return ready;
}

void app_ext_status(struct app *a, struct buf *b)
{
    (void)a;
    (void)b;
}

void app_ext_free(struct app *a)
{
    (void)a;
}
