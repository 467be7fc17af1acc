/* reconcile.c - see reconcile.h. */
#include "retry/reconcile.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/util.h"

bool reconcile_needs_read(enum reconcile_call c, int status)
{
    switch (c) {
    case RECONCILE_CREATE:
        return status == 409;
    case RECONCILE_VERIFY:
    case RECONCILE_DELETE:
        return status == 404;
    }
    return false;
}

/* The answer that sent us reading was a resend meeting what its committed
 * first attempt would cause, decided in the raft apply -- 409 MFA_EXISTS
 * for a create (MfaManager.ApplyCreate), 404 for a delete whose record the
 * apply no longer found -- yet the state read says otherwise: that state is
 * behind (a new leader still applying).  Read again; resending cannot help. */
static bool reconcile_state_behind(enum reconcile_call c, int answered,
                                   enum reconcile_state st)
{
    if (c == RECONCILE_CREATE)
        return answered == 409 && st == RECONCILE_ABSENT;
    if (c == RECONCILE_DELETE)
        return answered == 404 && st != RECONCILE_ABSENT;
    return false;
}

enum reconcile_verdict reconcile_judge(enum reconcile_call c, int answered,
                                       enum reconcile_state st,
                                       uint64_t created_ms,
                                       uint64_t since_ms)
{
    if (reconcile_state_behind(c, answered, st))
        return RECONCILE_BEHIND;
    bool applied = false;
    switch (c) {
    case RECONCILE_CREATE:
        /* it existed before this request: the create's own answer */
        if (st != RECONCILE_ABSENT && created_ms && created_ms < since_ms)
            return RECONCILE_PREEXISTING;
        applied = st != RECONCILE_ABSENT;
        break;
    case RECONCILE_VERIFY:
        applied = st == RECONCILE_VERIFIED;
        break;
    case RECONCILE_DELETE:
        applied = st == RECONCILE_ABSENT;
        break;
    }
    return applied ? RECONCILE_APPLIED : RECONCILE_NOT_APPLIED;
}

int reconcile_applied_body(enum reconcile_call c, const char *id,
                           struct buf *out)
{
    buf_reset(out);
    if (c == RECONCILE_CREATE) {
        buf_puts(out, "{\"data\":{\"id\":\"");
        buf_json_escape(out, id, strlen(id));
        buf_puts(out, "\",\"_links\":{\"self\":{\"href\":"
                      "\"./current-identity/mfa\"}}},\"meta\":{}}");
        return 201;
    }
    buf_puts(out, "{\"data\":{},\"meta\":{}}");
    return 200;
}

uint64_t reconcile_parse_time(const char *s)
{
    struct tm tm = {0};
    int ms = 0;
    if (!s)
        return 0;
    const char *p = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!p)
        return 0;
    if (*p == '.') {
        int digits = 0;
        p++;
        while (*p >= '0' && *p <= '9') {
            if (digits < 3)
                ms = ms * 10 + (*p - '0');
            digits++;
            p++;
        }
        while (digits < 3) {
            ms *= 10;
            digits++;
        }
    }
    time_t t = timegm(&tm);
    long off = 0;
    if (*p == '+' || *p == '-') {
        int hh = 0, mm = 0;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) == 2)
            off = (hh * 3600 + mm * 60) * (*p == '+' ? 1 : -1);
    }
    return (uint64_t)(t - off) * 1000u + (uint64_t)ms;
}

enum reconcile_state reconcile_parse(int status, const char *body,
                                     size_t len, char *id, size_t id_cap,
                                     uint64_t *created_ms)
{
    if (status == 404)
        return RECONCILE_ABSENT;
    if (status != 200)
        return RECONCILE_UNREADABLE;
    struct json *j = json_parse(body, len);
    struct json *data = json_get(j, "data");
    enum reconcile_state st = RECONCILE_UNREADABLE;
    bool verified;
    if (json_is_object(data) && json_bool(json_get(data, "isVerified"),
                                          &verified)) {
        st = verified ? RECONCILE_VERIFIED : RECONCILE_UNVERIFIED;
        const char *i = json_string(json_get(data, "id"));
        if (id && id_cap) /* an id too long to hold is not read at all */
            util_copy_whole(id, id_cap, i ? i : "", i ? strlen(i) : 0);
        if (created_ms)
            *created_ms = reconcile_parse_time(
                json_string(json_get(data, "createdAt")));
    }
    json_free(j);
    return st;
}

/* "/edge/client/v1/current-identity/mfa/verify?x" -> ".../mfa" */
char *reconcile_state_path(const char *target)
{
    size_t n = strcspn(target, "?");
    const char *mfa = NULL;
    for (const char *p = target; (p = strstr(p, "/current-identity/mfa"));
         p++) {
        if ((size_t)(p - target) < n)
            mfa = p;
        else
            break;
    }
    if (!mfa)
        return xstrndup(target, n);
    return xstrndup(target, (size_t)(mfa - target) +
                                strlen("/current-identity/mfa"));
}
