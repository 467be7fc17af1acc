/* relay_main.h - `quorumgate relay -c FILE`: follow the controllers'
 * entity-change event files and write MFA acknowledgements to Redis. */
#ifndef QG_RELAY_MAIN_H
#define QG_RELAY_MAIN_H

int relay_main(const char *config_path);

#endif
