/* redis.h - one asynchronous Redis connection driven by a struct loop:
 * connect (TCP or unix socket) with a timeout, AUTH and SELECT, commands
 * with deadlines, automatic reconnection with capped exponential backoff,
 * and a pub/sub subscriber mode.  The only interface to hiredis; nothing
 * else includes hiredis headers.
 *
 * Ownership and threads: a struct redis belongs to the loop it was created
 * with; every function must be called on that loop's thread, except
 * redis_up(), redis_stats() and redis_last_error(), which any thread may
 * call while the struct is alive.  It copies what it needs from the
 * config (the password too, wiped on free).  The log is borrowed.
 *
 * Usage
 *
 *   struct redis *r = redis_new(loop, &cfg->redis, &(struct redis_options){
 *       .name = "w0", .log = log, .on_state = on_redis_state, .state_arg = w});
 *   ...
 *   redis_command(r, on_get, req, "GET %s%b", prefix, key, key_len);
 *
 *   static void on_get(void *arg, enum redis_status st,
 *                      const struct redis_reply *rep)
 *   {
 *       if (st != REDIS_STATUS_OK)        -> Redis unavailable: degrade (503)
 *       else if (rep->type == REDIS_TYPE_ERROR) -> server said no (a bug?)
 *       else if (rep->type == REDIS_TYPE_NIL)   -> no such key
 *       else use rep->str / rep->len      -> only valid inside this callback
 *   }
 *
 * Command contract:
 *  - The callback runs exactly once, on the loop, never from inside
 *    redis_command() itself, unless the command is cancelled with
 *    redis_cancel() or the connection is freed with redis_free() first
 *    (then it never runs).
 *  - Commands issued while the connection is not up (connecting, AUTH in
 *    progress, waiting to reconnect) are NOT queued: they fail fast with
 *    REDIS_STATUS_DOWN on the next loop iteration.  Callers degrade (e.g.
 *    answer 503) instead of piling up work behind a dead Redis.
 *  - Every command has a deadline of command_timeout from the config.  When
 *    it passes, the callback gets REDIS_STATUS_TIMEOUT and the connection is
 *    dropped and re-established (a stuck connection is worse than a
 *    reconnect); the other commands in flight then get REDIS_STATUS_LOST.
 *    A reply arriving later is discarded.
 *  - Replies arrive in the order the commands were issued.
 *
 * Connection: redis_new() starts connecting on the next loop iteration.
 * After connecting it sends AUTH (username+password, or password only) when
 * a password is configured, SELECT when database != 0, then PING; the
 * connection is "up" when all of them succeeded.  connect_timeout bounds
 * connect + that handshake.  A failed or lost connection is retried after
 * backoff_min, doubling to backoff_max, with jitter; a wrong password is
 * retried the same way (it may be fixed on the server) and reported in
 * redis_last_error().  on_state(arg, up) is called on every transition.
 * Behind sentinels (cfg->n_sentinels > 0) the address is the master the
 * sentinels name at the time of each connect (see redis_sentinel.h): the
 * handshake ends with ROLE, which must say "master" (else the connection
 * is dropped and the sentinels asked again), and a connection whose master
 * moved is dropped and made again to the new one at once.  While no master
 * is known, connecting fails like a Redis that is down.
 * RESP2 only (hiredis 0.14.1): no HELLO, no TLS.  The host should be an IP
 * address or a name in /etc/hosts: hiredis resolves it with a blocking
 * getaddrinfo() on the loop thread.  The process must ignore SIGPIPE.
 *
 * Subscriber: a struct redis created with .subscriber = true only takes
 * redis_subscribe() (no commands).  Subscriptions are kept across
 * reconnections: after every (re)connect they are sent again, and once
 * the server has confirmed all of them on_state(arg, true) is called.
 * Messages published while the subscriber was down are lost, so the owner
 * must re-check the state it watches from on_state(true); for the same
 * reason on_state(arg, true) is called again when a channel subscribed
 * while up is confirmed.  There is no unsubscribe: free the subscriber.
 * An idle subscriber detects a dead peer through TCP keepalive (~30 s).
 *
 * Metrics: redis_stats() returns counters per command (a fixed table,
 * unknown commands count as "other") and result, which map onto
 * redis_operations_total{op,result} and redis_up.
 */
