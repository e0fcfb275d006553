/* snapfs.c — usage walks and tree removal for snapshot directories (snapfs.h). */
#include "snapfs.h"
#include "cleanup.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

struct inode_key {
    dev_t dev;
    ino_t ino;
    int64_t bytes;
};

struct usage_walk {
    dev_t dev;
    int64_t size, inodes;
    /* Inodes with more than one link; deduplicated at the end (sorted), so a tree of N
     * hardlinked files costs N log N instead of a hash table. */
    struct inode_key *multi;
    size_t nmulti, cap;
};

static void usage_add(struct usage_walk *w, const struct stat *st)
{
    int64_t bytes = (int64_t)st->st_blocks * 512;
    if (!S_ISDIR(st->st_mode) && st->st_nlink > 1) {
        if (w->nmulti == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 64;
            w->multi = sl_xrealloc(w->multi, w->cap * sizeof(*w->multi));
        }
        w->multi[w->nmulti++] = (struct inode_key){st->st_dev, st->st_ino, bytes};
        return;
    }
    w->size += bytes;
    w->inodes++;
}

static int usage_dir(struct usage_walk *w, int dfd)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        close(dfd);
        return r;
    }
    int r = 0;
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            if (errno == ENOENT)
                continue; /* removed while walking */
            r = -errno;
            break;
        }
        usage_add(w, &st);
        if (S_ISDIR(st.st_mode) && st.st_dev == w->dev) {
            int cfd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (cfd < 0) {
                if (errno == ENOENT)
                    continue;
                r = -errno;
                break;
            }
            r = usage_dir(w, cfd);
            if (r < 0)
                break;
        }
    }
    if (r == 0 && errno != 0)
        r = -errno;
    closedir(d);
    return r;
}

static int cmp_inode(const void *a, const void *b)
{
    const struct inode_key *x = a, *y = b;
    if (x->dev != y->dev)
        return x->dev < y->dev ? -1 : 1;
    if (x->ino != y->ino)
        return x->ino < y->ino ? -1 : 1;
    return 0;
}

int sl_snapfs_usage(const char *path, int64_t *ret_size, int64_t *ret_inodes)
{
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    struct usage_walk w = {.dev = st.st_dev};
    usage_add(&w, &st);
    int r = usage_dir(&w, fd);
    if (r >= 0 && w.nmulti > 0) {
        qsort(w.multi, w.nmulti, sizeof(*w.multi), cmp_inode);
        for (size_t i = 0; i < w.nmulti; i++) {
            if (i > 0 && cmp_inode(&w.multi[i], &w.multi[i - 1]) == 0)
                continue;
            w.size += w.multi[i].bytes;
            w.inodes++;
        }
    }
    free(w.multi);
    if (r < 0)
        return r;
    *ret_size = w.size;
    *ret_inodes = w.inodes;
    return 0;
}

static int rm_children(int dfd, dev_t dev)
{
    DIR *d = fdopendir(dfd);
    if (!d) {
        int r = -errno;
        close(dfd);
        return r;
    }
    int r = 0;
    struct dirent *de;
    while ((errno = 0, de = readdir(d))) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
            struct stat st;
            if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISDIR(st.st_mode)) {
                if (st.st_dev != dev) {
                    /* a mount point: never descend into another filesystem */
                    if (r == 0)
                        r = -EBUSY;
                    continue;
                }
                int cfd =
                    openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                if (cfd >= 0) {
                    int q = rm_children(cfd, dev);
                    if (q < 0 && r == 0)
                        r = q;
                }
                if (unlinkat(dirfd(d), de->d_name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
                    r = -errno;
                continue;
            }
        }
        if (unlinkat(dirfd(d), de->d_name, 0) < 0 && errno != ENOENT && r == 0)
            r = -errno;
    }
    closedir(d);
    return r;
}

int sl_snapfs_rmtree(int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dirfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno;
    int r = rm_children(fd, st.st_dev);
    if (unlinkat(dirfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && r == 0)
        r = -errno;
    return r;
}

int sl_snapfs_mkdir_p(const char *path, unsigned mode)
{
    _cleanup_free_ char *p = sl_xstrdup(path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, (mode_t)mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}
