/* pull-register.h — the pull's registration hook (sl_pull_register_fn, daemonset/pull): turns a
 * decoded delta header into a struct sl_ctrd_image and registers it in containerd.
 *
 * What is registered: name = the header's normalised reference; manifest and config bytes as
 * the registry served them (digests checked by the delta decoder); per layer, bottom first,
 * the manifest's blob digest, size and media type, the header's diffID (equal to the config's
 * rootfs.diff_ids[i]) and starlight = true (every layer of a delta is a Starlight layer served
 * by the daemon's FUSE fs). No index: the image's target is the platform's manifest.
 *
 * containerd is reached lazily: the first registration creates the sl_ctrd client (containerd
 * may start after the daemon). When containerd is not running, the registration and so the
 * pull fail with -ECONNREFUSED and an error naming the socket; the layers stay in the store and
 * a later pull of the same image registers it without downloading again.
 *
 * Re-entrancy (docs/architecture.md): no lock is held while containerd calls back into the
 * daemon's snapshotter; the lock here only guards the client's creation.
 * Thread-safety: one struct sl_pull_registrar may serve any number of pulls at once. */
#ifndef SL_DAEMON_PULL_REGISTER_H
#define SL_DAEMON_PULL_REGISTER_H

#include "ctrd.h"
#include "delta.h"
#include "error.h"

#include <stddef.h>

struct sl_pull_registrar;

/* A registrar for containerd at `containerd_socket` with snapshotter `snapshotter_name`
 * ("starlight"). Does not connect. */
struct sl_pull_registrar *sl_pull_registrar_new(const char *containerd_socket,
                                                const char *snapshotter_name);
void sl_pull_registrar_free(struct sl_pull_registrar *r);
SL_DEFINE_CLEANUP(struct sl_pull_registrar, sl_pull_registrar_free)

/* The registration hook: `ud` is a struct sl_pull_registrar. Registers the image of `h` in
 * containerd namespace `ns`; gate (optional) is called before the image record
 * (sl_ctrd_image.before_image). Returns 0 or a negative errno (see ctrd.h; -EINVAL when the
 * header's layers do not match its manifest's, -ECONNREFUSED when containerd is not running). */
int sl_pull_registrar_hook(void *ud, const struct sl_delta_header *h, const char *ns,
                           int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud,
                           sl_error_t *err);

/* Builds the image description of `h` into *img. `layers` must hold h->n_layers entries; the
 * strings point into `h` and into *ret_manifest (free it with sl_manifest_free after use).
 * Returns 0, -EINVAL (manifest and header disagree) or the manifest parser's error. */
struct sl_manifest;
int sl_pull_registrar_image(const struct sl_delta_header *h, struct sl_ctrd_layer *layers,
                            struct sl_ctrd_image *img, struct sl_manifest **ret_manifest,
                            sl_error_t *err);

#endif
