/* SPDX-License-Identifier: Apache-2.0 */
#pragma once
/* Small file helpers shared by the checkpoint store, the file sink, the
 * dead-letter writer, the config loader and the detector snapshots.
 * Negative errno on failure. */
#include <stddef.h>
#include <sys/types.h>

int mkdir_p(const char *path, mode_t mode);
/* Write all n bytes (retrying short writes and EINTR). */
int write_all(int fd, const void *p, size_t n);
/* fsync the directory holding a just-created or renamed entry. */
int fsync_dir(const char *dir);
/* Replace path atomically with data: temp file, fsync, rename, fsync dir. */
int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode);
struct buf;
/* The whole of path into out (replacing what it held): 0, -errno from
 * opening it, -ENOMEM, -EIO. */
int read_whole_file(const char *path, struct buf *out);
/* Total size of the regular files under dir (not recursive). */
long long dir_size(const char *dir);
