/* store.c — content-addressed store (see store.h for layout, durability and waiting). */
#include "store.h"
#include "store-gc.h"
#include "store-internal.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SCHEMA_VERSION 1
/* Completed contents are made durable in batches: one syncfs and one transaction per batch
 * instead of two fsyncs and a synchronous commit per content (see content_finish). */
#define DURABLE_BATCH    256
#define DURABLE_SLICE_NS 500000000LL
#define MAX_MEMBER       ((uint64_t)SL_TOC_MAX_CHUNK + (1u << 20)) /* member bytes we accept */

/* One present chunk of a partial content. */
struct present {
    uint64_t off, size;
    char digest[SL_DIGEST_STR_LEN];
};

struct sl_store_content {
    struct sl_store *store;
    struct sl_store_content *hnext; /* hash chain */
    char digest[SL_DIGEST_STR_LEN];
    uint64_t size;
    unsigned refs;        /* handles + in-flight writers; under store->lock */
    int fd;               /* open while refs > 0 */
    atomic_bool complete; /* read lock-free on the FUSE read path */
    bool completing;
    struct present *chunks; /* sorted by (off, size), partial contents only */
    size_t n_chunks, cap_chunks;
    struct sl_store_waiter waiters; /* list head */
};

struct sl_store {
    char *root;
    bool sync, verify_files;
    int root_fd;
    pthread_mutex_t lock; /* contents map, chunk lists, waiters, refs, fds */
    struct sl_store_content **buckets;
    size_t n_buckets, n_contents;
    pthread_mutex_t db_lock; /* the SQLite connection */
    sqlite3 *db;
    struct sl_store_stats stats; /* under lock */
    /* Contents renamed into content/sha256/ (complete in memory) whose completion is not yet
     * durable nor committed; under lock. flush_lock orders batches: a batch is committed only
     * after its own syncfs and after every earlier batch. */
    char (*undurable)[SL_DIGEST_STR_LEN];
    size_t n_undurable;
    int64_t undurable_since_ns;
    pthread_mutex_t flush_lock;
    /* Garbage collection (store-gc.h): held shared while contents are loaded or expected and
     * while a layer is recorded, exclusively while the collector removes contents. */
    pthread_rwlock_t gc_lock;
    char (*pins)[SL_DIGEST_STR_LEN]; /* pinned layers, one entry per pin; under lock */
    size_t n_pins;
};

/* ---------------------------------------------------------------- helpers */

static int errno_or(int fallback)
{
    return errno > 0 ? errno : fallback;
}

static int64_t mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static const char *hex_of(const char *digest)
{
    return digest + 7;
}

static size_t bucket_of(const struct sl_store *s, const char *digest)
{
    uint64_t h = 1469598103934665603ull;
    for (const char *p = hex_of(digest); *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ull;
    return (size_t)(h & (s->n_buckets - 1));
}

/* Relative (to root_fd) paths, built from a validated digest only. */
static void final_path(const char *digest, char out[128])
{
    const char *h = hex_of(digest);
    snprintf(out, 128, "content/sha256/%.2s/%s", h, h);
}
static void final_dir(const char *digest, char out[128])
{
    snprintf(out, 128, "content/sha256/%.2s", hex_of(digest));
}
static void partial_path(const char *digest, char out[128])
{
    snprintf(out, 128, "content/partial/%s", hex_of(digest));
}

static int mkdir_at(int dfd, const char *path)
{
    if (mkdirat(dfd, path, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static int pwrite_all(int fd, const void *buf, size_t len, uint64_t off)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = pwrite(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        p += r, len -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

static int pread_all(int fd, void *buf, size_t len, uint64_t off)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0)
            return -EIO;
        p += r, len -= (size_t)r, off += (uint64_t)r;
    }
    return 0;
}

/* sha256 of a whole file. */
static int hash_fd(int fd, uint64_t size, char out[SL_DIGEST_STR_LEN])
{
    enum { PIECE = 1 << 20 };
    _cleanup_free_ uint8_t *buf = sl_xmalloc(PIECE);
    struct sl_sha256 h;
    sl_sha256_init(&h);
    for (uint64_t off = 0; off < size;) {
        size_t n = (size_t)SL_MIN((uint64_t)PIECE, size - off);
        int r = pread_all(fd, buf, n, off);
        if (r < 0) {
            sl_sha256_done(&h);
            return r;
        }
        sl_sha256_update(&h, buf, n);
        off += n;
    }
    sl_sha256_final(&h, out);
    return 0;
}

/* ---------------------------------------------------------------- database */

static int db_err(struct sl_store *s, sl_error_t *err, int rc, const char *what)
{
    return sl_error_make(err, rc == SQLITE_FULL ? ENOSPC : EIO, "store database: %s: %s", what,
                         sqlite3_errmsg(s->db));
}

/* Runs a statement with text/int64 parameters described by `types` ('t' text, 'i' int64,
 * 'b' blob = pointer + size_t). Caller holds db_lock. */
int sl_store_db_exec(struct sl_store *s, sl_error_t *err, const char *sql, const char *types, ...)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_err(s, err, rc, sql);
    va_list ap;
    va_start(ap, types);
    for (int i = 0; types && types[i]; i++) {
        if (types[i] == 't') {
            sqlite3_bind_text(st, i + 1, va_arg(ap, const char *), -1, SQLITE_TRANSIENT);
        } else if (types[i] == 'i') {
            sqlite3_bind_int64(st, i + 1, va_arg(ap, int64_t));
        } else {
            const void *p = va_arg(ap, const void *);
            size_t n = va_arg(ap, size_t);
            sqlite3_bind_blob64(st, i + 1, p, n, SQLITE_TRANSIENT);
        }
    }
    va_end(ap);
    do
        rc = sqlite3_step(st);
    while (rc == SQLITE_ROW);
    int r = rc == SQLITE_DONE ? 0 : db_err(s, err, rc, sql);
    sqlite3_finalize(st);
    return r;
}

void sl_store_layer_pin(struct sl_store *s, const char *digest)
{
    pthread_mutex_lock(&s->lock);
    s->pins = sl_xrealloc(s->pins, (s->n_pins + 1) * sizeof *s->pins);
    snprintf(s->pins[s->n_pins++], sizeof *s->pins, "%s", digest);
    pthread_mutex_unlock(&s->lock);
}

void sl_store_layer_unpin(struct sl_store *s, const char *digest)
{
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < s->n_pins; i++)
        if (strcmp(s->pins[i], digest) == 0) {
            memcpy(s->pins[i], s->pins[--s->n_pins], sizeof *s->pins);
            break;
        }
    pthread_mutex_unlock(&s->lock);
}

