/* blobcache.c — see blobcache.h for the design.
 *
 * Locking: one mutex (c->lock) guards every piece of state: the blob table, block states,
 * pins, the LRU list, the fetch queue and the counters. It is never held across registry
 * requests, preads or sinks; it is held across the cheap file operations that must be
 * atomic with a state change (hole punching on eviction, unlinking a dropped blob file), so
 * that no fetch can start writing a block whose old bytes are still being removed. Each blob
 * has a condition variable broadcast on every state change of its blocks and fetches. */
#include "blobcache.h"

#include "cleanup.h"
#include "digest.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BLOB_BUCKETS 256
#define READ_BUF_MAX (1024 * 1024)

enum block_state { B_ABSENT, B_FETCHING, B_PRESENT };
enum fetch_state { F_QUEUED, F_RUNNING, F_DONE };

struct blob;
struct fetch;

struct block {
    struct block *lru_prev, *lru_next; /* on c->lru while present and unpinned */
    struct blob *blob;
    struct fetch *fetch; /* while B_FETCHING */
    uint32_t pins;
    uint8_t state;
};

struct blob {
    struct blob *hnext;
    char digest[SL_DIGEST_STR_LEN];
    uint64_t size, nblocks;
    struct block *blocks;
    int fd;
    unsigned refs;    /* readers inside sl_blobcache_read on this blob */
    uint64_t present; /* present blocks */
    pthread_cond_t cond;
};

/* The reader that started a fetch waits for it (or cancels it) before it returns, so a fetch
 * may borrow the reader's registry client and repository name. */
struct reader {
    unsigned outstanding; /* fetches started by this reader and not done */
};

struct fetch {
    struct fetch *qnext;
    struct blob *blob;
    struct reader *owner; /* NULL: a prefetch, which owns repo_own and a blob reference */
    struct sl_registry *reg;
    const char *repo;
    char *repo_own;
    struct sl_blobcache *cache;
    uint64_t first, n; /* blocks [first, first+n) */
    enum fetch_state state;
    int r;
    char *msg; /* error message when r < 0 */
    unsigned refs;
};

struct sl_blobcache {
    pthread_mutex_t lock;
    pthread_cond_t qcond; /* fetch queue non-empty, or stopping */
    int dirfd, lockfd;
    uint64_t max_bytes;
    uint32_t bs, shift, max_run, window, nthreads;
    struct blob *buckets[BLOB_BUCKETS];
    struct block lru; /* sentinel: lru.lru_next is the most recently used */
    struct fetch *qhead, *qtail;
    bool stopping;
    pthread_t *threads;
    size_t nstarted;
    struct sl_blobcache_stats st;
};

static uint64_t block_start(const struct sl_blobcache *c, uint64_t i)
{
    return i << c->shift;
}

