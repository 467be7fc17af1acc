/* redis_reply.c - the pure parts of the Redis module: command names and
 * classification, the bounded reply reader, read-only views of replies
 * (see redis_impl.h). */
#include "io/redis_impl.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "base/util.h"

#define REDIS_OP_NAME_(id, name) name,
const char *const redis_reply_op_names[REDIS_OP__COUNT] = {
    REDIS_OPS(REDIS_OP_NAME_)};
#undef REDIS_OP_NAME_

static const char *const redis_reply_result_names[] = {"ok", "error",
                                                       "timeout",
                                                       "unavailable"};
const char *const redis_reply_status_names[REDIS_STATUS__COUNT] = {
    "ok", "down", "timeout", "lost"};

/* Commands that would change the connection under the module's feet. */
static const char *const redis_reply_forbidden[] = {
    "subscribe", "psubscribe", "ssubscribe", "unsubscribe", "punsubscribe",
    "sunsubscribe", "monitor", "select", "auth", "hello", "reset", "quit"};

/* Which op a formatted command ("*N\r\n$L\r\nNAME\r\n...") is. */
enum redis_op redis_reply_classify(const char *cmd, size_t len,
                                   bool *forbidden)
{
    *forbidden = false;
    const char *p = memchr(cmd, '$', len);
    if (!p)
        return REDIS_OP_OTHER;
    char *end;
    unsigned long n = strtoul(p + 1, &end, 10);
    if (end[0] != '\r' || n == 0 || n > 32 ||
        (size_t)(end - cmd) + 2 + n > len)
        return REDIS_OP_OTHER;
    const char *name = end + 2;
    for (size_t i = 0; i < ARRAY_LEN(redis_reply_forbidden); i++)
        if (strlen(redis_reply_forbidden[i]) == n &&
            strncasecmp(name, redis_reply_forbidden[i], n) == 0)
            *forbidden = true;
    for (int op = 0; op < REDIS_OP__COUNT; op++)
        if (strlen(redis_reply_op_names[op]) == n &&
            strncasecmp(name, redis_reply_op_names[op], n) == 0)
            return (enum redis_op)op;
    return REDIS_OP_OTHER;
}

/* hiredis 0.14 allocates whatever an array reply announces (*300000000
 * is 2.4 GB of pointers; fuzz/fuzz_redis.c found it): the reader's
 * createArray refuses more than this many elements, which makes the
 * reply a protocol error ("out of memory") and drops the connection. */
#define REDIS_MAX_ELEMENTS (1 << 20)

static void *redis_create_array(const redisReadTask *task, int elements)
{
    const redisReplyObjectFunctions *orig = task->privdata;
    if (elements < 0 || elements > REDIS_MAX_ELEMENTS)
        return NULL;
    return orig->createArray(task, elements);
}

/* Installs the bounded createArray on rd; fns must outlive rd. */
void redis_reply_bound_reader(redisReader *rd, redisReplyObjectFunctions *fns)
{
    if (rd->fn != fns) {
        *fns = *rd->fn;
        fns->createArray = redis_create_array;
        /* not redisReaderSetPrivdata: hiredis 0.14's macro casts the
         * pointer to int (a clang warning) */
        rd->privdata = rd->fn;
        rd->fn = fns;
    }
}

/* ---- replies ---------------------------------------------------------- */

static size_t redis_view_count(const redisReply *rep)
{
    size_t n = 0;
    if (rep->type == REDIS_REPLY_ARRAY)
        for (size_t i = 0; i < rep->elements; i++)
            n += 1 + redis_view_count(rep->element[i]);
    return n;
}

static void redis_view_fill(struct redis_reply *v, const redisReply *rep,
                            struct redis_reply *pool, size_t *next)
{
    memset(v, 0, sizeof(*v));
    switch (rep->type) {
    case REDIS_REPLY_STATUS: v->type = REDIS_TYPE_STATUS; break;
    case REDIS_REPLY_ERROR: v->type = REDIS_TYPE_ERROR; break;
    case REDIS_REPLY_INTEGER: v->type = REDIS_TYPE_INTEGER; break;
    case REDIS_REPLY_STRING: v->type = REDIS_TYPE_STRING; break;
    case REDIS_REPLY_ARRAY: v->type = REDIS_TYPE_ARRAY; break;
    default: v->type = REDIS_TYPE_NIL; break;
    }
    v->integer = rep->integer;
    v->str = ""; /* never NULL, whatever Redis sent where */
    if (rep->type == REDIS_REPLY_STATUS || rep->type == REDIS_REPLY_ERROR ||
        rep->type == REDIS_REPLY_STRING) {
        v->str = rep->str ? rep->str : "";
        v->len = rep->str ? rep->len : 0;
    }
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements > 0) {
        struct redis_reply *kids = pool + *next;
        *next += rep->elements;
        for (size_t i = 0; i < rep->elements; i++)
            redis_view_fill(&kids[i], rep->element[i], pool, next);
        v->elements = kids;
        v->n_elements = rep->elements;
    }
}

/* Runs cmd's callback (if any) with its result and counts it.  The cmd
 * must already be out of r->inflight. */

void redis_reply_view(struct redis_reply *root, const redisReply *rep,
                      struct redis_reply **pool)
{
    size_t n = redis_view_count(rep), next = 0;
    *pool = n ? xcalloc(n, sizeof(**pool)) : NULL;
    redis_view_fill(root, rep, *pool, &next);
}

bool redis_reply_parse(const char *bytes, size_t len, redis_cb cb, void *arg)
{
    redisReader *rd = redisReaderCreate();
    redisReplyObjectFunctions fns;
    void *rep = NULL;
    bool ok = false;
    if (!rd)
        return false;
    redis_reply_bound_reader(rd, &fns);
    if (redisReaderFeed(rd, bytes, len) == REDIS_OK &&
        redisReaderGetReply(rd, &rep) == REDIS_OK && rep) {
        struct redis_reply root, *pool;
        redis_reply_view(&root, rep, &pool);
        cb(arg, REDIS_STATUS_OK, &root);
        free(pool);
        freeReplyObject(rep);
        ok = true;
    }
    redisReaderFree(rd);
    return ok;
}

const char *redis_op_name(enum redis_op op)
{
    return (unsigned)op < REDIS_OP__COUNT ? redis_reply_op_names[op] : "?";
}

const char *redis_result_name(enum redis_result res)
{
    return (unsigned)res < REDIS_RESULT__COUNT ? redis_reply_result_names[res]
                                               : "?";
}

const char *redis_status_name(enum redis_status st)
{
    return (unsigned)st < REDIS_STATUS__COUNT ? redis_reply_status_names[st] : "?";
}