bool sl_store_layer_pinned(struct sl_store *s, const char *digest)
{
    bool pinned = false;
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; !pinned && i < s->n_pins; i++)
        pinned = strcmp(s->pins[i], digest) == 0;
    pthread_mutex_unlock(&s->lock);
    return pinned;
}

bool sl_store_synced(const struct sl_store *s)
{
    return s->sync;
}

sqlite3 *sl_store_db_lock(struct sl_store *s)
{
    pthread_mutex_lock(&s->db_lock);
    return s->db;
}

void sl_store_db_unlock(struct sl_store *s)
{
    pthread_mutex_unlock(&s->db_lock);
}

static int db_open(struct sl_store *s, sl_error_t *err)
{
    _cleanup_free_ char *path = sl_xasprintf("%s/store.db", s->root);
    int rc = sqlite3_open_v2(path, &s->db,
                             SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX |
                                 SQLITE_OPEN_EXRESCODE,
                             NULL);
    if (rc != SQLITE_OK)
        return sl_error_make(err, EIO, "open %s: %s", path,
                             s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
    sqlite3_busy_timeout(s->db, 5000);
    static const char schema[] =
        "PRAGMA journal_mode=WAL;"
        "PRAGMA foreign_keys=ON;"
        "CREATE TABLE IF NOT EXISTS content("
        "  digest TEXT PRIMARY KEY, size INTEGER NOT NULL,"
        "  complete INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS chunk("
        "  content TEXT NOT NULL, off INTEGER NOT NULL, size INTEGER NOT NULL,"
        "  digest TEXT NOT NULL, PRIMARY KEY(content, off, size, digest)) WITHOUT ROWID;"
        "CREATE TABLE IF NOT EXISTS layer("
        "  id INTEGER PRIMARY KEY AUTOINCREMENT, digest TEXT NOT NULL UNIQUE,"
        "  toc_digest TEXT NOT NULL, blob_size INTEGER NOT NULL, toc_offset INTEGER NOT NULL,"
        "  tail BLOB NOT NULL, state TEXT NOT NULL, created INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS layer_content("
        "  layer TEXT NOT NULL, content TEXT NOT NULL, PRIMARY KEY(layer, content))"
        "  WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS layer_content_by_content ON layer_content(content);";
    char *msg = NULL;
    rc = sqlite3_exec(s->db, schema, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        int r = sl_error_make(err, EIO, "store database schema: %s", msg ? msg : "?");
        sqlite3_free(msg);
        return r;
    }
    char sync_sql[64];
    snprintf(sync_sql, sizeof sync_sql, "PRAGMA synchronous=%s; PRAGMA user_version=%d;",
             s->sync ? "NORMAL" : "OFF", SCHEMA_VERSION);
    rc = sqlite3_exec(s->db, sync_sql, NULL, NULL, NULL);
    if (rc != SQLITE_OK)
        return db_err(s, err, rc, "pragma");
    return 0;
}

/* ---------------------------------------------------------------- contents in memory */

static struct sl_store_content *find_locked(struct sl_store *s, const char *digest)
{
    for (struct sl_store_content *c = s->buckets[bucket_of(s, digest)]; c; c = c->hnext)
        if (strcmp(c->digest, digest) == 0)
            return c;
    return NULL;
}

static void insert_locked(struct sl_store *s, struct sl_store_content *c)
{
    if (s->n_contents + 1 > s->n_buckets) {
        size_t old_n = s->n_buckets;
        struct sl_store_content **old = s->buckets;
        s->n_buckets *= 2;
        s->buckets = sl_xcalloc(s->n_buckets, sizeof *s->buckets);
        for (size_t i = 0; i < old_n; i++)
            for (struct sl_store_content *e = old[i], *nx; e; e = nx) {
                nx = e->hnext;
                size_t b = bucket_of(s, e->digest);
                e->hnext = s->buckets[b];
                s->buckets[b] = e;
            }
        free(old);
    }
    size_t b = bucket_of(s, c->digest);
    c->hnext = s->buckets[b];
    s->buckets[b] = c;
    s->n_contents++;
}

static int cmp_present(const struct present *a, uint64_t off, uint64_t size)
{
    if (a->off != off)
        return a->off < off ? -1 : 1;
    if (a->size != size)
        return a->size < size ? -1 : 1;
    return 0;
}

/* Index of the first present chunk >= (off, size). */
static size_t lower_bound(const struct sl_store_content *c, uint64_t off, uint64_t size)
{
    size_t lo = 0, hi = c->n_chunks;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cmp_present(&c->chunks[mid], off, size) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static bool chunk_present_locked(const struct sl_store_content *c, uint64_t off, uint64_t size,
                                 const char *digest)
{
    for (size_t i = lower_bound(c, off, size);
         i < c->n_chunks && cmp_present(&c->chunks[i], off, size) == 0; i++)
        if (strcmp(c->chunks[i].digest, digest) == 0)
            return true;
    return false;
}

static bool add_present_locked(struct sl_store_content *c, uint64_t off, uint64_t size,
                               const char *digest)
{
    if (chunk_present_locked(c, off, size, digest))
        return false;
    if (c->n_chunks == c->cap_chunks) {
        c->cap_chunks = c->cap_chunks ? c->cap_chunks * 2 : 8;
        c->chunks = sl_xrealloc(c->chunks, c->cap_chunks * sizeof *c->chunks);
    }
    size_t i = lower_bound(c, off, size);
    memmove(&c->chunks[i + 1], &c->chunks[i], (c->n_chunks - i) * sizeof *c->chunks);
    c->chunks[i].off = off;
    c->chunks[i].size = size;
    memcpy(c->chunks[i].digest, digest, SL_DIGEST_STR_LEN);
    c->n_chunks++;
    return true;
}

/* True when the present chunks cover [0, size). */
static bool covered_locked(const struct sl_store_content *c)
{
    uint64_t end = 0;
    for (size_t i = 0; i < c->n_chunks && end < c->size; i++) {
        if (c->chunks[i].off > end)
            return false;
        end = SL_MAX(end, c->chunks[i].off + c->chunks[i].size);
    }
    return end >= c->size;
}

static bool waiter_satisfied_locked(const struct sl_store_content *c,
                                    const struct sl_store_waiter *w)
{
    if (atomic_load(&c->complete))
        return true;
    for (size_t i = 0; i < w->n; i++)
        if (!chunk_present_locked(c, w->chunks[i].chunk_offset, w->chunks[i].size,
                                  w->chunks[i].digest))
            return false;
    return true;
}

static void waiter_unlink(struct sl_store_waiter *w)
{
    w->prev->next = w->next;
    w->next->prev = w->prev;
    w->next = w->prev = NULL;
    w->queued = false;
}

/* Moves every satisfied waiter of c onto the singly linked list *fire (via ->next). */
static void collect_waiters_locked(struct sl_store_content *c, struct sl_store_waiter **fire)
{
    struct sl_store_waiter *head = &c->waiters;
    for (struct sl_store_waiter *w = head->next, *nx; w != head; w = nx) {
        nx = w->next;
        if (waiter_satisfied_locked(c, w)) {
            waiter_unlink(w);
            w->next = *fire;
            *fire = w;
            c->store->stats.waiters_woken++;
        }
    }
}

static void fire_waiters(struct sl_store_waiter *fire, int status)
{
    while (fire) {
        struct sl_store_waiter *nx = fire->next;
        fire->next = NULL;
        fire->fn(fire->ud, status); /* may free the waiter */
        fire = nx;
    }
}

static struct sl_store_content *content_new(struct sl_store *s, const char *digest, uint64_t size)
{
    struct sl_store_content *c = sl_xcalloc(1, sizeof *c);
    c->store = s;
    memcpy(c->digest, digest, SL_DIGEST_STR_LEN);
    c->size = size;
    c->fd = -EBADF;
    c->waiters.next = c->waiters.prev = &c->waiters;
    return c;
}

static void content_destroy(struct sl_store_content *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->chunks);
    free(c);
}

/* Loads a content's state from the database and the disk (not yet in the map). Partial
 * chunks are re-verified against their digests: rows are hints (store.h: durability).
 * Returns NULL in *ret when the content has no record. */
static int content_load(struct sl_store *s, const char *digest, struct sl_store_content **ret,
                        sl_error_t *err)
{
    *ret = NULL;
    pthread_mutex_lock(&s->db_lock);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT size, complete FROM content WHERE digest = ?", -1,
                                &st, NULL);
    if (rc != SQLITE_OK) {
        int r = db_err(s, err, rc, "select content");
        pthread_mutex_unlock(&s->db_lock);
        return r;
    }
    sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        pthread_mutex_unlock(&s->db_lock);
        return rc == SQLITE_DONE ? 0 : db_err(s, err, rc, "select content");
    }
    uint64_t size = (uint64_t)sqlite3_column_int64(st, 0);
    bool complete = sqlite3_column_int(st, 1) != 0;
    sqlite3_finalize(st);
    struct sl_store_content *c = content_new(s, digest, size);
    if (!complete) {
        rc = sqlite3_prepare_v2(s->db, "SELECT off, size, digest FROM chunk WHERE content = ?", -1,
                                &st, NULL);
        if (rc == SQLITE_OK) {
            sqlite3_bind_text(st, 1, digest, -1, SQLITE_STATIC);
            while (sqlite3_step(st) == SQLITE_ROW) {
                const char *cd = (const char *)sqlite3_column_text(st, 2);
                if (cd && sl_digest_valid(cd))
                    add_present_locked(c, (uint64_t)sqlite3_column_int64(st, 0),
                                       (uint64_t)sqlite3_column_int64(st, 1), cd);
            }
            sqlite3_finalize(st);
        }
    }
    pthread_mutex_unlock(&s->db_lock);

    char fpath[128], ppath[128];
    final_path(digest, fpath);
    partial_path(digest, ppath);
    struct stat stf;
    bool have_final = fstatat(s->root_fd, fpath, &stf, 0) == 0 && S_ISREG(stf.st_mode) &&
                      (uint64_t)stf.st_size == size;
    if (size == 0)
        complete = true;
    if (complete && !have_final && size > 0) {
        log_warn("store: complete content %s lost its file; fetching it again", digest);
        complete = false;
    } else if (!complete && have_final) {
        /* crash between rename and commit: trust the file only if it hashes right */
        _cleanup_close_ int fd = openat(s->root_fd, fpath, O_RDONLY | O_CLOEXEC);
        char got[SL_DIGEST_STR_LEN];
        if (fd >= 0 && hash_fd(fd, size, got) == 0 && strcmp(got, digest) == 0)
            complete = true;
        else
            unlinkat(s->root_fd, fpath, 0);
    }
    if (complete) {
        atomic_store(&c->complete, true);
        c->n_chunks = 0;
    } else if (c->n_chunks > 0) {
        _cleanup_close_ int fd = openat(s->root_fd, ppath, O_RDONLY | O_CLOEXEC);
        struct present *kept = sl_xcalloc(c->n_chunks, sizeof *kept);
        size_t n_kept = 0;
        uint8_t *buf = NULL;
        size_t buf_len = 0;
        for (size_t i = 0; fd >= 0 && i < c->n_chunks; i++) {
            struct present *p = &c->chunks[i];
            if (p->size > SL_TOC_MAX_CHUNK || p->off + p->size > size)
                continue;
            if (p->size > buf_len) {
                buf_len = (size_t)p->size;
                buf = sl_xrealloc(buf, buf_len);
            }
            char got[SL_DIGEST_STR_LEN];
            if (pread_all(fd, buf, (size_t)p->size, p->off) < 0)
                continue;
            sl_sha256_str(buf, (size_t)p->size, got);
            if (strcmp(got, p->digest) == 0)
                kept[n_kept++] = *p;
        }
        free(buf);
        if (n_kept != c->n_chunks)
            log_warn("store: content %s: %zu of %zu recorded chunks verified after restart", digest,
                     n_kept, c->n_chunks);
        free(c->chunks);
        c->chunks = kept;
        c->n_chunks = c->cap_chunks = n_kept;
        if (n_kept == 0)
            c->cap_chunks = 0, free(kept), c->chunks = NULL;
    }
    pthread_mutex_lock(&s->db_lock);
    if (complete)
        sl_store_db_exec(s, NULL, "UPDATE content SET complete = 1 WHERE digest = ?", "t", digest);
    if (complete || c->n_chunks == 0)
        sl_store_db_exec(s, NULL, "DELETE FROM chunk WHERE content = ?", "t", digest);
    pthread_mutex_unlock(&s->db_lock);
    *ret = c;
    return 0;
}

