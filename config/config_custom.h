/* config_custom.h - parsers for the keys of the listening / connecting side
 * that a plain table field cannot describe: the listeners and controllers
 * lists, URLs, admin.allow and the HMAC key (the request-handling side is
 * in config_rules.h).  Each is a config_parse_fn (with
 * release/same companions where it owns memory or is restart-only); base
 * is the struct the enclosing section fills.  Internal to the config
 * module. */
#ifndef QG_CONFIG_CUSTOM_H
#define QG_CONFIG_CUSTOM_H

#include "config/config_parse.h"

/* top level: base is struct config */
config_parse_fn config_custom_public_url;
config_release_fn config_custom_public_url_release;
config_parse_fn config_custom_listeners;
config_release_fn config_custom_listeners_release;
config_same_fn config_custom_listeners_same;
config_parse_fn config_custom_controllers;
config_release_fn config_custom_controllers_release;
config_same_fn config_custom_controllers_same;
config_parse_fn config_custom_hmac_key;          /* secrets.hmac_key_file */
config_release_fn config_custom_hmac_release;
config_same_fn config_custom_hmac_same;          /* restart-only */

/* passthrough.controllers: base is struct config_passthrough */
config_parse_fn config_custom_pt_controllers;
config_same_fn config_custom_pt_controllers_same;
config_parse_fn config_custom_pt_sni_names;      /* passthrough.sni.names */
config_same_fn config_custom_pt_sni_names_same;

/* admin.allow: base is struct config_admin */
config_parse_fn config_custom_allow;
config_same_fn config_custom_allow_same;
/* headers.trust_forwarded: base is struct config_headers */
config_parse_fn config_custom_trust_forwarded;
config_same_fn config_custom_trust_forwarded_same;

/* redis.sentinels: base is struct config_redis */
config_parse_fn config_custom_sentinels;
config_release_fn config_custom_sentinels_release;
config_same_fn config_custom_sentinels_same;
/* controllers[].url: base is struct config_controller */
config_parse_fn config_custom_url;
config_release_fn config_custom_url_release;
config_same_fn config_custom_url_same;

#endif