static uint64_t block_len(const struct sl_blobcache *c, const struct blob *b, uint64_t i)
{
    return SL_MIN((uint64_t)c->bs, b->size - block_start(c, i));
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- LRU ---- */

static void lru_unlink(struct block *k)
{
    if (!k->lru_next)
        return;
    k->lru_prev->lru_next = k->lru_next;
    k->lru_next->lru_prev = k->lru_prev;
    k->lru_prev = k->lru_next = NULL;
}

static void lru_push_front(struct sl_blobcache *c, struct block *k)
{
    k->lru_next = c->lru.lru_next;
    k->lru_prev = &c->lru;
    c->lru.lru_next->lru_prev = k;
    c->lru.lru_next = k;
}

/* ---- blobs ---- */

static unsigned blob_hash(const char *digest)
{
    unsigned h = 2166136261u;
    for (const char *p = digest; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    return h % BLOB_BUCKETS;
}

static void blob_file_name(const struct blob *b, char out[80])
{
    snprintf(out, 80, "%s.blob", b->digest + strlen("sha256:"));
}

/* Removes a blob with no readers and no present blocks. Lock held. */
static void blob_maybe_drop(struct sl_blobcache *c, struct blob *b)
{
    if (b->refs > 0 || b->present > 0)
        return;
    for (struct blob **pp = &c->buckets[blob_hash(b->digest)]; *pp; pp = &(*pp)->hnext) {
        if (*pp == b) {
            *pp = b->hnext;
            break;
        }
    }
    char name[80];
    blob_file_name(b, name);
    (void)unlinkat(c->dirfd, name, 0);
    close(b->fd);
    pthread_cond_destroy(&b->cond);
    free(b->blocks);
    free(b);
}

/* Finds or creates the entry of `digest` and takes a reader reference. Lock held. */
static int blob_get(struct sl_blobcache *c, const char *digest, uint64_t size, struct blob **ret,
                    sl_error_t *err)
{
    unsigned h = blob_hash(digest);
    for (struct blob *b = c->buckets[h]; b; b = b->hnext) {
        if (strcmp(b->digest, digest) == 0) {
            if (b->size != size)
                return sl_error_make(err, EINVAL,
                                     "blob %s: size %" PRIu64 " given, %" PRIu64 " before", digest,
                                     size, b->size);
            b->refs++;
            *ret = b;
            return 0;
        }
    }
    struct blob *b = sl_xcalloc(1, sizeof(*b));
    memcpy(b->digest, digest, SL_DIGEST_STR_LEN);
    b->size = size;
    b->nblocks = (size + c->bs - 1) >> c->shift;
    b->blocks = sl_xcalloc(b->nblocks ? b->nblocks : 1, sizeof(struct block));
    for (uint64_t i = 0; i < b->nblocks; i++)
        b->blocks[i].blob = b;
    char name[80];
    blob_file_name(b, name);
    b->fd = openat(c->dirfd, name, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (b->fd < 0) {
        int r = -errno;
        free(b->blocks);
        free(b);
        return sl_error_make(err, -r, "blob cache: create %s: %s", name, strerror(-r));
    }
    pthread_cond_init(&b->cond, NULL);
    b->refs = 1;
    b->hnext = c->buckets[h];
    c->buckets[h] = b;
    *ret = b;
    return 0;
}

/* ---- eviction ---- */

static void evict_locked(struct sl_blobcache *c)
{
    while (c->st.size_bytes > c->max_bytes && c->lru.lru_prev != &c->lru) {
        struct block *k = c->lru.lru_prev;
        struct blob *b = k->blob;
        uint64_t i = (uint64_t)(k - b->blocks);
        uint64_t n = block_len(c, b, i);
        lru_unlink(k);
        /* Under the lock: a new fetch of this block must not write before the hole exists. */
        (void)fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)block_start(c, i),
                        (off_t)n);
        k->state = B_ABSENT;
        b->present--;
        c->st.size_bytes -= n;
        c->st.evictions++;
        blob_maybe_drop(c, b);
    }
}

/* ---- pins ---- */

static void pin(struct block *k)
{
    if (k->pins++ == 0)
        lru_unlink(k);
}

static void unpin(struct sl_blobcache *c, struct block *k)
{
    if (--k->pins == 0 && k->state == B_PRESENT)
        lru_push_front(c, k);
}

/* ---- fetches ---- */

static void fetch_put(struct fetch *f)
{
    if (--f->refs == 0) {
        free(f->msg);
        free(f->repo_own);
        free(f);
    }
}

/* Ends a fetch: its unfinished blocks go back to absent, waiters wake. Lock held. */
static void fetch_finish(struct fetch *f, int r, const char *msg)
{
    struct blob *b = f->blob;
    for (uint64_t i = f->first; i < f->first + f->n; i++) {
        struct block *k = &b->blocks[i];
        if (k->state == B_FETCHING && k->fetch == f) {
            k->state = B_ABSENT;
            k->fetch = NULL;
        }
    }
    f->r = r;
    if (r < 0 && msg)
        f->msg = sl_xstrdup(msg);
    f->state = F_DONE;
    pthread_cond_broadcast(&b->cond);
    if (f->owner) {
        f->owner->outstanding--;
    } else { /* a prefetch: drop its blob reference */
        struct sl_blobcache *c = f->cache;
        b->refs--;
        blob_maybe_drop(c, b);
    }
    fetch_put(f);
}

/* Starts fetches for the absent blocks in [from, to), adjacent ones coalesced into runs of
 * at most max_run blocks. Lock held. */
static void start_runs(struct sl_blobcache *c, struct blob *b, struct reader *rd,
                       struct sl_registry *reg, const char *repo, uint64_t from, uint64_t to)
{
    bool queued = false;
    for (uint64_t i = from; i < to;) {
        if (b->blocks[i].state != B_ABSENT) {
            i++;
            continue;
        }
        struct fetch *f = sl_xcalloc(1, sizeof(*f));
        f->blob = b;
        f->cache = c;
        f->owner = rd;
        f->reg = reg;
        f->repo = repo;
        if (!rd) {
            f->repo = f->repo_own = sl_xstrdup(repo);
            b->refs++;
        }
        f->first = i;
        f->refs = 1; /* the queue's, then the fetch thread's */
        while (i < to && f->n < c->max_run && b->blocks[i].state == B_ABSENT) {
            b->blocks[i].state = B_FETCHING;
            b->blocks[i].fetch = f;
            f->n++;
            i++;
        }
        if (rd)
            rd->outstanding++;
        if (c->qtail)
            c->qtail->qnext = f;
        else
            c->qhead = f;
        c->qtail = f;
        queued = true;
    }
    if (queued)
        pthread_cond_broadcast(&c->qcond);
}

/* Removes the still-queued fetches of `rd` and ends them with -ECANCELED: their waiters
 * start their own fetches. Lock held. */
static void cancel_queued(struct sl_blobcache *c, struct reader *rd)
{
    struct fetch **pp = &c->qhead;
    c->qtail = NULL;
    while (*pp) {
        struct fetch *f = *pp;
        if (f->owner == rd) {
            *pp = f->qnext;
            f->qnext = NULL;
            fetch_finish(f, -ECANCELED, NULL);
        } else {
            c->qtail = f;
            pp = &f->qnext;
        }
    }
}

struct fetch_sink {
    struct sl_blobcache *c;
    struct fetch *f;
    uint64_t start, pos, end; /* blob offsets */
    uint64_t next;            /* first block not yet marked present */
    int io_error;             /* -errno of a failed pwrite */
};

/* Writes registry bytes at their blob offset; each block becomes present as soon as its
 * last byte is on disk. */
static int fetch_sink_fn(void *ud, const void *p, size_t n)
{
    struct fetch_sink *s = ud;
    struct sl_blobcache *c = s->c;
    if (n > s->end - s->pos)
        return -EPROTO; /* more than asked for: do not trust any of it */
    const char *q = p;
    size_t left = n;
    uint64_t at = s->pos;
    while (left > 0) {
        ssize_t w = pwrite(s->f->blob->fd, q, left, (off_t)at);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            s->io_error = -errno;
            return s->io_error;
        }
        q += w;
        left -= (size_t)w;
        at += (uint64_t)w;
    }
    s->pos += n;

    struct blob *b = s->f->blob;
    uint64_t done_end = s->f->first + s->f->n;
    uint64_t upto = s->next;
    while (upto < done_end && block_start(c, upto) + block_len(c, b, upto) <= s->pos)
        upto++;
    if (upto == s->next)
        return 0;
    pthread_mutex_lock(&c->lock);
    for (uint64_t i = s->next; i < upto; i++) {
        struct block *k = &b->blocks[i];
        k->state = B_PRESENT;
        k->fetch = NULL;
        b->present++;
        c->st.size_bytes += block_len(c, b, i);
        if (k->pins == 0)
            lru_push_front(c, k);
    }
    s->next = upto;
    pthread_cond_broadcast(&b->cond);
    evict_locked(c);
    pthread_mutex_unlock(&c->lock);
    return 0;
}