/* content_get's path for a content not in memory: load it (expecting it first when `size` is
 * not UINT64_MAX), insert it and take a reference. Caller holds gc_lock shared. */
static int content_get_slow(struct sl_store *s, const char *digest, uint64_t size,
                            struct sl_store_content **ret, sl_error_t *err)
{
    struct sl_store_content *c, *loaded = NULL;
    int r = content_load(s, digest, &loaded, err);
    if (r < 0)
        return r;
    if (!loaded) {
        if (size == UINT64_MAX)
            return sl_error_make(err, ENOENT, "content %s is not expected", digest);
        pthread_mutex_lock(&s->db_lock);
        r = sl_store_db_exec(s, err,
                             "INSERT OR IGNORE INTO content(digest, size, complete) VALUES(?,?,?)",
                             "tii", digest, (int64_t)size, (int64_t)(size == 0));
        pthread_mutex_unlock(&s->db_lock);
        if (r < 0)
            return r;
        r = content_load(s, digest, &loaded, err);
        if (r < 0)
            return r;
        if (!loaded)
            return sl_error_make(err, EIO, "content %s vanished", digest);
    }
    pthread_mutex_lock(&s->lock);
    c = find_locked(s, digest);
    if (c) {
        content_destroy(loaded); /* another thread loaded it meanwhile */
    } else {
        c = loaded;
        insert_locked(s, c);
    }
    c->refs++;
    pthread_mutex_unlock(&s->lock);
    *ret = c;
    return 0;
}

