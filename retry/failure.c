/* failure.c - see failure.h. */
#include "retry/failure.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "base/json.h"
#include "io/upstream.h"
#include "base/util.h"

/* Phrases of errors the raft dispatch returns after the command may have
 * been appended (raft.go, mfa_manager.go, hashicorp/raft errors). */
static const char *const failure_raft_phrases[] = {
    "could not update mfa status",
    "timed out",
    "timeout",
    "leadership lost",
    "leadership transfer",
    "not the leader",
    "readonly state",
    "read-only",
    "raft",
    "forward",
};

static bool failure_raftish(const char *s)
{
    if (!s)
        return false;
    for (size_t i = 0; i < ARRAY_LEN(failure_raft_phrases); i++)
        if (strcasestr(s, failure_raft_phrases[i]))
            return true;
    return false;
}

static void failure_set(struct failure *f, enum failure_kind k,
                        enum retry_reason r)
{
    f->kind = k;
    f->reason = r;
}

void failure_classify_parts(int result, bool sent, int status,
                            const char *body, size_t body_len,
                            enum http_method m, bool mfa_write,
                            struct failure *out)
{
    /* An MFA delete is idempotent in HTTP terms, but a resent one answers
     * 404 once the first has committed: every MFA write is reconciled. */
    bool idem = http_method_idempotent(m) && !mfa_write;
    memset(out, 0, sizeof(*out));
    switch ((enum upstream_result)result) {
    case UPSTREAM_OK:
        break;
    case UPSTREAM_CONNECT_ERROR:
    case UPSTREAM_TLS_ERROR:
    case UPSTREAM_CONNECT_TIMEOUT:
        failure_set(out, FAILURE_NEVER_SENT, RETRY_NEVER_SENT);
        return;
    case UPSTREAM_TOO_LARGE:
        failure_set(out, FAILURE_FATAL, RETRY_SENT_FAILED);
        return;
    default: /* timeout, reset, other: the request may have arrived */
        if (!sent)
            failure_set(out, FAILURE_NEVER_SENT, RETRY_NEVER_SENT);
        else if (idem)
            failure_set(out, FAILURE_SENT, RETRY_SENT_FAILED);
        else
            failure_set(out, FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
        return;
    }

    if (status < 429 || (status > 429 && status < 500)) {
        failure_set(out, FAILURE_NONE, RETRY_NEVER_SENT);
        return;
    }
    struct json *j = json_parse(body, body_len);
    const char *code = json_path_string(j, "error.code");
    const char *cause = json_path_string(j, "error.cause.message");
    const char *causecode = json_path_string(j, "error.cause.code");
    const char *msg = json_path_string(j, "error.message");
    if (code)
        snprintf(out->code, sizeof(out->code), "%s", code);

    if (status == 503 && code && strcmp(code, "CLUSTER_NO_LEADER") == 0) {
        failure_set(out, FAILURE_NO_LEADER, RETRY_NO_LEADER);
    } else if (status == 429 && code && strcmp(code, "RATE_LIMITED") == 0) {
        failure_set(out, FAILURE_TOO_MANY, RETRY_TOO_MANY);
    } else if (status == 429 && code &&
               strcmp(code, "SERVER_TOO_MANY_REQUESTS") == 0) {
        if (idem)
            failure_set(out, FAILURE_TOO_MANY, RETRY_TOO_MANY);
        else
            failure_set(out, FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
    } else if (status == 500 && code && strcmp(code, "UNHANDLED") == 0 &&
               (failure_raftish(cause) || failure_raftish(causecode) ||
                failure_raftish(msg) || mfa_write)) {
        if (idem)
            failure_set(out, FAILURE_SENT, RETRY_SENT_FAILED);
        else
            failure_set(out, FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
    } else if (status == 502 || status == 504 ||
               (status == 503 && code && strcmp(code, "TIMEOUT") == 0)) {
        if (idem)
            failure_set(out, FAILURE_SENT, RETRY_SENT_FAILED);
        else
            failure_set(out, FAILURE_AMBIGUOUS, RETRY_AMBIGUOUS);
    } else {
        failure_set(out, FAILURE_NONE, RETRY_NEVER_SENT);
    }
    json_free(j);
}

void failure_classify(const struct upstream_req *r, enum http_method m,
                      bool mfa_write, struct failure *out)
{
    failure_classify_parts((int)r->result, r->sent, r->status,
                           r->resp_body.data, r->resp_body.len, m, mfa_write,
                           out);
}

const char *failure_kind_name(enum failure_kind k)
{
    static const char *const names[] = {
        "none", "never_sent", "sent_failed", "no_leader",
        "too_many",  "ambiguous",  "fatal",
    };
    return (unsigned)k < ARRAY_LEN(names) ? names[k] : "none";
}
