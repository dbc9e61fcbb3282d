/* SPDX-License-Identifier: Apache-2.0 */
/* rarewatchd: the daemon. Everything but argument parsing lives in the
 * core library (daemon.c drives the lifecycle, app.c the pipeline). */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>

#include "rarewatch/app.h"
#include "rarewatch/daemon.h"
#include "rw-build-config.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: rarewatchd [-c PATH] [--version] [--help]\n"
            "\n"
            "Watch an Amazon Kinesis data stream and catch rare events as they happen.\n"
            "\n"
            "  -c, --config PATH  configuration file (default %s);\n"
            "                     drop-ins are read from conf.d/*.conf beside it\n"
            "      --version      print the version and exit\n"
            "  -h, --help         print this help and exit\n"
            "\n"
            "Signals: SIGHUP reloads the configuration, SIGTERM/SIGINT stop after draining.\n",
            RW_DEFAULT_CONFIG);
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "version", no_argument, NULL, 'V' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    const char *config = RW_DEFAULT_CONFIG;
    int c;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': config = optarg; break;
        case 'V': printf("rarewatchd %s\n", RW_VERSION); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64; /* EX_USAGE */
        }
    }
    if (optind < argc) {
        fprintf(stderr, "rarewatchd: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 64;
    }
    struct app *app = app_new();
    if (!app)
        return 1;
    int r = daemon_main(config, &app_daemon_ops, app);
    app_free(app);
    return r;
}