static void run_fetch(struct sl_blobcache *c, struct fetch *f)
{
    struct blob *b = f->blob;
    struct fetch_sink s = {.c = c, .f = f, .next = f->first};
    s.start = s.pos = block_start(c, f->first);
    s.end = SL_MIN(b->size, block_start(c, f->first + f->n));
    _cleanup_error_ sl_error_t e = NULL;
    /* Reserve the run's disk space in one call: without it ext4 reserves (delayed
     * allocation) page by page inside every write, which made the cache-file writes of a cold
     * stream ~1.5x dearer (bench/README.md). Harmless if it fails: the writes allocate. The
     * blocks are ours (fetching) until fetch_finish, so nothing else touches the range. */
    (void)fallocate(b->fd, FALLOC_FL_KEEP_SIZE, (off_t)s.start, (off_t)(s.end - s.start));
    double t0 = now_s();
    int r = sl_registry_get_blob_range(f->reg, f->repo, b->digest, (int64_t)s.start,
                                       (int64_t)(s.end - s.start), fetch_sink_fn, &s, &e);
    double t1 = now_s();
    if (r >= 0 && s.pos != s.end)
        r = sl_error_make(&e, EPROTO, "range %" PRIu64 "+%" PRIu64 ": %" PRIu64 " bytes delivered",
                          s.start, s.end - s.start, s.pos - s.start);
    else if (r < 0 && s.io_error < 0)
        r = sl_error_make(&e, -s.io_error, "write to cache file: %s", strerror(-s.io_error));
    _cleanup_free_ char *msg = NULL;
    if (r < 0)
        msg = sl_xasprintf("blob %s: %s", b->digest, sl_error_msg(e, r));

    pthread_mutex_lock(&c->lock);
    c->st.fetches++;
    c->st.fetch_seconds += t1 - t0;
    c->st.bytes_fetched += s.pos - s.start;
    if (r < 0) {
        c->st.fetch_errors++;
        /* The space of blocks left unfinished (written or only reserved) is not accounted
         * anywhere: give it back. Those blocks are still ours (fetching), so no one else
         * writes them meanwhile. */
        uint64_t from = block_start(c, s.next);
        if (s.end > from)
            (void)fallocate(b->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)from,
                            (off_t)(s.end - from));
    }
    fetch_finish(f, r < 0 ? r : 0, msg);
    pthread_mutex_unlock(&c->lock);
}

