/* sl-fs-tool — serves local Starlight blobs through the daemon's store and FUSE modules, for
 * end-to-end tests of the filesystem without the snapshotter or the proxy.
 *
 *   sl-fs-tool serve --root DIR [--lazy] [--feed-delay MS] [--feed-interval MS]
 *                    [--hold PATH]... [--corrupt PATH]... [--trace] [--debug] BLOB...
 *
 * Imports every blob into the store under DIR/store (with --lazy only the TOCs: chunks are
 * then fed from the blobs by a feeder thread, after --feed-delay, one every --feed-interval),
 * mounts DIR/mnt and prints, on stdout, one line per event:
 *
 *   mount MNT                     the mountpoint
 *   layer DIGEST DIR              a layer's directory (an overlay lowerdir)
 *   ready                         serving
 *   feed rejected PATH CHUNK MSG  a corrupted chunk of PATH was fed and refused (--corrupt)
 *   feed idle HELD                every chunk fed except HELD chunks of --hold files
 *   feed done                     after SIGUSR1 the held chunks were fed
 *   trace open|read PID PATH      first open/read of a file (--trace)
 *   stats ...                     store and fs counters, at exit
 *
 * --corrupt PATH feeds a copy of each chunk of PATH with one byte flipped before the real one
 * (which, with --hold PATH, waits for SIGUSR1). SIGTERM or SIGINT unmounts and exits 0. */
#include "fs.h"
#include "store.h"

#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_BLOBS 64

struct blob {
    const char *path;
    int fd;
    char digest[SL_DIGEST_STR_LEN];
    struct sl_toc *toc; /* feeder's copy (the fs owns its own) */
};

struct tool {
    struct sl_store *store;
    struct blob blobs[MAX_BLOBS];
    size_t n_blobs;
    const char *hold[MAX_BLOBS], *corrupt[MAX_BLOBS];
    size_t n_hold, n_corrupt;
    long feed_delay_ms, feed_interval_ms;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool release, stop;
    pthread_mutex_t out_lock;
};

static void say(struct tool *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct tool *t, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pthread_mutex_lock(&t->out_lock);
    vfprintf(stdout, fmt, ap);
    fputc('\n', stdout);
    fflush(stdout);
    pthread_mutex_unlock(&t->out_lock);
    va_end(ap);
}

static bool listed(const char *const *v, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], name) == 0)
            return true;
    return false;
}

/* Sleeps `ms`; returns true when asked to stop meanwhile. */
static bool nap(struct tool *t, long ms)
{
    if (ms <= 0)
        return t->stop;
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += ms / 1000;
    ts.tv_nsec += (ms % 1000) * 1000000;
    if (ts.tv_nsec >= 1000000000)
        ts.tv_sec++, ts.tv_nsec -= 1000000000;
    pthread_mutex_lock(&t->lock);
    while (!t->stop && pthread_cond_timedwait(&t->cond, &t->lock, &ts) == 0)
        ;
    bool stop = t->stop;
    pthread_mutex_unlock(&t->lock);
    return stop;
}

static int feed_chunk(struct tool *t, struct blob *b, const struct sl_toc_entry *e, size_t k,
                      bool corrupt)
{
    const struct sl_toc_chunk *c = &e->chunks[k];
    _cleanup_free_ uint8_t *buf = sl_xmalloc((size_t)c->compressed_size + 1);
    sl_error_t err = NULL;
    int r = sl_toc_pread_fd(&b->fd, buf, (size_t)c->compressed_size, c->offset, &err);
    if (r >= 0) {
        if (corrupt) /* a byte inside the deflate data, past the 10-byte gzip header */
            buf[10 + (c->compressed_size - 18) / 2] ^= 0x55;
        r = sl_store_put_chunk(t->store, e->digest, c, buf, (size_t)c->compressed_size, &err);
    }
    if (r < 0 && corrupt)
        say(t, "feed rejected %s %zu %s", e->name, k, sl_error_msg(err, r));
    else if (r < 0)
        fprintf(stderr, "sl-fs-tool: feed `%s` chunk %zu: %s\n", e->name, k, sl_error_msg(err, r));
    else if (corrupt)
        say(t, "feed ACCEPTED-CORRUPT %s %zu", e->name, k);
    sl_error_free(&err);
    return r;
}

