/* listener_respond.c - the listener's answers (see listener_impl.h):
 * local errors in the OpenZiti envelope, reason phrases, the length a
 * HEAD answer states.  The answer itself is written by listener_native.c. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "base/envelope.h"
#include "base/loop.h"
#include "base/util.h"
#include "io/listener_impl.h"

/* ---- responses ------------------------------------------------------- */

bool listener_respond_given_length(const struct http_field *fields, int n,
                                   uint64_t *out)
{
    for (int i = 0; i < n; i++) {
        const struct http_field *f = &fields[i];
        if (!util_strncaseeq(f->name, f->name_len, "Content-Length"))
            continue;
        uint64_t x = 0;
        if (!f->value_len)
            return false;
        for (size_t k = 0; k < f->value_len; k++) {
            char c = f->value[k];
            if (c < '0' || c > '9' || x > UINT64_MAX / 10 - 10)
                return false;
            x = x * 10 + (uint64_t)(c - '0');
        }
        *out = x;
        return true;
    }
    return false;
}

const char *listener_respond_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 425: return "Too Early";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

/* An error the listener answers itself, in the OpenZiti envelope. */
void listener_respond_error(struct listener_exchange *ex,
                            struct listener *l, enum errcode e,
                            const char *message, bool close)
{
    size_t len;
    int status = errcode_status(e);
    const char *code = errcode_name(e);
    char *body = envelope_error(code, message ? message : errcode_message(e),
                                ex->request_id, NULL, &len);
    const struct http_field hdrs[] = {
        HTTP_FIELD("Content-Type", ENVELOPE_CONTENT_TYPE),
        http_field_of(l->request_id_header, ex->request_id),
        HTTP_FIELD("Allow", "GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"),
    };
    ex->local_error = true;
    ex->error_code = code;
    /* a 405 names the methods that are allowed (RFC 9110 15.5.6) */
    listener_respond(ex, status, hdrs, status == 405 ? 3 : 2, body, len,
                     close);
}

void listener_respond(struct listener_exchange *ex, int status,
                      const struct http_field *fields, int n, char *body,
                      size_t body_len, bool close)
{
    listener_native_respond(ex, status, fields, n, body, body_len, close);
}
