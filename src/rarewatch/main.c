/* SPDX-License-Identifier: Apache-2.0 */
/* rarewatch: the operator CLI. One file per subcommand (cmd_*.c). */
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "rarewatch/log.h"
#include "rw-build-config.h"

struct command {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *summary;
};

static const struct command commands[] = {
    { "check-config", cmd_check_config, "validate the configuration (and show it)" },
    { "put", cmd_put, "send NDJSON or CSV records into a Kinesis stream" },
    { "replay", cmd_replay, "run records from a file through the detectors, offline" },
    { "deadletter", cmd_deadletter, "list dead-letter entries or replay them into a stream" },
};

static void usage(FILE *f)
{
    fprintf(f, "Usage: rarewatch [--version] [--help] COMMAND [ARGS...]\n\nCommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'rarewatch COMMAND --help' for the options of a command.\n");
}

int main(int argc, char **argv)
{
    log_setup(LOG_TARGET_STDERR);
    if (argc < 2) {
        usage(stderr);
        return 64;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("rarewatch %s\n", RW_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "rarewatch: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 64;
}