/* Finds or loads a content and takes a reference. With `size` != UINT64_MAX an unknown
 * content is expected first. Returns -ENOENT when unknown and not to be created. */
static int content_get(struct sl_store *s, const char *digest, uint64_t size,
                       struct sl_store_content **ret, sl_error_t *err)
{
    if (!sl_digest_valid(digest))
        return sl_error_make(err, EINVAL, "invalid content digest `%.80s`", digest);
    pthread_mutex_lock(&s->lock);
    struct sl_store_content *c = find_locked(s, digest);
    if (c) {
        c->refs++;
        pthread_mutex_unlock(&s->lock);
        goto found;
    }
    pthread_mutex_unlock(&s->lock);

    /* Loading races with the collector removing the same content: exclude it (store-gc.h). */
    pthread_rwlock_rdlock(&s->gc_lock);
    int r = content_get_slow(s, digest, size, &c, err);
    pthread_rwlock_unlock(&s->gc_lock);
    if (r < 0)
        return r;
found:
    if (size != UINT64_MAX && size != c->size) {
        uint64_t known = c->size;
        sl_store_content_unref(c);
        return sl_error_make(err, EINVAL,
                             "content %s: expected %" PRIu64 " bytes, known as %" PRIu64, digest,
                             size, known);
    }
    *ret = c;
    return 0;
}

/* Opens the content's descriptor when needed: the final file when complete, else the partial
 * file (created sparse at full size). Caller holds a reference. */
