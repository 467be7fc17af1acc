/* fuzz_config.c - the YAML configuration: any text given to the loader
 * (schema, custom types, rules, checks) must give a config or file:line
 * errors, never a crash.  Files it names resolve in a scratch directory
 * holding an HMAC key. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/util.h"
#include "config/config.h"
#include "fuzz/fuzz_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *yaml = xstrndup((const char *)data, size);
    struct config_errors errs = {0};
    struct config *cfg =
        config_load_string_dir("q.yaml", yaml, fuzz_dir(), &errs);
    if (cfg) {
        char *diff = config_restart_only_diff(cfg, fuzz_config());
        free(diff);
        config_unref(cfg);
    }
    config_errors_free(&errs);
    free(yaml);
    return 0;
}
