/* config_addr.c - see config_addr.h. */
#include "config/config_addr.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "base/util.h"

/* A DNS name or IPv4 literal: letters, digits, '-', '_' and dots; an
 * all-numeric name must be a valid IPv4 address. */
static bool config_addr_host_ok(const char *h, size_t n)
{
    if (n == 0 || n > 253 || h[0] == '.' || h[0] == '-')
        return false;
    bool numeric = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)h[i];
        if (!isalnum(c) && c != '-' && c != '_' && c != '.')
            return false;
        if (!isdigit(c) && c != '.')
            numeric = false;
        if (c == '.' && i + 1 < n && h[i + 1] == '.')
            return false;
    }
    if (numeric) {
        char tmp[254];
        unsigned char bin[4];
        memcpy(tmp, h, n);
        tmp[n] = '\0';
        return inet_pton(AF_INET, tmp, bin) == 1;
    }
    return true;
}

static bool config_addr_v6_ok(const char *h, size_t n)
{
    char tmp[INET6_ADDRSTRLEN + 1];
    unsigned char bin[16];
    if (n == 0 || n >= sizeof(tmp))
        return false;
    memcpy(tmp, h, n);
    tmp[n] = '\0';
    return inet_pton(AF_INET6, tmp, bin) == 1;
}

static bool config_addr_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n == 0 || n > 5)
        return false;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isdigit((unsigned char)s[i]))
            return false;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > 65535)
        return false;
    *out = (uint16_t)v;
    return true;
}

/* Split "host:port" or "[v6]:port" into the host span and the port text
 * (NULL when there is no ':'), checking the host. */
static bool config_addr_split(const char *text, const char **host,
                              size_t *host_len, const char **port,
                              bool *v6, const char **why)
{
    *v6 = false;
    *port = NULL;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close) {
            *why = "an IPv6 address needs a closing ']'";
            return false;
        }
        *host = text + 1;
        *host_len = (size_t)(close - text - 1);
        *v6 = true;
        if (!config_addr_v6_ok(*host, *host_len)) {
            *why = "not a valid IPv6 address between '[' and ']'";
            return false;
        }
        if (close[1] == ':')
            *port = close + 2;
        else if (close[1] != '\0') {
            *why = "expected ':' after ']'";
            return false;
        }
        return true;
    }
    const char *colon = strchr(text, ':');
    if (colon && strchr(colon + 1, ':')) {
        *why = "write IPv6 addresses in brackets: [::1]:port";
        return false;
    }
    *host = text;
    *host_len = colon ? (size_t)(colon - text) : strlen(text);
    if (colon)
        *port = colon + 1;
    if (!config_addr_host_ok(*host, *host_len)) {
        *why = "the host is not a valid name or address";
        return false;
    }
    return true;
}

bool config_addr_parse(const char *text, bool unix_ok, struct config_addr *out,
                       const char **why)
{
    memset(out, 0, sizeof(*out));
    if (util_has_prefix(text, "unix:")) {
        if (!unix_ok) {
            *why = "a unix socket is not supported here";
            return false;
        }
        if (text[5] == '\0') {
            *why = "write unix:/path/to/socket";
            return false;
        }
        out->text = xstrdup(text);
        out->host = xstrdup("");
        out->unix_path = xstrdup(text + 5);
        return true;
    }
    const char *host, *port;
    size_t host_len;
    bool v6;
    if (!strchr(text, ':')) {
        *why = "the port is missing";
        return false;
    }
    if (!config_addr_split(text, &host, &host_len, &port, &v6, why))
        return false;
    uint16_t p;
    if (!port) {
        *why = "the port is missing";
        return false;
    }
    if (!config_addr_port(port, &p)) {
        *why = "the port is not a number from 0 to 65535";
        return false;
    }
    out->text = xstrdup(text);
    out->host = xstrndup(host, host_len);
    out->port = p;
    return true;
}

void config_addr_free(struct config_addr *a)
{
    free(a->text);
    free(a->host);
    free(a->unix_path);
    memset(a, 0, sizeof(*a));
}

static bool config_addr_streq(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return strcmp(a, b) == 0;
}

bool config_addr_same(const struct config_addr *a, const struct config_addr *b)
{
    if (!config_addr_streq(a->unix_path, b->unix_path) || a->port != b->port)
        return false;
    if (!a->host || !b->host)
        return a->host == b->host;
    return strcasecmp(a->host, b->host) == 0;
}

