/* fuzz_common.h - what several harnesses share: a directory with the files
 * a minimal configuration names (HMAC key), and that configuration loaded
 * once.  Header-only; each harness is its own program. */
#ifndef QG_FUZZ_COMMON_H
#define QG_FUZZ_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "config/config.h"

#define FUZZ_MIN_YAML                                                        \
    "listeners:\n"                                                           \
    "  - address: 127.0.0.1:8080\n"                                          \
    "controllers:\n"                                                         \
    "  - {id: c1, url: \"https://ctrl1.example:1280\"}\n"                    \
    "  - {id: c2, url: \"https://ctrl2.example:1280\"}\n"                    \
    "  - {id: c3, url: \"https://10.0.0.3:1280\"}\n"                         \
    "public_url: \"https://ziti.example.com:443\"\n"                         \
    "secrets: {hmac_key_file: hmac.key}\n"                                 \
    "gate: {legacy_sessions: unconfirmed}\n"

static __attribute__((unused)) const char *fuzz_dir(void)
{
    static char dir[64];
    if (dir[0])
        return dir;
    snprintf(dir, sizeof(dir), "/tmp/qg-fuzz-XXXXXX");
    if (!mkdtemp(dir))
        abort();
    char path[128];
    snprintf(path, sizeof(path), "%s/hmac.key", dir);
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    fputs("0123456789abcdef0123456789abcdef-hmac-\n", f);
    fclose(f);
    chmod(path, 0600);
    return dir;
}

static __attribute__((unused)) struct config *fuzz_config(void)
{
    static struct config *cfg;
    if (cfg)
        return cfg;
    struct config_errors errs = {0};
    cfg = config_load_string_dir("q.yaml", FUZZ_MIN_YAML, fuzz_dir(), &errs);
    for (int i = 0; i < errs.n; i++)
        fprintf(stderr, "fuzz config: %s\n", errs.items[i].text);
    config_errors_free(&errs);
    if (!cfg)
        abort();
    return cfg;
}

#endif
