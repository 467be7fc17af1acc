/* config_rules.h - parsers for the request-handling keys that a plain
 * table field cannot describe: routing.classes (and their methods),
 * retry.policies (and their "on" lists), gate.mode, gate.on_timeout and
 * relay.sources.  Each is a config_parse_fn; base is the struct the
 * enclosing section fills.  Internal to the config module. */
#ifndef QG_CONFIG_RULES_H
#define QG_CONFIG_RULES_H

#include "config/config_parse.h"

/* routing.classes: base is struct config_routing; absent = the built-in
 * table.  [].methods: base is struct config_route. */
config_parse_fn config_rules_routes;
config_release_fn config_rules_routes_release;
config_parse_fn config_rules_methods;

/* retry.policies: base is struct config_retry; every class starts from its
 * documented default.  .on: base is struct config_retry_policy. */
config_parse_fn config_rules_policies;
config_parse_fn config_rules_retry_on;

/* gate.mode, gate.on_timeout: base is struct config_gate. */
config_parse_fn config_rules_gate_mode;
config_parse_fn config_rules_on_timeout;

/* relay.sources: base is struct config_relay. */
config_parse_fn config_rules_relay_sources;
config_release_fn config_rules_relay_sources_release;

#endif
