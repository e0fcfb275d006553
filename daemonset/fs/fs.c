/* fs.c — one FUSE low-level session over every layer's TOC tree (fs.h). */
#define FUSE_USE_VERSION 312
#include "fs.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

#define OPAQUE_XATTR    "trusted.overlay.opaque"
#define WH_PREFIX       ".wh."
#define WH_META         ".wh..wh."
#define DEFAULT_TTL     3600.0
#define FH_BUCKETS      1024
#define DEFAULT_WORKERS 8

/* The FUSE protocol's request header (linux/fuse.h, stable ABI), to recognise FUSE_INIT. */
struct fuse_in_hdr {
    uint32_t len, opcode;
    uint64_t unique, nodeid;
    uint32_t uid, gid, pid;
    uint16_t total_extlen, padding;
};
#define FUSE_OPCODE_INIT 26

enum { TRACED_OPEN = 1, TRACED_READ = 2 };

/* One TOC entry as shown. Children and hardlinks refer to nodes by index. */
struct node {
    const struct sl_toc_entry *e; /* metadata shown (hardlinks: their target) */
    const char *name;             /* shown name (whiteouts: without ".wh.") */
    uint32_t self;                /* index whose inode this is (hardlinks: the target's) */
    uint32_t parent;
    bool whiteout, opaque, hidden;
    uint32_t *children; /* dirs: visible children sorted by shown name */
    uint32_t n_children;
    atomic_uint traced;
};

/* A published layer. Worker handlers reach it through fs->layers[slot] without a lock or a
 * reference; sl_fs_remove_layer clears the slot and queues the layer, and sl_fs_reclaim waits
 * until every worker has finished the request it was serving (quiesce) before it drops the
 * slot's reference. Open files hold a reference each, so a file opened before the removal
 * stays readable until released. */
struct layer {
    uint32_t slot;
    char digest[SL_DIGEST_STR_LEN];
    const char *hex; /* digest + 7 */
    struct sl_toc *toc;
    struct node *nodes;
    uint32_t n_nodes;
    atomic_uint refs;           /* the slot's + one per open file */
    struct layer *next_removed; /* fs->removed */
};

/* An open file. The kernel knows it by `fh`, never a pointer: a successor daemon that adopted
 * the connection (sl_fs_adopt) gets handles of its predecessor, which it opens again by inode
 * on their first use. */
struct open_file {
    struct sl_fs *fs;
    struct layer *layer;
    struct node *node;
    struct sl_store_content *content; /* NULL for empty files */
    atomic_uint refs;                 /* the open + parked reads */
    uint64_t fh;                      /* generation << 48 | serial */
    struct open_file *hnext;          /* fs->fh_table bucket */
    struct open_file *next, *prev;    /* fs->open_files, for teardown */
};

struct parked_read {
    fuse_req_t req;
    struct open_file *of;
    uint64_t off;
    size_t len;
    struct sl_store_waiter waiter;
    int64_t parked_ns; /* CLOCK_MONOTONIC when parked, for the wait-time metric */
    struct parked_read *next, *prev;
};

struct worker {
    struct sl_fs *fs;
    pthread_t thread;
    atomic_bool in_read;         /* blocked (or about to block) reading /dev/fuse */
    atomic_uint_fast64_t served; /* requests processed, for quiesce() */
    atomic_bool done;            /* left its loop: serves no more */
};

struct sl_fs {
    struct sl_store *store;
    struct sl_fs_options o;
    char *mountpoint;
    struct fuse_session *se;
    struct worker *workers;
    unsigned n_workers;
    atomic_bool stopping;
    bool detached; /* handed to a successor: sl_fs_free leaves the mount */
    uint32_t gen;  /* handle generation, 1..65535 */
    atomic_uint_fast64_t next_fh;
    pthread_rwlock_t fh_lock;
    struct open_file *fh_table[FH_BUCKETS];
    pthread_mutex_t init_lock;
    unsigned char init_req[SL_FS_INIT_MAX]; /* the kernel's FUSE_INIT, for a successor */
    size_t init_len;
    _Atomic(struct layer *) *layers; /* by slot, SL_FS_MAX_SLOT + 1 entries */
    atomic_uint max_slot;
    pthread_mutex_t layers_lock; /* writers of `layers`, `retired`, and sl_fs_layer_dir */
    /* Per slot: SLOT_RETIRED for removed layers (here or in a predecessor): never given again,
     * so an inode number the kernel still caches never names another layer's entry;
     * SLOT_RESERVED for a predecessor's published layers: only a request for that very slot
     * (the same store layer id, so the same layer) gets it, never the "any free slot" pick. */
    uint8_t *retired;
    struct layer *removed;        /* unpublished, slot reference not yet dropped (sl_fs_reclaim) */
    pthread_mutex_t workers_lock; /* `workers` against quiesce() */
    pthread_mutex_t lock;         /* parked and open lists */
    pthread_cond_t cond;
    struct parked_read parked;  /* list head */
    struct open_file open_list; /* list head */
    atomic_uint_fast64_t n_reads, n_parked, n_parked_now, n_opens;
    atomic_uint_fast64_t parked_wait_ns; /* total wait of parked reads that were answered */
};

/* ---------------------------------------------------------------- inodes */

enum { SLOT_FREE, SLOT_RETIRED, SLOT_RESERVED };

static fuse_ino_t make_ino(uint32_t slot, uint32_t idx)
{
    return ((fuse_ino_t)slot << 32) | (fuse_ino_t)(idx + 1);
}

/* Resolves an inode number; NULL when stale. *ret_node stays NULL for the mount root. */
static struct layer *resolve(struct sl_fs *fs, fuse_ino_t ino, struct node **ret_node)
{
    *ret_node = NULL;
    uint64_t slot = ino >> 32, low = ino & 0xffffffffu;
    if (slot == 0 || slot > SL_FS_MAX_SLOT || low == 0)
        return NULL;
    struct layer *l = atomic_load(&fs->layers[slot]);
    if (!l || low > l->n_nodes)
        return NULL;
    *ret_node = &l->nodes[low - 1];
    return l;
}

static mode_t type_bits(enum sl_toc_type t)
{
    switch (t) {
    case SL_TOC_DIR:
        return S_IFDIR;
    case SL_TOC_SYMLINK:
        return S_IFLNK;
    case SL_TOC_CHAR:
        return S_IFCHR;
    case SL_TOC_BLOCK:
        return S_IFBLK;
    case SL_TOC_FIFO:
        return S_IFIFO;
    case SL_TOC_REG:
    case SL_TOC_HARDLINK:
        break;
    }
    return S_IFREG;
}

static void fill_attr(const struct layer *l, const struct node *n, struct stat *st)
{
    const struct sl_toc_entry *e = n->e;
    memset(st, 0, sizeof *st);
    st->st_ino = make_ino(l->slot, n->self);
    st->st_blksize = 4096;
    st->st_mtim.tv_sec = st->st_atim.tv_sec = st->st_ctim.tv_sec = (time_t)e->mtime;
    if (n->whiteout) { /* overlayfs whiteout: 0:0 character device */
        st->st_mode = S_IFCHR;
        st->st_nlink = 1;
        st->st_rdev = makedev(0, 0);
        return;
    }
    st->st_mode = type_bits(e->type) | (e->mode & 07777);
    st->st_uid = e->uid;
    st->st_gid = e->gid;
    st->st_nlink = e->num_link ? e->num_link : 1;
    switch (e->type) {
    case SL_TOC_REG:
        st->st_size = (off_t)e->size;
        break;
    case SL_TOC_DIR:
        st->st_size = 4096;
        break;
    case SL_TOC_SYMLINK:
        st->st_size = e->link_name ? (off_t)strlen(e->link_name) : 0;
        break;
    case SL_TOC_CHAR:
    case SL_TOC_BLOCK:
        st->st_rdev = makedev(e->dev_major, e->dev_minor);
        break;
    default:
        break;
    }
    if (e->type != SL_TOC_DIR)
        st->st_nlink = e->type == SL_TOC_REG && e->num_link ? e->num_link : 1;
    st->st_blocks = (st->st_size + 511) / 512;
}

