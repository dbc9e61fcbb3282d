/* SPDX-License-Identifier: Apache-2.0 */
#include "rarewatch/fsutil.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rarewatch/buf.h"
#include "rarewatch/macro.h"

int mkdir_p(const char *path, mode_t mode)
{
    _cleanup_free_ char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    for (char *s = p + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(p, mode) < 0 && errno != EEXIST)
                return -errno;
            *s = '/';
        }
    if (mkdir(p, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

int fsync_dir(const char *dir)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0 || fsync(fd) < 0)
        return -errno;
    return 0;
}

int write_file_atomic(const char *path, const void *data, size_t n, mode_t mode)
{
    _cleanup_free_ char *copy = strdup(path), *tmp = NULL;
    if (!copy)
        return -ENOMEM;
    char *dir = dirname(copy);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (asprintf(&tmp, "%s/.%s.tmp", dir, base) < 0)
        return -ENOMEM;
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    int r = write_all(fd, data, n);
    /* The data must be on disk before the rename makes it current, and the
     * rename on disk before we report success. */
    if (r == 0 && fsync(fd) < 0)
        r = -errno;
    if (r == 0 && rename(tmp, path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(tmp);
        return r;
    }
    return fsync_dir(dir);
}

long long dir_size(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return -errno;
    long long total = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct stat st;
        if (e->d_name[0] == '.')
            continue;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode))
            total += st.st_size;
    }
    closedir(d);
    return total;
}

int read_whole_file(const char *path, struct buf *out)
{
    FILE *fp = fopen(path, "re");
    if (!fp)
        return -errno;
    buf_reset(out);
    char tmp[65536];
    size_t n;
    int r = 0;
    while (r == 0 && (n = fread(tmp, 1, sizeof(tmp), fp)) > 0)
        r = buf_append(out, tmp, n) < 0 ? -ENOMEM : 0;
    if (r == 0 && ferror(fp))
        r = -EIO;
    fclose(fp);
    return r;
}
