/* headers.h - header lists and the proxy's header rules:
 *  - RFC 9110 7.6.1 hop-by-hop fields (and every field named in Connection)
 *    are dropped both ways;
 *  - X-Forwarded-For/-Proto/-Host and Forwarded are set on the way up;
 *  - the request id is passed through or generated and sent both ways;
 *  - framing fields (Content-Length, Transfer-Encoding) are the transport's,
 *    except the Content-Length of an answer to HEAD, which describes the
 *    body a GET would get and is passed to the client as it is.
 *
 * Ownership: struct headers owns its storage; a zeroed struct is empty.
 * Pointers returned by headers_name/value/get are valid until the next
 * change to the list. */
#ifndef QG_HEADERS_H
#define QG_HEADERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/buf.h"
#include "base/http.h"

struct listener_header;
struct upstream_req;

struct headers {
    struct buf data;       /* owned: "name\0value\0" for each field */
    uint32_t *off;         /* owned: name and value offsets, 2 per field */
    int n, cap;
    const char **view;     /* owned: pointers built by headers_lines/pairs */
    int view_cap;          /* entries allocated in view */
    struct buf lines;      /* owned: storage for "Name: value" lines */
};

void headers_add(struct headers *h, const char *name, size_t name_len,
                 const char *value, size_t value_len);
/* Inline: most names and values are literals, whose lengths are
 * constants. */
static inline void headers_adds(struct headers *h, const char *name,
                                const char *value)
{
    headers_add(h, name, strlen(name), value, strlen(value));
}
/* Field i's name and value (inline: h1conn_build reads every field of
 * every forwarded request through them). */
static inline const char *headers_name(const struct headers *h, int i)
{
    return h->data.data + h->off[2 * i];
}
/* strlen(headers_name(h, i)), without the scan: the value follows the
 * name and its NUL. */
static inline size_t headers_name_len(const struct headers *h, int i)
{
    return h->off[2 * i + 1] - h->off[2 * i] - 1;
}
static inline const char *headers_value(const struct headers *h, int i)
{
    return h->data.data + h->off[2 * i + 1];
}
/* First value of name (case-insensitive) or NULL. */
const char *headers_get(const struct headers *h, const char *name);
/* Removes every field called name; returns how many. */
int headers_remove(struct headers *h, const char *name);
void headers_reset(struct headers *h);
/* headers_reset that first overwrites the stored names and values (they
 * may hold a client's Authorization or zt-session). */
void headers_wipe(struct headers *h);
void headers_free(struct headers *h);
/* "Name: value" lines for the upstream engine; valid until next change. */
const char *const *headers_lines(struct headers *h);

struct headers_up_ctx {
    const char *client_addr;     /* peer address */
    bool tls;                    /* client used HTTPS */
    const char *request_id;
    const char *request_id_header;
    bool trust_forwarded;        /* keep and append to incoming XFF/Forwarded */
};

/* The request headers to send upstream, from the client's. */
void headers_for_upstream(struct headers *out,
                          const struct listener_header *in, int n,
                          const struct headers_up_ctx *ctx);
/* Adds an empty Accept, Content-Type and Expect where h has none: libcurl
 * leaves a field given as "Name:" out instead of adding its own (Accept:
 * any, a form Content-Type on a POST, Expect: 100-continue).  For the
 * lines of a forwarded request that libcurl sends; quorumgate's own
 * client sends the fields as they are. */
void headers_blank_for_libcurl(struct headers *h);
/* Appends the response fields to send the client to out: a view of the
 * controller's (r's storage, not copied: valid while r keeps its answer). */
void headers_for_client(struct http_fields *out, const struct upstream_req *r);

/* true for fields a proxy must not forward (hop-by-hop, framing, or
 * named in the message's Connection value, which may be NULL). */
bool headers_is_hop(const char *name, size_t len, const char *connection);

#endif
