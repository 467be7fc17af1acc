/* h1addr.c - see h1addr.h. */
#include "io/h1addr.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

#include "base/util.h"

static bool h1addr_parse(const char *host, size_t hlen, unsigned port,
                         struct sockaddr_storage *ss, socklen_t *len)
{
    char tmp[64];
    if (hlen >= 2 && host[0] == '[' && host[hlen - 1] == ']') {
        host++;
        hlen -= 2;
    }
    if (hlen >= sizeof(tmp))
        return false;
    memcpy(tmp, host, hlen);
    tmp[hlen] = '\0';
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, tmp, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        *len = sizeof(*a4);
        return true;
    }
    if (inet_pton(AF_INET6, tmp, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        *len = sizeof(*a6);
        return true;
    }
    return false;
}

bool h1addr_init(struct h1addr *s, const char *host, size_t hlen,
                 unsigned port)
{
    memset(s, 0, sizeof(*s));
    if (!h1addr_parse(host, hlen, port, &s->a[0], &s->len[0]))
        return false;
    s->n = 1;
    s->fixed = true;
    return true;
}

enum h1addr_next h1addr_check(const struct h1addr *s, uint64_t now_ms)
{
    if (s->fixed)
        return H1ADDR_USE;
    bool may = !s->resolving && now_ms - s->ended_ms >= H1ADDR_RETRY_MS;
    if (s->n > 0) {
        bool old = s->stale || s->failing ||
                   now_ms - s->resolved_ms >= H1ADDR_TTL_MS;
        return old && may ? H1ADDR_REFRESH : H1ADDR_USE;
    }
    if (s->resolving)
        return H1ADDR_WAIT;
    if (s->failing && !may)
        return H1ADDR_FAILED;
    return H1ADDR_RESOLVE;
}

void h1addr_begin(struct h1addr *s)
{
    s->resolving = true;
}

static bool h1addr_has(const struct h1addr *s, int n,
                       const struct sockaddr_storage *ss, socklen_t len)
{
    for (int i = 0; i < n; i++)
        if (s->len[i] == len && memcmp(&s->a[i], ss, len) == 0)
            return true;
    return false;
}

int h1addr_resolved(struct h1addr *s, const struct addrinfo *ai,
                    unsigned port, uint64_t now_ms, bool *recovered)
{
    struct h1addr next = *s;
    int n = 0;
    for (; ai && n < H1ADDR_MAX; ai = ai->ai_next) {
        struct sockaddr_storage ss;
        socklen_t len;
        memset(&ss, 0, sizeof(ss));
        if (ai->ai_family == AF_INET &&
            ai->ai_addrlen >= sizeof(struct sockaddr_in)) {
            len = sizeof(struct sockaddr_in);
            memcpy(&ss, ai->ai_addr, len);
            ((struct sockaddr_in *)&ss)->sin_port = htons((uint16_t)port);
        } else if (ai->ai_family == AF_INET6 &&
                   ai->ai_addrlen >= sizeof(struct sockaddr_in6)) {
            len = sizeof(struct sockaddr_in6);
            memcpy(&ss, ai->ai_addr, len);
            ((struct sockaddr_in6 *)&ss)->sin6_port = htons((uint16_t)port);
        } else {
            continue;
        }
        if (h1addr_has(&next, n, &ss, len))
            continue;
        next.a[n] = ss;
        next.len[n] = len;
        n++;
    }
    *recovered = false;
    if (n == 0)
        return 0;
    *recovered = s->failing;
    /* the address the last connection reached stays the first one tried
     * when it is still among them */
    int prefer = 0;
    if (s->n > 0)
        for (int i = 0; i < n; i++)
            if (next.len[i] == s->len[s->prefer] &&
                memcmp(&next.a[i], &s->a[s->prefer], next.len[i]) == 0)
                prefer = i;
    *s = next;
    s->n = n;
    s->prefer = prefer;
    s->resolving = s->failing = s->stale = false;
    s->resolved_ms = s->ended_ms = now_ms;
    return n;
}

bool h1addr_failed(struct h1addr *s, uint64_t now_ms)
{
    bool first = !s->failing;
    s->resolving = false;
    s->failing = true;
    s->ended_ms = now_ms;
    return first;
}

int h1addr_pick(const struct h1addr *s, int k)
{
    if (k < 0 || k >= s->n)
        return -1;
    return (s->prefer + k) % s->n;
}

void h1addr_connected(struct h1addr *s, int i)
{
    if (i >= 0 && i < s->n)
        s->prefer = i;
}

void h1addr_unreachable(struct h1addr *s)
{
    if (!s->fixed)
        s->stale = true;
}

bool h1addr_never_resolves(const char *name, size_t len)
{
    if (len && name[len - 1] == '.')
        len--;
    static const char tld[] = "invalid";
    size_t t = sizeof(tld) - 1;
    if (len < t || !util_strncaseeq(name + len - t, t, tld))
        return false;
    return len == t || name[len - t - 1] == '.';
}
