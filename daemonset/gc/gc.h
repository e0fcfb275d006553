/* gc.h — the node's garbage collector (DESIGN.md §4; docs/operations.md "Garbage collection").
 *
 * What is referenced. A layer record in the store is kept while any of these holds:
 *   1. a snapshot in the snapshotter's database carries its digest in the label
 *      containerd.io/snapshot/starlight.layer. The daemon's registration commits one such
 *      snapshot per layer of every image it registers (the image's chainID snapshots), and
 *      containerd removes them — through this snapshotter's Remove — only when its own
 *      collector finds them unreferenced: no image record reaches the chain and no container
 *      snapshot has it as a parent. So "an image registered in containerd uses the layer" and
 *      "a container (running or not) is built on it" both show up as a labelled snapshot;
 *   2. a mount in the daemon's mount namespace names the layer (its hex digest appears in
 *      /proc/self/mountinfo: an overlay whose lowerdir is the layer's FUSE subtree or its
 *      materialised tree, or a bind of either) — a belt to the braces above, so nothing an
 *      active mount uses is ever removed even if its snapshots were deleted behind our back;
 *   3. the record was written less than `grace` seconds ago (a pull records its layers before
 *      it registers the image; default 600 s).
 * Every other layer is forgotten (record, content references, materialised tree, the resume
 * points of interrupted pulls whose answer lists it), then every
 * content no remaining layer references is removed, unless a handle (an open file through
 * FUSE), a writer or a parked read holds it. Contents shared by several layers stay while any
 * of them remains. A removed layer also leaves the FUSE mount (sl_fs_remove_layer: its
 * directory under MNT disappears; a file some process still holds open there stays readable
 * until closed); a later pull of the same layer records, publishes and fills it again.
 *
 * Triggers: sl_gc_run (the control API's POST /v1/gc, `ctr-starlight gc`), every `interval`
 * seconds, and whenever the filesystem holding the daemon's root is used beyond the high-water
 * mark (checked every 30 s). Automatic runs need registration in containerd (without it no
 * snapshot ever references a layer); manual runs always run.
 *
 * Thread-safety: sl_gc_run may be called from any thread; runs are serialised. */
#ifndef SL_DAEMON_GC_H
#define SL_DAEMON_GC_H

#include "error.h"
#include "fs.h"
#include "materialize.h"
#include "metrics.h"
#include "snapshotter.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

struct sl_gc_options {
    struct sl_store *store; /* borrowed */
    struct sl_snap *snap;   /* borrowed; NULL: no snapshot references (tests) */
    struct sl_mat *mat;     /* borrowed, may be NULL */
    struct sl_fs *fs;       /* borrowed, may be NULL: removed layers leave its tree */
    const char *root;       /* statvfs() target for the high-water mark */
    int64_t grace_s;        /* default grace for every run (>= 0) */
    int64_t interval_s;     /* periodic runs; 0 = off */
    /* High-water mark: used percent (1..99) of the root's filesystem, or bytes used; 0 = off */
    int64_t high_water_pct;
    uint64_t high_water_bytes;
    bool automatic;             /* start the periodic thread (interval or high water) */
    struct sl_metrics *metrics; /* may be NULL */
};

/* Parses "--gc-high-water": "" or "0" (off), "N%" (percent of the filesystem), or a size
 * ("200GiB": bytes used). */
int sl_gc_parse_high_water(const char *s, int64_t *ret_pct, uint64_t *ret_bytes, sl_error_t *err);

struct sl_gc_report {
    char (*removed)[72]; /* layer digests forgotten */
    size_t n_removed;
    uint64_t layers_kept, contents_removed, contents_busy, files_swept, bytes_freed;
    uint64_t resume_removed; /* resume points of pulls that named a removed layer */
    double seconds;
};
void sl_gc_report_clear(struct sl_gc_report *r);

struct sl_gc;

int sl_gc_new(const struct sl_gc_options *o, struct sl_gc **ret, sl_error_t *err);
void sl_gc_free(struct sl_gc *gc);

/* One collection; `grace_s` < 0 uses the configured grace. */
int sl_gc_run(struct sl_gc *gc, int64_t grace_s, struct sl_gc_report *ret, sl_error_t *err);

/* The control API's hook: runs a collection and returns the report as JSON text (malloc'd):
 * {"layersRemoved":[…],"layersKept":N,"contentsRemoved":N,"contentsBusy":N,"filesSwept":N,
 *  "resumePointsRemoved":N,"bytesFreed":N,"seconds":F}. */
int sl_gc_control(void *ud, int64_t grace_s, char **ret_json, sl_error_t *err);

#endif
