/* envelope.c - see envelope.h. */
#include "base/envelope.h"

#include <string.h>

#include "base/buf.h"

char *envelope_error(const char *code, const char *message,
                     const char *request_id, const char *cause_json,
                     size_t *len)
{
    struct buf b = {0};
    buf_puts(&b, "{\"error\":{\"code\":\"");
    buf_json_escape(&b, code, strlen(code));
    buf_puts(&b, "\",\"message\":\"");
    buf_json_escape(&b, message, strlen(message));
    buf_puts(&b, "\",\"requestId\":\"");
    if (request_id)
        buf_json_escape(&b, request_id, strlen(request_id));
    buf_putc(&b, '"');
    if (cause_json) {
        buf_puts(&b, ",\"cause\":");
        buf_puts(&b, cause_json);
    }
    /* the controller's own meta (controller/response/responder.go) */
    buf_puts(&b, "},\"meta\":{\"apiEnrollmentVersion\":\"0.0.1\","
                 "\"apiVersion\":\"0.0.1\"}}\n");
    return buf_steal(&b, len);
}

char *envelope_data(const char *data_json, size_t *len)
{
    struct buf b = {0};
    buf_puts(&b, "{\"data\":");
    buf_puts(&b, data_json);
    buf_puts(&b, ",\"meta\":{}}\n");
    return buf_steal(&b, len);
}
