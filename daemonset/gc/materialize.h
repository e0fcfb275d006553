/* materialize.h — FUSE leaves the data path (DESIGN.md §4 "Completion"): once every chunk of a
 * layer is local, the layer is built once as a plain directory from the store, and new mounts
 * get that directory as their overlay lowerdir instead of the layer's FUSE subtree, so their
 * reads cost what overlayfs costs. Mounts made earlier keep their FUSE lowerdir (the FUSE tree
 * stays published).
 *
 *     DIR/<layer digest hex>/       the layer's tree (overlay conventions: whiteouts are 0:0
 *                                    character devices, `.wh..wh..opq` gives its directory
 *                                    trusted.overlay.opaque=y, aufs metadata is hidden)
 *     DIR/.tmp-<hex>                 being built (removed at start)
 *     DIR/.gc-<hex>                  being removed by the collector (removed at start)
 *
 * Regular files (mode SL_MAT_LINK, the default): the store's content file is hardlinked when
 * its inode carries the path's metadata (mode, owner, mtime, xattrs: per inode, not per path).
 * An inode no tree links yet (link count 1, the store's own name) takes the metadata of the
 * first path that needs it; later paths with the same metadata link it, paths with other
 * metadata get a copy, and so does a file with TOC hardlinks (the group then shares that copy,
 * so its link count is exact). Nothing is recorded: the inode's own metadata and link count say
 * whether it can be linked or claimed. So a layer costs no data blocks for contents used with
 * one metadata, one copy per path with other metadata, plus directory entries and inodes. The
 * visible difference to an unpacked layer: st_nlink of a linked file (one without TOC
 * hardlinks) counts every link, the store's included, and two equal such files of one layer
 * share an inode. SL_MAT_COPY copies every
 * regular file (exact link counts; the layer's content bytes twice on disk); SL_MAT_OFF keeps
 * FUSE in the data path.
 *
 * A TOC path is never used as a host path without checks: every parent is opened component by
 * component with O_NOFOLLOW under DIR/.tmp-<hex>, so a symlink in the tree cannot redirect a
 * creation outside it; any failure leaves the layer on FUSE (logged once).
 *
 * Thread-safety: all calls are safe from any thread; one worker thread builds layers. */
#ifndef SL_DAEMON_MATERIALIZE_H
#define SL_DAEMON_MATERIALIZE_H

#include "error.h"
#include "fs.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

enum sl_mat_mode {
    SL_MAT_OFF,
    SL_MAT_LINK,
    SL_MAT_COPY,
};

/* "off", "link", "copy" → mode; -EINVAL otherwise. */
int sl_mat_parse_mode(const char *s, enum sl_mat_mode *ret);

struct sl_mat_options {
    struct sl_store *store; /* borrowed */
    struct sl_fs *fs;       /* borrowed: the fallback lowerdir (may be NULL in tests) */
    const char *dir;        /* where trees are built (same filesystem as the store) */
    enum sl_mat_mode mode;
    double scan_interval; /* seconds between scans for complete layers; 0 = 2 s */
    bool no_sync;         /* skip the syncfs before publishing a tree (tests) */
    /* While this returns true, new mounts get the FUSE subtree even of materialised layers:
     * startup traces are recorded from FUSE accesses (the optimizer). NULL: never. */
    bool (*keep_fuse)(void *ud);
    void *keep_fuse_ud;
};

struct sl_mat;

/* Creates DIR, removes leftovers (.tmp-*, .gc-*), adopts the trees of layers that are still
 * recorded and starts the worker (not in SL_MAT_OFF). */
int sl_mat_new(const struct sl_mat_options *o, struct sl_mat **ret, sl_error_t *err);
void sl_mat_free(struct sl_mat *m);

/* The snapshotter's lowerdir hook (struct sl_snap_hooks.lowerdir, ud = the sl_mat): the
 * materialised tree when there is one, else the FUSE subtree (sl_fs_lowerdir); asks the worker
 * to look at the layer. */
int sl_mat_lowerdir(void *ud, const char *layer_digest, char **ret_path, sl_error_t *err);

/* Builds the layer's tree now (the layer must be complete: -EAGAIN otherwise). 0 when built
 * or already there. */
int sl_mat_layer(struct sl_mat *m, const char *layer_digest, sl_error_t *err);

/* Wakes the worker to scan at once. */
void sl_mat_kick(struct sl_mat *m);

/* Unpublishes the layer's tree (new mounts no longer get it) and moves it aside; returns the
 * path to delete with sl_mat_purge (malloc'd) or NULL when there was none. */
char *sl_mat_unpublish(struct sl_mat *m, const char *layer_digest);
/* Deletes a tree moved aside; returns the bytes released. */
uint64_t sl_mat_purge(const char *path);

/* Serialises the collector with the worker: held while a tree is built. */
void sl_mat_hold(struct sl_mat *m);
void sl_mat_release(struct sl_mat *m);

bool sl_mat_has(struct sl_mat *m, const char *layer_digest);

struct sl_mat_stats {
    uint64_t layers, files_linked, files_copied, bytes_copied, failures;
};
void sl_mat_get_stats(struct sl_mat *m, struct sl_mat_stats *ret);

#endif