/* Feeds every chunk of every file not held; returns the number of held chunks. */
static size_t feed_pass(struct tool *t, bool held_pass)
{
    size_t held = 0;
    for (size_t i = 0; i < t->n_blobs && !t->stop; i++) {
        struct blob *b = &t->blobs[i];
        if (!b->toc)
            continue;
        for (size_t j = 0; j < sl_toc_count(b->toc) && !t->stop; j++) {
            const struct sl_toc_entry *e = sl_toc_entry_at(b->toc, j);
            if (e->type != SL_TOC_REG || e->size == 0 || !e->has_digest)
                continue;
            bool hold = listed(t->hold, t->n_hold, e->name);
            if (!held_pass && listed(t->corrupt, t->n_corrupt, e->name))
                for (size_t k = 0; k < e->n_chunks; k++)
                    feed_chunk(t, b, e, k, true);
            if (hold != held_pass) {
                held += hold ? e->n_chunks : 0;
                continue;
            }
            for (size_t k = 0; k < e->n_chunks && !t->stop; k++) {
                feed_chunk(t, b, e, k, false);
                if (nap(t, t->feed_interval_ms))
                    return held;
            }
        }
    }
    return held;
}

static void *feeder(void *ud)
{
    struct tool *t = ud;
    if (nap(t, t->feed_delay_ms))
        return NULL;
    size_t held = feed_pass(t, false);
    say(t, "feed idle %zu", held);
    pthread_mutex_lock(&t->lock);
    while (!t->stop && !t->release)
        pthread_cond_wait(&t->cond, &t->lock);
    bool stop = t->stop;
    pthread_mutex_unlock(&t->lock);
    if (!stop) {
        feed_pass(t, true);
        say(t, "feed done");
    }
    return NULL;
}

static void on_event(void *ud, const struct sl_fs_event *ev)
{
    say(ud, "trace %s %d %s", ev->type == SL_FS_EVENT_OPEN ? "open" : "read", (int)ev->pid,
        ev->path);
}

static int usage(void)
{
    fprintf(stderr, "usage: sl-fs-tool serve --root DIR [--lazy] [--feed-delay MS]\n"
                    "           [--feed-interval MS] [--hold PATH]... [--corrupt PATH]...\n"
                    "           [--trace] [--debug] BLOB...\n");
    return 2;
}

static int fail(sl_error_t *err, int r, const char *what)
{
    fprintf(stderr, "sl-fs-tool: %s: %s\n", what, sl_error_msg(*err, r));
    sl_error_free(err);
    return 1;
}

