/* mgmt.c - see mgmt.h. */
#include "consistency/mgmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/buf.h"
#include "base/json.h"
#include "base/log.h"
#include "base/util.h"
#include "config/config.h"
#include "io/upstream.h"
#include "routing/cluster.h"

struct mgmt_waiter {
    mgmt_cb cb;
    void *arg;
    struct mgmt_waiter *next;
};

struct mgmt_node {
    char *token;                    /* owned; NULL until logged in */
    bool in_flight;
    struct upstream_req req;        /* owned response buffers */
    char *url;                      /* owned */
    char *body;                     /* owned: the login body (secret) */
    struct mgmt_waiter *waiters;    /* owned list */
    struct mgmt *m;                 /* borrowed */
    int node;
};

struct mgmt {
    struct mgmt_env env;            /* borrowed parts */
    struct mgmt_node nodes[CONFIG_MAX_CONTROLLERS];
    int n;
};

static const char *const mgmt_headers[] = {
    "Content-Type: application/json",
    "Accept: application/json",
};

bool mgmt_config_has_credential(const struct config *cfg)
{
    return cfg->gate.mgmt_username && cfg->gate.mgmt_password;
}

bool mgmt_configured(const struct mgmt *m)
{
    return mgmt_config_has_credential(m->env.config(m->env.arg));
}

static void mgmt_wipe(char *s)
{
    if (!s)
        return;
    volatile char *p = s;
    while (*p)
        *p++ = 0;
    free(s);
}

static void mgmt_notify(struct mgmt_node *mn, const char *token)
{
    struct mgmt_waiter *w = mn->waiters;
    mn->waiters = NULL;
    while (w) {
        struct mgmt_waiter *next = w->next;
        w->cb(w->arg, token);
        free(w);
        w = next;
    }
}

static void mgmt_login_done(struct upstream_req *r, void *arg)
{
    struct mgmt_node *mn = arg;
    struct mgmt *m = mn->m;
    mn->in_flight = false;
    mgmt_wipe(mn->body);
    mn->body = NULL;
    if (r->result == UPSTREAM_OK && r->status == 200) {
        struct json *j = json_parse(r->resp_body.data, r->resp_body.len);
        const char *t = json_path_string(j, "data.token");
        if (t) {
            mgmt_wipe(mn->token);
            mn->token = xstrdup(t);
        }
        json_free(j);
    }
    if (!mn->token)
        log_printf(m->env.log, LOG_LEVEL_WARN,
                   "replication gate: management login to %s failed "
                   "(status %d, %s)",
                   m->env.c->nodes[mn->node].id, r->status,
                   upstream_result_name(r->result));
    buf_reset(&r->resp_body); /* the token must not linger in buffers */
    mgmt_notify(mn, mn->token);
}

void mgmt_token(struct mgmt *m, int node, mgmt_cb cb, void *arg)
{
    struct mgmt_node *mn = &m->nodes[node];
    const struct config *cfg = m->env.config(m->env.arg);
    if (!mgmt_config_has_credential(cfg)) {
        cb(arg, NULL);
        return;
    }
    if (mn->token) {
        cb(arg, mn->token);
        return;
    }
    struct mgmt_waiter *w = xcalloc(1, sizeof(*w));
    w->cb = cb;
    w->arg = arg;
    w->next = mn->waiters;
    mn->waiters = w;
    if (mn->in_flight)
        return;
    struct buf b = {0};
    buf_puts(&b, "{\"username\":\"");
    buf_json_escape(&b, cfg->gate.mgmt_username,
                    strlen(cfg->gate.mgmt_username));
    buf_puts(&b, "\",\"password\":\"");
    buf_json_escape(&b, cfg->gate.mgmt_password,
                    strlen(cfg->gate.mgmt_password));
    buf_puts(&b, "\"}");
    mn->body = buf_steal(&b, NULL);
    const struct cluster_node *cn = &m->env.c->nodes[node];
    if (!mn->url)
        mn->url = xasprintf("%s/edge/management/v1/authenticate?method="
                            "password",
                            cn->base_url);
    mn->req.method = HTTP_POST;
    mn->req.url = mn->url;
    mn->req.connect_to = cn->connect_to;
    mn->req.headers = mgmt_headers;
    mn->req.n_headers = 2;
    mn->req.body = mn->body;
    mn->req.body_len = strlen(mn->body);
    mn->req.timeout_ms = 5000;
    mn->req.max_response = 256 * 1024;
    mn->req.done = mgmt_login_done;
    mn->req.arg = mn;
    mn->in_flight = true;
    upstream_start(m->env.up, &mn->req);
}

void mgmt_invalidate(struct mgmt *m, int node, const char *token)
{
    struct mgmt_node *mn = &m->nodes[node];
    if (mn->token && token && strcmp(mn->token, token) == 0) {
        mgmt_wipe(mn->token);
        mn->token = NULL;
    }
}

void mgmt_cancel(struct mgmt *m, void *arg)
{
    for (int i = 0; i < m->n; i++) {
        struct mgmt_waiter **pp = &m->nodes[i].waiters;
        while (*pp) {
            if ((*pp)->arg == arg) {
                struct mgmt_waiter *dead = *pp;
                *pp = dead->next;
                free(dead);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
}

struct mgmt *mgmt_new(const struct mgmt_env *env)
{
    struct mgmt *m = xcalloc(1, sizeof(*m));
    m->env = *env;
    m->n = env->c->n;
    for (int i = 0; i < m->n; i++) {
        m->nodes[i].m = m;
        m->nodes[i].node = i;
    }
    return m;
}

void mgmt_free(struct mgmt *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n; i++) {
        struct mgmt_node *mn = &m->nodes[i];
        if (mn->req.priv)
            upstream_cancel(m->env.up, &mn->req);
        upstream_req_free(&mn->req);
        while (mn->waiters) {
            struct mgmt_waiter *w = mn->waiters;
            mn->waiters = w->next;
            free(w);
        }
        mgmt_wipe(mn->token);
        mgmt_wipe(mn->body);
        free(mn->url);
    }
    free(m);
}
