/* store.h — the node's content-addressed file store and layer records (DESIGN.md §4).
 *
 * Layout under ROOT (nothing outside ROOT is ever created; file names come from digests only,
 * never from TOC paths):
 *
 *     ROOT/store.db                      SQLite: contents, chunk presence, layers, references
 *     ROOT/content/sha256/ab/<hex>       complete contents, one copy per node (whole-file digest)
 *     ROOT/content/partial/<hex>         contents being filled, sparse, written chunk by chunk
 *
 * A content (file bytes named by their sha256) is first *expected* with its size, then filled
 * by chunks in any order. Every chunk is inflated and checked against its chunkDigest before
 * its bytes are written and before any reader can learn it is present; a bad chunk is
 * rejected (-EBADMSG) and never served. Presence is tracked per exact chunk (offset, size,
 * chunkDigest): a reader asks with its own TOC's chunk descriptors, so a hostile TOC claiming
 * someone else's content digest cannot make the store serve its bytes to another layer. When
 * the chunks cover the whole content it is checked against the content digest (optional,
 * on by default), fsynced and renamed into content/sha256/; from then on any range is present.
 *
 * Durability: a chunk is pwrite()n to the partial file and then recorded in SQLite (no fsync
 * per chunk). SQLite rows for partial contents are hints: when a partial content is loaded
 * after a restart every recorded chunk is re-read and re-verified against its chunkDigest, so a
 * write lost in a crash only means that chunk is fetched again. Completion renames the file
 * into place and makes it readable at once; its durable commit is batched (up to 256 contents
 * or 0.5 s): one syncfs of the store's filesystem, then one transaction marks the batch complete
 * in SQLite (synchronous=NORMAL, WAL). A crash before that commit is repaired at load (the
 * final file is re-hashed and adopted, or deleted). sl_store_sync() and a layer turning
 * complete (sl_store_layer_refresh) flush the batch and make every commit so far durable.
 *
 * Waiting: sl_store_wait() either reports the chunks present (1) or registers a caller-owned
 * waiter (0) whose callback runs exactly once, from the thread whose sl_store_put_chunk()
 * completed the range (or from sl_store_free with -ESHUTDOWN), unless sl_store_wait_cancel()
 * removed it first. No thread blocks per waiting reader.
 *
 * Errors: negative errno + sl_error_t: -EINVAL bad digest or chunk outside its content,
 * -ENOENT unknown content/layer, -EBADMSG chunk or content digest mismatch, -EIO and the
 * system's errno class for file and database failures.
 * Thread-safety: every function may be called from any thread concurrently, except
 * sl_store_free (no other call may be running or start). Callbacks run without store locks
 * held and may call back into the store. */
#ifndef SL_DAEMON_STORE_H
#define SL_DAEMON_STORE_H

#include "cleanup.h"
#include "digest.h"
#include "error.h"
#include "toc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_store;
struct sl_store_content;

struct sl_store_options {
    /* skip the syncfs before completion commits and the WAL checkpoint of sl_store_sync, run
     * SQLite with synchronous=OFF (default: sync). Tests may turn it off; correctness does not
     * depend on it. */
    bool no_sync;
    /* skip the whole-file digest check at completion (chunks are still verified) */
    bool no_verify_files;
};

/* Opens (creating when needed) the store at `root` (an existing or creatable directory).
 * `o` may be NULL for defaults. Caller frees with sl_store_free. */
int sl_store_open(const char *root, const struct sl_store_options *o, struct sl_store **ret,
                  sl_error_t *err);
/* Closes the store: pending waiters are called with -ESHUTDOWN. Every content handle must have
 * been released. NULL is fine. */
void sl_store_free(struct sl_store *s);
SL_DEFINE_CLEANUP(struct sl_store, sl_store_free)
#define _cleanup_store_ _cleanup_(sl_store_freep)

const char *sl_store_root(const struct sl_store *s);

/* ---------------------------------------------------------------- contents */

enum sl_store_content_state {
    SL_STORE_ABSENT,   /* not expected (no record) */
    SL_STORE_PARTIAL,  /* expected, some or no chunks present */
    SL_STORE_COMPLETE, /* every byte present and verified */
};

/* Declares that content `digest` ("sha256:…") of `size` bytes will be filled. Idempotent;
 * -EINVAL when the content is known with a different size. A zero-length content is complete
 * at once. */
