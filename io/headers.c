/* headers.c - see headers.h. */
#include "io/headers.h"

#include <stdlib.h>
#include <string.h>

#include "base/http.h"
#include "io/listener.h"
#include "io/upstream.h"
#include "base/util.h"

/* A field whose value is appended to h->data piece by piece, then
 * headers_close. */
static void headers_open(struct headers *h, const char *name, size_t name_len)
{
    if (h->n == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 16;
        h->off = xrealloc(h->off, (size_t)h->cap * 2 * sizeof(*h->off));
    }
    h->off[2 * h->n] = (uint32_t)h->data.len;
    buf_append(&h->data, name, name_len);
    buf_putc(&h->data, '\0');
    h->off[2 * h->n + 1] = (uint32_t)h->data.len;
}

static void headers_close(struct headers *h)
{
    buf_putc(&h->data, '\0');
    h->n++;
}

void headers_add(struct headers *h, const char *name, size_t name_len,
                 const char *value, size_t value_len)
{
    headers_open(h, name, name_len);
    buf_append(&h->data, value, value_len);
    headers_close(h);
}

const char *headers_get(const struct headers *h, const char *name)
{
    for (int i = 0; i < h->n; i++)
        if (util_strcaseeq(headers_name(h, i), name))
            return headers_value(h, i);
    return NULL;
}

int headers_remove(struct headers *h, const char *name)
{
    int w = 0, removed = 0;
    for (int i = 0; i < h->n; i++) {
        if (util_strcaseeq(headers_name(h, i), name)) {
            removed++;
            continue;
        }
        h->off[2 * w] = h->off[2 * i];
        h->off[2 * w + 1] = h->off[2 * i + 1];
        w++;
    }
    h->n = w; /* the bytes stay in data until reset: lists are short-lived */
    return removed;
}

void headers_reset(struct headers *h)
{
    buf_reset(&h->data);
    buf_reset(&h->lines);
    h->n = 0;
}

void headers_wipe(struct headers *h)
{
    buf_wipe(&h->data);
    headers_reset(h);
}

void headers_free(struct headers *h)
{
    buf_wipe(&h->data);
    buf_free(&h->data);
    buf_free(&h->lines);
    free(h->off);
    free(h->view);
    *h = (struct headers){0};
}

static const char **headers_view(struct headers *h, int count)
{
    /* grown only: the list is reused from one request to the next */
    if (count < 1)
        count = 1;
    if (count > h->view_cap) {
        h->view = xrealloc(h->view, (size_t)count * sizeof(char *));
        h->view_cap = count;
    }
    return h->view;
}

const char *const *headers_lines(struct headers *h)
{
    size_t need = 0;
    for (int i = 0; i < h->n; i++) /* "name: value\0", name and value
                                      are NUL-terminated in data */
        need += (h->off[2 * i + 1] - h->off[2 * i] - 1) + 2 +
                strlen(headers_value(h, i)) + 1;
    buf_reset(&h->lines);
    buf_reserve(&h->lines, need);
    const char **v = headers_view(h, h->n);
    for (int i = 0; i < h->n; i++) {
        /* no reallocation below: the pointers stay valid */
        v[i] = h->lines.data + h->lines.len;
        buf_puts(&h->lines, headers_name(h, i));
        buf_append(&h->lines, ": ", 2);
        buf_puts(&h->lines, headers_value(h, i));
        buf_putc(&h->lines, '\0');
    }
    return v;
}

void headers_blank_for_libcurl(struct headers *h)
{
    static const char *const names[] = {"Accept", "Content-Type", "Expect"};
    for (size_t i = 0; i < ARRAY_LEN(names); i++)
        if (!headers_get(h, names[i]))
            headers_adds(h, names[i], "");
}

bool headers_is_hop(const char *name, size_t len, const char *connection)
{
    if (http_is_hop_by_hop(name, len) ||
        util_strncaseeq(name, len, "Content-Length") ||
        (connection && http_connection_lists(connection, name, len)))
        return true;
    return false;
}

static const struct listener_header *headers_find_in(
    const struct listener_header *in, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (util_strncaseeq(in[i].name, in[i].name_len, name))
            return &in[i];
    return NULL;
}

/* Connection may come as several field lines (RFC 9110 5.3): one list of
 * every value, or NULL when there is none (malloc'ed). */
static char *headers_connection_in(const struct listener_header *in, int n)
{
    struct buf b = {0};
    bool found = false;
    for (int i = 0; i < n; i++) {
        if (!util_strncaseeq(in[i].name, in[i].name_len, "Connection"))
            continue;
        if (found)
            buf_putc(&b, ',');
        buf_append(&b, in[i].value, in[i].value_len);
        found = true;
    }
    return found ? buf_steal(&b, NULL) : NULL;
}

/* A Host value fit to pass on as X-Forwarded-Host / Forwarded host=: a
 * host name, an IPv4 address or a bracketed IPv6 address, optionally with
 * a port (RFC 9110 7.2, RFC 3986 3.2.2) -- nothing a controller building
 * links from it could be led astray by (no userinfo, path, quotes, lists). */