static int content_ensure_fd(struct sl_store_content *c, sl_error_t *err)
{
    struct sl_store *s = c->store;
    pthread_mutex_lock(&s->lock);
    int r = 0;
    if (c->fd < 0) {
        char path[128];
        bool complete = atomic_load(&c->complete);
        if (complete)
            final_path(c->digest, path);
        else
            partial_path(c->digest, path);
        if (complete && c->size == 0) {
            c->fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        } else if (complete) {
            c->fd = openat(s->root_fd, path, O_RDONLY | O_CLOEXEC);
        } else {
            c->fd = openat(s->root_fd, path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
            struct stat st;
            if (c->fd >= 0 && fstat(c->fd, &st) == 0 && (uint64_t)st.st_size != c->size &&
                ftruncate(c->fd, (off_t)c->size) < 0) {
                r = -errno;
                close(c->fd);
                c->fd = -EBADF;
            }
        }
        if (c->fd < 0 && r == 0)
            r = -errno_or(EIO);
        if (r < 0)
            r = sl_error_make(err, -r, "open %s under %s: %s", path, s->root, strerror(-r));
    }
    pthread_mutex_unlock(&s->lock);
    return r;
}

/* Makes the completions recorded so far durable, then commits them: syncfs (file data and the
 * renames), then one transaction marks the batch complete and drops its chunk rows. Until then
 * a content's row says partial; a crash in between is repaired at load (the final file is
 * re-hashed and adopted, or deleted), so the commit can never name bytes that are not on disk.
 * On failure the rows stay partial (same repair) and the error is returned. */
static int durable_flush(struct sl_store *s, sl_error_t *err)
{
    pthread_mutex_lock(&s->flush_lock);
    pthread_mutex_lock(&s->lock);
    char(*batch)[SL_DIGEST_STR_LEN] = s->undurable;
    size_t n = s->n_undurable;
    s->undurable = NULL;
    s->n_undurable = 0;
    pthread_mutex_unlock(&s->lock);
    int r = 0;
    if (n > 0 && s->sync && syncfs(s->root_fd) < 0)
        r = sl_error_make(err, errno, "syncfs %s: %s", s->root, strerror(errno));
    if (n > 0 && r >= 0) {
        pthread_mutex_lock(&s->db_lock);
        r = sl_store_db_exec(s, err, "BEGIN", NULL);
        for (size_t i = 0; i < n && r >= 0; i++) {
            r = sl_store_db_exec(s, err, "UPDATE content SET complete = 1 WHERE digest = ?", "t",
                                 batch[i]);
            if (r >= 0)
                r = sl_store_db_exec(s, err, "DELETE FROM chunk WHERE content = ?", "t", batch[i]);
        }
        if (r >= 0)
            r = sl_store_db_exec(s, err, "COMMIT", NULL);
        else
            sl_store_db_exec(s, NULL, "ROLLBACK", NULL);
        pthread_mutex_unlock(&s->db_lock);
    }
    free(batch);
    pthread_mutex_unlock(&s->flush_lock);
    return r;
}

/* Whole content present: check it, rename it into place, mark it complete (readers see it at
 * once: every byte was verified) and queue its durable commit (durable_flush), run here when
 * the batch is full or old. On a digest mismatch every chunk is dropped (the TOC that listed
 * them lied) and -EBADMSG returned. */
static int content_finish(struct sl_store *s, struct sl_store_content *c, sl_error_t *err)
{
    char ppath[128], fpath[128], fdir[128];
    partial_path(c->digest, ppath);
    final_path(c->digest, fpath);
    final_dir(c->digest, fdir);
    int r = 0;
    if (s->verify_files) {
        char got[SL_DIGEST_STR_LEN];
        r = hash_fd(c->fd, c->size, got);
        if (r < 0)
            return sl_error_make(err, -r, "content %s: reading back: %s", c->digest, strerror(-r));
        if (strcmp(got, c->digest) != 0) {
            pthread_mutex_lock(&s->lock);
            c->n_chunks = 0;
            c->completing = false;
            pthread_mutex_unlock(&s->lock);
            pthread_mutex_lock(&s->db_lock);
            sl_store_db_exec(s, NULL, "DELETE FROM chunk WHERE content = ?", "t", c->digest);
            pthread_mutex_unlock(&s->db_lock);
            return sl_error_make(err, EBADMSG,
                                 "content %s: verified chunks assemble to %s; chunks dropped",
                                 c->digest, got);
        }
    }
    if ((r = mkdir_at(s->root_fd, fdir)) < 0)
        return sl_error_make(err, -r, "mkdir %s: %s", fdir, strerror(-r));
    if (renameat(s->root_fd, ppath, s->root_fd, fpath) < 0)
        return sl_error_make(err, errno, "rename %s: %s", ppath, strerror(errno));

    struct sl_store_waiter *fire = NULL;
    int64_t now = mono_ns();
    pthread_mutex_lock(&s->lock);
    atomic_store(&c->complete, true);
    c->completing = false;
    free(c->chunks);
    c->chunks = NULL;
    c->n_chunks = c->cap_chunks = 0;
    s->stats.contents_completed++;
    collect_waiters_locked(c, &fire);
    if (s->n_undurable == 0) {
        s->undurable = sl_xcalloc(DURABLE_BATCH, sizeof *s->undurable);
        s->undurable_since_ns = now;
    }
    snprintf(s->undurable[s->n_undurable++], SL_DIGEST_STR_LEN, "%s", c->digest);
    bool flush = s->n_undurable >= DURABLE_BATCH || now - s->undurable_since_ns >= DURABLE_SLICE_NS;
    pthread_mutex_unlock(&s->lock);
    fire_waiters(fire, 0);
    return flush ? durable_flush(s, err) : 0;
}

int sl_store_flush_completed(struct sl_store *s, sl_error_t *err)
{
    return durable_flush(s, err);
}

int sl_store_sync(struct sl_store *s, sl_error_t *err)
{
    int r = durable_flush(s, err);
    if (r < 0 || !s->sync)
        return r;
    /* synchronous=NORMAL: a checkpoint syncs the WAL first, so every commit so far is durable */
    pthread_mutex_lock(&s->db_lock);
    r = sl_store_db_exec(s, err, "PRAGMA wal_checkpoint(PASSIVE)", NULL);
    pthread_mutex_unlock(&s->db_lock);
    return r;
}

/* ---------------------------------------------------------------- public: contents */

int sl_store_open(const char *root, const struct sl_store_options *o, struct sl_store **ret,
                  sl_error_t *err)
{
    struct sl_store_options def = {0};
    if (!o)
        o = &def;
    if (mkdir(root, 0700) < 0 && errno != EEXIST)
        return sl_error_make(err, errno, "mkdir %s: %s", root, strerror(errno));
    _cleanup_close_ int root_fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (root_fd < 0)
        return sl_error_make(err, errno, "open %s: %s", root, strerror(errno));
    static const char *const dirs[] = {"content", "content/sha256", "content/partial"};
    for (size_t i = 0; i < SL_ELEMENTSOF(dirs); i++) {
        int r = mkdir_at(root_fd, dirs[i]);
        if (r < 0)
            return sl_error_make(err, -r, "mkdir %s/%s: %s", root, dirs[i], strerror(-r));
    }
    struct sl_store *s = sl_xcalloc(1, sizeof *s);
    s->root = sl_xstrdup(root);
    s->sync = !o->no_sync;
    s->verify_files = !o->no_verify_files;
    s->root_fd = TAKE_FD(root_fd);
    pthread_mutex_init(&s->lock, NULL);
    pthread_mutex_init(&s->db_lock, NULL);
    pthread_mutex_init(&s->flush_lock, NULL);
    /* readers first: sl_store_layer_put holds it shared and takes it shared again (expect),
     * which a waiting writer must not block */
    pthread_rwlockattr_t ra;
    pthread_rwlockattr_init(&ra);
    pthread_rwlockattr_setkind_np(&ra, PTHREAD_RWLOCK_PREFER_READER_NP);
    pthread_rwlock_init(&s->gc_lock, &ra);
    pthread_rwlockattr_destroy(&ra);
    s->n_buckets = 1024;
    s->buckets = sl_xcalloc(s->n_buckets, sizeof *s->buckets);
    int r = db_open(s, err);
    if (r < 0) {
        sl_store_free(s);
        return sl_error_wrap(err, r, "open store %s", root);
    }
    *ret = s;
    return 0;
}

void sl_store_free(struct sl_store *s)
{
    if (!s)
        return;
    _cleanup_error_ sl_error_t e = NULL;
    if (s->db && durable_flush(s, &e) < 0)
        log_warn("store %s: completed contents not committed (re-hashed at next load): %s", s->root,
                 sl_error_msg(e, -EIO));
    struct sl_store_waiter *fire = NULL;
    pthread_mutex_lock(&s->lock);
    for (size_t b = 0; b < s->n_buckets; b++)
        for (struct sl_store_content *c = s->buckets[b]; c; c = c->hnext) {
            struct sl_store_waiter *head = &c->waiters;
            while (head->next != head) {
                struct sl_store_waiter *w = head->next;
                waiter_unlink(w);
                w->next = fire;
                fire = w;
            }
        }
    pthread_mutex_unlock(&s->lock);
    fire_waiters(fire, -ESHUTDOWN);
    for (size_t b = 0; b < s->n_buckets; b++)
        for (struct sl_store_content *c = s->buckets[b], *nx; c; c = nx) {
            nx = c->hnext;
            if (c->refs)
                log_warn("store: content %s still has %u handles at close", c->digest, c->refs);
            content_destroy(c);
        }
    free(s->buckets);
    if (s->db)
        sqlite3_close(s->db);
    if (s->root_fd >= 0)
        close(s->root_fd);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->db_lock);
    pthread_mutex_destroy(&s->flush_lock);
    pthread_rwlock_destroy(&s->gc_lock);
    free(s->undurable);
    free(s->pins);
    free(s->root);
    free(s);
}

