/* blobcache.h — a bounded on-disk cache of layer-blob byte ranges in front of a registry.
 *
 * The proxy's payload is raw gzip members copied out of layer blobs. sl_blobcache_read()
 * delivers bytes [off, off+len) of one blob to a sink, from disk when cached, else from the
 * registry by Range requests, and keeps what it fetched for the next reader.
 *
 * Design (docs/architecture.md, "The blob cache"):
 *  - A blob is cut into fixed, aligned blocks (default 1 MiB; the last one may be short).
 *    Each blob with cached blocks has one sparse file `<dir>/<hex>.blob`; a block's bytes sit
 *    at their blob offset. Which blocks are present lives in memory only.
 *  - A read walks its blocks in order with a window of read-ahead (default 32 blocks): blocks
 *    entering the window are pinned; runs of adjacent missing blocks are coalesced into one
 *    Range request each (at most max_run blocks) and handed to a bounded pool of fetch
 *    threads, so independent runs download in parallel while present blocks are streamed
 *    from disk (pread, no lock held). A block becomes present the moment all its bytes are
 *    on disk, so a reader streams the first block of a run while the rest still arrives.
 *  - Each block is absent, being fetched, or present. A reader that finds a block being
 *    fetched waits for that fetch (condition variable) instead of fetching again: one
 *    registry request per block however many readers want it.
 *  - A failed fetch (registry error, connection lost, short or over-long answer) leaves its
 *    unfinished blocks absent and wakes every waiter with the error (message kept, wrapped
 *    with the blob digest). Nothing is marked present before all its bytes were written, and
 *    presence is not persisted, so a crash never leaves a block that claims wrong bytes.
 *  - LRU eviction by block: when present bytes exceed max_bytes, the least recently used
 *    unpinned blocks are dropped (hole punched). Pinned blocks are never evicted, so the
 *    bound is exceeded only while readers pin more than max_bytes in total.
 *  - The cache starts empty: sl_blobcache_new() removes leftover *.blob files in `dir` and
 *    takes an exclusive lock on `<dir>/lock` (a second process on the same dir gets -EBUSY).
 *  - Range bytes cannot be checked against the blob digest; a corrupt-but-full-length answer
 *    is cached as served. The worker verifies every chunk against its chunkDigest.
 *
 * Thread-safety: every function except new/free may be called from any number of threads at
 * once. sl_blobcache_free() must not race with reads. */
#ifndef SL_PROXY_BLOBCACHE_H
#define SL_PROXY_BLOBCACHE_H

#include "error.h"
#include "http.h"
#include "registry.h"

#include <stdint.h>

#define SL_BLOBCACHE_BLOCK_DEFAULT    (1024 * 1024) /* bytes per block */
#define SL_BLOBCACHE_RUN_DEFAULT      32            /* blocks per Range request, at most */
#define SL_BLOBCACHE_WINDOW_DEFAULT   32            /* blocks pinned ahead by one reader */
#define SL_BLOBCACHE_FETCHERS_DEFAULT 8             /* concurrent Range requests, cache-wide */

struct sl_blobcache;

/* Tuning knobs; 0 means the default. Plain data, read once by sl_blobcache_new_opts(). */
struct sl_blobcache_options {
    uint32_t block_size; /* power of two, 4 KiB .. 64 MiB */
    uint32_t max_run;    /* blocks per Range request */
    uint32_t window;     /* blocks a reader pins and prefetches ahead of its position */
    uint32_t fetchers;   /* fetch threads (parallel Range requests over all readers) */
};

/* Creates the cache in `dir` (created if missing, mode 0700) holding at most `max_bytes` of
 * blob data (plus blocks pinned by running reads). Removes leftover cache files from an
 * earlier run. Errors: -EINVAL (max_bytes < one block), -EBUSY (dir used by another process),
 * or the errno of mkdir/open. *ret is caller-owned; free with sl_blobcache_free(). */
int sl_blobcache_new(const char *dir, uint64_t max_bytes, struct sl_blobcache **ret,
                     sl_error_t *err);
int sl_blobcache_new_opts(const char *dir, uint64_t max_bytes,
                          const struct sl_blobcache_options *opts, struct sl_blobcache **ret,
                          sl_error_t *err);
/* Stops the fetch threads, closes and removes the cache files. Accepts NULL. No read may be
 * running. */
void sl_blobcache_free(struct sl_blobcache *c);

/* Delivers exactly bytes [off, off+len) of blob `digest` (of `blob_size` bytes, in repository
 * `repo` of `reg`) to `sink`, in order, then returns 0. Blocks until done. `reg`, `repo` and
 * `digest` are borrowed for the call only (no fetch outlives it). len == 0 is a no-op.
 *
 * Errors: -ERANGE (off+len > blob_size), -EINVAL (bad digest, or a blob_size different from
 * the one an earlier concurrent reader gave), the registry's class (-EIO, -ENOENT, -EACCES,
 * -EAGAIN, -ERANGE, -EPROTO ...) with its message wrapped as "blob sha256:...: ...", the
 * errno of disk I/O, or the sink's negative return. A sink returning SL_HTTP_SINK_STOP ends
 * the read early with 0. When a read fails, fetches it started and no one else waits for are
 * cancelled or waited for, never left running. */
int sl_blobcache_read(struct sl_blobcache *c, struct sl_registry *reg, const char *repo,
                      const char *digest, uint64_t blob_size, uint64_t off, uint64_t len,
                      sl_http_sink_fn sink, void *ud, sl_error_t *err);

/* Starts, in the background, fetches of the absent blocks of [off, off+len) of a blob (at
 * most `window` blocks) and returns at once: a later read finds them present or fetching.
 * Unlike a read's, these fetches outlive the call: `repo` is copied, and `reg` must outlive
 * the cache. Errors of the fetches surface in the reads that wait for them. Errors: -ERANGE,
 * -EINVAL as for sl_blobcache_read. */
int sl_blobcache_prefetch(struct sl_blobcache *c, struct sl_registry *reg, const char *repo,
                          const char *digest, uint64_t blob_size, uint64_t off, uint64_t len,
                          sl_error_t *err);

/* Counters since creation, for /metrics. hits/misses count blocks (a block is a hit when it
 * was on disk as the reader reached it, a miss when it had to be fetched or waited for). */
struct sl_blobcache_stats {
    uint64_t hits, misses;
    uint64_t bytes_fetched; /* bytes received from the registry */
    uint64_t bytes_served;  /* bytes handed to sinks */
    uint64_t size_bytes;    /* bytes of present blocks now on disk */
    uint64_t evictions;     /* blocks evicted */
    uint64_t fetch_errors;  /* failed Range requests */
    double fetch_seconds;   /* total wall time spent in Range requests */
    uint64_t fetches;       /* Range requests made (successful or not) */
    uint64_t max_bytes;     /* the configured bound */
};
/* Fills *ret with a consistent snapshot. Thread-safe. */
void sl_blobcache_get_stats(struct sl_blobcache *c, struct sl_blobcache_stats *ret);

#endif
