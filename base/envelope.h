/* envelope.h - the OpenZiti error envelope, for every error quorumgate
 * answers itself:
 *   {"error":{"code":..,"message":..,"requestId":..,"cause":..},"meta":{..}}
 * Pure functions. */
#ifndef QG_ENVELOPE_H
#define QG_ENVELOPE_H

#include <stddef.h>

#define ENVELOPE_CONTENT_TYPE "application/json"

/* malloc'ed body; cause_json is a JSON value (object) or NULL. */
char *envelope_error(const char *code, const char *message,
                     const char *request_id, const char *cause_json,
                     size_t *len);
/* {"data":<data_json>,"meta":{}} (malloc'ed). */
char *envelope_data(const char *data_json, size_t *len);

#endif