static void fill_root_attr(struct sl_fs *fs, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = FUSE_ROOT_ID;
    st->st_mode = S_IFDIR | 0755;
    st->st_nlink = 2 + atomic_load(&fs->max_slot);
    st->st_size = 4096;
    st->st_blksize = 4096;
}

static double ttl(const struct sl_fs *fs, bool attr)
{
    double t = attr ? fs->o.attr_timeout : fs->o.entry_timeout;
    return t > 0 ? t : DEFAULT_TTL;
}

/* ---------------------------------------------------------------- building a layer */

struct ptr_map {
    const void **keys;
    uint32_t *vals;
    size_t cap;
};

static size_t ptr_hash(const void *p, size_t cap)
{
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return (size_t)(x & (cap - 1));
}

static void ptr_map_put(struct ptr_map *m, const void *k, uint32_t v)
{
    size_t i = ptr_hash(k, m->cap);
    while (m->keys[i] && m->keys[i] != k)
        i = (i + 1) & (m->cap - 1);
    m->keys[i] = k;
    m->vals[i] = v;
}

static bool ptr_map_get(const struct ptr_map *m, const void *k, uint32_t *ret)
{
    for (size_t i = ptr_hash(k, m->cap); m->keys[i]; i = (i + 1) & (m->cap - 1))
        if (m->keys[i] == k) {
            *ret = m->vals[i];
            return true;
        }
    return false;
}

static int cmp_child(const void *a, const void *b, void *ud)
{
    const struct node *nodes = ud;
    return strcmp(nodes[*(const uint32_t *)a].name, nodes[*(const uint32_t *)b].name);
}

/* TOC children are sorted by base name (toc.h). */
static bool toc_has_child(const struct sl_toc_entry *dir, const char *base)
{
    size_t lo = 0, hi = dir->n_children;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(dir->children[mid]->base, base);
        if (c == 0)
            return true;
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Builds the shown tree: overlay whiteout conversion, opaque markers, hardlink inodes. */
static int layer_build(struct layer *l, sl_error_t *err)
{
    size_t n = sl_toc_count(l->toc);
    if (n == 0 || n >= UINT32_MAX - 1)
        return sl_error_make(err, EINVAL, "layer %s: %zu entries", l->digest, n);
    struct ptr_map m = {.cap = 16};
    while (m.cap < n * 2)
        m.cap *= 2;
    m.keys = sl_xcalloc(m.cap, sizeof *m.keys);
    m.vals = sl_xcalloc(m.cap, sizeof *m.vals);
    l->nodes = sl_xcalloc(n, sizeof *l->nodes);
    l->n_nodes = (uint32_t)n;
    for (size_t i = 0; i < n; i++)
        ptr_map_put(&m, sl_toc_entry_at(l->toc, i), (uint32_t)i);
    int r = 0;
    for (uint32_t i = 0; i < n && r == 0; i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(l->toc, i);
        struct node *nd = &l->nodes[i];
        nd->e = e;
        nd->name = e->base;
        nd->self = i;
        nd->parent = i;
        if (e->parent && !ptr_map_get(&m, e->parent, &nd->parent))
            r = sl_error_make(err, EINVAL, "layer %s: `%s` has no parent", l->digest, e->name);
        if (e->type == SL_TOC_HARDLINK) {
            uint32_t t;
            if (!e->link || !ptr_map_get(&m, e->link, &t) || e->link->type != SL_TOC_REG)
                r = sl_error_make(err, EINVAL, "layer %s: hardlink `%s` has no target", l->digest,
                                  e->name);
            else
                nd->self = t, nd->e = e->link;
        }
    }
    /* Children: the marker entries change names or disappear. */
    for (uint32_t i = 0; i < n && r == 0; i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(l->toc, i);
        struct node *dir = &l->nodes[i];
        if (e->type != SL_TOC_DIR || e->n_children == 0)
            continue;
        dir->children = sl_xcalloc(e->n_children, sizeof *dir->children);
        for (size_t k = 0; k < e->n_children; k++) {
            uint32_t c;
            if (!ptr_map_get(&m, e->children[k], &c)) {
                r = sl_error_make(err, EINVAL, "layer %s: dangling child", l->digest);
                break;
            }
            struct node *ch = &l->nodes[c];
            const char *b = e->children[k]->base;
            if (strcmp(b, WH_META ".opq") == 0) {
                dir->opaque = true;
                ch->hidden = true;
                continue;
            }
            if (strncmp(b, WH_META, strlen(WH_META)) == 0 || strcmp(b, WH_PREFIX) == 0) {
                ch->hidden = true; /* aufs metadata: never shown */
                continue;
            }
            if (strncmp(b, WH_PREFIX, strlen(WH_PREFIX)) == 0) {
                /* A real sibling of the same name wins over the whiteout. */
                const char *target = b + strlen(WH_PREFIX);
                if (toc_has_child(e, target)) {
                    ch->hidden = true;
                    continue;
                }
                ch->whiteout = true;
                ch->name = target;
                ch->self = c; /* a whiteout is its own inode, even if tar made it a link */
            }
            dir->children[dir->n_children++] = c;
        }
        qsort_r(dir->children, dir->n_children, sizeof *dir->children, cmp_child, l->nodes);
    }
    /* A whiteout that was a hardlink shows no metadata of the target. */
    for (uint32_t i = 0; i < n; i++)
        if (l->nodes[i].whiteout)
            l->nodes[i].e = sl_toc_entry_at(l->toc, i);
    free(m.keys);
    free(m.vals);
    return r;
}

static void layer_free(struct layer *l)
{
    if (!l)
        return;
    for (uint32_t i = 0; l->nodes && i < l->n_nodes; i++)
        free(l->nodes[i].children);
    free(l->nodes);
    sl_toc_free(l->toc);
    free(l);
}

static void layer_unref(struct layer *l)
{
    if (l && atomic_fetch_sub(&l->refs, 1) == 1)
        layer_free(l);
}

static struct node *child_lookup(struct layer *l, struct node *dir, const char *name)
{
    uint32_t lo = 0, hi = dir->n_children;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(l->nodes[dir->children[mid]].name, name);
        if (c == 0)
            return &l->nodes[dir->children[mid]];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ---------------------------------------------------------------- tracing */

static void trace(struct sl_fs *fs, fuse_req_t req, struct layer *l, struct node *n,
                  enum sl_fs_event_type type, bool parked)
{
    if (!fs->o.on_event)
        return;
    unsigned bit = type == SL_FS_EVENT_OPEN ? TRACED_OPEN : TRACED_READ;
    unsigned before = atomic_fetch_or(&l->nodes[n->self].traced, bit);
    if ((before & bit) && !(type == SL_FS_EVENT_OPEN && fs->o.trace_every_open))
        return;
    const struct fuse_ctx *ctx = fuse_req_ctx(req);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct sl_fs_event ev = {
        .type = type,
        .layer_digest = l->digest,
        .path = n->e->name,
        .pid = ctx ? ctx->pid : 0,
        .uid = ctx ? ctx->uid : 0,
        .ts_ns = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec,
        .parked = parked,
    };
    fs->o.on_event(fs->o.event_ud, &ev);
}

/* ---------------------------------------------------------------- handlers */

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    struct fuse_entry_param ep = {0};
    struct node *dir;
    struct layer *l;
    if (parent == FUSE_ROOT_ID) {
        /* layer directories: "<64 hex>" */
        char digest[SL_DIGEST_STR_LEN];
        snprintf(digest, sizeof digest, "sha256:%.64s", name);
        unsigned max = atomic_load(&fs->max_slot);
        for (unsigned s = 1; s <= max; s++) {
            l = atomic_load(&fs->layers[s]);
            if (l && strcmp(l->digest, digest) == 0 && strlen(name) == 64) {
                ep.ino = make_ino(l->slot, 0);
                fill_attr(l, &l->nodes[0], &ep.attr);
                ep.attr_timeout = ttl(fs, true);
                ep.entry_timeout = ttl(fs, false);
                fuse_reply_entry(req, &ep);
                return;
            }
        }
        fuse_reply_err(req, ENOENT); /* not cached: layers appear later */
        return;
    }
    l = resolve(fs, parent, &dir);
    if (!l) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    if (dir->e->type != SL_TOC_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    struct node *c = child_lookup(l, dir, name);
    if (!c) {
        /* negative entries are cacheable: the tree never changes */
        ep.entry_timeout = ttl(fs, false);
        fuse_reply_entry(req, &ep);
        return;
    }
    struct node *in = &l->nodes[c->self];
    ep.ino = make_ino(l->slot, c->self);
    fill_attr(l, in, &ep.attr);
    ep.attr_timeout = ttl(fs, true);
    ep.entry_timeout = ttl(fs, false);
    fuse_reply_entry(req, &ep);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup)
{
    fuse_reply_none(req); /* inodes are static: nothing to count */
}

static void op_forget_multi(fuse_req_t req, size_t count, struct fuse_forget_data *forgets)
{
    fuse_reply_none(req);
}

static struct open_file *fh_get(struct sl_fs *fs, fuse_ino_t ino, uint64_t fh);

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    struct stat st;
    if (ino == FUSE_ROOT_ID) {
        fill_root_attr(fs, &st);
        fuse_reply_attr(req, &st, 1.0);
        return;
    }
    struct node *n;
    struct layer *l = resolve(fs, ino, &n);
    if (!l && fi) { /* fstat of a file opened before its layer was removed */
        struct open_file *of = fh_get(fs, ino, fi->fh);
        if (of)
            l = of->layer, n = of->node;
    }
    if (!l) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    fill_attr(l, n, &st);
    fuse_reply_attr(req, &st, ttl(fs, true));
}

static void op_readlink(fuse_req_t req, fuse_ino_t ino)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    struct node *n;
    if (!resolve(fs, ino, &n)) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    if (n->whiteout || n->e->type != SL_TOC_SYMLINK || !n->e->link_name) {
        fuse_reply_err(req, EINVAL);
        return;
    }
    fuse_reply_readlink(req, n->e->link_name);
}

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    struct node *n;
    if (ino != FUSE_ROOT_ID) {
        if (!resolve(fs, ino, &n)) {
            fuse_reply_err(req, ESTALE);
            return;
        }
        if (n->whiteout || n->e->type != SL_TOC_DIR) {
            fuse_reply_err(req, ENOTDIR);
            return;
        }
        fi->cache_readdir = 1; /* layer trees are immutable */
        fi->keep_cache = 1;
    }
    fuse_reply_open(req, fi);
}

