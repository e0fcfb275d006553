/* ctrd.h — registers a Starlight image in containerd, as containerd's gRPC client, so that
 * `ctr run --snapshotter starlight IMAGE` (and CRI in namespace k8s.io) finds it unpacked.
 *
 * What sl_ctrd_register_image() does, in the given containerd namespace:
 *   1. creates a lease (label containerd.io/gc.expire = now + SL_CTRD_LEASE_TTL_S) and sends
 *      it as `containerd-lease` metadata with every call below, so containerd's garbage
 *      collector keeps what the registration creates until the image record references it;
 *   2. for each layer, bottom first: when no snapshot named chainID_i exists in the
 *      snapshotter, Prepare (random key, parent chainID_{i-1}) and Commit it as chainID_i
 *      through containerd's Snapshots service, both with the labels
 *      containerd.io/snapshot/starlight.layer = <blob digest> (the daemon's snapshotter then
 *      uses the layer's FUSE directory as the lowerdir) and containerd.io/snapshot.ref =
 *      chainID_i. ALREADY_EXISTS means done (another registration or pull won the race);
 *   3. writes the config into the content store with containerd.io/gc.ref.snapshot.<snapshotter>
 *      = chainID_top (so the image keeps its snapshots), the manifest with
 *      containerd.io/gc.ref.content.config and containerd.io/gc.ref.content.l.<i> (layer blobs
 *      are never stored: a reference to absent content is harmless to the collector and
 *      containerd reads layer blobs only to unpack, which the committed chain makes
 *      unnecessary), and the index when given (containerd.io/gc.ref.content.m.0). Content that
 *      already exists gets its labels updated instead;
 *   4. creates the image record (or updates it when it exists) with target = the index when
 *      given, else the manifest, and labels SL_CTRD_LABEL_PULLER=starlight plus the caller's;
 *   5. deletes the lease (the image record now roots everything).
 * Registering the same image again is idempotent.
 *
 * Chain IDs (OCI image spec): chainID_0 = diffID_0, chainID_n = sha256(chainID_{n-1} + " " +
 * diffID_n) in "sha256:<hex>" form.
 *
 * Re-entrancy: containerd forwards the snapshot calls of step 2 to the daemon's own
 * snapshotter service and waits for it, so callers must not hold any lock that a snapshotter
 * call (or its lowerdir hook) may take while calling sl_ctrd_register_image(). This module
 * takes no lock of its own; the layers' FUSE directories must be served before step 2 only
 * when a container is started (Commit does not mount them).
 *
 * Errors: negative errno + sl_error_t: -EOPNOTSUPP when a layer is not a Starlight layer
 * (registering plain layers is containerd's own unpack), -EINVAL for a bad digest or bytes
 * that do not match their digest, and the mapped gRPC status of a failed containerd call
 * (-ENOENT, -EEXIST, -EIO, -ETIMEDOUT for a deadline...).
 * Thread-safety: one struct sl_ctrd may be used by any number of threads at once. */
#ifndef SL_DAEMON_CTRD_H
#define SL_DAEMON_CTRD_H

#include "cleanup.h"
#include "digest.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Snapshot label read by the daemon's snapshotter (same text as SL_SNAP_LABEL_STARLIGHT_LAYER). */
#define SL_CTRD_LABEL_LAYER "containerd.io/snapshot/starlight.layer"
/* Image and content label telling who registered it (the original Starlight's). */
#define SL_CTRD_LABEL_PULLER "puller.containerd.io"
/* Lease lifetime: a crashed registration is collected after this. */
#define SL_CTRD_LEASE_TTL_S 3600
/* Deadline of each containerd call. */
#define SL_CTRD_CALL_TIMEOUT_MS 60000

struct sl_ctrd_label {
    const char *key;
    const char *value;
};

/* One layer of the image, bottom first; strings borrowed. */
struct sl_ctrd_layer {
    const char *digest;     /* blob digest, as in the manifest (the FUSE layer's key) */
    int64_t size;           /* blob size, as in the manifest */
    const char *media_type; /* as in the manifest */
    const char *diff_id;    /* the config's rootfs.diff_ids[i] */
    bool starlight;         /* a Starlight layer served by the daemon's FUSE fs */
};

/* What to register; everything borrowed for the duration of the call. */
struct sl_ctrd_image {
    const char *name; /* normalised reference, e.g. "docker.io/library/redis:7" */
    const uint8_t *manifest;
    size_t manifest_len;
    const char *manifest_media_type;
    const char *manifest_digest;
    const uint8_t *config;
    size_t config_len;
    const char *config_digest;
    /* optional: the index naming the manifest (NULL = the image's target is the manifest) */
    const uint8_t *index;
    size_t index_len;
    const char *index_media_type;
    const char *index_digest;
    const struct sl_ctrd_layer *layers;
    size_t n_layers;
    /* extra labels of the image record (optional) */
    const struct sl_ctrd_label *labels;
    size_t n_labels;
    /* optional: called after the snapshots and contents, right before the image record; a
     * negative errno stops the registration (the record is not written) */
    int (*before_image)(void *ud, sl_error_t *err);
    void *before_image_ud;
};

struct sl_ctrd;

/* A client of containerd at `containerd_socket` (a path, or a gRPC target "unix:…") that
 * registers snapshots with snapshotter `snapshotter_name` ("starlight"). Connects lazily. */
int sl_ctrd_new(const char *containerd_socket, const char *snapshotter_name, struct sl_ctrd **ret,
                sl_error_t *err);
void sl_ctrd_free(struct sl_ctrd *c);
SL_DEFINE_CLEANUP(struct sl_ctrd, sl_ctrd_free)
#define _cleanup_ctrd_ _cleanup_(sl_ctrd_freep)

/* Registers `img` in namespace `ns` (see the top of this file). Blocks for up to a few
 * containerd round trips per layer. */
int sl_ctrd_register_image(struct sl_ctrd *c, const char *ns, const struct sl_ctrd_image *img,
                           sl_error_t *err);

/* Chain IDs of `n` diffIDs into ret[0..n) ("sha256:<hex>" each). -EINVAL on a bad diffID. */
int sl_ctrd_chain_ids(const char *const *diff_ids, size_t n, char (*ret)[SL_DIGEST_STR_LEN],
                      sl_error_t *err);

#endif