const char *sl_store_root(const struct sl_store *s)
{
    return s->root;
}

int sl_store_expect(struct sl_store *s, const char *digest, uint64_t size, sl_error_t *err)
{
    if (size == UINT64_MAX)
        return sl_error_make(err, EINVAL, "content %s: size out of range", digest);
    struct sl_store_content *c = NULL;
    int r = content_get(s, digest, size, &c, err);
    if (r < 0)
        return r;
    sl_store_content_unref(c);
    return 0;
}

static int cmp_want(const void *a, const void *b)
{
    const struct sl_store_want *x = a, *y = b;
    return strcmp(hex_of(x->digest), hex_of(y->digest));
}

int sl_store_expect_prepare(struct sl_store *s, struct sl_store_want *w, size_t n, sl_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!sl_digest_valid(w[i].digest))
            return sl_error_make(err, EINVAL, "invalid content digest `%.80s`", w[i].digest);
        if (w[i].size == UINT64_MAX)
            return sl_error_make(err, EINVAL, "content %s: size out of range", w[i].digest);
    }
    qsort(w, n, sizeof *w, cmp_want);
    for (size_t i = 1; i < n; i++)
        if (strcmp(w[i].digest, w[i - 1].digest) == 0 && w[i].size != w[i - 1].size)
            return sl_error_make(err, EINVAL,
                                 "content %s: expected %" PRIu64 " bytes, known as %" PRIu64,
                                 w[i].digest, w[i].size, w[i - 1].size);
    pthread_mutex_lock(&s->lock);
    for (size_t i = 0; i < n; i++) {
        w[i].state = SL_STORE_WANT_NEW;
        if (i > 0 && strcmp(w[i].digest, w[i - 1].digest) == 0) {
            w[i].state = SL_STORE_WANT_MEMORY;
            continue;
        }
        const struct sl_store_content *c = find_locked(s, w[i].digest);
        if (!c)
            continue;
        if (c->size != w[i].size) {
            uint64_t known = c->size;
            pthread_mutex_unlock(&s->lock);
            return sl_error_make(err, EINVAL,
                                 "content %s: expected %" PRIu64 " bytes, known as %" PRIu64,
                                 w[i].digest, w[i].size, known);
        }
        w[i].state = SL_STORE_WANT_MEMORY;
    }
    pthread_mutex_unlock(&s->lock);
    return 0;
}

int sl_store_expect_rows(struct sl_store *s, struct sl_store_want *w, size_t n, sl_error_t *err)
{
    sqlite3_stmt *sel = NULL, *ins = NULL;
    int rc = sqlite3_prepare_v2(s->db, "SELECT size FROM content WHERE digest = ?", -1, &sel, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db, "INSERT INTO content(digest, size, complete) VALUES(?,?,?)",
                                -1, &ins, NULL);
    int r = rc == SQLITE_OK ? 0 : db_err(s, err, rc, "expect: prepare");
    for (size_t i = 0; r >= 0 && i < n; i++) {
        if (w[i].state != SL_STORE_WANT_NEW)
            continue;
        sqlite3_reset(sel);
        sqlite3_bind_text(sel, 1, w[i].digest, -1, SQLITE_STATIC);
        rc = sqlite3_step(sel);
        if (rc == SQLITE_ROW) {
            uint64_t known = (uint64_t)sqlite3_column_int64(sel, 0);
            if (known != w[i].size)
                r = sl_error_make(err, EINVAL,
                                  "content %s: expected %" PRIu64 " bytes, known as %" PRIu64,
                                  w[i].digest, w[i].size, known);
            w[i].state = SL_STORE_WANT_KNOWN;
            continue;
        }
        if (rc != SQLITE_DONE) {
            r = db_err(s, err, rc, "expect: select content");
            break;
        }
        sqlite3_reset(ins);
        sqlite3_bind_text(ins, 1, w[i].digest, -1, SQLITE_STATIC);
        sqlite3_bind_int64(ins, 2, (int64_t)w[i].size);
        sqlite3_bind_int64(ins, 3, w[i].size == 0);
        if ((rc = sqlite3_step(ins)) != SQLITE_DONE)
            r = db_err(s, err, rc, "expect: insert content");
    }
    sqlite3_finalize(sel);
    sqlite3_finalize(ins);
    return r;
}

int sl_store_expect_adopt(struct sl_store *s, const struct sl_store_want *w, size_t n,
                          sl_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (w[i].state == SL_STORE_WANT_KNOWN) {
            int r = sl_store_expect(s, w[i].digest, w[i].size, err);
            if (r < 0)
                return r;
        }
        if (w[i].state != SL_STORE_WANT_NEW)
            continue;
        /* a new row: no chunk recorded, nothing on disk to trust (a stale final file is
         * replaced by the rename at completion, a stale partial file's bytes are never
         * served: presence is per recorded chunk) */
        struct sl_store_content *c = content_new(s, w[i].digest, w[i].size);
        if (w[i].size == 0)
            atomic_store(&c->complete, true);
        pthread_mutex_lock(&s->lock);
        if (find_locked(s, w[i].digest)) /* another thread loaded the row meanwhile */
            content_destroy(c);
        else
            insert_locked(s, c);
        pthread_mutex_unlock(&s->lock);
    }
    return 0;
}

int sl_store_content_open(struct sl_store *s, const char *digest, uint64_t size,
                          struct sl_store_content **ret, sl_error_t *err)
{
    _cleanup_content_ struct sl_store_content *c = NULL;
    int r = content_get(s, digest, size, &c, err);
    if (r < 0)
        return r;
    r = content_ensure_fd(c, err);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(c);
    return 0;
}

void sl_store_content_unref(struct sl_store_content *c)
{
    if (!c)
        return;
    struct sl_store *s = c->store;
    pthread_mutex_lock(&s->lock);
    if (--c->refs == 0 && c->fd >= 0 && c->waiters.next == &c->waiters) {
        close(c->fd);
        c->fd = -EBADF;
    }
    pthread_mutex_unlock(&s->lock);
}

int sl_store_content_fd(const struct sl_store_content *c)
{
    return c->fd;
}

uint64_t sl_store_content_size(const struct sl_store_content *c)
{
    return c->size;
}

bool sl_store_content_complete(const struct sl_store_content *c)
{
    return atomic_load(&c->complete);
}

int sl_store_content_state(struct sl_store *s, const char *digest)
{
    struct sl_store_content *c = NULL;
    if (content_get(s, digest, UINT64_MAX, &c, NULL) < 0)
        return SL_STORE_ABSENT;
    int st = atomic_load(&c->complete) ? SL_STORE_COMPLETE : SL_STORE_PARTIAL;
    sl_store_content_unref(c);
    return st;
}