/* Adds one entry; returns false when the buffer is full. */
static bool add_dirent(fuse_req_t req, bool plus, char *buf, size_t size, size_t *pos,
                       const char *name, const struct stat *st, off_t next, double attr_ttl,
                       double entry_ttl)
{
    size_t used;
    if (plus) {
        struct fuse_entry_param ep = {
            .ino = st->st_ino, .attr = *st, .attr_timeout = attr_ttl, .entry_timeout = entry_ttl};
        used = fuse_add_direntry_plus(req, buf + *pos, size - *pos, name, &ep, next);
    } else {
        used = fuse_add_direntry(req, buf + *pos, size - *pos, name, st, next);
    }
    if (used > size - *pos)
        return false;
    *pos += used;
    return true;
}

static void do_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, bool plus)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    size = SL_MIN(size, (size_t)1 << 20);
    _cleanup_free_ char *buf = sl_xmalloc(size);
    size_t pos = 0;
    struct stat st;
    double at = ttl(fs, true), et = ttl(fs, false);
    if (ino == FUSE_ROOT_ID) {
        fill_root_attr(fs, &st);
        unsigned max = atomic_load(&fs->max_slot);
        /* offsets: 1 ".", 2 "..", 2 + slot for layers */
        if (off < 1 && !add_dirent(req, plus, buf, size, &pos, ".", &st, 1, 1.0, 1.0))
            goto out;
        if (off < 2 && !add_dirent(req, plus, buf, size, &pos, "..", &st, 2, 1.0, 1.0))
            goto out;
        for (unsigned s = off < 2 ? 1 : (unsigned)(off - 2) + 1; s <= max; s++) {
            struct layer *l = atomic_load(&fs->layers[s]);
            if (!l)
                continue;
            fill_attr(l, &l->nodes[0], &st);
            if (!add_dirent(req, plus, buf, size, &pos, l->hex, &st, (off_t)(2 + s), at, et))
                break;
        }
        goto out;
    }
    struct node *dir;
    struct layer *l = resolve(fs, ino, &dir);
    if (!l) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    if (dir->e->type != SL_TOC_DIR) {
        fuse_reply_err(req, ENOTDIR);
        return;
    }
    fill_attr(l, dir, &st);
    if (off < 1 && !add_dirent(req, plus, buf, size, &pos, ".", &st, 1, at, et))
        goto out;
    if (off < 2) {
        if (dir->parent != dir->self)
            fill_attr(l, &l->nodes[dir->parent], &st);
        else
            fill_root_attr(fs, &st);
        if (!add_dirent(req, plus, buf, size, &pos, "..", &st, 2, at, et))
            goto out;
    }
    for (uint64_t i = off < 2 ? 0 : (uint64_t)off - 2; i < dir->n_children; i++) {
        struct node *c = &l->nodes[dir->children[i]];
        fill_attr(l, &l->nodes[c->self], &st);
        if (!add_dirent(req, plus, buf, size, &pos, c->name, &st, (off_t)(3 + i), at, et))
            break;
    }
out:
    fuse_reply_buf(req, buf, pos);
}

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                       struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, false);
}

static void op_readdirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    do_readdir(req, ino, size, off, true);
}

/* ---------------------------------------------------------------- file handles */

static size_t fh_bucket(uint64_t fh)
{
    return (size_t)((fh ^ (fh >> 48)) * 0x9e3779b97f4a7c15ull >> 54) & (FH_BUCKETS - 1);
}

static struct open_file *fh_find_locked(struct sl_fs *fs, uint64_t fh)
{
    for (struct open_file *of = fs->fh_table[fh_bucket(fh)]; of; of = of->hnext)
        if (of->fh == fh)
            return of;
    return NULL;
}

/* Records `of` under of->fh and on the open list (teardown). */
static void fh_insert_locked(struct sl_fs *fs, struct open_file *of)
{
    size_t b = fh_bucket(of->fh);
    of->hnext = fs->fh_table[b];
    fs->fh_table[b] = of;
    pthread_mutex_lock(&fs->lock);
    of->next = fs->open_list.next;
    of->prev = &fs->open_list;
    fs->open_list.next->prev = of;
    fs->open_list.next = of;
    pthread_mutex_unlock(&fs->lock);
}

