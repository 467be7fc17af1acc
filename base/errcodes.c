/* errcodes.c - see errcodes.h. */
#include "base/errcodes.h"

static const struct {
    const char *name;
    int status;
    const char *message;
} errcodes[ERR__COUNT] = {
#define ERRCODE(code, status, message) [ERR_##code] = {#code, status, message},
#include "base/errcodes.def"
#undef ERRCODE
};

const char *errcode_name(enum errcode e)
{
    return errcodes[e].name;
}

int errcode_status(enum errcode e)
{
    return errcodes[e].status;
}

const char *errcode_message(enum errcode e)
{
    return errcodes[e].message;
}
