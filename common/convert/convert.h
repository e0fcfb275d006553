/* convert.h — converts an image to the Starlight layer format and pushes it: the engine of
 * `ctr-starlight convert` and of the proxy's conversion hook.
 *
 * Phase 1 downloads and converts every layer into temporary files (in parallel, `jobs`);
 * nothing is pushed until every layer of every selected platform converted. Phase 2 pushes
 * blobs, then configs, then manifests by digest, and last the manifest or index under DST's
 * tag, so a failed conversion never moves the tag (docs/architecture.md). An index is
 * converted platform by platform into a new index.
 *
 * Ownership: a struct sl_convert owns its registry clients and its staging directory (removed
 * by sl_convert_free). Thread-safety: one sl_convert is used by one thread at a time (it runs
 * its own layer threads inside sl_convert_run); distinct objects are independent, so several
 * conversions may run at once. Logs at debug level only. */
#ifndef SL_CONVERT_H
#define SL_CONVERT_H

#include "digest.h"
#include "error.h"
#include "reference.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Layer annotations written by the converter (docs/format.md); same text as cli/cli.h. */
#define SL_ANN_STARLIGHT_TOC "containerd.io/snapshot/remote/starlight/toc.digest"
#define SL_ANN_STARGZ_TOC    "containerd.io/snapshot/stargz/toc.digest"
#define SL_ANN_ESTARGZ_USIZE "io.containers.estargz.uncompressed-size"

/* Progress counters, bumped from the layer threads (so the callback must be thread-safe). */
enum sl_convert_counter {
    SL_CONVERT_LAYERS_TOTAL,
    SL_CONVERT_LAYERS_DONE,
    SL_CONVERT_DOWNLOAD_TOTAL,
    SL_CONVERT_DOWNLOADED,
    SL_CONVERT_CONVERTED,
    SL_CONVERT_PUSHED,
};

struct sl_convert_events {
    void (*add)(void *ud, enum sl_convert_counter c, uint64_t n); /* any thread */
    void (*phase)(void *ud, const char *phase); /* "converting", "pushing"; NULL = done */
    void *ud;
};

struct sl_convert_options {
    const char *const *platforms; /* of an index: os/arch[/variant] or "all"; n = 0: all */
    size_t n_platforms;
    bool insecure_source; /* plain HTTP */
    bool insecure_destination;
    const char *docker_config;              /* credentials file; NULL = the default places */
    uint64_t chunk_size;                    /* 0 = the format's default */
    int level;                              /* gzip level; 0 = the format's default */
    int jobs;                               /* layers converted at once; 0 = number of CPUs */
    const char *tmp_dir;                    /* staging; NULL = /var/tmp */
    const struct sl_convert_events *events; /* NULL = none */
};

/* What one platform image became. */
struct sl_convert_image {
    char *label; /* "host/repo:tag" or "host/repo:tag (linux/amd64)" */
    size_t n_layers;
    uint64_t in_bytes;  /* source layer bytes */
    uint64_t out_bytes; /* converted layer bytes */
    char manifest_digest[SL_DIGEST_STR_LEN];
};

struct sl_convert_result {
    char *reference;                /* DST, normalised ("host/repo:tag") */
    char digest[SL_DIGEST_STR_LEN]; /* what DST's tag now points at (manifest or index) */
    struct sl_convert_image *images;
    size_t n_images;
};

struct sl_convert;

/* Prepares a conversion of src to dst (dst must name a tag: -EINVAL otherwise): creates the
 * registry clients and the staging directory. The refs and options are copied/borrowed only
 * during the call, except `events`, which must outlive the object. */
int sl_convert_new(const struct sl_image_ref *src, const struct sl_image_ref *dst,
                   const struct sl_convert_options *opts, struct sl_convert **ret, sl_error_t *err);
/* Runs the conversion; fills *ret (free with sl_convert_result_free). Errors name the image
 * and layer ("convert `SRC (linux/amd64)`: layer 2 `sha256:…`: …"): registry errors
 * (registry.h), -EPROTONOSUPPORT (layer media type, nested index), -ENOENT (no platform
 * matches), format errors (format.h), -errno of the staging files. Call once. */
int sl_convert_run(struct sl_convert *c, struct sl_convert_result *ret, sl_error_t *err);
void sl_convert_free(struct sl_convert *c); /* accepts NULL */
void sl_convert_result_free(struct sl_convert_result *r);

/* sl_convert_new + sl_convert_run + sl_convert_free from reference strings. */
int sl_convert_image_refs(const char *src, const char *dst, const struct sl_convert_options *opts,
                          struct sl_convert_result *ret, sl_error_t *err);

#endif