static struct open_file *fh_remove(struct sl_fs *fs, uint64_t fh)
{
    pthread_rwlock_wrlock(&fs->fh_lock);
    struct open_file **pp = &fs->fh_table[fh_bucket(fh)];
    while (*pp && (*pp)->fh != fh)
        pp = &(*pp)->hnext;
    struct open_file *of = *pp;
    if (of)
        *pp = of->hnext;
    pthread_rwlock_unlock(&fs->fh_lock);
    return of;
}

/* A new open file of node `n` (content opened from the store); NULL with an errno in *ret_err. */
static struct open_file *of_new(struct sl_fs *fs, struct layer *l, struct node *n, int *ret_err)
{
    const struct sl_toc_entry *e = n->e;
    struct sl_store_content *c = NULL;
    if (e->size > 0) {
        sl_error_t err = NULL;
        int r =
            e->has_digest ? sl_store_content_open(fs->store, e->digest, e->size, &c, &err) : -EIO;
        if (r < 0) {
            log_warn("fs: open `%s` in layer %s: %s", e->name, l->digest, sl_error_msg(err, r));
            sl_error_free(&err);
            *ret_err = EIO;
            return NULL;
        }
    }
    struct open_file *of = sl_xcalloc(1, sizeof *of);
    atomic_fetch_add(&l->refs, 1); /* the caller resolved l: its slot's reference is alive */
    of->fs = fs;
    of->layer = l;
    of->node = n;
    of->content = c;
    atomic_init(&of->refs, 1);
    return of;
}

/* The open file behind a handle. A handle of another generation was opened by the daemon this
 * one took the connection over from: open its inode again under the same handle. */
static struct open_file *fh_get(struct sl_fs *fs, fuse_ino_t ino, uint64_t fh)
{
    pthread_rwlock_rdlock(&fs->fh_lock);
    struct open_file *of = fh_find_locked(fs, fh);
    pthread_rwlock_unlock(&fs->fh_lock);
    if (of || fh >> 48 == fs->gen)
        return of;
    struct node *n;
    struct layer *l = resolve(fs, ino, &n);
    int e;
    if (!l || n->whiteout || n->e->type != SL_TOC_REG || !(of = of_new(fs, l, n, &e)))
        return NULL;
    of->fh = fh;
    pthread_rwlock_wrlock(&fs->fh_lock);
    struct open_file *other = fh_find_locked(fs, fh);
    if (!other)
        fh_insert_locked(fs, of);
    pthread_rwlock_unlock(&fs->fh_lock);
    if (other) { /* another read adopted it first */
        sl_store_content_unref(of->content);
        layer_unref(of->layer);
        free(of);
        return other;
    }
    log_info("fs: `%s` (layer %s), opened before the handoff, reopened", n->e->name, l->digest);
    return of;
}

static void of_unref(struct open_file *of)
{
    if (atomic_fetch_sub(&of->refs, 1) != 1)
        return;
    struct sl_fs *fs = of->fs;
    pthread_mutex_lock(&fs->lock);
    of->prev->next = of->next;
    of->next->prev = of->prev;
    pthread_mutex_unlock(&fs->lock);
    sl_store_content_unref(of->content);
    layer_unref(of->layer);
    free(of);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    struct node *n;
    struct layer *l = resolve(fs, ino, &n);
    if (!l) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    if (n->whiteout || n->e->type != SL_TOC_REG) {
        fuse_reply_err(req, n->e->type == SL_TOC_DIR ? EISDIR : ENXIO);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
        fuse_reply_err(req, EROFS);
        return;
    }
    int e;
    struct open_file *of = of_new(fs, l, n, &e);
    if (!of) {
        fuse_reply_err(req, e);
        return;
    }
    of->fh = ((uint64_t)fs->gen << 48) | (atomic_fetch_add(&fs->next_fh, 1) & 0xffffffffffffull);
    pthread_rwlock_wrlock(&fs->fh_lock);
    fh_insert_locked(fs, of);
    pthread_rwlock_unlock(&fs->fh_lock);
    atomic_fetch_add(&fs->n_opens, 1);
    trace(fs, req, l, n, SL_FS_EVENT_OPEN, false);
    fi->fh = of->fh;
    fi->keep_cache = 1; /* contents are immutable */
    fi->noflush = 1;
    if (fuse_reply_open(req, fi) == -ENOENT && fh_remove(fs, of->fh)) /* interrupted: no release */
        of_unref(of);
}

static void op_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    /* a predecessor's handle never read here is not known: nothing to free */
    struct open_file *of = fh_remove(fuse_req_userdata(req), fi->fh);
    if (of)
        of_unref(of);
    fuse_reply_err(req, 0);
}

/* Replies with present bytes straight from the content file. */
static void reply_data(fuse_req_t req, struct open_file *of, uint64_t off, size_t len)
{
    if (len == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(len);
    bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK | FUSE_BUF_FD_RETRY;
    bv.buf[0].fd = sl_store_content_fd(of->content);
    bv.buf[0].pos = (off_t)off;
    int r = fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
    if (r < 0 && r != -ENOENT)
        log_debug("fs: reply to read of `%s`: %s", of->node->e->name, strerror(-r));
}

static void parked_unlink(struct sl_fs *fs, struct parked_read *p)
{
    pthread_mutex_lock(&fs->lock);
    p->prev->next = p->next;
    p->next->prev = p->prev;
    atomic_fetch_sub(&fs->n_parked_now, 1);
    pthread_cond_broadcast(&fs->cond);
    pthread_mutex_unlock(&fs->lock);
}

/* Store callback, on the writer's thread: the chunks landed (status 0) or the store closes. */
static void parked_wake(void *ud, int status)
{
    struct parked_read *p = ud;
    struct open_file *of = p->of;
    struct sl_fs *fs = of->fs;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t waited = (int64_t)now.tv_sec * 1000000000 + now.tv_nsec - p->parked_ns;
    if (waited > 0)
        atomic_fetch_add(&fs->parked_wait_ns, (uint64_t)waited);
    if (status == 0)
        reply_data(p->req, of, p->off, p->len);
    else
        fuse_reply_err(p->req, EIO);
    parked_unlink(fs, p);
    free(p);
    of_unref(of);
}

/* First and last chunk of a file covering [off, off + len), len > 0. */
static void chunk_span(const struct sl_toc_entry *e, uint64_t off, size_t len, size_t *first,
                       size_t *count)
{
    size_t lo = 0, hi = e->n_chunks;
    while (hi - lo > 1) { /* last chunk with chunk_offset <= off */
        size_t mid = lo + (hi - lo) / 2;
        if (e->chunks[mid].chunk_offset <= off)
            lo = mid;
        else
            hi = mid;
    }
    size_t last = lo;
    uint64_t end = off + len;
    while (last + 1 < e->n_chunks && e->chunks[last + 1].chunk_offset < end)
        last++;
    *first = lo;
    *count = last - lo + 1;
}

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                    struct fuse_file_info *fi)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    struct open_file *of = fh_get(fs, ino, fi->fh);
    atomic_fetch_add_explicit(&fs->n_reads, 1, memory_order_relaxed);
    if (!of) {
        fuse_reply_err(req, EBADF);
        return;
    }
    const struct sl_toc_entry *e = of->node->e;
    if (off < 0 || (uint64_t)off >= e->size || size == 0 || !of->content) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    size_t len = (size_t)SL_MIN((uint64_t)size, e->size - (uint64_t)off);
    if (sl_store_content_complete(of->content)) { /* the common case: no lock, no allocation */
        if (fs->o.on_event)
            trace(fs, req, of->layer, of->node, SL_FS_EVENT_READ, false);
        reply_data(req, of, (uint64_t)off, len);
        return;
    }
    size_t first, count;
    chunk_span(e, (uint64_t)off, len, &first, &count);
    struct parked_read *p = sl_xcalloc(1, sizeof *p);
    p->req = req;
    p->of = of;
    p->off = (uint64_t)off;
    p->len = len;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    p->parked_ns = (int64_t)t0.tv_sec * 1000000000 + t0.tv_nsec;
    atomic_fetch_add(&of->refs, 1);
    pthread_mutex_lock(&fs->lock);
    p->next = fs->parked.next;
    p->prev = &fs->parked;
    fs->parked.next->prev = p;
    fs->parked.next = p;
    atomic_fetch_add(&fs->n_parked_now, 1);
    pthread_mutex_unlock(&fs->lock);
    /* traced before waiting: once registered, p and req may be gone at any moment */
    if (fs->o.on_event)
        trace(fs, req, of->layer, of->node, SL_FS_EVENT_READ, true);
    int r = sl_store_wait(of->content, &e->chunks[first], count, &p->waiter, parked_wake, p);
    if (r == 0) {
        atomic_fetch_add(&fs->n_parked, 1);
        return; /* parked_wake replies */
    }
    parked_unlink(fs, p);
    free(p);
    reply_data(req, of, (uint64_t)off, len);
    of_unref(of);
}

