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
            "Usage: rarewatch check-config [-c PATH] [--dump | --has-stream]\n"
            "       rarewatch check-config --reference[=conf|markdown|man]\n"
            "\n"
            "Parse and validate the configuration exactly as rarewatchd does (main file,\n"
            "then conf.d/*.conf beside it). Problems are printed as FILE:LINE: message.\n"
            "Exit status: 0 valid, 78 invalid.\n"
            "\n"
            "  -c, --config PATH     configuration file (default %s)\n"
            "      --dump            print the effective configuration (secrets masked)\n"
            "      --has-stream      exit 1 when the configuration is valid and names no\n"
            "                        [kinesis] stream, 0 otherwise (also when it is invalid:\n"
            "                        rarewatchd then says why); the unit's ExecCondition=\n"
            "      --reference[=FMT] print every key with its default and exit; FMT: conf\n"
            "                        (the shipped file, default), markdown, man\n",
            RW_DEFAULT_CONFIG);
}

int cmd_check_config(int argc, char **argv)
{
    static const struct option opts[] = {
        { "config", required_argument, NULL, 'c' },
        { "dump", no_argument, NULL, 'd' },
        { "reference", optional_argument, NULL, 'r' },
        { "has-stream", no_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        {},
    };
    const char *path = RW_DEFAULT_CONFIG;
    bool dump = false, has_stream = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (c) {
        case 'c': path = optarg; break;
        case 'd': dump = true; break;
        case 's': has_stream = true; break;
        case 'r': {
            enum conf_ref_format fmt;
            if (!optarg || streq(optarg, "conf"))
                fmt = CONF_REF_CONF;
            else if (streq(optarg, "md") || streq(optarg, "markdown"))
                fmt = CONF_REF_MARKDOWN;
            else if (streq(optarg, "man"))
                fmt = CONF_REF_MAN;
            else {
                fprintf(stderr, "rarewatch check-config: unknown reference format '%s'\n", optarg);
                return 64;
            }
            conf_print_reference(&rw_schema, stdout, fmt);
            return 0;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 64;
        }
    }
    if (dump && has_stream) {
        usage(stderr);
        return 64;
    }
    struct conf_diag d = { .echo = has_stream ? NULL : stderr };
    struct rw_config *cfg = NULL;
    int r = rw_config_load(path, &d, &cfg);
    size_t n = d.n;
    conf_diag_clear(&d);
    if (has_stream) {
        /* ExecCondition= of the unit: a package installed before any stream
         * is configured is enabled but not started. An invalid configuration
         * is not this check's business: rarewatchd starts, reports it with
         * FILE:LINE and exits 78, so the operator sees it in the journal. */
        bool unset = r >= 0 && !conf_str(cfg, RWK_kinesis_stream);
        conf_unref(cfg);
        if (unset) {
            printf("%s: no [kinesis] stream configured\n", path);
            return 1;
        }
        return 0;
    }
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
