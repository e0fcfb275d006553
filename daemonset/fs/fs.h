/* fs.h — the worker's FUSE filesystem: one libfuse3 low-level session serving every Starlight
 * layer as a subdirectory of its mountpoint (DESIGN.md §4). libfuse appears only in this module.
 *
 *     MNT/<layer digest hex>/...   the layer's TOC tree, usable as an overlay lowerdir
 *
 * Metadata (lookup, getattr, readdir(plus), readlink, getxattr, listxattr, statfs) comes from
 * the TOC alone. Contents come from the store by content digest only: no TOC path is ever used
 * as a host path. Whiteouts (`.wh.NAME`) appear as 0:0 character devices named NAME, opaque
 * markers (`.wh..wh..opq`) are hidden and give their directory `trusted.overlay.opaque=y`,
 * hardlinks share the target's inode, empty files need no content. Inode numbers are
 * (layer slot << 32 | TOC entry index + 1): stable for a given TOC and slot, so a daemon that
 * re-adds its layers with the same slots after a restart hands out the same numbers.
 *
 * File handles are numbers (a generation in the top 16 bits, then a serial), not pointers.
 *
 * Restart without breaking running containers: sl_fs_detach stops serving and hands out a copy
 * of the /dev/fuse descriptor and the kernel's FUSE_INIT request; a successor process (usually
 * over a unix socket, handoff.h) passes them to sl_fs_adopt, which sets up its session as the
 * predecessor's and serves the same mount. Requests arriving in between wait in the kernel.
 * Inode numbers are the same as long as the successor publishes every layer with the same slot
 * before adopting (and applies the predecessor's slot maps first: sl_fs_reserve_slots); file
 * handles of the predecessor are opened again by inode on first use.
 *
 * Reads of chunks that have not arrived are parked: the handler registers a store waiter and
 * returns; the store's writer thread replies when the chunk lands. No thread is held per
 * waiting read. Reads of present data go straight from the content file descriptor into the
 * reply (fuse_reply_data), without allocation.
 *
 * Removal (sl_fs_remove_layer, for the garbage collector): the layer's directory disappears
 * from MNT (at once for new lookups; the kernel's cached entry is invalidated by the
 * following sl_fs_reclaim, outside the caller's locks); files opened before stay
 * readable until released (each open file keeps the tree alive); other inodes of the layer the
 * kernel still caches answer ESTALE. Its inode range (slot) is never given to another layer
 * on this mount (a successor learns the retired slots in the handoff); once all
 * SL_FS_MAX_SLOT slots are used or retired, adding a layer fails with -ENOSPC. The caller
 * must make sure no mount uses the directory.
 *
 * Thread-safety: sl_fs_add_layer, sl_fs_remove_layer, sl_fs_reclaim, sl_fs_layer_dir and the
 * trace hook may run on any thread concurrently with the session, except that the removal
 * calls never run on a FUSE worker (the trace hook must not call them); sl_fs_free must not
 * race with other calls. Errors: negative
 * errno + sl_error_t (-ENOENT unknown layer, -EEXIST layer or slot already present, -ENOSPC no slot
 * left, -EINVAL bad digest or slot, and the system's class for mount failures). */
#ifndef SL_DAEMON_FS_H
#define SL_DAEMON_FS_H

#include "cleanup.h"
#include "error.h"
#include "store.h"
#include "toc.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define SL_FS_MAX_SLOT 65535u

enum sl_fs_event_type {
    SL_FS_EVENT_OPEN, /* first open of a file (every open with trace_every_open) */
    SL_FS_EVENT_READ, /* first read of a file */
};

/* One access, for the trace recorder. Pointers are valid during the callback only. */
struct sl_fs_event {
    enum sl_fs_event_type type;
    const char *layer_digest; /* "sha256:…" */
    const char *path;         /* normalised TOC name of the file (hardlinks: the target's) */
    pid_t pid;                /* caller (fuse_req_ctx); map to a container through its cgroup */
    uid_t uid;
    int64_t ts_ns; /* CLOCK_REALTIME */
    bool parked;   /* READ: the first read had to wait for its chunk */
};

/* Trace hook: called on a FUSE worker thread; must be quick and must not call into the fs. */
typedef void (*sl_fs_event_fn)(void *ud, const struct sl_fs_event *ev);

struct sl_fs_options {
    double entry_timeout; /* seconds, layer trees (immutable); 0 = default 3600 */
    double attr_timeout;  /* likewise */
    unsigned max_threads; /* FUSE worker threads; 0 = 8 */
    bool debug;           /* libfuse debug output on stderr */
    sl_fs_event_fn on_event;
    void *event_ud;
    bool trace_every_open;
    unsigned quiesce_timeout_ms; /* sl_fs_reclaim's wait for a busy worker; 0 = 10000 */
};

struct sl_fs;

