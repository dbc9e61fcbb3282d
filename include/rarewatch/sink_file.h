/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/*
 * The local file sink ([output] directory): NDJSON files in an S3-like
 * layout, DIR/YYYY/MM/DD/HH/rarewatch-HOST-PID-TIME-N.ndjson (UTC hour of
 * when the file was opened). A batch is acknowledged only after its lines
 * are written and fsynced. Files rotate at [output] rotate_interval,
 * rotate_size and the turn of the UTC hour.
 */
#include <stdint.h>

#include "rarewatch/sink.h"

struct sink_file_options {
    const char *directory;
    uint64_t rotate_interval_usec;
    uint64_t rotate_size;
};

int sink_file_new(const struct sink_file_options *o, struct rw_sink **out);
