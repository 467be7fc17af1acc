/* h1addr.h - where one controller is, for the upstream client (h1client):
 * an IP literal fixed once, or the addresses a DNS name resolved to, with
 * their age.  Bookkeeping only (no I/O, no clock of its own): h1client runs
 * the resolutions (loop_resolve) and asks this what to do next.
 *
 * The rules:
 * - resolved addresses are fresh for H1ADDR_TTL_MS; once stale they are
 *   still used while a new resolution runs in the background;
 * - a connection that reached none of them makes them stale at once;
 * - a failed resolution keeps the old addresses (if any); the next one
 *   starts no sooner than H1ADDR_RETRY_MS after it; with no address at
 *   all, requests meanwhile fail at once as connect failures;
 * - a new connection tries the addresses in the resolver's order, starting
 *   from the one the last connection reached;
 * - names in the special-use domain "invalid" never resolve (RFC 6761
 *   section 6.4): the resolver is not asked.
 *
 * Ownership: plain data inside its owner (an h1origin); the addrinfo list
 * given to h1addr_resolved() is borrowed for the call. */
#ifndef QG_H1ADDR_H
#define QG_H1ADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct addrinfo;

#define H1ADDR_MAX 8             /* addresses kept per name */
#define H1ADDR_TTL_MS 30000      /* resolved addresses stay fresh */
#define H1ADDR_RETRY_MS 1000     /* between a failed resolution and the
                                    next, and between re-resolutions after
                                    connect failures */

struct h1addr {
    struct sockaddr_storage a[H1ADDR_MAX];
    socklen_t len[H1ADDR_MAX];
    int n;                       /* 0 = none yet */
    int prefer;                  /* the one the last connection reached */
    bool fixed;                  /* an IP literal: never resolved */
    bool resolving;              /* a resolution is running */
    bool failing;                /* the last resolution failed */
    bool stale;                  /* a connection reached none of them */
    uint64_t resolved_ms;        /* when the addresses arrived */
    uint64_t ended_ms;           /* when the last resolution ended */
};

enum h1addr_next {
    H1ADDR_USE,                  /* addresses at hand, nothing to do */
    H1ADDR_REFRESH,              /* at hand; resolve again meanwhile */
    H1ADDR_RESOLVE,              /* none: resolve, and wait for it */
    H1ADDR_WAIT,                 /* none: a resolution runs, wait */
    H1ADDR_FAILED                /* none: the last resolution failed less
                                    than H1ADDR_RETRY_MS ago */
};

/* true when host[0..hlen) (brackets allowed) is an IP literal: s holds it
 * with port, fixed.  false: a name; s is empty and waits for resolution. */
bool h1addr_init(struct h1addr *s, const char *host, size_t hlen,
                 unsigned port);
enum h1addr_next h1addr_check(const struct h1addr *s, uint64_t now_ms);
/* A resolution starts. */
void h1addr_begin(struct h1addr *s);
/* It answered: its IPv4/IPv6 addresses (in order, duplicates dropped, at
 * most H1ADDR_MAX) with port replace the old ones.  Returns how many were
 * kept (0: as h1addr_failed, the caller says so); *recovered: the
 * resolutions had been failing until this one. */
int h1addr_resolved(struct h1addr *s, const struct addrinfo *ai,
                    unsigned port, uint64_t now_ms, bool *recovered);
/* It failed.  true when this starts a run of failures (log it once). */
bool h1addr_failed(struct h1addr *s, uint64_t now_ms);
/* Index of the address for try k (0, 1, ...) of a new connection, or -1
 * once every address was tried. */
int h1addr_pick(const struct h1addr *s, int k);
void h1addr_connected(struct h1addr *s, int i);
/* A new connection reached none of the addresses. */
void h1addr_unreachable(struct h1addr *s);
/* true for a name in the domain "invalid" (RFC 6761 6.4), any case, with
 * or without the final dot. */
bool h1addr_never_resolves(const char *name, size_t len);

#endif