int sl_store_expect(struct sl_store *s, const char *digest, uint64_t size, sl_error_t *err);

/* Ingests one chunk of an expected content from its raw gzip member bytes (as copied from the
 * layer blob or a delta payload; surplus after the member is ignored): inflates, verifies
 * against chunk->digest, writes, records, wakes the waiters it satisfies, and completes the
 * content when it was the last missing piece. Returns 1 when stored, 0 when it was already
 * present (nothing written), -EBADMSG when the bytes do not match (nothing written, nothing
 * served), -ENOENT when the content is not expected, -EINVAL when the chunk lies outside it. */
int sl_store_put_chunk(struct sl_store *s, const char *content_digest,
                       const struct sl_toc_chunk *chunk, const void *gz_member, size_t len,
                       sl_error_t *err);
/* The same with already inflated bytes (chunk->size of them), still verified. */
int sl_store_put_chunk_data(struct sl_store *s, const char *content_digest,
                            const struct sl_toc_chunk *chunk, const void *data, sl_error_t *err);

int sl_store_content_state(struct sl_store *s, const char *digest);

/* Opens a reference-counted handle on a content (expecting it with `size` when unknown).
 * The handle keeps a read-only-usable file descriptor (sl_store_content_fd) whose present
 * ranges never change once present. Release with sl_store_content_unref. */
int sl_store_content_open(struct sl_store *s, const char *digest, uint64_t size,
                          struct sl_store_content **ret, sl_error_t *err);
void sl_store_content_unref(struct sl_store_content *c);
SL_DEFINE_CLEANUP(struct sl_store_content, sl_store_content_unref)
#define _cleanup_content_ _cleanup_(sl_store_content_unrefp)
/* Borrowed descriptor, valid while the handle is held; pread only the present ranges. */
int sl_store_content_fd(const struct sl_store_content *c);
uint64_t sl_store_content_size(const struct sl_store_content *c);
/* Lock-free: true once the whole content is present. */
bool sl_store_content_complete(const struct sl_store_content *c);
/* True when every chunk of chunks[0..n) is present (or the content is complete). */
bool sl_store_chunks_present(struct sl_store_content *c, const struct sl_toc_chunk *chunks,
                             size_t n);

/* Called once with 0 when the awaited chunks are present, or a negative errno (-ESHUTDOWN
 * when the store closes). Runs on the writer's thread without store locks held. */
typedef void (*sl_store_wait_fn)(void *ud, int status);

/* A waiter is owned (and usually embedded) by the caller; its fields are private. The chunk
 * array is borrowed until the callback ran or the wait was cancelled. */
struct sl_store_waiter {
    struct sl_store_waiter *next, *prev;
    const struct sl_toc_chunk *chunks;
    size_t n;
    sl_store_wait_fn fn;
    void *ud;
    bool queued;
};

/* Registers `w` to be called when chunks[0..n) of `c` are all present. Returns 1 (and
 * registers nothing) when they already are, 0 when registered. The check and the
 * registration are atomic with respect to writers: no wake-up is lost. */
int sl_store_wait(struct sl_store_content *c, const struct sl_toc_chunk *chunks, size_t n,
                  struct sl_store_waiter *w, sl_store_wait_fn fn, void *ud);
/* Removes a registered waiter. Returns true when removed (the callback will never run), false
 * when its callback already ran or is running. */
bool sl_store_wait_cancel(struct sl_store_content *c, struct sl_store_waiter *w);

/* ---------------------------------------------------------------- layers */

enum sl_store_layer_state {
    SL_STORE_LAYER_INCOMPLETE,
    SL_STORE_LAYER_COMPLETE, /* every content of every regular file is complete */
};

/* A layer record: what it takes to rebuild the layer's tree after a restart. `tail` holds the
 * blob's bytes [toc_offset, blob_size): the TOC gzip member and the footer. */
struct sl_store_layer {
    int64_t id; /* stable row id (> 0), assigned by the store */
    char digest[SL_DIGEST_STR_LEN];
    char toc_digest[SL_DIGEST_STR_LEN];
    uint64_t blob_size;
    uint64_t toc_offset;
    uint8_t *tail;
    size_t tail_len;
    enum sl_store_layer_state state;
};
void sl_store_layer_clear(struct sl_store_layer *l);