#ifndef QG_REDIS_H
#define QG_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

struct loop;
struct log;
struct redis;
struct redis_cmd;
struct redis_sentinel;

/* A reply, read-only, valid only during the callback that receives it. */
enum redis_type {
    REDIS_TYPE_NIL = 0,
    REDIS_TYPE_STATUS,       /* +OK: str/len */
    REDIS_TYPE_ERROR,        /* -ERR ...: str/len, a server error reply */
    REDIS_TYPE_INTEGER,      /* :42: integer */
    REDIS_TYPE_STRING,       /* bulk string: str/len, binary-safe */
    REDIS_TYPE_ARRAY         /* elements[0..n_elements) */
};

struct redis_reply {
    enum redis_type type;
    long long integer;
    const char *str;         /* NUL-terminated, but may contain NULs: use
                              * len; never NULL ("" unless a string) */
    size_t len;
    const struct redis_reply *elements;
    size_t n_elements;
};

enum redis_status {
    REDIS_STATUS_OK = 0,     /* a reply arrived (it may be an error reply) */
    REDIS_STATUS_DOWN,       /* not connected when issued: never sent */
    REDIS_STATUS_TIMEOUT,    /* no reply within command_timeout */
    REDIS_STATUS_LOST,       /* the connection broke before the reply */
    REDIS_STATUS__COUNT
};

/* The command ran and Redis did not answer with an error reply. */
static inline bool redis_reply_ok(enum redis_status st,
                                  const struct redis_reply *rep)
{
    return st == REDIS_STATUS_OK && rep->type != REDIS_TYPE_ERROR;
}

/* reply != NULL exactly when status == REDIS_STATUS_OK. */
typedef void (*redis_cb)(void *arg, enum redis_status status,
                         const struct redis_reply *reply);
typedef void (*redis_message_cb)(void *arg, const char *channel,
                                 size_t channel_len, const char *message,
                                 size_t message_len);

struct redis_options {
    const char *name;             /* for log lines; copied; NULL = "redis" */
    bool subscriber;              /* pub/sub connection (no commands) */
    struct log *log;              /* borrowed; NULL = no logging */
    /* Optional; called on the loop thread on every up/down transition (and,
     * for a subscriber, when late subscriptions are confirmed).  It may
     * issue commands and may free the struct redis. */
    void (*on_state)(void *arg, bool up);
    void *state_arg;
    /* Optional; called on the loop thread when a connection attempt
     * fails, before the next one is scheduled.  It may free the struct. */
    void (*on_fail)(void *arg);
    /* With a config naming sentinels: the monitor that knows the master
     * (borrowed, shared by many connections, see redis_sentinel.h); NULL =
     * the connection runs one of its own. */
    struct redis_sentinel *sentinel;
    uint64_t backoff_min_ms;      /* 0 = 100 ms */
    uint64_t backoff_max_ms;      /* 0 = 5 s */
};

/* Starts connecting on the next loop iteration.  Never fails. */
struct redis *redis_new(struct loop *loop, const struct config_redis *cfg,
                        const struct redis_options *opt);
/* Closes the connection.  Callbacks of commands still outstanding are NOT
 * called (like upstream_free), nor on_state / message callbacks: owners
 * free their own per-command state afterwards.  Safe from inside any of
 * this connection's callbacks. */
void redis_free(struct redis *r);