bool sl_store_chunks_present(struct sl_store_content *c, const struct sl_toc_chunk *chunks,
                             size_t n)
{
    if (atomic_load(&c->complete))
        return true;
    struct sl_store_waiter probe = {.chunks = chunks, .n = n};
    pthread_mutex_lock(&c->store->lock);
    bool ok = waiter_satisfied_locked(c, &probe);
    pthread_mutex_unlock(&c->store->lock);
    return ok;
}

int sl_store_wait(struct sl_store_content *c, const struct sl_toc_chunk *chunks, size_t n,
                  struct sl_store_waiter *w, sl_store_wait_fn fn, void *ud)
{
    if (atomic_load(&c->complete))
        return 1;
    w->chunks = chunks;
    w->n = n;
    w->fn = fn;
    w->ud = ud;
    struct sl_store *s = c->store;
    pthread_mutex_lock(&s->lock);
    if (waiter_satisfied_locked(c, w)) {
        pthread_mutex_unlock(&s->lock);
        return 1;
    }
    w->next = &c->waiters;
    w->prev = c->waiters.prev;
    c->waiters.prev->next = w;
    c->waiters.prev = w;
    w->queued = true;
    s->stats.waiters_parked++;
    pthread_mutex_unlock(&s->lock);
    return 0;
}

bool sl_store_wait_cancel(struct sl_store_content *c, struct sl_store_waiter *w)
{
    pthread_mutex_lock(&c->store->lock);
    bool queued = w->queued;
    if (queued)
        waiter_unlink(w);
    pthread_mutex_unlock(&c->store->lock);
    return queued;
}

static int reject(struct sl_store *s)
{
    pthread_mutex_lock(&s->lock);
    s->stats.chunks_rejected++;
    pthread_mutex_unlock(&s->lock);
    return -EBADMSG;
}

/* Writes a chunk whose bytes were verified against chunk->digest by the caller. */
static int put_verified(struct sl_store *s, const char *content_digest,
                        const struct sl_toc_chunk *chunk, const void *data, sl_error_t *err)
{
    if (!sl_digest_valid(chunk->digest))
        return sl_error_make(err, EINVAL, "content %s: invalid chunk digest", content_digest);
    _cleanup_content_ struct sl_store_content *c = NULL;
    int r = content_get(s, content_digest, UINT64_MAX, &c, err);
    if (r < 0)
        return r;
    if (chunk->size == 0 || chunk->chunk_offset > c->size ||
        chunk->size > c->size - chunk->chunk_offset)
        return sl_error_make(err, EINVAL,
                             "content %s: chunk [%" PRIu64 ", +%" PRIu64 ") outside its %" PRIu64
                             " bytes",
                             content_digest, chunk->chunk_offset, chunk->size, c->size);
    if (sl_store_chunks_present(c, chunk, 1)) {
        pthread_mutex_lock(&s->lock);
        s->stats.chunks_duplicate++;
        pthread_mutex_unlock(&s->lock);
        return 0;
    }
    r = content_ensure_fd(c, err);
    if (r < 0)
        return r;
    r = pwrite_all(c->fd, data, (size_t)chunk->size, chunk->chunk_offset);
    if (r < 0)
        return sl_error_make(err, -r, "content %s: write chunk at %" PRIu64 ": %s", content_digest,
                             chunk->chunk_offset, strerror(-r));
    /* Recorded after the write: a row never names bytes that were not written (rows are still
     * re-verified at load, so a lost page cache after a crash only costs a re-fetch). */
    pthread_mutex_lock(&s->db_lock);
    r = sl_store_db_exec(
        s, err, "INSERT OR IGNORE INTO chunk(content, off, size, digest) VALUES(?,?,?,?)", "tiit",
        content_digest, (int64_t)chunk->chunk_offset, (int64_t)chunk->size, chunk->digest);
    pthread_mutex_unlock(&s->db_lock);
    if (r < 0)
        return r;

    struct sl_store_waiter *fire = NULL;
    bool finish = false;
    pthread_mutex_lock(&s->lock);
    if (!atomic_load(&c->complete)) {
        add_present_locked(c, chunk->chunk_offset, chunk->size, chunk->digest);
        collect_waiters_locked(c, &fire);
        if (!c->completing && covered_locked(c))
            finish = c->completing = true;
    }
    s->stats.chunks_stored++;
    pthread_mutex_unlock(&s->lock);
    fire_waiters(fire, 0);
    if (finish) {
        r = content_finish(s, c, err);
        if (r < 0)
            return r;
    }
    return 1;
}

int sl_store_put_chunk_data(struct sl_store *s, const char *content_digest,
                            const struct sl_toc_chunk *chunk, const void *data, sl_error_t *err)
{
    if (chunk->size == 0 || chunk->size > SL_TOC_MAX_CHUNK)
        return sl_error_make(err, EINVAL, "content %s: chunk of %" PRIu64 " bytes", content_digest,
                             chunk->size);
    char got[SL_DIGEST_STR_LEN];
    sl_sha256_str(data, (size_t)chunk->size, got);
    if (strcmp(got, chunk->digest) != 0) {
        reject(s);
        return sl_error_make(err, EBADMSG,
                             "content %s: chunk at %" PRIu64 " hashes to %s, not %s: rejected",
                             content_digest, chunk->chunk_offset, got, chunk->digest);
    }
    return put_verified(s, content_digest, chunk, data, err);
}

int sl_store_put_chunk(struct sl_store *s, const char *content_digest,
                       const struct sl_toc_chunk *chunk, const void *gz_member, size_t len,
                       sl_error_t *err)
{
    if (chunk->size == 0 || chunk->size > SL_TOC_MAX_CHUNK)
        return sl_error_make(err, EINVAL, "content %s: chunk of %" PRIu64 " bytes", content_digest,
                             chunk->size);
    /* Cheap pre-check so a duplicate chunk costs no inflate. */
    {
        _cleanup_content_ struct sl_store_content *c = NULL;
        int r = content_get(s, content_digest, UINT64_MAX, &c, err);
        if (r < 0)
            return r;
        if (sl_store_chunks_present(c, chunk, 1)) {
            pthread_mutex_lock(&s->lock);
            s->stats.chunks_duplicate++;
            pthread_mutex_unlock(&s->lock);
            return 0;
        }
    }
    _cleanup_free_ uint8_t *out = sl_xmalloc((size_t)chunk->size);
    int r = sl_toc_chunk_decode(gz_member, len, chunk, out, err);
    if (r < 0) {
        reject(s);
        return sl_error_wrap(err, r, "content %s: chunk at %" PRIu64 " rejected", content_digest,
                             chunk->chunk_offset);
    }
    /* sl_toc_chunk_decode checked chunkDigest over exactly these bytes */
    return put_verified(s, content_digest, chunk, out, err);
}