static int cmd_serve(int argc, char **argv)
{
    static struct tool t = {.lock = PTHREAD_MUTEX_INITIALIZER,
                            .cond = PTHREAD_COND_INITIALIZER,
                            .out_lock = PTHREAD_MUTEX_INITIALIZER};
    const char *root = NULL;
    bool lazy = false, tracing = false;
    struct sl_fs_options fo = {0};
    int i = 0;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--lazy") == 0)
            lazy = true;
        else if (strcmp(a, "--trace") == 0)
            tracing = true;
        else if (strcmp(a, "--debug") == 0)
            fo.debug = true;
        else if (!v)
            return usage();
        else if (strcmp(a, "--root") == 0)
            root = v, i++;
        else if (strcmp(a, "--feed-delay") == 0)
            t.feed_delay_ms = atol(v), i++;
        else if (strcmp(a, "--feed-interval") == 0)
            t.feed_interval_ms = atol(v), i++;
        else if (strcmp(a, "--hold") == 0 && t.n_hold < MAX_BLOBS)
            t.hold[t.n_hold++] = v, i++;
        else if (strcmp(a, "--corrupt") == 0 && t.n_corrupt < MAX_BLOBS)
            t.corrupt[t.n_corrupt++] = v, i++;
        else
            return usage();
    }
    if (!root || i == argc || argc - i > MAX_BLOBS)
        return usage();

    /* Signals are taken by sigwait below; every thread started from here inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGUSR1);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    sl_error_t err = NULL;
    if (mkdir(root, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "sl-fs-tool: mkdir %s: %s\n", root, strerror(errno));
        return 1;
    }
    _cleanup_free_ char *store_dir = sl_xasprintf("%s/store", root);
    _cleanup_free_ char *mnt = sl_xasprintf("%s/mnt", root);
    int r = sl_store_open(store_dir, NULL, &t.store, &err);
    if (r < 0)
        return fail(&err, r, "open store");
    struct sl_fs *fs = NULL;
    if (tracing) {
        fo.on_event = on_event;
        fo.event_ud = &t;
    }
    sl_fs_new(t.store, &fo, &fs, &err);
    r = sl_fs_mount(fs, mnt, &err);
    if (r < 0) {
        sl_fs_free(fs);
        sl_store_free(t.store);
        return fail(&err, r, "mount");
    }
    say(&t, "mount %s", sl_fs_mountpoint(fs));

    int rc = 0;
    for (; i < argc && rc == 0; i++) {
        struct blob *b = &t.blobs[t.n_blobs++];
        b->path = argv[i];
        b->fd = open(b->path, O_RDONLY | O_CLOEXEC);
        if (b->fd < 0) {
            fprintf(stderr, "sl-fs-tool: %s: %s\n", b->path, strerror(errno));
            rc = 1;
            break;
        }
        struct sl_toc *toc = NULL;
        r = sl_store_import_blob(t.store, b->fd, NULL, lazy, b->digest, &toc, &err);
        if (r < 0) {
            rc = fail(&err, r, b->path);
            break;
        }
        struct sl_store_layer rec;
        r = sl_store_layer_get(t.store, b->digest, &rec, &err);
        uint32_t slot = r == 0 && rec.id > 0 && rec.id <= SL_FS_MAX_SLOT ? (uint32_t)rec.id : 0;
        sl_store_layer_clear(&rec);
        sl_error_free(&err);
        /* the fs takes one tree; the feeder keeps its own */
        if (lazy && sl_store_layer_get(t.store, b->digest, &rec, NULL) == 0) {
            sl_store_layer_load_toc(&rec, &b->toc, NULL);
            sl_store_layer_clear(&rec);
        }
        r = sl_fs_add_layer(fs, b->digest, toc, slot, &err);
        if (r == -EEXIST) { /* the same layer twice (features' base is busybox) */
            sl_error_free(&err);
            sl_toc_free(b->toc);
            b->toc = NULL;
        } else if (r < 0) {
            rc = fail(&err, r, b->path);
            break;
        }
        _cleanup_free_ char *dir = NULL;
        r = sl_fs_layer_dir(fs, b->digest, &dir, &err);
        if (r < 0) {
            rc = fail(&err, r, b->path);
            break;
        }
        say(&t, "layer %s %s", b->digest, dir);
    }

    pthread_t feed_thread;
    bool feeding = false;
    if (rc == 0) {
        say(&t, "ready");
        if (lazy)
            feeding = pthread_create(&feed_thread, NULL, feeder, &t) == 0;
        for (;;) {
            int sig = 0;
            if (sigwait(&set, &sig) != 0)
                continue;
            if (sig == SIGUSR1) {
                pthread_mutex_lock(&t.lock);
                t.release = true;
                pthread_cond_broadcast(&t.cond);
                pthread_mutex_unlock(&t.lock);
                continue;
            }
            break;
        }
    }
    pthread_mutex_lock(&t.lock);
    t.stop = true;
    pthread_cond_broadcast(&t.cond);
    pthread_mutex_unlock(&t.lock);
    if (feeding)
        pthread_join(feed_thread, NULL);
    struct sl_fs_stats fst;
    sl_fs_get_stats(fs, &fst);
    sl_fs_free(fs);
    struct sl_store_stats sst;
    sl_store_get_stats(t.store, &sst);
    say(&t,
        "stats chunks_stored=%" PRIu64 " chunks_rejected=%" PRIu64 " chunks_duplicate=%" PRIu64
        " contents_completed=%" PRIu64 " reads=%" PRIu64 " reads_parked=%" PRIu64 " opens=%" PRIu64,
        sst.chunks_stored, sst.chunks_rejected, sst.chunks_duplicate, sst.contents_completed,
        fst.reads, fst.reads_parked, fst.opens);
    for (size_t k = 0; k < t.n_blobs; k++) {
        if (t.blobs[k].fd >= 0)
            close(t.blobs[k].fd);
        sl_toc_free(t.blobs[k].toc);
    }
    sl_store_free(t.store);
    return rc;
}

int main(int argc, char **argv)
{
    sl_log_setup("sl-fs-tool", SL_LOG_TEXT, SL_LOG_WARN);
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "serve") == 0)
        return cmd_serve(argc - 2, argv + 2);
    return usage();
}