/* hiredis format: %s (C string), %b (pointer, size_t: binary-safe), and
 * %d %u %x... with hh/h/l/ll only (no %zu, %jd: cast), %f, %%.  Spaces in
 * fmt separate arguments; what a directive expands to is never split, so
 * "qg:aff:%b" is one argument whatever the key holds.  Returns a handle
 * valid until the callback runs (for redis_cancel), never NULL.  Commands
 * that would change the connection behind the module's back ((P|S)SUBSCRIBE
 * and UNSUBSCRIBE, MONITOR, SELECT, AUTH, HELLO, RESET, QUIT), a command on
 * a subscriber or a bad format string are programming errors and abort. */
struct redis_cmd *redis_command(struct redis *r, redis_cb cb, void *arg,
                                const char *fmt, ...);
/* The same with explicit arguments; argvlen NULL = strlen of each. */
struct redis_cmd *redis_command_argv(struct redis *r, redis_cb cb, void *arg,
                                     int argc, const char *const *argv,
                                     const size_t *argvlen);
/* The callback of cmd (not yet called) will never be called.  The command
 * itself may still execute on the server. */
void redis_cancel(struct redis *r, struct redis_cmd *cmd);

/* Subscriber only: subscribe to channel now or when connected, and again
 * after every reconnection.  cb runs on the loop for every message. */
void redis_subscribe(struct redis *r, const char *channel,
                     redis_message_cb cb, void *arg);

/* Fixed table of commands counted separately; anything else is "other". */
#define REDIS_OPS(X)                                                         \
    X(OTHER, "other") X(AUTH, "auth") X(SELECT, "select") X(PING, "ping")   \
    X(SUBSCRIBE, "subscribe") X(PUBLISH, "publish") X(GET, "get")           \
    X(SET, "set") X(DEL, "del") X(EXISTS, "exists") X(EXPIRE, "expire")     \
    X(PEXPIRE, "pexpire") X(PTTL, "pttl") X(INCR, "incr")                   \
    X(INCRBY, "incrby") X(MGET, "mget") X(HGET, "hget") X(HSET, "hset")     \
    X(HDEL, "hdel") X(HGETALL, "hgetall") X(HINCRBY, "hincrby")             \
    X(SADD, "sadd") X(SREM, "srem") X(SCARD, "scard")                       \
    X(SMEMBERS, "smembers") X(EVAL, "eval") X(EVALSHA, "evalsha")           \
    X(SCRIPT, "script")

#define REDIS_OP_ENUM_(id, name) REDIS_OP_##id,
enum redis_op { REDIS_OPS(REDIS_OP_ENUM_) REDIS_OP__COUNT };
#undef REDIS_OP_ENUM_

enum redis_result {
    REDIS_RESULT_OK = 0,          /* any reply but an error reply */
    REDIS_RESULT_ERROR,           /* error reply (WRONGTYPE, NOAUTH...) */
    REDIS_RESULT_TIMEOUT,
    REDIS_RESULT_UNAVAILABLE,     /* DOWN or LOST */
    REDIS_RESULT__COUNT
};

struct redis_stats {
    bool up;
    uint64_t connects;            /* handshakes completed */
    uint64_t connect_failures;    /* attempts that never came up */
    uint64_t disconnects;         /* established connections lost/dropped */
    uint64_t ops[REDIS_OP__COUNT][REDIS_RESULT__COUNT];
};

/* Any thread. */
/* Parses bytes as one RESP2 reply with hiredis' reader and calls cb with
 * its view, as a command's callback gets it; false (cb not called) when
 * they are not one complete reply.  For tests and fuzzing. */
bool redis_reply_parse(const char *bytes, size_t len, redis_cb cb, void *arg);
bool redis_up(const struct redis *r);
void redis_stats(const struct redis *r, struct redis_stats *out);
/* Last connection or handshake problem ("" when none), without secrets. */
void redis_last_error(struct redis *r, char *out, size_t size);

/* Commands in flight (sent, no callback yet) and waiting to fail. */
size_t redis_pending(const struct redis *r);

const char *redis_op_name(enum redis_op op);
const char *redis_result_name(enum redis_result res);
const char *redis_status_name(enum redis_status st);

#endif