bool config_addr_parse_url(const char *text, char **norm, char **scheme,
                           char **host, uint16_t *port, const char **why)
{
    const char *rest;
    const char *sch;
    uint16_t def;
    if (strncasecmp(text, "https://", 8) == 0) {
        sch = "https";
        rest = text + 8;
        def = 443;
    } else if (strncasecmp(text, "http://", 7) == 0) {
        sch = "http";
        rest = text + 7;
        def = 80;
    } else {
        *why = "not an http:// or https:// URL";
        return false;
    }
    size_t auth_len = strcspn(rest, "/?#");
    const char *tail = rest + auth_len;
    if (strcmp(tail, "") != 0 && strcmp(tail, "/") != 0) {
        *why = "a path, query or fragment is not allowed here";
        return false;
    }
    if (memchr(rest, '@', auth_len)) {
        *why = "credentials in the URL are not allowed";
        return false;
    }
    if (auth_len == 0) {
        *why = "the URL has no host";
        return false;
    }
    char *auth = xstrndup(rest, auth_len);
    const char *h, *port_text;
    size_t h_len;
    bool v6, ok = false;
    uint16_t p = def;
    if (!config_addr_split(auth, &h, &h_len, &port_text, &v6, why))
        goto out;
    if (port_text && (!config_addr_port(port_text, &p) || p == 0)) {
        *why = "the port is not a number from 1 to 65535";
        goto out;
    }
    *norm = xasprintf("%s://%s", sch, auth);
    *scheme = xstrdup(sch);
    *host = xstrndup(h, h_len);
    *port = p;
    ok = true;
out:
    free(auth);
    return ok;
}

bool config_addr_parse_cidr(const char *text, struct config_cidr *out,
                            const char **why)
{
    char tmp[INET6_ADDRSTRLEN + 8];
    memset(out, 0, sizeof(*out));
    if (strlen(text) >= sizeof(tmp)) {
        *why = "not an address or CIDR block";
        return false;
    }
    strcpy(tmp, text);
    char *slash = strchr(tmp, '/');
    if (slash)
        *slash = '\0';
    int max;
    if (inet_pton(AF_INET, tmp, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, tmp, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        *why = "not an IPv4 or IPv6 address";
        return false;
    }
    out->prefix = max;
    if (slash) {
        const char *s = slash + 1;
        size_t n = strlen(s);
        int v = 0;
        if (n == 0 || n > 3) {
            *why = "the prefix length is not a number";
            return false;
        }
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)s[i])) {
                *why = "the prefix length is not a number";
                return false;
            }
            v = v * 10 + (s[i] - '0');
        }
        if (v > max) {
            *why = max == 32 ? "an IPv4 prefix is at most /32"
                             : "an IPv6 prefix is at most /128";
            return false;
        }
        out->prefix = v;
    }
    for (int bit = out->prefix; bit < max; bit++)
        out->addr[bit / 8] &= (uint8_t)~(0x80u >> (bit % 8));
    return true;
}

bool config_addr_cidr_match(const struct config_cidr *list, int n,
                            int family, const unsigned char *addr)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0,
                                             0, 0, 0, 0, 0xff, 0xff};
    if (family == AF_INET6 && memcmp(addr, mapped, sizeof(mapped)) == 0) {
        family = AF_INET;
        addr += 12;
    }
    for (int i = 0; i < n; i++) {
        const struct config_cidr *c = &list[i];
        if (c->family != family)
            continue;
        int bits = c->prefix, k = 0;
        bool match = true;
        for (; bits >= 8; bits -= 8, k++)
            if (addr[k] != c->addr[k])
                match = false;
        if (match && bits > 0) {
            unsigned char mask = (unsigned char)(0xff << (8 - bits));
            match = (addr[k] & mask) == (c->addr[k] & mask);
        }
        if (match)
            return true;
    }
    return false;
}

bool config_addr_cidr_match_text(const struct config_cidr *list, int n,
                                 const char *addr)
{
    unsigned char a[16];
    if (n == 0)
        return false;
    if (inet_pton(AF_INET, addr, a) == 1)
        return config_addr_cidr_match(list, n, AF_INET, a);
    if (inet_pton(AF_INET6, addr, a) == 1)
        return config_addr_cidr_match(list, n, AF_INET6, a);
    return false;
}
