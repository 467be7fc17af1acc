/* config_addr.h - parsing of the address-like values of the configuration:
 * listen/connect addresses, http(s) URLs and CIDR blocks.  Pure functions;
 * on failure they return false and point *why at a static explanation. */
#ifndef QG_CONFIG_ADDR_H
#define QG_CONFIG_ADDR_H

#include <stdbool.h>
#include <stdint.h>

#include "config/config.h"

/* "host:port", "[v6]:port" or, when unix_ok, "unix:/path".  host is a DNS
 * name or an IPv4 literal; IPv6 literals need brackets and are stored
 * without them.  Fills out (owned strings; out->unix_path is the path as
 * written) on success; leaves it zeroed on failure. */
bool config_addr_parse(const char *text, bool unix_ok, struct config_addr *out,
                       const char **why);
void config_addr_free(struct config_addr *a);
/* Same host, port and unix path (host compared case-insensitively). */
bool config_addr_same(const struct config_addr *a, const struct config_addr *b);

/* "http://host[:port][/]" or "https://...": no user, path, query or
 * fragment.  *scheme is "http" or "https", *host has no brackets, *port
 * defaults to 80 / 443, *norm is the URL without a trailing slash and
 * with a lower-case scheme.  All malloc'ed on success. */
bool config_addr_parse_url(const char *text, char **norm, char **scheme,
                           char **host, uint16_t *port, const char **why);

/* "10.0.0.0/8", "::1/128", or a bare address (a /32 or /128).  Host bits
 * beyond the prefix are cleared. */
bool config_addr_parse_cidr(const char *text, struct config_cidr *out,
                            const char **why);
/* Is the address (family AF_INET: 4 bytes, AF_INET6: 16) in one of the n
 * blocks?  An IPv4-mapped IPv6 address is matched as the IPv4 one. */
bool config_addr_cidr_match(const struct config_cidr *list, int n,
                            int family, const unsigned char *addr);
/* The same for an address as text ("127.0.0.1", "::1"); false when it is
 * not one. */
bool config_addr_cidr_match_text(const struct config_cidr *list, int n,
                                 const char *addr);

#endif
