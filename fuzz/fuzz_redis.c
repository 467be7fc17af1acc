/* fuzz_redis.c - replies from Redis: any bytes through hiredis' reader
 * into quorumgate's reply view (redis_reply_parse), then through each
 * reader of the acknowledgement store (acks sets, gate records, fences).
 * The first byte picks the reader. */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "consistency/ackstore.h"
#include "fuzz/fuzz_common.h"
#include "io/redis.h"
#include "routing/cluster.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void on_acks(void *arg, bool ok, uint64_t mask)
{
    (void)arg; (void)ok; (void)mask;
}

static void on_record(void *arg, bool ok, const struct ackstore_record *rec)
{
    (void)arg; (void)ok;
    (void)strlen(rec->status);
    (void)strlen(rec->replication);
}

static void on_fence(void *arg, bool ok, const char *idhex, uint64_t mask,
                     uint64_t expiry_ms)
{
    (void)arg; (void)ok; (void)mask; (void)expiry_ms;
    if (idhex)
        (void)strlen(idhex);
}

static void on_orphans(void *arg, bool ok, const struct ackstore_orphan *o,
                       size_t n)
{
    (void)arg; (void)ok;
    for (size_t i = 0; i < n; i++)
        (void)strlen(o[i].cid);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct cluster *c;
    if (!c)
        c = cluster_new(fuzz_config());
    if (size < 1)
        return 0;
    struct ackstore_ctx ctx = {.c = c, .acks = on_acks, .record = on_record,
                               .fence = on_fence, .orphans = on_orphans};
    (void)redis_reply_parse((const char *)data + 1, size - 1,
                            ackstore_reply_reader(
                                (enum ackstore_reply)(data[0] % 4)),
                            &ctx);
    return 0;
}