static void *fetch_thread(void *arg)
{
    struct sl_blobcache *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->qhead && !c->stopping)
            pthread_cond_wait(&c->qcond, &c->lock);
        if (!c->qhead)
            break;
        struct fetch *f = c->qhead;
        c->qhead = f->qnext;
        if (!c->qhead)
            c->qtail = NULL;
        f->qnext = NULL;
        f->state = F_RUNNING;
        pthread_mutex_unlock(&c->lock);
        run_fetch(c, f);
        pthread_mutex_lock(&c->lock);
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* ---- lifecycle ---- */

static int mkdir_p(const char *dir)
{
    _cleanup_free_ char *p = sl_xstrdup(dir);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = 0;
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return -errno;
        *s = '/';
    }
    if (mkdir(p, 0700) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

static void remove_leftovers(int dirfd)
{
    int fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 5 && strcmp(de->d_name + n - 5, ".blob") == 0)
            (void)unlinkat(dirfd, de->d_name, 0);
    }
    closedir(d);
}

int sl_blobcache_new(const char *dir, uint64_t max_bytes, struct sl_blobcache **ret,
                     sl_error_t *err)
{
    return sl_blobcache_new_opts(dir, max_bytes, NULL, ret, err);
}

int sl_blobcache_new_opts(const char *dir, uint64_t max_bytes,
                          const struct sl_blobcache_options *opts, struct sl_blobcache **ret,
                          sl_error_t *err)
{
    struct sl_blobcache_options o = opts ? *opts : (struct sl_blobcache_options){0};
    if (!o.block_size)
        o.block_size = SL_BLOBCACHE_BLOCK_DEFAULT;
    if (!o.max_run)
        o.max_run = SL_BLOBCACHE_RUN_DEFAULT;
    if (!o.window)
        o.window = SL_BLOBCACHE_WINDOW_DEFAULT;
    if (!o.fetchers)
        o.fetchers = SL_BLOBCACHE_FETCHERS_DEFAULT;
    if (!dir || !*dir)
        return sl_error_make(err, EINVAL, "blob cache: no directory");
    if (o.block_size < 4096 || o.block_size > (64u << 20) || (o.block_size & (o.block_size - 1)))
        return sl_error_make(err, EINVAL,
                             "blob cache: block size %u is not a power of two in "
                             "4KiB..64MiB",
                             o.block_size);
    if (max_bytes < o.block_size)
        return sl_error_make(err, EINVAL,
                             "blob cache: max size %" PRIu64 " is below one block (%u bytes)",
                             max_bytes, o.block_size);
    if (o.fetchers > 256 || o.max_run > 4096 || o.window > 65536)
        return sl_error_make(err, EINVAL, "blob cache: options out of range");

    int r = mkdir_p(dir);
    if (r < 0)
        return sl_error_make(err, -r, "blob cache: mkdir %s: %s", dir, strerror(-r));
    _cleanup_close_ int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return sl_error_make(err, errno, "blob cache: open %s: %s", dir, strerror(errno));
    _cleanup_close_ int lockfd = openat(dirfd, "lock", O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lockfd < 0)
        return sl_error_make(err, errno, "blob cache: open %s/lock: %s", dir, strerror(errno));
    if (flock(lockfd, LOCK_EX | LOCK_NB) < 0) {
        if (errno == EWOULDBLOCK)
            return sl_error_make(err, EBUSY, "blob cache: %s is in use by another process", dir);
        return sl_error_make(err, errno, "blob cache: lock %s: %s", dir, strerror(errno));
    }
    remove_leftovers(dirfd);

    struct sl_blobcache *c = sl_xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->qcond, NULL);
    c->dirfd = TAKE_FD(dirfd);
    c->lockfd = TAKE_FD(lockfd);
    c->max_bytes = max_bytes;
    c->bs = o.block_size;
    c->shift = (uint32_t)__builtin_ctz(o.block_size);
    c->max_run = o.max_run;
    c->window = o.window;
    c->nthreads = o.fetchers;
    c->lru.lru_next = c->lru.lru_prev = &c->lru;
    c->st.max_bytes = max_bytes;
    c->threads = sl_xcalloc(o.fetchers, sizeof(pthread_t));
    for (uint32_t i = 0; i < o.fetchers; i++) {
        r = pthread_create(&c->threads[i], NULL, fetch_thread, c);
        if (r != 0) {
            sl_blobcache_free(c);
            return sl_error_make(err, r, "blob cache: start fetch thread: %s", strerror(r));
        }
        c->nstarted++;
    }
    *ret = c;
    return 0;
}

