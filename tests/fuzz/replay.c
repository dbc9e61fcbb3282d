/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A main() for a fuzz target built without libFuzzer: it feeds every file
 * named on the command line (directories are walked one level) to
 * LLVMFuzzerTestOneInput once. That turns each target's corpus into a
 * regression test that runs with any compiler in a normal `meson test`.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rarewatch/buf.h"
#include "rarewatch/fsutil.h"
#include "rarewatch/macro.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int run_one(const char *path, struct buf *b)
{
    int r = read_whole_file(path, b);
    if (r < 0) {
        fprintf(stderr, "%s: %s\n", path, strerror(-r));
        return r;
    }
    /* Exact-size heap copy: b->data has slack (and a NUL) after len, which
     * would hide an over-read from ASan. */
    _cleanup_free_ uint8_t *exact = malloc(b->len ? b->len : 1);
    if (!exact)
        return -ENOMEM;
    memcpy(exact, b->data ? b->data : "", b->len);
    (void)LLVMFuzzerTestOneInput(exact, b->len);
    printf("ok %s (%zu bytes)\n", path, b->len);
    return 0;
}

int main(int argc, char **argv)
{
    _cleanup_buf_ struct buf b = BUF_INIT;
    unsigned runs = 0;
    int failed = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (!S_ISDIR(st.st_mode)) {
            failed |= run_one(argv[i], &b) < 0;
            runs++;
            continue;
        }
        struct dirent **ents;
        int n = scandir(argv[i], &ents, NULL, alphasort);
        if (n < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        for (int j = 0; j < n; j++) {
            if (ents[j]->d_name[0] != '.' && ents[j]->d_type != DT_DIR) {
                _cleanup_free_ char *path = NULL;
                if (asprintf(&path, "%s/%s", argv[i], ents[j]->d_name) < 0)
                    return 1;
                failed |= run_one(path, &b) < 0;
                runs++;
            }
            free(ents[j]);
        }
        free(ents);
    }
    if (runs == 0) {
        /* An empty corpus would make this test pass without testing anything. */
        fprintf(stderr, "no inputs\n");
        return 1;
    }
    return failed ? 1 : 0;
}
