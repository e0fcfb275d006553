/* snapshotter.h — containerd snapshot semantics over SQLite and plain directories.
 *
 * Behaves like containerd's overlayfs snapshotter: snapshots are Active (writable), View
 * (read-only) or Committed (a layer, usable as a parent); each has an integer id and the
 * directory ROOT/snapshots/<id>/{fs,work}. Keys are opaque strings (containerd sends them
 * namespaced, e.g. "default/3/extract-…"); one table holds every key.
 *
 * Mounts (sl_snap_prepare/view/mounts):
 *   - no parent: bind of <id>/fs, "rw" (Active) or "ro" (View), "rbind";
 *   - View with one parent: ro bind of the parent's directory;
 *   - otherwise overlay with lowerdir = parents, TOP-MOST FIRST (immediate parent leftmost),
 *     and for Active upperdir=<id>/fs, workdir=<id>/work.
 * A committed parent labelled SL_SNAP_LABEL_STARLIGHT_LAYER=<blob digest> takes its directory
 * from hooks.lowerdir (the FUSE subtree of that layer) when the hook is set (its own <id>/fs
 * only without a hook); a layer the hook does not serve (-ENOENT) fails the call with -EIO,
 * never an empty lowerdir. Except in the Prepare of a snapshot itself labelled with a Starlight
 * layer (the daemon's registration, which commits it at once and never mounts it): there an
 * unserved parent gives its own directory.
 *
 * Errors (negative errno + sl_error_t, like containerd's errdefs):
 *   -ENOENT     key or parent not found           (NOT_FOUND)
 *   -EEXIST     key or commit name already exists (ALREADY_EXISTS)
 *   -EINVAL     bad argument, parent not committed, bad label/filter (INVALID_ARGUMENT)
 *   -ENOTEMPTY  remove of a snapshot with children (FAILED_PRECONDITION)
 *   -EBUSY      commit of a non-active snapshot, mounts of a committed one (FAILED_PRECONDITION)
 *   -EIO and others: database or filesystem failure.
 *
 * Thread-safety: every function may be called from any number of threads at once. Database
 * work is serialised by one mutex and kept short; directory walks (Usage, Commit), directory
 * removal and the lowerdir hook run outside it. State is crash-safe: a snapshot's directory is
 * created before its row commits, so a crash leaves at most an orphan directory that
 * sl_snap_cleanup() (and sl_snap_open()) removes. */
#ifndef SL_DAEMON_SNAPSHOTTER_H
#define SL_DAEMON_SNAPSHOTTER_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

/* Label carried by a committed snapshot whose content is a Starlight layer. */
#define SL_SNAP_LABEL_STARLIGHT_LAYER "containerd.io/snapshot/starlight.layer"
/* containerd's target reference of a Prepare during unpack (the layer's chainID). */
#define SL_SNAP_LABEL_REF "containerd.io/snapshot.ref"
/* Largest key + value of one label (containerd's limit). */
#define SL_SNAP_MAX_LABEL 4096

/* Same numbers as containerd.services.snapshots.v1.Kind. */
enum sl_snap_kind {
    SL_SNAP_KIND_UNKNOWN = 0,
    SL_SNAP_KIND_VIEW = 1,
    SL_SNAP_KIND_ACTIVE = 2,
    SL_SNAP_KIND_COMMITTED = 3,
};

struct sl_snap_label {
    char *key;
    char *value;
};

/* Plain data; every string owned by the struct (sl_snap_info_clear). */
struct sl_snap_info {
    char *name;
    char *parent; /* NULL when none */
    enum sl_snap_kind kind;
    int64_t created_ns, updated_ns; /* Unix time in nanoseconds */
    struct sl_snap_label *labels;
    size_t nlabels;
};

struct sl_snap_mount {
    char *type;
    char *source;
    char **options;
    size_t noptions;
};

struct sl_snap_mounts {
    struct sl_snap_mount *v;
    size_t n;
};

struct sl_snap_info_list {
    struct sl_snap_info *v;
    size_t n;
};

struct sl_snap_usage {
    int64_t size;   /* bytes (allocated blocks), hardlinks counted once */
    int64_t inodes; /* distinct inodes, including the top directory */
};

/* Callbacks from the daemon's Starlight side; any may be NULL. Called without internal locks
 * held, from gRPC worker threads (so they must be thread-safe). */