/* Records a layer (upsert by digest) whose tree is `toc` (loaded from this very tail): stores
 * the record, the layer's content references (for GC) and expects every content. Fills l->id
 * and l->state. */
int sl_store_layer_put(struct sl_store *s, struct sl_store_layer *l, const struct sl_toc *toc,
                       sl_error_t *err);
/* Pins a layer digest (counted; in memory only): the collector keeps a pinned layer whatever
 * its age, e.g. while a pull that records, publishes or registers it runs. */
void sl_store_layer_pin(struct sl_store *s, const char *digest);
void sl_store_layer_unpin(struct sl_store *s, const char *digest);
bool sl_store_layer_pinned(struct sl_store *s, const char *digest);
/* Reads a record (caller clears it). -ENOENT when unknown. */
int sl_store_layer_get(struct sl_store *s, const char *digest, struct sl_store_layer *ret,
                       sl_error_t *err);
/* Layer digests in id order (caller frees each and the array). */
int sl_store_layer_list(struct sl_store *s, char ***ret, size_t *ret_n, sl_error_t *err);
/* Rebuilds the tree from the record's tail (checked against toc_digest). */
int sl_store_layer_load_toc(const struct sl_store_layer *l, struct sl_toc **ret, sl_error_t *err);
/* Re-evaluates whether every content of the layer is complete and records it. */
int sl_store_layer_refresh(struct sl_store *s, const char *digest, const struct sl_toc *toc,
                           enum sl_store_layer_state *ret, sl_error_t *err);

/* Imports a local Starlight/eStargz blob: loads its TOC, records the layer and, unless
 * `toc_only`, puts every chunk (contents already complete are skipped). `layer_digest` may be
 * NULL (the blob is hashed). Returns the tree in *ret_toc (optional, caller frees) and the
 * digest in ret_digest (optional). */
int sl_store_import_blob(struct sl_store *s, int fd, const char *layer_digest, bool toc_only,
                         char ret_digest[SL_DIGEST_STR_LEN], struct sl_toc **ret_toc,
                         sl_error_t *err);

/* ---------------------------------------------------------------- pull resume points */

/* Where an interrupted pull stands (resume.c): the delta request (URL, and the POST body or
 * NULL for a GET), the ETag of its answer, the head length and a payload offset below which
 * every chunk was stored and verified. Kept in store.db, so a restarted daemon can ask for the
 * same answer with Range/If-Range. `layers` are the digests of every layer the answer's header
 * lists (held ones included): the garbage collector drops the point when it forgets any of
 * them, since the saved offset then claims contents the store no longer has (store-gc.h).
 * Strings are owned (sl_store_resume_clear); sl_store_resume_put only reads them. */
struct sl_store_resume {
    char *url, *body, *etag;
    uint64_t head_len, payload_off;
    char **layers;
    size_t n_layers;
};
void sl_store_resume_clear(struct sl_store_resume *r);
/* Upsert (the layer list replaced as a whole) / read (-ENOENT when none) / delete the resume
 * point of pull `key`. */
int sl_store_resume_put(struct sl_store *s, const char *key, const struct sl_store_resume *r,
                        sl_error_t *err);
int sl_store_resume_get(struct sl_store *s, const char *key, struct sl_store_resume *ret,
                        sl_error_t *err);
int sl_store_resume_delete(struct sl_store *s, const char *key, sl_error_t *err);
/* Digests (sorted, at most `max`) of complete, non-empty contents referenced by layers that
 * are not complete: what a new delta names as held so nothing verified is sent again (the
 * proxy already skips contents of complete layers). Caller frees each and the array. */
int sl_store_held_contents(struct sl_store *s, size_t max, char ***ret, size_t *ret_n,
                           sl_error_t *err);

/* Counters for status and tests. */
struct sl_store_stats {
    uint64_t chunks_stored, chunks_duplicate, chunks_rejected, contents_completed;
    uint64_t waiters_parked, waiters_woken;
};
void sl_store_get_stats(struct sl_store *s, struct sl_store_stats *ret);

/* Makes every completed content and every database commit so far durable: flushes the pending
 * completion batch (syncfs + one transaction) and checkpoints the WAL. Returns -EIO (or the
 * syncfs errno) on failure; the completions are then re-verified at the next load. */
int sl_store_sync(struct sl_store *s, sl_error_t *err);

#endif
