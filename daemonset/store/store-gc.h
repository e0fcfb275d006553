/* store-gc.h — what the node's garbage collector and materialiser (daemonset/gc) need from the
 * store: layer listing with state and age, forgetting a layer record, removing unreferenced
 * contents, sweeping files no record names, and where a complete content's file is.
 *
 * References: a content is referenced while any layer record lists it (layer_content). The
 * collector decides which *layers* are still used (snapshots, mounts, grace; daemonset/gc/gc.h),
 * forgets the others with sl_store_layer_forget, then calls sl_store_gc_contents, which
 * removes every content no remaining layer references and that no one holds open.
 *
 * Locking: the store's gc lock is taken shared by everything that loads or expects contents
 * and by sl_store_layer_put (expect + reference in one step), exclusively by the collector
 * around forget + contents (sl_store_gc_lock(s, true)). While it is held exclusively no
 * content can be loaded or expected, so a removal never races with a new reference.
 *
 * Crash safety: a layer's record and its references go in one transaction; a content's rows go
 * in one transaction before its files are unlinked. A crash leaves at most files without rows,
 * which sl_store_gc_sweep removes, or contents without a referencing layer, which the next
 * collection removes. */
#ifndef SL_DAEMON_STORE_GC_H
#define SL_DAEMON_STORE_GC_H

#include "store.h"

#include <stdbool.h>
#include <stdint.h>

struct sl_store_layer_info {
    char digest[SL_DIGEST_STR_LEN];
    enum sl_store_layer_state state;
    int64_t recorded; /* Unix seconds of the last sl_store_layer_put of this layer */
};

/* Every layer record, in id order (caller frees the array). */
int sl_store_layer_infos(struct sl_store *s, struct sl_store_layer_info **ret, size_t *ret_n,
                         sl_error_t *err);

void sl_store_gc_lock(struct sl_store *s, bool exclusive);
void sl_store_gc_unlock(struct sl_store *s);

/* Deletes a layer record, its content references and the resume points of pulls whose answer
 * lists it (one transaction: a saved payload offset would otherwise claim contents about to be
 * removed, and a resumed pull would skip them). Caller holds the gc lock exclusively. Returns
 * the number of resume points deleted (>= 0); -ENOENT when unknown. */
int sl_store_layer_forget(struct sl_store *s, const char *digest, sl_error_t *err);

/* Deletes resume points that name no layer (written before points recorded their layers) and
 * were last updated before `before` (Unix seconds); *ret_n = how many. */
int sl_store_resume_prune_unlinked(struct sl_store *s, int64_t before, uint64_t *ret_n,
                                   sl_error_t *err);

/* Removes one content when no layer references it and no handle, writer or waiter holds it:
 * rows, then its files. Also removes the files of a content that has no row at all (left by a
 * crash). Returns 1 when removed (*ret_freed = bytes of disk released), 0 when kept. Caller
 * holds the gc lock exclusively. */
int sl_store_content_forget(struct sl_store *s, const char *digest, uint64_t *ret_freed,
                            sl_error_t *err);

/* The same for n contents in one transaction: ret_removed[i] says which went, *ret_freed sums
 * the bytes. */
int sl_store_content_forget_batch(struct sl_store *s, const char (*digests)[SL_DIGEST_STR_LEN],
                                  size_t n, bool *ret_removed, uint64_t *ret_freed,
                                  sl_error_t *err);

struct sl_store_gc_result {
    uint64_t contents_removed, contents_busy, bytes_freed, files_swept;
};

/* Removes every content no layer references (sl_store_content_forget each), then sweeps files
 * under content/ that no record names. Caller holds the gc lock exclusively. */
int sl_store_gc_contents(struct sl_store *s, struct sl_store_gc_result *ret, sl_error_t *err);

/* Absolute path of a content's complete file (ROOT/content/sha256/ab/<hex>). */
void sl_store_content_path(struct sl_store *s, const char *digest, char *out, size_t len);

/* Directory descriptor of the store root (borrowed). */
int sl_store_root_fd(const struct sl_store *s);

#endif