struct sl_snap_hooks {
    void *ud;
    /* The directory serving the layer with blob digest `layer_digest` (e.g. its FUSE subtree),
     * in *ret_path (malloc'd, caller frees). Return 0, -ENOENT when this layer is not served
     * (the mount request fails with -EIO), or another negative errno (the mount request fails
     * with that error). */
    int (*lowerdir)(void *ud, const char *layer_digest, char **ret_path, sl_error_t *err);
    /* Remote snapshots (docs/architecture.md "The remote-snapshot path"): called by
     * sl_snap_prepare (not View) when the labels carry SL_SNAP_LABEL_REF, before anything is
     * created, without internal locks (it may block while the snapshotter serves other calls).
     * Return 0 for a normal prepare, -EEXIST when a committed snapshot labelled with that ref
     * on `parent` now exists (Prepare answers ALREADY_EXISTS), or another negative errno (the
     * Prepare fails). Its own user data: */
    void *remote_ud;
    int (*remote_prepare)(void *ud, const char *key, const char *parent,
                          const struct sl_snap_label *labels, size_t nlabels, sl_error_t *err);
};

struct sl_snap;

/* Opens (creating when needed) ROOT/metadata.db and ROOT/snapshots, migrates the schema and
 * removes orphan directories. `hooks` is copied (NULL = none). Errors: -EIO and friends. */
int sl_snap_open(const char *root, const struct sl_snap_hooks *hooks, struct sl_snap **ret,
                 sl_error_t *err);
/* Closes the database. No call may be in flight. Accepts NULL. */
void sl_snap_close(struct sl_snap *s);

/* Creates an Active (prepare) or View snapshot `key` on top of the committed `parent` (NULL or
 * "" for none) with the given labels, and returns its mounts in *ret (sl_snap_mounts_clear). */
int sl_snap_prepare(struct sl_snap *s, const char *key, const char *parent,
                    const struct sl_snap_label *labels, size_t nlabels, struct sl_snap_mounts *ret,
                    sl_error_t *err);
int sl_snap_view(struct sl_snap *s, const char *key, const char *parent,
                 const struct sl_snap_label *labels, size_t nlabels, struct sl_snap_mounts *ret,
                 sl_error_t *err);
/* Mounts of an existing Active or View snapshot. */
int sl_snap_mounts(struct sl_snap *s, const char *key, struct sl_snap_mounts *ret, sl_error_t *err);
/* Commits the Active snapshot `key` as `name`: same id and directory, kind Committed, usage
 * recorded, labels REPLACED by `labels` (containerd does not inherit them). */
int sl_snap_commit(struct sl_snap *s, const char *name, const char *key,
                   const struct sl_snap_label *labels, size_t nlabels, sl_error_t *err);
/* Removes a snapshot without children and deletes its directory. */
int sl_snap_remove(struct sl_snap *s, const char *key, sl_error_t *err);
int sl_snap_stat(struct sl_snap *s, const char *key, struct sl_snap_info *ret, sl_error_t *err);
/* Updates the labels of info->name: with no field paths all labels are replaced; "labels"
 * replaces all; "labels.KEY" sets (or, when absent from info, deletes) one. Other paths are
 * -EINVAL. Returns the updated info in *ret. */
int sl_snap_update(struct sl_snap *s, const struct sl_snap_info *info,
                   const char *const *fieldpaths, size_t npaths, struct sl_snap_info *ret,
                   sl_error_t *err);
/* Every snapshot matching any of the filters (containerd syntax, a subset: comma-separated
 * conjunctions of `FIELD`, `FIELD==V`, `FIELD!=V`, `FIELD~=REGEX` over name, parent, kind and
 * labels.KEY / labels."KEY"); no filters = all. Sorted by name. */
int sl_snap_list(struct sl_snap *s, const char *const *filters, size_t nfilters,
                 struct sl_snap_info_list *ret, sl_error_t *err);
/* Active: walks the directory now; otherwise the usage recorded at commit (0 for views). */
int sl_snap_usage(struct sl_snap *s, const char *key, struct sl_snap_usage *ret, sl_error_t *err);
/* Removes directories under ROOT/snapshots that belong to no snapshot. */
int sl_snap_cleanup(struct sl_snap *s, sl_error_t *err);

/* Root directory (for logs). */
const char *sl_snap_root(const struct sl_snap *s);

void sl_snap_info_clear(struct sl_snap_info *info);
void sl_snap_mounts_clear(struct sl_snap_mounts *m);
void sl_snap_info_list_clear(struct sl_snap_info_list *l);
const char *sl_snap_kind_name(enum sl_snap_kind k);

#endif
