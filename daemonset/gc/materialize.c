/* materialize.c — plain-directory trees of complete layers (materialize.h). */
#include "materialize.h"
#include "store-gc.h"

#include "cleanup.h"
#include "digest.h"
#include "log.h"
#include "toc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <time.h>
#include <unistd.h>

#define WH_PREFIX ".wh."
#define WH_META   ".wh..wh."
#define OPAQUE    "trusted.overlay.opaque"

struct sl_mat {
    struct sl_mat_options o;
    char *dir;
    int dir_fd;
    pthread_mutex_t lock; /* built, failed, queue flags, stats */
    pthread_cond_t cond;
    char (*built)[SL_DIGEST_STR_LEN];
    size_t n_built;
    char (*failed)[SL_DIGEST_STR_LEN];
    size_t n_failed;
    bool kicked, stop;
    pthread_mutex_t work; /* held while a tree is built (sl_mat_hold) */
    pthread_t thread;
    bool running;
    struct sl_mat_stats stats;
};

int sl_mat_parse_mode(const char *s, enum sl_mat_mode *ret)
{
    if (!s || strcmp(s, "link") == 0)
        *ret = SL_MAT_LINK;
    else if (strcmp(s, "copy") == 0)
        *ret = SL_MAT_COPY;
    else if (strcmp(s, "off") == 0)
        *ret = SL_MAT_OFF;
    else
        return -EINVAL;
    return 0;
}

static bool in_list(char (*v)[SL_DIGEST_STR_LEN], size_t n, const char *d)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], d) == 0)
            return true;
    return false;
}

static void list_add(char (**v)[SL_DIGEST_STR_LEN], size_t *n, const char *d)
{
    if (in_list(*v, *n, d))
        return;
    *v = sl_xrealloc(*v, (*n + 1) * sizeof **v);
    snprintf((*v)[(*n)++], SL_DIGEST_STR_LEN, "%s", d);
}

static void list_del(char (*v)[SL_DIGEST_STR_LEN], size_t *n, const char *d)
{
    for (size_t i = 0; i < *n; i++)
        if (strcmp(v[i], d) == 0) {
            memmove(v[i], v[*n - 1], SL_DIGEST_STR_LEN);
            (*n)--;
            return;
        }
}

bool sl_mat_has(struct sl_mat *m, const char *layer_digest)
{
    pthread_mutex_lock(&m->lock);
    bool b = in_list(m->built, m->n_built, layer_digest);
    pthread_mutex_unlock(&m->lock);
    return b;
}

/* ---------------------------------------------------------------- removal */

static __thread uint64_t purge_freed;

static int purge_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)ftw;
    if (flag == FTW_DP) {
        rmdir(path);
    } else if (unlink(path) == 0 && st->st_nlink <= 1 && S_ISREG(st->st_mode)) {
        purge_freed += (uint64_t)st->st_blocks * 512;
    }
    return 0;
}

