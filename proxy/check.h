/* check.h - what quorumgate can find out about its controllers before it
 * runs: `-t` asks each controller's health path once (a 404 without a
 * management credential is an error that names both fixes). */
#ifndef QG_CHECK_H
#define QG_CHECK_H

#include <stdio.h>

#include "config/config.h"

/* For -t: every controller's health path, once.  Problems go to err (one
 * line each); an unreachable controller is a warning only (it may be
 * down now).  Returns the number of problems. */
int check_health_binding(const struct config *cfg, FILE *err);

#endif