void sl_blobcache_free(struct sl_blobcache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->stopping = true;
    pthread_cond_broadcast(&c->qcond);
    pthread_mutex_unlock(&c->lock);
    for (size_t i = 0; i < c->nstarted; i++)
        pthread_join(c->threads[i], NULL);
    free(c->threads);
    for (size_t h = 0; h < BLOB_BUCKETS; h++) {
        while (c->buckets[h]) {
            struct blob *b = c->buckets[h];
            b->refs = 0;
            b->present = 0;
            blob_maybe_drop(c, b);
        }
    }
    close(c->dirfd);
    close(c->lockfd);
    pthread_cond_destroy(&c->qcond);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

/* ---- reads ---- */

int sl_blobcache_read(struct sl_blobcache *c, struct sl_registry *reg, const char *repo,
                      const char *digest, uint64_t blob_size, uint64_t off, uint64_t len,
                      sl_http_sink_fn sink, void *ud, sl_error_t *err)
{
    if (!digest || !sl_digest_valid(digest))
        return sl_error_make(err, EINVAL, "blob cache: bad digest `%.80s`", digest ? digest : "");
    if (off > blob_size || len > blob_size - off)
        return sl_error_make(err, ERANGE,
                             "blob %s: range %" PRIu64 "+%" PRIu64 " is past its end (%" PRIu64
                             " bytes)",
                             digest, off, len, blob_size);
    if (len == 0)
        return 0;

    struct blob *b = NULL;
    pthread_mutex_lock(&c->lock);
    int r = blob_get(c, digest, blob_size, &b, err);
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        return r;

    _cleanup_free_ char *buf = sl_xmalloc(SL_MIN(len, (uint64_t)READ_BUF_MAX));
    size_t bufsz = SL_MIN(len, (uint64_t)READ_BUF_MAX);
    struct reader rd = {0};
    const uint64_t end = off + len;
    const uint64_t last = (end - 1) >> c->shift;
    uint64_t cur = off >> c->shift;
    uint64_t pinned_end = cur; /* blocks [cur, pinned_end) are pinned by this read */
    const uint64_t refill = SL_MAX(1u, c->window / 2);
    uint64_t served = 0; /* bytes handed to the sink, not yet counted */

    while (cur <= last) {
        struct block *k = &b->blocks[cur];
        pthread_mutex_lock(&c->lock);
        if (pinned_end <= last && pinned_end - cur < refill) {
            uint64_t new_end = SL_MIN(last + 1, cur + c->window);
            for (uint64_t i = pinned_end; i < new_end; i++)
                pin(&b->blocks[i]);
            start_runs(c, b, &rd, reg, repo, pinned_end, new_end);
            pinned_end = new_end;
        }
        bool hit = k->state == B_PRESENT;
        while (k->state != B_PRESENT) {
            if (k->state == B_ABSENT) {
                /* A cancelled fetch of another reader, or an earlier failure: fetch again. */
                start_runs(c, b, &rd, reg, repo, cur, pinned_end);
                continue;
            }
            struct fetch *f = k->fetch;
            f->refs++;
            while (k->state == B_FETCHING && k->fetch == f)
                pthread_cond_wait(&b->cond, &c->lock);
            if (k->state != B_PRESENT && f->state == F_DONE && f->r < 0 && f->r != -ECANCELED) {
                r = sl_error_make(err, -f->r, "%s", f->msg ? f->msg : strerror(-f->r));
                fetch_put(f);
                pthread_mutex_unlock(&c->lock);
                goto out;
            }
            fetch_put(f);
        }
        if (hit)
            c->st.hits++;
        else
            c->st.misses++;
        pthread_mutex_unlock(&c->lock);

        /* Pinned and present: its bytes cannot change or vanish while we read them. */
        uint64_t from = SL_MAX(off, block_start(c, cur));
        uint64_t to = SL_MIN(end, block_start(c, cur) + block_len(c, b, cur));
        bool stop = false;
        while (from < to) {
            size_t want = (size_t)SL_MIN((uint64_t)bufsz, to - from);
            ssize_t n = pread(b->fd, buf, want, (off_t)from);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0) {
                int e = n < 0 ? errno : EIO;
                r = sl_error_make(err, e, "blob %s: read cache file at %" PRIu64 ": %s", digest,
                                  from, n < 0 ? strerror(e) : "unexpected end of file");
                goto out;
            }
            int s = sink(ud, buf, (size_t)n);
            if (s < 0) {
                r = s;
                goto out;
            }
            from += (uint64_t)n;
            served += (uint64_t)n;
            if (s == SL_HTTP_SINK_STOP) {
                stop = true;
                break;
            }
        }
        pthread_mutex_lock(&c->lock);
        c->st.bytes_served += served;
        served = 0;
        unpin(c, k);
        evict_locked(c);
        pthread_mutex_unlock(&c->lock);
        cur++;
        if (stop)
            break;
    }
    r = 0;

out:
    pthread_mutex_lock(&c->lock);
    c->st.bytes_served += served;
    for (uint64_t i = cur; i < pinned_end; i++)
        unpin(c, &b->blocks[i]);
    cancel_queued(c, &rd);
    while (rd.outstanding > 0)
        pthread_cond_wait(&b->cond, &c->lock);
    b->refs--;
    evict_locked(c);
    blob_maybe_drop(c, b);
    pthread_mutex_unlock(&c->lock);
    return r;
}

