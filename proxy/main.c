/* main.c - command line: run, check a configuration, or run the relay. */
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "consistency/relay_main.h"
#include "proxy/app.h"
#include "config/config.h"
#include "proxy/check.h"

/* --help: the commands, signals and exit statuses of proxy/cli.def, which
 * the man page quorumgate(8) is generated from as well. */
static void main_usage(FILE *f)
{
    static const struct {
        const char *args, *brief;
    } cmds[] = {
#define CLI_COMMAND(args, brief, details) {args, brief},
#include "proxy/cli.def"
    }, sigs[] = {
#define CLI_SIGNAL(names, brief, details) {names, brief},
#include "proxy/cli.def"
    };
    static const struct {
        int status;
        const char *brief;
    } exits[] = {
#define CLI_EXIT(status, brief) {status, brief},
#include "proxy/cli.def"
    };
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        fprintf(f, "%s quorumgate %-14s %s\n", i ? "      " : "usage:",
                cmds[i].args, cmds[i].brief);
    fputs("\nSignals:\n", f);
    for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++)
        fprintf(f, "  %-16s %s\n", sigs[i].args, sigs[i].brief);
    fputs("\nExit status:\n", f);
    for (size_t i = 0; i < sizeof(exits) / sizeof(exits[0]); i++)
        fprintf(f, "  %d  %s\n", exits[i].status, exits[i].brief);
    fputs("\nSee quorumgate(8) for the configuration keys.\n", f);
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
    /* what only the controllers can say: is each one watchable */
    int problems = check_health_binding(cfg, stderr);
    /* and, behind sentinels, does each know the master */
    problems += check_sentinels_once(cfg, stderr);
    config_unref(cfg);
    if (problems) {
        fprintf(stderr, "%s: %d problem(s) found\n", path, problems);
        return 1;
    }
    printf("%s: configuration is valid\n", path);
    return 0;
}

/* `quorumgate check`: the file first, then everything it names. */
static int main_preflight(const char *path)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(path, &errs);
    if (!cfg) {
        config_errors_free(&errs);
        return main_check(path); /* prints the problems */
    }
    int rc = check_run(cfg, stdout);
    config_unref(cfg);
    return rc;
}

int main(int argc, char **argv)
{
    const char *path = NULL;
    int test = 0, relay = 0, check = 0, rc;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
            path = argv[++i];
        } else if (strcmp(argv[i], "-t") == 0) {
            test = 1;
        } else if (strcmp(argv[i], "relay") == 0 && i == 1) {
            relay = 1;
        } else if (strcmp(argv[i], "check") == 0 && i == 1) {
            check = 1;
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
    signal(SIGPIPE, SIG_IGN);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0) {
        fprintf(stderr, "quorumgate: cannot initialise libcurl\n");
        return 1;
    }
    if (test) {
        rc = main_check(path);
    } else if (check) {
        rc = main_preflight(path);
    } else if (relay) {
        rc = relay_main(path);
    } else {
        struct app app;
        rc = app_init(&app, path) == 0 ? app_run(&app) : 1;
        app_free(&app);
    }
    curl_global_cleanup();
    return rc;
}