static void op_statfs(fuse_req_t req, fuse_ino_t ino)
{
    struct statvfs sv = {0};
    sv.f_bsize = sv.f_frsize = 4096;
    sv.f_namemax = 255;
    fuse_reply_statfs(req, &sv);
}

static const struct sl_toc_xattr *find_xattr(const struct node *n, const char *name)
{
    for (size_t i = 0; !n->whiteout && i < n->e->n_xattrs; i++)
        if (strcmp(n->e->xattrs[i].name, name) == 0)
            return &n->e->xattrs[i];
    return NULL;
}

static void reply_xattr_value(fuse_req_t req, const void *v, size_t len, size_t size)
{
    if (size == 0)
        fuse_reply_xattr(req, len);
    else if (size < len)
        fuse_reply_err(req, ERANGE);
    else
        fuse_reply_buf(req, v, len);
}

static void op_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    struct node *n;
    if (ino == FUSE_ROOT_ID) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    if (!resolve(fs, ino, &n)) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    if (n->opaque && strcmp(name, OPAQUE_XATTR) == 0) {
        reply_xattr_value(req, "y", 1, size);
        return;
    }
    const struct sl_toc_xattr *x = find_xattr(n, name);
    if (!x) {
        fuse_reply_err(req, ENODATA);
        return;
    }
    reply_xattr_value(req, x->value, x->len, size);
}

static void op_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    struct sl_fs *fs = fuse_req_userdata(req);
    struct node *n;
    if (ino == FUSE_ROOT_ID) {
        reply_xattr_value(req, "", 0, size);
        return;
    }
    if (!resolve(fs, ino, &n)) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    size_t len = n->opaque ? sizeof OPAQUE_XATTR : 0;
    for (size_t i = 0; !n->whiteout && i < n->e->n_xattrs; i++)
        len += strlen(n->e->xattrs[i].name) + 1;
    if (size == 0 || size < len) {
        reply_xattr_value(req, NULL, len, size);
        return;
    }
    _cleanup_free_ char *buf = sl_xmalloc(len + 1);
    size_t pos = 0;
    if (n->opaque) {
        memcpy(buf, OPAQUE_XATTR, sizeof OPAQUE_XATTR);
        pos = sizeof OPAQUE_XATTR;
    }
    for (size_t i = 0; !n->whiteout && i < n->e->n_xattrs; i++) {
        size_t k = strlen(n->e->xattrs[i].name) + 1;
        memcpy(buf + pos, n->e->xattrs[i].name, k);
        pos += k;
    }
    fuse_reply_buf(req, buf, pos);
}

static void op_init(void *ud, struct fuse_conn_info *conn)
{
    /* Parked reads are in flight for the kernel: readahead is "background" and the default cap
     * (12) would queue reads of present files behind parked ones. */
    conn->max_background = 1024;
    conn->congestion_threshold = 768;
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE;
    if (conn->capable & FUSE_CAP_CACHE_SYMLINKS)
        conn->want |= FUSE_CAP_CACHE_SYMLINKS;
}

static const struct fuse_lowlevel_ops ops = {
    .init = op_init,
    .lookup = op_lookup,
    .forget = op_forget,
    .forget_multi = op_forget_multi,
    .getattr = op_getattr,
    .readlink = op_readlink,
    .open = op_open,
    .read = op_read,
    .release = op_release,
    .opendir = op_opendir,
    .readdir = op_readdir,
    .readdirplus = op_readdirplus,
    .statfs = op_statfs,
    .getxattr = op_getxattr,
    .listxattr = op_listxattr,
};

/* ---------------------------------------------------------------- lifecycle */

int sl_fs_new(struct sl_store *store, const struct sl_fs_options *o, struct sl_fs **ret,
              sl_error_t *err)
{
    struct sl_fs *fs = sl_xcalloc(1, sizeof *fs);
    fs->store = store;
    if (o)
        fs->o = *o;
    fs->layers = sl_xcalloc(SL_FS_MAX_SLOT + 1, sizeof *fs->layers);
    fs->retired = sl_xcalloc(SL_FS_MAX_SLOT + 1, 1);
    pthread_mutex_init(&fs->layers_lock, NULL);
    pthread_mutex_init(&fs->workers_lock, NULL);
    pthread_mutex_init(&fs->lock, NULL);
    pthread_mutex_init(&fs->init_lock, NULL);
    pthread_rwlock_init(&fs->fh_lock, NULL);
    pthread_cond_init(&fs->cond, NULL);
    fs->parked.next = fs->parked.prev = &fs->parked;
    fs->open_list.next = fs->open_list.prev = &fs->open_list;
    fs->gen = 1;
    atomic_init(&fs->next_fh, 1);
    *ret = fs;
    return 0;
}

/* Workers block in read(2) on /dev/fuse; to stop them, sl_fs sets `stopping` and sends this
 * signal (its handler does nothing, without SA_RESTART) to those still in read, again every
 * 10 ms (a signal that came just before the read is lost). A worker unblocks the signal only
 * around its read and never drops a request it has read: it answers it (or parks it) before
 * looking at `stopping`. */
#define SL_FS_WAKE_SIGNAL (SIGRTMIN + 3)

static void wake_handler(int sig)
{
}

/* Keeps the kernel's FUSE_INIT: a successor replays it to set its session up the same way. */
static void keep_init(struct sl_fs *fs, const struct fuse_buf *b)
{
    if ((b->flags & FUSE_BUF_IS_FD) || b->size < sizeof(struct fuse_in_hdr))
        return;
    struct fuse_in_hdr in;
    memcpy(&in, b->mem, sizeof in);
    if (in.opcode != FUSE_OPCODE_INIT || b->size > SL_FS_INIT_MAX)
        return;
    pthread_mutex_lock(&fs->init_lock);
    memcpy(fs->init_req, b->mem, b->size);
    fs->init_len = b->size;
    pthread_mutex_unlock(&fs->init_lock);
}

