/* SPDX-License-Identifier: Apache-2.0 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "rarewatch/conf_schema.h"
#include "rarewatch/strutil.h"
#include "rw-build-config.h"

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: rarewatch check-config [-c PATH] [--dump] [--reference[=markdown]]\n"
            "\n"
            "Parse and validate the configuration exactly as rarewatchd does (main file,\n"
            "then conf.d/*.conf beside it). Problems are printed as FILE:LINE: message.\n"
            "Exit status: 0 valid, 78 invalid.\n"
            "\n"
            "  -c, --config PATH     configuration file (default %s)\n"
            "      --dump            print the effective configuration (secrets masked)\n"
            "      --reference[=md]  print every key with its default and exit\n",
            RW_DEFAULT_CONFIG);
}

int cmd_check_config(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "dump", no_argument, NULL, 'd' },
        { "reference", optional_argument, NULL, 'r' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    const char *path = RW_DEFAULT_CONFIG;
    bool dump = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'd': dump = true; break;
        case 'r':
            conf_print_reference(&rw_schema, stdout, optarg && (strcmp(optarg, "md") == 0 ||
                                                                strcmp(optarg, "markdown") == 0));
            return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    struct conf_diag d = { .echo = stderr };
    struct rw_config *cfg = NULL;
    int r = rw_config_load(path, &d, &cfg);
    size_t n = d.n;
    conf_diag_clear(&d);
    if (r < 0) {
        fprintf(stderr, "%s: %zu problem%s found\n", path, n, n == 1 ? "" : "s");
        return 78;
    }
    if (dump)
        conf_print_effective(cfg, stdout);
    else
        printf("%s: OK (%zu file%s)\n", path, strv_length(cfg->files), strv_length(cfg->files) == 1 ? "" : "s");
    conf_unref(cfg);
    return 0;
}