uint64_t sl_mat_purge(const char *path)
{
    purge_freed = 0;
    nftw(path, purge_one, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    return purge_freed;
}

char *sl_mat_unpublish(struct sl_mat *m, const char *layer_digest)
{
    if (!sl_digest_valid(layer_digest))
        return NULL;
    const char *hex = layer_digest + 7;
    char aside[80];
    snprintf(aside, sizeof aside, ".gc-%s", hex);
    pthread_mutex_lock(&m->lock);
    list_del(m->built, &m->n_built, layer_digest);
    list_del(m->failed, &m->n_failed, layer_digest);
    int r = renameat(m->dir_fd, hex, m->dir_fd, aside);
    pthread_mutex_unlock(&m->lock);
    if (r < 0)
        return NULL;
    return sl_xasprintf("%s/%s", m->dir, aside);
}

/* ---------------------------------------------------------------- building */

struct build {
    struct sl_mat *m;
    const struct sl_toc *toc;
    int root_fd; /* DIR/.tmp-<hex> */
    char *cached_path;
    int cached_fd;
    uint64_t linked, copied, bytes_copied;
    sl_error_t *err;
    const char *layer;
};

static int safe_dir_fd(struct build *b, const char *path)
{
    if (!*path)
        return b->root_fd;
    if (b->cached_path && strcmp(b->cached_path, path) == 0)
        return b->cached_fd;
    int fd = dup(b->root_fd);
    if (fd < 0)
        return -errno;
    _cleanup_free_ char *copy = sl_xstrdup(path);
    char *save = NULL;
    for (char *c = strtok_r(copy, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        int nfd = openat(fd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        close(fd);
        if (nfd < 0)
            return -errno;
        fd = nfd;
    }
    if (b->cached_path) {
        close(b->cached_fd);
        free(b->cached_path);
    }
    b->cached_path = sl_xstrdup(path);
    b->cached_fd = fd;
    return fd;
}

static bool skip_xattr(const char *name)
{
    return strncmp(name, "trusted.overlay.", 16) == 0 ||
           strncmp(name, "trusted.starlight.", 18) == 0;
}

/* Owner, mode, xattrs and times of `base` in dfd (not following symlinks for owner/times). */
static int apply_meta(int dfd, const char *base, const struct sl_toc_entry *e, bool is_link)
{
    if (fchownat(dfd, base, e->uid, e->gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    if (!is_link) {
        if (fchmodat(dfd, base, e->mode & 07777, 0) < 0)
            return -errno;
        if (e->n_xattrs > 0) {
            int fd = openat(dfd, base, O_PATH | O_NOFOLLOW | O_CLOEXEC);
            if (fd < 0)
                return -errno;
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
            for (size_t i = 0; i < e->n_xattrs; i++) {
                if (skip_xattr(e->xattrs[i].name))
                    continue;
                if (setxattr(proc, e->xattrs[i].name, e->xattrs[i].value, e->xattrs[i].len, 0) <
                    0) {
                    int r = -errno;
                    close(fd);
                    return r;
                }
            }
            close(fd);
        }
    }
    struct timespec ts[2] = {{.tv_sec = e->mtime}, {.tv_sec = e->mtime}};
    if (utimensat(dfd, base, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return -errno;
    return 0;
}

/* True when the inode at `path` already carries e's metadata: mode, owner, mtime and exactly
 * e's xattrs. */
static bool meta_matches(const char *path, const struct stat *st, const struct sl_toc_entry *e)
{
    if ((st->st_mode & 07777) != (e->mode & 07777) || st->st_uid != e->uid ||
        st->st_gid != e->gid || st->st_mtim.tv_sec != e->mtime || st->st_mtim.tv_nsec != 0)
        return false;
    char names[4096];
    ssize_t n = llistxattr(path, names, sizeof names);
    if (n < 0)
        return false;
    size_t want = 0;
    for (size_t i = 0; i < e->n_xattrs; i++) {
        if (skip_xattr(e->xattrs[i].name))
            continue;
        want++;
        uint8_t v[4096];
        ssize_t k = lgetxattr(path, e->xattrs[i].name, v, sizeof v);
        if (k < 0 || (size_t)k != e->xattrs[i].len || memcmp(v, e->xattrs[i].value, (size_t)k))
            return false;
    }
    size_t have = 0;
    for (ssize_t off = 0; off < n; off += (ssize_t)strlen(names + off) + 1)
        have++;
    return have == want;
}

/* Gives an inode only the store links (nlink 1) e's metadata: xattrs replaced, owner, mode,
 * times. */
static int claim(const char *path, const struct sl_toc_entry *e)
{
    char names[4096];
    ssize_t n = llistxattr(path, names, sizeof names);
    for (ssize_t off = 0; n > 0 && off < n; off += (ssize_t)strlen(names + off) + 1)
        lremovexattr(path, names + off);
    return apply_meta(AT_FDCWD, path, e, false);
}

static int copy_file(const char *src, int dfd, const char *base, uint64_t *copied)
{
    _cleanup_close_ int in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return -errno;
    _cleanup_close_ int out = openat(dfd, base, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (out < 0)
        return -errno;
    for (;;) {
        ssize_t k = copy_file_range(in, NULL, out, NULL, 1 << 30, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 &&
            (errno == EXDEV || errno == ENOSYS || errno == EINVAL || errno == EOPNOTSUPP)) {
            char buf[65536];
            ssize_t rd;
            while ((rd = read(in, buf, sizeof buf)) > 0)
                for (ssize_t off = 0; off < rd;) {
                    ssize_t w = write(out, buf + off, (size_t)(rd - off));
                    if (w < 0 && errno == EINTR)
                        continue;
                    if (w < 0)
                        return -errno;
                    off += w;
                    *copied += (uint64_t)w;
                }
            return rd < 0 ? -errno : 0;
        }
        if (k < 0)
            return -errno;
        if (k == 0)
            return 0;
        *copied += (uint64_t)k;
    }
}

/* A regular file with content: a link to the store's inode when its metadata fits (claiming an
 * unclaimed inode first), else a copy. */
static int make_regular(struct build *b, int dfd, const struct sl_toc_entry *e)
{
    if (e->size > 0 && !e->has_digest)
        return -EINVAL;
    if (e->size == 0) {
        int fd = openat(dfd, e->base, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0)
            return -errno;
        close(fd);
        return apply_meta(dfd, e->base, e, false);
    }
    char cpath[512];
    sl_store_content_path(b->m->o.store, e->digest, cpath, sizeof cpath);
    /* A file with TOC hardlinks gets an inode of its own, so the group's link count is exact
     * (applications and tests check it); the others may share the store's. */
    if (b->m->o.mode == SL_MAT_LINK && e->num_link <= 1) {
        /* The store's inode is linked when it carries this path's metadata. An inode no tree
         * links yet (nlink 1: the store's own name) is free: it takes this path's metadata.
         * Only this worker links (under `work`), so the count cannot grow meanwhile. */
        struct stat st;
        bool ok = lstat(cpath, &st) == 0 && S_ISREG(st.st_mode);
        if (ok && !meta_matches(cpath, &st, e)) {
            int r = st.st_nlink == 1 ? claim(cpath, e) : -EBUSY;
            ok = r == 0 && lstat(cpath, &st) == 0 && meta_matches(cpath, &st, e);
        }
        if (ok && linkat(AT_FDCWD, cpath, dfd, e->base, 0) == 0) {
            b->linked++;
            return 0;
        }
    }
    int r = copy_file(cpath, dfd, e->base, &b->bytes_copied);
    if (r < 0)
        return r;
    b->copied++;
    return apply_meta(dfd, e->base, e, false);
}

static bool has_child(const struct sl_toc_entry *dir, const char *name)
{
    for (size_t i = 0; i < dir->n_children; i++)
        if (strcmp(dir->children[i]->base, name) == 0)
            return true;
    return false;
}

/* True when e or an ancestor is a marker entry (whiteout, aufs metadata): nothing under it is
 * shown. */
static bool under_marker(const struct sl_toc_entry *e)
{
    for (const struct sl_toc_entry *p = e->parent; p && p->parent; p = p->parent)
        if (strncmp(p->base, WH_PREFIX, strlen(WH_PREFIX)) == 0)
            return true;
    return false;
}

static int build_entry(struct build *b, const struct sl_toc_entry *e)
{
    if (!e->parent || under_marker(e))
        return 0;
    if (e->parent->type != SL_TOC_DIR)
        return -ENOTDIR;
    int dfd = safe_dir_fd(b, e->parent->name);
    if (dfd < 0)
        return dfd;
    const char *base = e->base;
    if (strcmp(base, WH_META ".opq") == 0) {
        if (fsetxattr(dfd, OPAQUE, "y", 1, 0) < 0)
            return -errno;
        return 0;
    }
    if (strncmp(base, WH_META, strlen(WH_META)) == 0 || strcmp(base, WH_PREFIX) == 0)
        return 0;
    if (strncmp(base, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
        const char *target = base + strlen(WH_PREFIX);
        if (has_child(e->parent, target))
            return 0;
        if (mknodat(dfd, target, S_IFCHR, makedev(0, 0)) < 0)
            return -errno;
        return 0;
    }
    switch (e->type) {
    case SL_TOC_DIR:
        if (mkdirat(dfd, base, 0700) < 0 && errno != EEXIST)
            return -errno;
        return 0; /* metadata after the children */
    case SL_TOC_REG:
        return make_regular(b, dfd, e);
    case SL_TOC_HARDLINK: {
        const struct sl_toc_entry *t = e->link;
        if (!t || t->type != SL_TOC_REG || !t->parent)
            return -EINVAL;
        _cleanup_free_ char *tparent = sl_xstrdup(t->parent->name);
        /* the parent fd cache holds one directory: open the target's own */
        int tfd = dup(b->root_fd);
        if (tfd < 0)
            return -errno;
        char *save = NULL;
        for (char *c = strtok_r(tparent, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
            int nfd = openat(tfd, c, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            close(tfd);
            if (nfd < 0)
                return -errno;
            tfd = nfd;
        }
        int r = linkat(tfd, t->base, dfd, base, 0) < 0 ? -errno : 0;
        close(tfd);
        return r;
    }
    case SL_TOC_SYMLINK:
        if (symlinkat(e->link_name ? e->link_name : "", dfd, base) < 0)
            return -errno;
        return apply_meta(dfd, base, e, true);
    case SL_TOC_CHAR:
    case SL_TOC_BLOCK:
    case SL_TOC_FIFO: {
        mode_t t = e->type == SL_TOC_CHAR ? S_IFCHR : e->type == SL_TOC_BLOCK ? S_IFBLK : S_IFIFO;
        if (mknodat(dfd, base, t | 0600, makedev(e->dev_major, e->dev_minor)) < 0)
            return -errno;
        return apply_meta(dfd, base, e, false);
    }
    }
    return -EINVAL;
}

static int build_tree(struct build *b)
{
    size_t n = sl_toc_count(b->toc);
    int r = 0;
    for (size_t i = 0; i < n && r == 0; i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(b->toc, i);
        r = build_entry(b, e);
        if (r < 0)
            return sl_error_make(b->err, -r, "materialize layer %s: `%s`: %s", b->layer, e->name,
                                 strerror(-r));
    }
    /* Directory metadata last (children change mtimes), deepest first. */
    for (size_t i = n; i-- > 0;) {
        const struct sl_toc_entry *e = sl_toc_entry_at(b->toc, i);
        if (e->type != SL_TOC_DIR || under_marker(e) ||
            strncmp(e->base, WH_PREFIX, strlen(WH_PREFIX)) == 0)
            continue;
        if (!e->parent) {
            r = apply_meta(b->root_fd, ".", e, false);
        } else {
            int dfd = safe_dir_fd(b, e->parent->name);
            r = dfd < 0 ? dfd : apply_meta(dfd, e->base, e, false);
        }
        if (r < 0)
            return sl_error_make(b->err, -r, "materialize layer %s: `%s`: metadata: %s", b->layer,
                                 e->name, strerror(-r));
    }
    return 0;
}

int sl_mat_layer(struct sl_mat *m, const char *layer_digest, sl_error_t *err)
{
    if (m->o.mode == SL_MAT_OFF)
        return sl_error_make(err, EOPNOTSUPP, "materialisation is off");
    if (!sl_digest_valid(layer_digest))
        return sl_error_make(err, EINVAL, "invalid layer digest");
    if (sl_mat_has(m, layer_digest))
        return 0;
    pthread_mutex_lock(&m->work);
    struct sl_store_layer rec;
    int r = sl_store_layer_get(m->o.store, layer_digest, &rec, err);
    if (r == -ENOENT)
        r = sl_error_make(err, ENOENT, "layer %s is not in the store", layer_digest);
    if (r >= 0 && rec.state != SL_STORE_LAYER_COMPLETE)
        r = sl_error_make(err, EAGAIN, "layer %s is not complete", layer_digest);
    _cleanup_toc_ struct sl_toc *toc = NULL;
    if (r >= 0)
        r = sl_store_layer_load_toc(&rec, &toc, err);
    sl_store_layer_clear(&rec);
    if (r < 0) {
        pthread_mutex_unlock(&m->work);
        return r;
    }
    const char *hex = layer_digest + 7;
    char tmp[80];
    snprintf(tmp, sizeof tmp, ".tmp-%s", hex);
    _cleanup_free_ char *tmp_path = sl_xasprintf("%s/%s", m->dir, tmp);
    sl_mat_purge(tmp_path);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct build b = {
        .m = m, .toc = toc, .root_fd = -1, .cached_fd = -1, .err = err, .layer = layer_digest};
    if (mkdirat(m->dir_fd, tmp, 0700) < 0)
        r = sl_error_make(err, errno, "mkdir %s: %s", tmp_path, strerror(errno));
    if (r >= 0) {
        b.root_fd = openat(m->dir_fd, tmp, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (b.root_fd < 0)
            r = sl_error_make(err, errno, "open %s: %s", tmp_path, strerror(errno));
    }
    if (r >= 0)
        r = build_tree(&b);
    if (r >= 0 && !m->o.no_sync && syncfs(b.root_fd) < 0)
        r = sl_error_make(err, errno, "syncfs %s: %s", tmp_path, strerror(errno));
    if (b.cached_path) {
        close(b.cached_fd);
        free(b.cached_path);
    }
    if (b.root_fd >= 0)
        close(b.root_fd);
    if (r >= 0) {
        pthread_mutex_lock(&m->lock);
        if (renameat(m->dir_fd, tmp, m->dir_fd, hex) < 0 && errno != EEXIST && errno != ENOTEMPTY)
            r = sl_error_make(err, errno, "rename %s: %s", tmp_path, strerror(errno));
        if (r >= 0) {
            list_add(&m->built, &m->n_built, layer_digest);
            m->stats.layers++;
            m->stats.files_linked += b.linked;
            m->stats.files_copied += b.copied;
            m->stats.bytes_copied += b.bytes_copied;
        }
        pthread_mutex_unlock(&m->lock);
    }
    sl_mat_purge(tmp_path); /* leftovers of a failure or a lost race */
    pthread_mutex_unlock(&m->work);
    if (r < 0)
        return r;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    log_info("materialized layer %s: %zu entries, %llu files linked, %llu copied (%llu bytes) in "
             "%.0f ms",
             layer_digest, sl_toc_count(toc), (unsigned long long)b.linked,
             (unsigned long long)b.copied, (unsigned long long)b.bytes_copied,
             (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6);
    return 0;
}

/* ---------------------------------------------------------------- hook and worker */

int sl_mat_lowerdir(void *ud, const char *layer_digest, char **ret_path, sl_error_t *err)
{
    struct sl_mat *m = ud;
    bool fuse = m->o.keep_fuse && m->o.keep_fuse(m->o.keep_fuse_ud);
    if (m->o.mode != SL_MAT_OFF && !fuse && sl_digest_valid(layer_digest)) {
        pthread_mutex_lock(&m->lock);
        bool built = in_list(m->built, m->n_built, layer_digest);
        if (!built && !in_list(m->failed, m->n_failed, layer_digest)) {
            m->kicked = true;
            pthread_cond_signal(&m->cond);
        }
        pthread_mutex_unlock(&m->lock);
        if (built) {
            *ret_path = sl_xasprintf("%s/%s", m->dir, layer_digest + 7);
            return 0;
        }
    }
    if (!m->o.fs)
        return -ENOENT;
    return sl_fs_lowerdir(m->o.fs, layer_digest, ret_path, err);
}

void sl_mat_kick(struct sl_mat *m)
{
    pthread_mutex_lock(&m->lock);
    m->kicked = true;
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

void sl_mat_hold(struct sl_mat *m)
{
    pthread_mutex_lock(&m->work);
}

void sl_mat_release(struct sl_mat *m)
{
    pthread_mutex_unlock(&m->work);
}

void sl_mat_get_stats(struct sl_mat *m, struct sl_mat_stats *ret)
{
    pthread_mutex_lock(&m->lock);
    *ret = m->stats;
    pthread_mutex_unlock(&m->lock);
}

static void scan(struct sl_mat *m)
{
    struct sl_store_layer_info *v = NULL;
    size_t n = 0;
    _cleanup_error_ sl_error_t err = NULL;
    if (sl_store_layer_infos(m->o.store, &v, &n, &err) < 0) {
        log_warn("materialize: %s", sl_error_msg(err, -EIO));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].state != SL_STORE_LAYER_COMPLETE)
            continue;
        pthread_mutex_lock(&m->lock);
        bool skip = m->stop || in_list(m->built, m->n_built, v[i].digest) ||
                    in_list(m->failed, m->n_failed, v[i].digest);
        pthread_mutex_unlock(&m->lock);
        if (skip)
            continue;
        sl_error_free(&err);
        int r = sl_mat_layer(m, v[i].digest, &err);
        if (r < 0 && r != -EAGAIN && r != -ENOENT) {
            log_warn("%s (new mounts of it stay on FUSE)", sl_error_msg(err, r));
            pthread_mutex_lock(&m->lock);
            list_add(&m->failed, &m->n_failed, v[i].digest);
            m->stats.failures++;
            pthread_mutex_unlock(&m->lock);
        }
    }
    free(v);
}

static void *worker(void *arg)
{
    struct sl_mat *m = arg;
    double iv = m->o.scan_interval > 0 ? m->o.scan_interval : 2.0;
    pthread_mutex_lock(&m->lock);
    while (!m->stop) {
        if (!m->kicked) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long long ns = (long long)ts.tv_nsec + (long long)(iv * 1e9);
            ts.tv_sec += (time_t)(ns / 1000000000LL);
            ts.tv_nsec = (long)(ns % 1000000000LL);
            pthread_cond_timedwait(&m->cond, &m->lock, &ts);
        }
        if (m->stop)
            break;
        m->kicked = false;
        pthread_mutex_unlock(&m->lock);
        scan(m);
        pthread_mutex_lock(&m->lock);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* Leftovers of a crash, and trees of layers the store no longer records. */
static void startup_clean(struct sl_mat *m)
{
    int fd = dup(m->dir_fd);
    DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
    if (!d) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
            continue;
        _cleanup_free_ char *path = sl_xasprintf("%s/%s", m->dir, nm);
        char digest[SL_DIGEST_STR_LEN] = "";
        if (strlen(nm) == 64) {
            memcpy(digest, "sha256:", 7);
            memcpy(digest + 7, nm, 65);
        }
        struct sl_store_layer rec;
        if (strlen(nm) == 64 && sl_digest_valid(digest) &&
            sl_store_layer_get(m->o.store, digest, &rec, NULL) == 0) {
            bool complete = rec.state == SL_STORE_LAYER_COMPLETE;
            sl_store_layer_clear(&rec);
            if (complete && m->o.mode != SL_MAT_OFF) {
                list_add(&m->built, &m->n_built, digest);
                continue;
            }
        }
        /* .tmp-*, .gc-*, trees of forgotten or incomplete layers; kept while mounted is the
         * collector's concern, but at start nothing the daemon served is mounted from here
         * unless containers outlived it: leave hex trees that are mounted alone */
        if (strlen(nm) == 64) {
            FILE *mi = fopen("/proc/self/mountinfo", "re");
            char line[8192];
            bool used = false;
            while (mi && !used && fgets(line, sizeof line, mi))
                used = strstr(line, nm) != NULL;
            if (mi)
                fclose(mi);
            if (used)
                continue;
        }
        sl_mat_purge(path);
    }
    closedir(d);
}

int sl_mat_new(const struct sl_mat_options *o, struct sl_mat **ret, sl_error_t *err)
{
    if (mkdir(o->dir, 0700) < 0 && errno != EEXIST)
        return sl_error_make(err, errno, "mkdir %s: %s", o->dir, strerror(errno));
    int dfd = open(o->dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
        return sl_error_make(err, errno, "open %s: %s", o->dir, strerror(errno));
    struct sl_mat *m = sl_xcalloc(1, sizeof *m);
    m->o = *o;
    m->dir = sl_xstrdup(o->dir);
    m->o.dir = m->dir;
    m->dir_fd = dfd;
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->work, NULL);
    pthread_cond_init(&m->cond, NULL);
    startup_clean(m);
    if (m->o.mode != SL_MAT_OFF) {
        m->kicked = true;
        int r = pthread_create(&m->thread, NULL, worker, m);
        if (r != 0) {
            sl_mat_free(m);
            return sl_error_make(err, r, "materialize: thread: %s", strerror(r));
        }
        m->running = true;
    }
    *ret = m;
    return 0;
}

void sl_mat_free(struct sl_mat *m)
{
    if (!m)
        return;
    if (m->running) {
        pthread_mutex_lock(&m->lock);
        m->stop = true;
        pthread_cond_signal(&m->cond);
        pthread_mutex_unlock(&m->lock);
        pthread_join(m->thread, NULL);
    }
    close(m->dir_fd);
    pthread_mutex_destroy(&m->lock);
    pthread_mutex_destroy(&m->work);
    pthread_cond_destroy(&m->cond);
    free(m->built);
    free(m->failed);
    free(m->dir);
    free(m);
}