static void *worker_main(void *ud)
{
    struct worker *w = ud;
    struct sl_fs *fs = w->fs;
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SL_FS_WAKE_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    struct fuse_buf buf = {0};
    for (;;) {
        atomic_store(&w->in_read, true);
        if (atomic_load(&fs->stopping))
            break;
        /* the wake signal may interrupt the read only: never a reply being written */
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        int r = fuse_session_receive_buf(fs->se, &buf);
        pthread_sigmask(SIG_BLOCK, &set, NULL);
        atomic_store(&w->in_read, false);
        if (r == -EINTR || r == -EAGAIN)
            continue;
        if (r <= 0) { /* 0: unmounted or aborted (ENODEV) */
            if (r < 0)
                log_warn("fs: reading /dev/fuse: %s", strerror(-r));
            break;
        }
        keep_init(fs, &buf);
        fuse_session_process_buf(fs->se, &buf);
        atomic_fetch_add(&w->served, 1);
    }
    atomic_store(&w->in_read, false);
    atomic_store(&w->done, true);
    free(buf.mem);
    return NULL;
}

static int start_workers(struct sl_fs *fs, sl_error_t *err)
{
    struct sigaction sa = {.sa_handler = wake_handler}; /* no SA_RESTART */
    sigemptyset(&sa.sa_mask);
    sigaction(SL_FS_WAKE_SIGNAL, &sa, NULL);
    unsigned n = fs->o.max_threads ? fs->o.max_threads : DEFAULT_WORKERS;
    pthread_mutex_lock(&fs->workers_lock);
    fs->workers = sl_xcalloc(n, sizeof *fs->workers);
    atomic_store(&fs->stopping, false);
    for (fs->n_workers = 0; fs->n_workers < n; fs->n_workers++) {
        struct worker *w = &fs->workers[fs->n_workers];
        w->fs = fs;
        int r = pthread_create(&w->thread, NULL, worker_main, w);
        if (r != 0) {
            if (fs->n_workers > 0)
                break; /* fewer workers still serve */
            free(fs->workers);
            fs->workers = NULL;
            pthread_mutex_unlock(&fs->workers_lock);
            return sl_error_make(err, r, "start FUSE workers: %s", strerror(r));
        }
    }
    pthread_mutex_unlock(&fs->workers_lock);
    return 0;
}

/* Stops the workers; requests they already read are answered (or parked) first. */
static void stop_workers(struct sl_fs *fs)
{
    pthread_mutex_lock(&fs->workers_lock);
    atomic_store(&fs->stopping, true);
    for (unsigned i = 0; i < fs->n_workers; i++) {
        struct worker *w = &fs->workers[i];
        for (;;) {
            struct timespec deadline;
            clock_gettime(CLOCK_REALTIME, &deadline);
            deadline.tv_nsec += 10 * 1000 * 1000;
            if (deadline.tv_nsec >= 1000000000)
                deadline.tv_sec++, deadline.tv_nsec -= 1000000000;
            if (atomic_load(&w->in_read))
                pthread_kill(w->thread, SL_FS_WAKE_SIGNAL);
            if (pthread_timedjoin_np(w->thread, NULL, &deadline) == 0)
                break;
        }
    }
    free(fs->workers);
    fs->workers = NULL;
    fs->n_workers = 0;
    pthread_mutex_unlock(&fs->workers_lock);
}

static struct fuse_session *session_new(struct sl_fs *fs)
{
    char prog[] = "starlight-fs", dash_o[] = "-o", dash_d[] = "-d";
    char opts[] = "allow_other,default_permissions,ro,fsname=starlight,subtype=starlight";
    char *argv[] = {prog, dash_o, opts, fs->o.debug ? dash_d : NULL, NULL};
    struct fuse_args args = FUSE_ARGS_INIT(fs->o.debug ? 4 : 3, argv);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, fs);
    fuse_opt_free_args(&args);
    return se;
}

static void set_mountpoint(struct sl_fs *fs, const char *mountpoint)
{
    fs->mountpoint = realpath(mountpoint, NULL);
    if (!fs->mountpoint)
        fs->mountpoint = sl_xstrdup(mountpoint);
}

/* Gives the connection `fd` (always taken) to a new session and starts serving it. With
 * `init`, the kernel negotiated with a predecessor: replaying its FUSE_INIT sets this session
 * up the same way (the reply goes to a request answered long ago: the kernel drops it). */
static int attach(struct sl_fs *fs, const char *mountpoint, int fd, const unsigned char *init,
                  size_t init_len, sl_error_t *err)
{
    fs->se = session_new(fs);
    if (!fs->se) {
        close(fd);
        return sl_error_make(err, EIO, "fuse_session_new failed");
    }
    char dev[32];
    snprintf(dev, sizeof dev, "/dev/fd/%d", fd);
    if (fuse_session_mount(fs->se, dev) != 0) { /* takes the descriptor, mounts nothing */
        close(fd);
        fuse_session_destroy(fs->se);
        fs->se = NULL;
        return sl_error_make(err, EIO, "attach the FUSE connection (fd %d) failed", fd);
    }
    if (init) {
        _cleanup_free_ unsigned char *copy = sl_xmalloc(init_len);
        memcpy(copy, init, init_len);
        struct fuse_buf b = {.size = init_len, .mem = copy};
        fuse_session_process_buf(fs->se, &b);
        memcpy(fs->init_req, init, init_len);
        fs->init_len = init_len;
    }
    int r = start_workers(fs, err);
    if (r < 0) {
        fuse_session_destroy(fs->se); /* closes fd */
        fs->se = NULL;
        return r;
    }
    set_mountpoint(fs, mountpoint);
    return 0;
}

int sl_fs_mount(struct sl_fs *fs, const char *mountpoint, sl_error_t *err)
{
    if (fs->se)
        return sl_error_make(err, EBUSY, "fs already mounted at %s", fs->mountpoint);
    struct stat st;
    if (stat(mountpoint, &st) < 0 && errno == ENOTCONN)
        umount2(mountpoint, MNT_DETACH); /* a crashed predecessor's mount */
    if (mkdir(mountpoint, 0755) < 0 && errno != EEXIST)
        return sl_error_make(err, errno, "mkdir %s: %s", mountpoint, strerror(errno));
    /* Mounted here rather than by libfuse, so that the session never owns the mount: after a
     * handoff (sl_fs_detach) the mount belongs to the successor. Needs CAP_SYS_ADMIN. */
    int fd = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return sl_error_make(err, errno, "open /dev/fuse: %s", strerror(errno));
    char opts[160];
    snprintf(opts, sizeof opts,
             "fd=%d,rootmode=40000,user_id=%u,group_id=%u,default_permissions,allow_other", fd,
             (unsigned)getuid(), (unsigned)getgid());
    if (mount("starlight", mountpoint, "fuse.starlight", MS_NOSUID | MS_NODEV | MS_RDONLY, opts) <
        0) {
        int e = errno;
        close(fd);
        return sl_error_make(err, e, "mount FUSE at %s: %s", mountpoint, strerror(e));
    }
    int r = attach(fs, mountpoint, fd, NULL, 0, err);
    if (r < 0)
        umount2(mountpoint, MNT_DETACH);
    return r;
}

int sl_fs_adopt(struct sl_fs *fs, const char *mountpoint, struct sl_fs_handoff *h, sl_error_t *err)
{
    _cleanup_close_ int fd = h->fd;
    h->fd = -1;
    if (fs->se)
        return sl_error_make(err, EBUSY, "fs already mounted at %s", fs->mountpoint);
    struct fuse_in_hdr in = {0};
    if (h->init_len >= sizeof in)
        memcpy(&in, h->init, sizeof in);
    if (fd < 0 || h->init_len < sizeof in + 8 || h->init_len > SL_FS_INIT_MAX ||
        in.len != h->init_len || in.opcode != FUSE_OPCODE_INIT)
        return sl_error_make(err, EINVAL, "handoff: no FUSE connection or no valid FUSE_INIT");
    if (h->gen == 0 || h->gen > 0xffff)
        return sl_error_make(err, EINVAL, "handoff: handle generation %u out of range", h->gen);
    int r = sl_fs_reserve_slots(fs, h, err);
    if (r < 0)
        return r;
    fs->gen = h->gen % 0xffff + 1;
    return attach(fs, mountpoint, TAKE_FD(fd), h->init, h->init_len, err);
}