static bool headers_host_ok(const char *v, size_t len)
{
    if (len == 0 || len > 255)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              (c >= '0' && c <= '9') || c == '-' || c == '.' || c == ':' ||
              c == '[' || c == ']' || c == '_'))
            return false;
    }
    return true;
}

void headers_for_upstream(struct headers *out,
                          const struct listener_header *in, int n,
                          const struct headers_up_ctx *ctx)
{
    /* fields quorumgate sets itself, or the transport does */
    static const struct http_name own[] = {
        HTTP_NAME("Host"), HTTP_NAME("Expect"), HTTP_NAME("X-Forwarded-For"),
        HTTP_NAME("X-Forwarded-Proto"), HTTP_NAME("X-Forwarded-Host"),
        HTTP_NAME("Forwarded"), HTTP_NAME("X-Client-CertPem"),
    };
    char *conn = headers_connection_in(in, n);
    const struct listener_header *host = headers_find_in(in, n, "Host");
    if (host && !headers_host_ok(host->value, host->value_len))
        host = NULL; /* not passed on */
    const struct listener_header *xff = headers_find_in(in, n,
                                                        "X-Forwarded-For");
    const struct listener_header *fwd = headers_find_in(in, n, "Forwarded");
    const char *proto = ctx->tls ? "https" : "http";

    for (int i = 0; i < n; i++) {
        const struct listener_header *f = &in[i];
        bool skip = headers_is_hop(f->name, f->name_len, conn) ||
                    util_strncaseeq(f->name, f->name_len,
                                    ctx->request_id_header) ||
                    http_name_in(own, ARRAY_LEN(own), f->name, f->name_len);
        if (skip)
            continue;
        headers_add(out, f->name, f->name_len, f->value, f->value_len);
    }
    /* the values are written in place (out->data) */
    struct buf *v = &out->data;
    headers_open(out, "X-Forwarded-For", 15);
    if (ctx->trust_forwarded && xff) {
        buf_append(v, xff->value, xff->value_len);
        buf_puts(v, ", ");
    }
    buf_puts(v, ctx->client_addr);
    headers_close(out);
    headers_adds(out, "X-Forwarded-Proto", proto);
    if (host)
        headers_add(out, "X-Forwarded-Host", 16, host->value,
                    host->value_len);

    headers_open(out, "Forwarded", 9);
    if (ctx->trust_forwarded && fwd) {
        buf_append(v, fwd->value, fwd->value_len);
        buf_puts(v, ", ");
    }
    bool v6 = strchr(ctx->client_addr, ':') != NULL;
    /* for=ADDR or for="[ADDR]" (RFC 7239 6), without printf: it runs on
     * every forwarded request */
    buf_puts(v, v6 ? "for=\"[" : "for=");
    buf_puts(v, ctx->client_addr);
    buf_puts(v, v6 ? "]\";proto=" : ";proto=");
    buf_puts(v, proto);
    if (host && host->value_len) {
        buf_puts(v, ";host=\"");
        for (size_t i = 0; i < host->value_len; i++) {
            char c = host->value[i];
            if (c != '"' && c != '\\')
                buf_putc(v, c);
        }
        buf_putc(v, '"');
    }
    headers_close(out);
    free(conn);
    headers_adds(out, ctx->request_id_header, ctx->request_id);
}

void headers_for_client(struct http_fields *out, const struct upstream_req *r)
{
    /* every Connection field line counts (RFC 9110 5.3): the one value
     * as it is (NUL-terminated in resp_hdr_data), several joined */
    struct buf joined = {0};
    const char *conn = NULL;
    int n_conn = 0;
    for (int i = 0; i < r->n_resp_hdrs; i++) {
        const struct upstream_header *h = &r->resp_hdrs[i];
        const char *value = r->resp_hdr_data.data + h->value_off;
        if (!util_strncaseeq(r->resp_hdr_data.data + h->name_off, h->name_len,
                             "Connection"))
            continue;
        if (n_conn == 1)
            buf_puts(&joined, conn);
        if (n_conn >= 1) {
            buf_putc(&joined, ',');
            buf_append(&joined, value, h->value_len);
        }
        conn = value;
        n_conn++;
    }
    if (n_conn > 1)
        conn = joined.data;
    for (int i = 0; i < r->n_resp_hdrs; i++) {
        const struct upstream_header *h = &r->resp_hdrs[i];
        const char *name = r->resp_hdr_data.data + h->name_off;
        if (headers_is_hop(name, h->name_len, conn) &&
            !(r->method == HTTP_HEAD &&
              util_strncaseeq(name, h->name_len, "Content-Length")))
            continue; /* a HEAD answer keeps the length it describes */
        http_fields_add(out, name, h->name_len,
                        r->resp_hdr_data.data + h->value_off, h->value_len);
    }
    buf_free(&joined);
}
