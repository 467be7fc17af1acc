/* config_check.h - the checks that involve more than one key, and the
 * values derived from others (workers: 0, public_url), run once every
 * section is parsed.  Internal to the config module. */
#ifndef QG_CONFIG_CHECK_H
#define QG_CONFIG_CHECK_H

#include "config/config.h"
#include "config/config_parse.h"

void config_check(struct config_parse *p, struct config *cfg);

#endif