int sl_fs_reserve_slots(struct sl_fs *fs, const struct sl_fs_handoff *h, sl_error_t *err)
{
    int r = 0;
    pthread_mutex_lock(&fs->layers_lock);
    for (uint32_t s = 1; s <= SL_FS_MAX_SLOT; s++) {
        bool retired = h->retired[s / 8] & (1u << (s % 8)), used = h->used[s / 8] & (1u << (s % 8));
        if (retired && atomic_load(&fs->layers[s]) && r == 0)
            r = sl_error_make(err, EEXIST,
                              "handoff: layer slot %u, retired by the previous daemon, is in use",
                              s);
        if (retired)
            fs->retired[s] = SLOT_RETIRED;
        else if (used && !atomic_load(&fs->layers[s]) && fs->retired[s] == SLOT_FREE)
            fs->retired[s] = SLOT_RESERVED;
    }
    pthread_mutex_unlock(&fs->layers_lock);
    return r;
}

bool sl_fs_wait_unparked(struct sl_fs *fs, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000)
        deadline.tv_sec++, deadline.tv_nsec -= 1000000000;
    pthread_mutex_lock(&fs->lock);
    while (fs->parked.next != &fs->parked)
        if (pthread_cond_timedwait(&fs->cond, &fs->lock, &deadline) == ETIMEDOUT)
            break;
    bool empty = fs->parked.next == &fs->parked;
    pthread_mutex_unlock(&fs->lock);
    return empty;
}

/* Parked reads: cancel and fail them with EIO, or wait for a writer already replying. Returns
 * how many were failed. */
static size_t fail_parked(struct sl_fs *fs)
{
    size_t n = 0;
    pthread_mutex_lock(&fs->lock);
    while (fs->parked.next != &fs->parked) {
        struct parked_read *p = fs->parked.next;
        if (sl_store_wait_cancel(p->of->content, &p->waiter)) {
            p->prev->next = p->next;
            p->next->prev = p->prev;
            atomic_fetch_sub(&fs->n_parked_now, 1);
            pthread_mutex_unlock(&fs->lock);
            fuse_reply_err(p->req, EIO); /* a closed device just drops it */
            struct open_file *of = p->of;
            free(p);
            of_unref(of);
            n++;
            pthread_mutex_lock(&fs->lock);
        } else {
            pthread_cond_wait(&fs->cond, &fs->lock);
        }
    }
    pthread_mutex_unlock(&fs->lock);
    return n;
}

int sl_fs_detach(struct sl_fs *fs, struct sl_fs_handoff *ret, sl_error_t *err)
{
    ret->fd = -1;
    if (!fs->se || fs->detached)
        return sl_error_make(err, ENOTCONN, "fs not mounted");
    stop_workers(fs);
    size_t failed = fail_parked(fs);
    if (failed)
        log_warn("fs: handoff: %zu reads waiting for chunks failed with EIO", failed);
    pthread_mutex_lock(&fs->init_lock);
    size_t n = fs->init_len;
    memcpy(ret->init, fs->init_req, n);
    pthread_mutex_unlock(&fs->init_lock);
    if (n == 0) {
        int r = start_workers(fs, err); /* keep serving */
        return r < 0 ? r : sl_error_make(err, EAGAIN, "handoff: FUSE_INIT not received yet");
    }
    ret->init_len = (uint32_t)n;
    ret->gen = fs->gen;
    memset(ret->retired, 0, sizeof ret->retired);
    memset(ret->used, 0, sizeof ret->used);
    pthread_mutex_lock(&fs->layers_lock);
    for (uint32_t s = 1; s <= SL_FS_MAX_SLOT; s++) {
        if (fs->retired[s] == SLOT_RETIRED)
            ret->retired[s / 8] |= (uint8_t)(1u << (s % 8));
        else if (atomic_load(&fs->layers[s]) || fs->retired[s] == SLOT_RESERVED)
            ret->used[s / 8] |= (uint8_t)(1u << (s % 8));
    }
    pthread_mutex_unlock(&fs->layers_lock);
    ret->fd = fcntl(fuse_session_fd(fs->se), F_DUPFD_CLOEXEC, 3);
    if (ret->fd < 0) {
        int e = errno;
        int r = start_workers(fs, err);
        return r < 0 ? r : sl_error_make(err, e, "dup /dev/fuse: %s", strerror(e));
    }
    fs->detached = true;
    return 0;
}

void sl_fs_unmount_abandoned(const char *mountpoint)
{
    if (umount2(mountpoint, MNT_DETACH) < 0)
        log_error("fs: unmount the abandoned mount %s: %s (unmount it by hand)", mountpoint,
                  strerror(errno));
    else
        log_warn("fs: unmounted %s: no successor took it (mounted layers are gone)", mountpoint);
}

void sl_fs_free(struct sl_fs *fs)
{
    if (!fs)
        return;
    if (fs->se && !fs->detached) {
        /* lazily: overlays may still hold layer dirs */
        if (umount2(fs->mountpoint, MNT_DETACH) < 0)
            log_warn("fs: unmount %s: %s", fs->mountpoint, strerror(errno));
        stop_workers(fs);
        fail_parked(fs);
    }
    /* Files the kernel never released (connection gone or handed over). */
    pthread_mutex_lock(&fs->lock);
    while (fs->open_list.next != &fs->open_list) {
        struct open_file *of = fs->open_list.next;
        of->prev->next = of->next;
        of->next->prev = of->prev;
        sl_store_content_unref(of->content);
        layer_unref(of->layer);
        free(of);
    }
    pthread_mutex_unlock(&fs->lock);
    if (fs->se)
        fuse_session_destroy(fs->se); /* closes its descriptor: a successor holds a copy */
    for (unsigned s = 1; s <= SL_FS_MAX_SLOT; s++)
        layer_unref(atomic_load(&fs->layers[s]));
    while (fs->removed) {
        struct layer *l = fs->removed;
        fs->removed = l->next_removed;
        layer_unref(l);
    }
    free(fs->layers);
    free(fs->retired);
    pthread_mutex_destroy(&fs->layers_lock);
    pthread_mutex_destroy(&fs->workers_lock);
    pthread_mutex_destroy(&fs->lock);
    pthread_mutex_destroy(&fs->init_lock);
    pthread_rwlock_destroy(&fs->fh_lock);
    pthread_cond_destroy(&fs->cond);
    free(fs->mountpoint);
    free(fs);
}

const char *sl_fs_mountpoint(const struct sl_fs *fs)
{
    return fs->mountpoint;
}

