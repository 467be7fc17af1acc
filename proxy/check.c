/* check.c - see check.h. */
#include "proxy/check.h"

#include <stdlib.h>
#include <string.h>

#include "consistency/mgmt.h"
#include "proxy/check_sentinel.h"
#include "proxy/oneshot.h"
#include "io/upstream.h"
#include "base/util.h"
#include "routing/cluster.h"
#include "routing/health.h"

static const char *const check_headers[] = {"Accept: application/json"};

int check_health_binding(const struct config *cfg, FILE *err)
{
    int n = cfg->n_controllers, problems = 0;
    struct upstream_req *reqs = xcalloc((size_t)n, sizeof(*reqs));
    struct upstream_req **ptrs = xcalloc((size_t)n, sizeof(*ptrs));
    char **base = xcalloc((size_t)n, sizeof(*base));
    char **conn = xcalloc((size_t)n, sizeof(*conn));
    char **url = xcalloc((size_t)n, sizeof(*url));
    for (int i = 0; i < n; i++) {
        cluster_controller_urls(cfg, i, &base[i], &conn[i]);
        url[i] = xasprintf("%s%s", base[i], cfg->health.path);
        reqs[i].method = HTTP_GET;
        reqs[i].url = url[i];
        reqs[i].connect_to = conn[i];
        reqs[i].headers = check_headers;
        reqs[i].n_headers = 1;
        reqs[i].max_response = 64 * 1024;
        ptrs[i] = &reqs[i];
    }
    oneshot_run(cfg, ptrs, n);
    for (int i = 0; i < n; i++) {
        const struct upstream_req *r = &reqs[i];
        const char *id = cfg->controllers[i].id;
        if (r->result != UPSTREAM_OK) {
            fprintf(err, "%s: warning: controller %s (%s) not reached (%s: "
                    "%s): its health-checks API was not checked\n",
                    cfg->path, id, base[i], upstream_result_name(r->result),
                    r->error);
        } else if (r->status == 404 && !mgmt_config_has_credential(cfg)) {
            char *why = health_unwatchable_message(id, base[i]);
            fprintf(err, "%s: %s\n", cfg->path, why);
            free(why);
            problems++;
        }
        upstream_req_free(&reqs[i]);
        free(base[i]);
        free(conn[i]);
        free(url[i]);
    }
    free(reqs);
    free(ptrs);
    free(base);
    free(conn);
    free(url);
    return problems;
}

int check_sentinels_once(const struct config *cfg, FILE *err)
{
    struct check_sentinel_report sr;
    const char *name = cfg->redis.master_name;
    int problems = 0;
    if (cfg->redis.n_sentinels == 0)
        return 0;
    check_sentinel_ask(cfg, &sr);
    for (int i = 0; i < sr.n; i++) {
        const char *at = cfg->redis.sentinels[i].text;
        if (sr.state[i] == CHECK_SENTINEL_UNKNOWN) {
            fprintf(err, "%s: redis.master_name: sentinel %s knows no "
                    "master named '%s'\n", cfg->path, at, name);
            problems++;
        } else if (sr.state[i] == CHECK_SENTINEL_ERROR) {
            fprintf(err, "%s: redis.sentinels: sentinel %s: %s\n",
                    cfg->path, at, sr.detail[i]);
            problems++;
        } else if (sr.state[i] == CHECK_SENTINEL_UNREACHABLE) {
            fprintf(err, "%s: warning: sentinel %s not reached (%s)\n",
                    cfg->path, at, sr.detail[i]);
        }
    }
    if (!sr.named)
        return problems;
    if (!sr.master_reached)
        fprintf(err, "%s: warning: Redis master %s (named by the sentinels) "
                "not reached (%s)\n", cfg->path, sr.master, sr.master_error);
    else if (strcmp(sr.role, "master") != 0)
        fprintf(err, "%s: warning: Redis at %s (named by the sentinels) "
                "says ROLE %s\n", cfg->path, sr.master, sr.role);
    else if (strcmp(sr.policy, "noeviction") != 0)
        fprintf(err, "%s: warning: Redis master %s: maxmemory-policy %s "
                "(must be noeviction: quorumgate's keys must not be "
                "evicted)\n", cfg->path, sr.master,
                sr.policy[0] ? sr.policy : "unknown");
    return problems;
}
