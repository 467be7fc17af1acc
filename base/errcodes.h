/* errcodes.h - the envelope error codes quorumgate answers itself, from
 * the table in base/errcodes.def: each with its HTTP status and default
 * message.  Pure; the strings are static. */
#ifndef QG_ERRCODES_H
#define QG_ERRCODES_H

enum errcode {
#define ERRCODE(code, status, message) ERR_##code,
#include "base/errcodes.def"
#undef ERRCODE
    ERR__COUNT
};

/* "CLUSTER_NO_LEADER" */
const char *errcode_name(enum errcode e);
/* 503 */
int errcode_status(enum errcode e);
/* The table's message. */
const char *errcode_message(enum errcode e);

#endif