void sl_store_get_stats(struct sl_store *s, struct sl_store_stats *ret)
{
    pthread_mutex_lock(&s->lock);
    *ret = s->stats;
    pthread_mutex_unlock(&s->lock);
}

/* ---------------------------------------------------------------- garbage collection */

void sl_store_gc_lock(struct sl_store *s, bool exclusive)
{
    if (exclusive)
        pthread_rwlock_wrlock(&s->gc_lock);
    else
        pthread_rwlock_rdlock(&s->gc_lock);
}

void sl_store_gc_unlock(struct sl_store *s)
{
    pthread_rwlock_unlock(&s->gc_lock);
}

/* Bytes a file frees when unlinked (0 when other links keep its inode). */
static uint64_t unlink_freed(int dfd, const char *path)
{
    struct stat st;
    if (fstatat(dfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (unlinkat(dfd, path, 0) < 0)
        return 0;
    return st.st_nlink <= 1 ? (uint64_t)st.st_blocks * 512 : 0;
}

int sl_store_content_forget_batch(struct sl_store *s, const char (*digests)[SL_DIGEST_STR_LEN],
                                  size_t n, bool *ret_removed, uint64_t *ret_freed, sl_error_t *err)
{
    memset(ret_removed, 0, n * sizeof *ret_removed);
    *ret_freed = 0;
    /* Decide in the database while no one can take a reference (the map is locked, loads wait
     * for the collector's exclusive gc_lock); one transaction for the batch. */
    pthread_mutex_lock(&s->lock);
    pthread_mutex_lock(&s->db_lock);
    sqlite3_stmt *sel = NULL, *del_chunk = NULL, *del_content = NULL;
    int rc = sqlite3_prepare_v2(s->db,
                                "SELECT (SELECT count(*) FROM content WHERE digest = ?1),"
                                " (SELECT count(*) FROM layer_content WHERE content = ?1)",
                                -1, &sel, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db, "DELETE FROM chunk WHERE content = ?", -1, &del_chunk, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(s->db, "DELETE FROM content WHERE digest = ?", -1, &del_content,
                                NULL);
    int r = rc == SQLITE_OK ? sl_store_db_exec(s, err, "BEGIN", NULL)
                            : db_err(s, err, rc, "gc: prepare");
    for (size_t i = 0; r >= 0 && i < n; i++) {
        const char *digest = digests[i];
        if (!sl_digest_valid(digest))
            continue;
        struct sl_store_content *c = find_locked(s, digest);
        bool busy = c && (c->refs > 0 || c->completing || c->waiters.next != &c->waiters);
        for (size_t k = 0; !busy && k < s->n_undurable; k++)
            busy = strcmp(s->undurable[k], digest) == 0;
        if (busy)
            continue;
        sqlite3_reset(sel);
        sqlite3_bind_text(sel, 1, digest, -1, SQLITE_STATIC);
        if ((rc = sqlite3_step(sel)) != SQLITE_ROW) {
            r = db_err(s, err, rc, "gc: select content");
            break;
        }
        bool has_row = sqlite3_column_int64(sel, 0) > 0;
        bool referenced = sqlite3_column_int64(sel, 1) > 0;
        if (referenced)
            continue;
        if (has_row) {
            sqlite3_stmt *dels[] = {del_chunk, del_content};
            for (size_t k = 0; k < 2 && r >= 0; k++) {
                sqlite3_reset(dels[k]);
                sqlite3_bind_text(dels[k], 1, digest, -1, SQLITE_STATIC);
                if ((rc = sqlite3_step(dels[k])) != SQLITE_DONE)
                    r = db_err(s, err, rc, "gc: delete content");
            }
            if (r < 0)
                break;
        }
        ret_removed[i] = true;
    }
    if (r >= 0)
        r = sl_store_db_exec(s, err, "COMMIT", NULL);
    else if (!sqlite3_get_autocommit(s->db))
        sl_store_db_exec(s, NULL, "ROLLBACK", NULL);
    sqlite3_finalize(sel);
    sqlite3_finalize(del_chunk);
    sqlite3_finalize(del_content);
    pthread_mutex_unlock(&s->db_lock);
    if (r < 0) {
        pthread_mutex_unlock(&s->lock);
        memset(ret_removed, 0, n * sizeof *ret_removed);
        return r;
    }
    for (size_t i = 0; i < n; i++) {
        struct sl_store_content *c = ret_removed[i] ? find_locked(s, digests[i]) : NULL;
        if (c) { /* unlink from its hash chain */
            struct sl_store_content **pp = &s->buckets[bucket_of(s, digests[i])];
            while (*pp != c)
                pp = &(*pp)->hnext;
            *pp = c->hnext;
            s->n_contents--;
            content_destroy(c);
        }
    }
    pthread_mutex_unlock(&s->lock);
    /* Rows first, files second: a crash in between leaves files without rows, which the next
     * collection sweeps. */
    for (size_t i = 0; i < n; i++) {
        if (!ret_removed[i])
            continue;
        char fpath[128], ppath[128];
        final_path(digests[i], fpath);
        partial_path(digests[i], ppath);
        *ret_freed += unlink_freed(s->root_fd, fpath) + unlink_freed(s->root_fd, ppath);
    }
    return 0;
}

int sl_store_content_forget(struct sl_store *s, const char *digest, uint64_t *ret_freed,
                            sl_error_t *err)
{
    char one[1][SL_DIGEST_STR_LEN];
    if (!sl_digest_valid(digest))
        return sl_error_make(err, EINVAL, "invalid content digest `%.80s`", digest);
    snprintf(one[0], SL_DIGEST_STR_LEN, "%s", digest);
    bool removed = false;
    int r = sl_store_content_forget_batch(s, (const char(*)[SL_DIGEST_STR_LEN])one, 1, &removed,
                                          ret_freed, err);
    return r < 0 ? r : removed ? 1 : 0;
}

int sl_store_root_fd(const struct sl_store *s)
{
    return s->root_fd;
}