int sl_blobcache_prefetch(struct sl_blobcache *c, struct sl_registry *reg, const char *repo,
                          const char *digest, uint64_t blob_size, uint64_t off, uint64_t len,
                          sl_error_t *err)
{
    if (!digest || !sl_digest_valid(digest))
        return sl_error_make(err, EINVAL, "blob cache: bad digest `%.80s`", digest ? digest : "");
    if (off > blob_size || len > blob_size - off)
        return sl_error_make(err, ERANGE,
                             "blob %s: range %" PRIu64 "+%" PRIu64 " is past its end (%" PRIu64
                             " bytes)",
                             digest, off, len, blob_size);
    if (len == 0)
        return 0;
    struct blob *b = NULL;
    pthread_mutex_lock(&c->lock);
    int r = blob_get(c, digest, blob_size, &b, err);
    if (r >= 0) {
        uint64_t from = off >> c->shift;
        uint64_t to = SL_MIN(((off + len - 1) >> c->shift) + 1, from + c->window);
        if (!c->stopping)
            start_runs(c, b, NULL, reg, repo, from, to);
        b->refs--;
        blob_maybe_drop(c, b);
    }
    pthread_mutex_unlock(&c->lock);
    return r < 0 ? r : 0;
}

void sl_blobcache_get_stats(struct sl_blobcache *c, struct sl_blobcache_stats *ret)
{
    pthread_mutex_lock(&c->lock);
    *ret = c->st;
    pthread_mutex_unlock(&c->lock);
}
