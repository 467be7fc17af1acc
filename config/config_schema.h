/* config_schema.h - the tables describing every key of the configuration
 * file (examples/quorumgate.yaml is the prose version of them), and the
 * few built-in tables the file may override.  Internal to the config
 * module. */
#ifndef QG_CONFIG_SCHEMA_H
#define QG_CONFIG_SCHEMA_H

#include "config/config.h"
#include "config/config_parse.h"

/* The top level; fills a struct config. */
extern const struct config_section config_schema_top;
/* Items of the lists, for their custom parsers (config_custom.c,
 * config_rules.c). */
extern const struct config_section config_schema_listener;     /* listeners[] */
extern const struct config_section config_schema_controller;   /* controllers[] */
extern const struct config_section config_schema_route;        /* routing.classes[] */
extern const struct config_section config_schema_policy;       /* retry.policies.* */
extern const struct config_section config_schema_relay_source; /* relay.sources[] */
/* Names as written in the file. */
extern const struct config_enum_name config_schema_route_classes[];
extern const struct config_enum_name config_schema_retry_reasons[];

/* The documented policy of each route class when retry.policies does not
 * name it (and the starting point for the keys it leaves out). */
extern const struct config_retry_policy config_schema_retry_defaults[ROUTE__COUNT];

/* The built-in OpenZiti classification table (routing.classes absent). */
void config_schema_builtin_routes(struct config_routing *r);

#endif
