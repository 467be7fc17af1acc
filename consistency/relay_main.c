/* relay_main.c - see relay_main.h. */
#include "consistency/relay_main.h"

#include <stdio.h>

int relay_main(const char *config_path)
{
    fprintf(stderr, "quorumgate relay: not available yet (%s)\n",
            config_path);
    return 1;
}