/* What a successor needs to serve a mounted fs (sl_fs_detach -> sl_fs_adopt). */
#define SL_FS_INIT_MAX       256
#define SL_FS_SLOT_MAP_BYTES ((SL_FS_MAX_SLOT + 1) / 8)
struct sl_fs_handoff {
    int fd;                             /* the /dev/fuse connection; -1 when none */
    uint32_t gen;                       /* the giver's handle generation (1..65535) */
    uint32_t init_len;                  /* bytes of init */
    unsigned char init[SL_FS_INIT_MAX]; /* the kernel's FUSE_INIT request to the first daemon */
    /* Slots whose inode numbers the kernel may still cache (bit s % 8 of byte s / 8): those of
     * layers the giver removed (never given again) and those of layers it served (given only
     * to a request for that very slot, i.e. the same store layer). */
    uint8_t retired[SL_FS_SLOT_MAP_BYTES];
    uint8_t used[SL_FS_SLOT_MAP_BYTES];
};

/* Creates a filesystem over `store` (borrowed: must outlive the fs). `o` may be NULL. */
int sl_fs_new(struct sl_store *store, const struct sl_fs_options *o, struct sl_fs **ret,
              sl_error_t *err);
/* Mounts at `mountpoint` (created when missing; a stale disconnected mount there is detached
 * first) with allow_other,default_permissions,ro and starts the worker threads (max_threads,
 * default 8). Once only (or sl_fs_adopt). */
int sl_fs_mount(struct sl_fs *fs, const char *mountpoint, sl_error_t *err);
/* Serves an fs mounted at `mountpoint` by a predecessor (sl_fs_detach's result, usually
 * received over handoff.h): takes h->fd in every case (sets it to -1). Publish the layers
 * first (same slots as the predecessor), so that no request finds an unknown inode. */
int sl_fs_adopt(struct sl_fs *fs, const char *mountpoint, struct sl_fs_handoff *h, sl_error_t *err);
/* Applies a predecessor's slot maps (h->retired, h->used; sl_fs_adopt does it too): call it
 * before publishing, so that no "any free slot" pick takes a slot the kernel may cache.
 * -EEXIST when a layer published here holds a slot the predecessor retired. */
int sl_fs_reserve_slots(struct sl_fs *fs, const struct sl_fs_handoff *h, sl_error_t *err);
/* Stops serving without unmounting (requests then wait in the kernel): reads still parked fail
 * with EIO (wait for them first: sl_fs_wait_unparked); *ret gets a copy of the connection
 * (caller closes ret->fd) for sl_fs_adopt in a successor. sl_fs_free then leaves the mount. */
int sl_fs_detach(struct sl_fs *fs, struct sl_fs_handoff *ret, sl_error_t *err);
/* After a failed handoff (the successor died before taking the connection): lazily unmounts
 * the detached mount at `mountpoint`, which no server answers any more. Logs the outcome. */
void sl_fs_unmount_abandoned(const char *mountpoint);
/* Waits up to timeout_ms until no read is parked; true when none is. */
bool sl_fs_wait_unparked(struct sl_fs *fs, int timeout_ms);
/* Unmounts (lazily: overlays may still hold layer dirs; not after sl_fs_detach), stops the
 * workers, fails parked reads with EIO, closes the connection, releases everything. NULL is
 * fine. */
void sl_fs_free(struct sl_fs *fs);
SL_DEFINE_CLEANUP(struct sl_fs, sl_fs_free)
#define _cleanup_fs_ _cleanup_(sl_fs_freep)

const char *sl_fs_mountpoint(const struct sl_fs *fs);

/* Publishes a layer: its tree becomes MNT/<hex of layer_digest>. Takes ownership of `toc` in
 * every case. `slot` in [1, SL_FS_MAX_SLOT] fixes its inode range (use the store's layer id to
 * keep inode numbers across restarts), 0 picks the lowest free one. Contents are looked up in
 * the store by digest when files are opened. */
int sl_fs_add_layer(struct sl_fs *fs, const char *layer_digest, struct sl_toc *toc, uint32_t slot,
                    sl_error_t *err);

/* Stops serving a layer (see "Removal" above): -ENOENT when it is not served. Quick: never
 * waits for FUSE workers nor for the kernel (safe under locks a worker may want). The kernel
 * may show the directory from its cache until sl_fs_reclaim. A later sl_fs_add_layer of the
 * same digest publishes it again in a new slot. */
int sl_fs_remove_layer(struct sl_fs *fs, const char *layer_digest, sl_error_t *err);
/* Drops the kernel's cached entries of removed layers' directories, then frees what removed
 * layers no open file holds once every FUSE worker has finished the request it was serving
 * (normally well under a millisecond; when a worker is stuck 10 s they stay queued for the
 * next call). Call it after sl_fs_remove_layer holding no lock a FUSE handler may take. */
void sl_fs_reclaim(struct sl_fs *fs);

/* The directory to use as an overlay lowerdir for a layer ("MNT/<hex>", caller frees).
 * -ENOENT when the layer was not added. Matches the snapshotter's lowerdir callback when
 * passed the fs as `ud` (sl_fs_lowerdir). */
int sl_fs_layer_dir(struct sl_fs *fs, const char *layer_digest, char **ret_path, sl_error_t *err);
int sl_fs_lowerdir(void *ud, const char *layer_digest, char **ret_path, sl_error_t *err);

struct sl_fs_stats {
    uint64_t reads, reads_parked, parked_now, opens;
    uint64_t parked_wait_ns; /* summed wait of parked reads once answered */
};
void sl_fs_get_stats(struct sl_fs *fs, struct sl_fs_stats *ret);

#endif
