/* remote.h — the remote-snapshot path: containerd's unpacker (kubelet's pull through CRI, or
 * `ctr-remote image rpull`) calls Prepare with `containerd.io/snapshot.ref=<chainID>` and the
 * image's labels; for an image the proxy knows, the daemon runs the Starlight pull of that
 * image (once per image and namespace at a time, through daemonset/pull, whose registration
 * commits the image's chain snapshots) and the Prepare answers ALREADY_EXISTS, so containerd
 * skips the layer's download. An image the proxy does not know (404/422), an unreachable
 * proxy or any failure before the image is ready falls back to the normal unpack: a warning
 * in the log and `starlight_fallbacks_total` + 1.
 *
 * Thread-safety: sl_remote_prepare_hook may run on any number of gRPC worker threads at once;
 * it holds no lock while it waits for a pull (the pull's registration calls back into the
 * snapshotter through containerd). At most SL_REMOTE_MAX_WAITERS calls wait at once (more fall
 * back at once): give the gRPC server that many workers on top of its own. */
#ifndef SL_DAEMON_REMOTE_H
#define SL_DAEMON_REMOTE_H

#include "error.h"
#include "metrics.h"
#include "pull.h"
#include "snapshotter.h"

#include <stdbool.h>
#include <stddef.h>

/* The labels read (containerd pkg/snapshotters for CRI; stargz-snapshotter fs/source for
 * ctr-remote). */
#define SL_REMOTE_LABEL_CRI_REF      "containerd.io/snapshot/cri.image-ref"
#define SL_REMOTE_LABEL_CRI_LAYER    "containerd.io/snapshot/cri.layer-digest"
#define SL_REMOTE_LABEL_STARGZ_REF   "containerd.io/snapshot/remote/stargz.reference"
#define SL_REMOTE_LABEL_STARGZ_LAYER "containerd.io/snapshot/remote/stargz.digest"

#define SL_REMOTE_MAX_WAITERS 4

/* What a Prepare asks for; pointers into the key and labels, except ns. */
struct sl_remote_target {
    char ns[256];      /* containerd namespace: the key's first component */
    const char *chain; /* containerd.io/snapshot.ref */
    const char *ref;   /* image reference */
    const char *layer; /* layer blob digest, or NULL */
};

/* Maps a Prepare's key and labels to a target. Returns 1 for a remote candidate, 0 when the
 * call is not one (no snapshot.ref or image reference, a namespace-less key, or the daemon's
 * own registration, which carries SL_SNAP_LABEL_STARLIGHT_LAYER). */
int sl_remote_parse(const char *key, const struct sl_snap_label *labels, size_t nlabels,
                    struct sl_remote_target *ret);

struct sl_remote_options {
    const char *proxy_url; /* required */
    const char *platform;  /* NULL = the host's */
    struct sl_store *store;
    struct sl_fs *fs;
    sl_pull_register_fn on_register; /* required: the pull must register the chain */
    void *register_ud;
    struct sl_metrics *metrics; /* optional */
    unsigned wait_s;            /* longest wait for a pull to be ready; 0 = 120 s */
};

struct sl_remote;

/* Copies the options (strings included). */
struct sl_remote *sl_remote_new(const struct sl_remote_options *o);
/* Call once the snapshotter is open (the hook checks that the chain snapshot exists). */
void sl_remote_attach(struct sl_remote *r, struct sl_snap *snap);
/* Waits for pulls in flight to end (they are stopped at their next event). Accepts NULL. */
void sl_remote_free(struct sl_remote *r);

/* struct sl_snap_hooks.remote_prepare with ud = struct sl_remote. */
int sl_remote_prepare_hook(void *ud, const char *key, const char *parent,
                           const struct sl_snap_label *labels, size_t nlabels, sl_error_t *err);

#endif
