/* listener_clients.c - open client connections per client address, across
 * every listener and worker of the process (limits.max_connections_per_
 * client).  A chained hash table under one mutex: it is touched once when
 * a connection is accepted and once when it closes, never per request. */
#include <netinet/in.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "io/listener.h"

/* One client address with open connections.  Owned by the table. */
struct listener_client {
    struct listener_client *next;  /* in its slot's chain */
    uint8_t family_len;            /* 4 (IPv4) or 16 (IPv6) */
    uint8_t addr[16];
    uint32_t count;                /* its open connections, >= 1 */
};

/* Owned by the process (the app); shared by every worker's listeners. */
struct listener_clients {
    pthread_mutex_t lock;
    struct listener_client **slots; /* owned: n_slots chains */
    size_t n_slots;                 /* a power of two */
    size_t n_entries;
    uint64_t seed;                  /* keys the hash: chains cannot be
                                       lengthened on purpose */
};

#define LISTENER_CLIENTS_SLOTS0 64

struct listener_clients *listener_clients_new(uint64_t seed)
{
    struct listener_clients *c = xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->n_slots = LISTENER_CLIENTS_SLOTS0;
    c->slots = xcalloc(c->n_slots, sizeof(*c->slots));
    c->seed = seed | 1;
    return c;
}

void listener_clients_free(struct listener_clients *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_slots; i++) {
        struct listener_client *e = c->slots[i], *next;
        for (; e; e = next) {
            next = e->next;
            free(e);
        }
    }
    free(c->slots);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* The address bytes of peer (4 or 16), 0 for other families. */
static uint8_t listener_clients_key(const struct sockaddr_storage *peer,
                                    uint8_t addr[16])
{
    if (peer->ss_family == AF_INET) {
        memcpy(addr, &((const struct sockaddr_in *)peer)->sin_addr, 4);
        return 4;
    }
    if (peer->ss_family == AF_INET6) {
        const struct in6_addr *a6 = &((const struct sockaddr_in6 *)peer)
                                         ->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) { /* a dual-stack listener's IPv4
                                           client: the same as on a v4 one */
            memcpy(addr, a6->s6_addr + 12, 4);
            return 4;
        }
        memcpy(addr, a6, 16);
        return 16;
    }
    return 0;
}

static size_t listener_clients_hash(const struct listener_clients *c,
                                    const uint8_t *addr, uint8_t len)
{
    /* keyed multiply-xorshift over 4-byte words */
    uint64_t h = c->seed ^ len;
    for (uint8_t i = 0; i < len; i += 4) {
        uint32_t w;
        memcpy(&w, addr + i, 4);
        h = (h ^ w) * 0x9E3779B97F4A7C15ull;
        h ^= h >> 29;
    }
    h *= 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    return (size_t)h & (c->n_slots - 1);
}

static struct listener_client **listener_clients_find(
    struct listener_clients *c, const uint8_t *addr, uint8_t len)
{
    struct listener_client **pp = &c->slots[listener_clients_hash(c, addr,
                                                                  len)];
    for (; *pp; pp = &(*pp)->next)
        if ((*pp)->family_len == len && memcmp((*pp)->addr, addr, len) == 0)
            break;
    return pp;
}

/* Doubles the slots once there are more entries than slots. */
static void listener_clients_grow(struct listener_clients *c)
{
    size_t old_n = c->n_slots;
    struct listener_client **old = c->slots;
    c->n_slots = old_n * 2;
    c->slots = xcalloc(c->n_slots, sizeof(*c->slots));
    for (size_t i = 0; i < old_n; i++) {
        struct listener_client *e = old[i], *next;
        for (; e; e = next) {
            next = e->next;
            size_t s = listener_clients_hash(c, e->addr, e->family_len);
            e->next = c->slots[s];
            c->slots[s] = e;
        }
    }
    free(old);
}

enum listener_clients_result listener_clients_take(
    struct listener_clients *c, const struct sockaddr_storage *peer,
    uint32_t limit)
{
    uint8_t addr[16];
    uint8_t len = listener_clients_key(peer, addr);
    enum listener_clients_result r = LISTENER_CLIENT_COUNTED;
    if (!len)
        return LISTENER_CLIENT_NOT_COUNTED; /* not an IP peer */
    pthread_mutex_lock(&c->lock);
    struct listener_client **pp = listener_clients_find(c, addr, len);
    if (*pp && limit && (*pp)->count >= limit) {
        r = LISTENER_CLIENT_REFUSED;
    } else if (*pp) {
        (*pp)->count++;
    } else {
        struct listener_client *e = xcalloc(1, sizeof(*e));
        e->family_len = len;
        memcpy(e->addr, addr, len);
        e->count = 1;
        *pp = e;
        if (++c->n_entries > c->n_slots)
            listener_clients_grow(c);
    }
    pthread_mutex_unlock(&c->lock);
    return r;
}

void listener_clients_drop(struct listener_clients *c,
                           const struct sockaddr_storage *peer)
{
    uint8_t addr[16];
    uint8_t len = listener_clients_key(peer, addr);
    if (!len)
        return;
    pthread_mutex_lock(&c->lock);
    struct listener_client **pp = listener_clients_find(c, addr, len);
    struct listener_client *e = *pp;
    if (e && --e->count == 0) {
        *pp = e->next;
        free(e);
        c->n_entries--;
    }
    pthread_mutex_unlock(&c->lock);
}

uint32_t listener_clients_count(struct listener_clients *c,
                                const struct sockaddr_storage *peer)
{
    uint8_t addr[16];
    uint8_t len = listener_clients_key(peer, addr);
    uint32_t n = 0;
    if (!len)
        return 0;
    pthread_mutex_lock(&c->lock);
    struct listener_client *e = *listener_clients_find(c, addr, len);
    n = e ? e->count : 0;
    pthread_mutex_unlock(&c->lock);
    return n;
}
