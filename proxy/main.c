/* main.c - command line: run, check a configuration, or run the relay. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consistency/relay_main.h"
#include "proxy/app.h"
#include "config/config.h"

static void main_usage(FILE *f)
{
    fprintf(f,
            "usage: quorumgate -c FILE          run in the foreground\n"
            "       quorumgate -t -c FILE       check a configuration and exit\n"
            "       quorumgate relay -c FILE    follow controllers' event files\n"
            "                                   and write acknowledgements to Redis\n"
            "       quorumgate --version\n"
            "       quorumgate --help\n"
            "\n"
            "Signals: SIGTERM/SIGINT drain and exit, SIGHUP reloads the\n"
            "configuration, SIGUSR1 reopens the log files.\n");
}

static int main_check(const char *path)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    if (!cfg) {
        for (int i = 0; i < errs.n; i++) {
            if (errs.items[i].line > 0)
                fprintf(stderr, "%s:%d: %s\n", errs.items[i].file,
                        errs.items[i].line, errs.items[i].message);
            else
                fprintf(stderr, "%s: %s\n", errs.items[i].file,
                        errs.items[i].message);
        }
        fprintf(stderr, "%s: %d problem(s) found\n", path, errs.n);
        config_errors_free(&errs);
        return 1;
    }
    printf("%s: configuration is valid\n", path);
    config_unref(cfg);
    return 0;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int test = 0, relay = 0, rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0) {
            test = 1;
        } else if (strcmp(argv[i], "relay") == 0 && i == 1) {
            relay = 1;
        } else if (strcmp(argv[i], "--version") == 0 ||
                   strcmp(argv[i], "-v") == 0) {
            printf("quorumgate %s\n", QG_VERSION);
            return 0;
        } else if (strcmp(argv[i], "--help") == 0 ||
                   strcmp(argv[i], "-h") == 0) {
            main_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "quorumgate: unknown argument '%s'\n", argv[i]);
            main_usage(stderr);
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "quorumgate: -c FILE is required\n");
        main_usage(stderr);
        return 2;
    }
    if (test)
        return main_check(path);
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "quorumgate: cannot initialise libcurl\n");
        return 1;
    }
    if (relay) {
        rc = relay_main(path);
    } else {
        struct app app;
        rc = app_init(&app, path) == 0 ? app_run(&app) : 1;
        app_free(&app);
    }
    curl_global_cleanup();
    return rc;
}