int sl_fs_add_layer(struct sl_fs *fs, const char *layer_digest, struct sl_toc *toc, uint32_t slot,
                    sl_error_t *err)
{
    _cleanup_toc_ struct sl_toc *owned = toc;
    if (!sl_digest_valid(layer_digest))
        return sl_error_make(err, EINVAL, "invalid layer digest `%.80s`", layer_digest);
    if (slot > SL_FS_MAX_SLOT)
        return sl_error_make(err, EINVAL, "layer slot %u out of range", slot);
    struct layer *l = sl_xcalloc(1, sizeof *l);
    memcpy(l->digest, layer_digest, SL_DIGEST_STR_LEN);
    l->hex = l->digest + 7;
    l->toc = TAKE_PTR(owned);
    atomic_init(&l->refs, 1);
    int r = layer_build(l, err);
    if (r < 0) {
        layer_free(l);
        return r;
    }
    pthread_mutex_lock(&fs->layers_lock);
    unsigned max = atomic_load(&fs->max_slot);
    for (unsigned s = 1; s <= max; s++) {
        struct layer *o = atomic_load(&fs->layers[s]);
        if (o && strcmp(o->digest, layer_digest) == 0) {
            pthread_mutex_unlock(&fs->layers_lock);
            layer_free(l);
            return sl_error_make(err, EEXIST, "layer %s already added", layer_digest);
        }
    }
    if (slot == 0) {
        for (slot = 1;
             slot <= SL_FS_MAX_SLOT && (atomic_load(&fs->layers[slot]) || fs->retired[slot]);
             slot++)
            ;
        if (slot > SL_FS_MAX_SLOT) {
            pthread_mutex_unlock(&fs->layers_lock);
            layer_free(l);
            return sl_error_make(err, ENOSPC,
                                 "no free layer slot: all %u inode ranges of this mount are "
                                 "served or were retired (restart the daemon without a handoff "
                                 "to start a new mount)",
                                 SL_FS_MAX_SLOT);
        }
    }
    if (atomic_load(&fs->layers[slot]) || fs->retired[slot] == SLOT_RETIRED) {
        pthread_mutex_unlock(&fs->layers_lock);
        layer_free(l);
        return sl_error_make(err, EEXIST, "layer slot %u is taken", slot);
    }
    l->slot = slot;
    fs->retired[slot] = SLOT_FREE; /* a reserved slot taken by its own layer */
    atomic_store(&fs->layers[slot], l);
    if (slot > max)
        atomic_store(&fs->max_slot, slot);
    pthread_mutex_unlock(&fs->layers_lock);
    return 0;
}

int sl_fs_layer_dir(struct sl_fs *fs, const char *layer_digest, char **ret_path, sl_error_t *err)
{
    /* under the lock: a layer being removed is not freed meanwhile */
    pthread_mutex_lock(&fs->layers_lock);
    unsigned max = atomic_load(&fs->max_slot);
    for (unsigned s = 1; s <= max; s++) {
        struct layer *l = atomic_load(&fs->layers[s]);
        if (l && strcmp(l->digest, layer_digest) == 0) {
            if (fs->mountpoint)
                *ret_path = sl_xasprintf("%s/%s", fs->mountpoint, l->hex);
            pthread_mutex_unlock(&fs->layers_lock);
            return fs->mountpoint ? 0 : sl_error_make(err, ENOTCONN, "fs not mounted");
        }
    }
    pthread_mutex_unlock(&fs->layers_lock);
    return sl_error_make(err, ENOENT, "layer %.80s is not served", layer_digest);
}

#define QUIESCE_TIMEOUT_MS 10000 /* default of sl_fs_options.quiesce_timeout_ms */

/* Waits until every worker has finished the request it was serving when called (or is waiting
 * for the next one): a handler that loaded a slot before it was cleared is done with it.
 * Handlers never block for long (reads that must wait are parked), so this takes microseconds
 * to milliseconds. False on timeout. Never called from a worker. */
static bool quiesce(struct sl_fs *fs)
{
    unsigned timeout_ms = fs->o.quiesce_timeout_ms ? fs->o.quiesce_timeout_ms : QUIESCE_TIMEOUT_MS;
    pthread_mutex_lock(&fs->workers_lock);
    unsigned n = fs->n_workers;
    uint64_t *seen = sl_xcalloc(n ? n : 1, sizeof *seen);
    for (unsigned i = 0; i < n; i++)
        seen[i] = atomic_load(&fs->workers[i].served);
    bool ok = true;
    for (unsigned i = 0; i < n && ok; i++) {
        struct worker *w = &fs->workers[i];
        for (int waited = 0; !atomic_load(&w->in_read) && !atomic_load(&w->done) &&
                             atomic_load(&w->served) == seen[i];
             waited++) {
            if (waited >= (int)timeout_ms * 10) {
                ok = false;
                break;
            }
            struct timespec ts = {.tv_nsec = 100 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    free(seen);
    pthread_mutex_unlock(&fs->workers_lock);
    return ok;
}

int sl_fs_remove_layer(struct sl_fs *fs, const char *layer_digest, sl_error_t *err)
{
    pthread_mutex_lock(&fs->layers_lock);
    struct layer *l = NULL;
    unsigned max = atomic_load(&fs->max_slot);
    for (unsigned s = 1; s <= max && !l; s++) {
        struct layer *o = atomic_load(&fs->layers[s]);
        if (o && strcmp(o->digest, layer_digest) == 0)
            l = o;
    }
    if (l) {
        atomic_store(&fs->layers[l->slot], NULL);
        fs->retired[l->slot] = SLOT_RETIRED;
        l->next_removed = fs->removed;
        fs->removed = l;
    }
    pthread_mutex_unlock(&fs->layers_lock);
    if (!l)
        return sl_error_make(err, ENOENT, "layer %.80s is not served", layer_digest);
    /* The kernel's cached entry of the layer's directory is dropped by sl_fs_reclaim, not here:
     * invalidating waits for a lookup in the root being served, which needs a free worker, and
     * the caller (gc) holds a lock that workers opening a content wait for. */
    return 0;
}

void sl_fs_reclaim(struct sl_fs *fs)
{
    pthread_mutex_lock(&fs->layers_lock);
    struct layer *list = fs->removed;
    fs->removed = NULL;
    pthread_mutex_unlock(&fs->layers_lock);
    if (!list)
        return;
    /* The kernel caches the layers' directory entries (entry timeout): drop them, so the
     * directories are gone from MNT. Not from a worker nor under a lock a worker may wait for:
     * the kernel waits for a lookup in the root being served to be answered. (The layers stay
     * alive: the slot references are dropped below, by this call only.) A layer kept from an
     * earlier call is invalidated again: harmless. */
    for (struct layer *l = list; l && fs->se && !fs->detached; l = l->next_removed) {
        int r = fuse_lowlevel_notify_inval_entry(fs->se, FUSE_ROOT_ID, l->hex, strlen(l->hex));
        if (r < 0 && r != -ENOENT)
            log_debug("fs: invalidate %s: %s", l->hex, strerror(-r));
    }
    if (!quiesce(fs)) {
        /* a handler may still use them: keep them for the next call rather than risk a free */
        log_warn("fs: a FUSE worker did not finish its request within %u ms: removed layers "
                 "are freed by a later reclaim",
                 fs->o.quiesce_timeout_ms ? fs->o.quiesce_timeout_ms : QUIESCE_TIMEOUT_MS);
        pthread_mutex_lock(&fs->layers_lock);
        struct layer *tail = list;
        while (tail->next_removed)
            tail = tail->next_removed;
        tail->next_removed = fs->removed;
        fs->removed = list;
        pthread_mutex_unlock(&fs->layers_lock);
        return;
    }
    while (list) {
        struct layer *l = list;
        list = l->next_removed;
        layer_unref(l);
    }
}

int sl_fs_lowerdir(void *ud, const char *layer_digest, char **ret_path, sl_error_t *err)
{
    return sl_fs_layer_dir(ud, layer_digest, ret_path, err);
}

void sl_fs_get_stats(struct sl_fs *fs, struct sl_fs_stats *ret)
{
    ret->reads = atomic_load(&fs->n_reads);
    ret->reads_parked = atomic_load(&fs->n_parked);
    ret->parked_now = atomic_load(&fs->n_parked_now);
    ret->opens = atomic_load(&fs->n_opens);
    ret->parked_wait_ns = atomic_load(&fs->parked_wait_ns);
}
