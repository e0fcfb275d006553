/* manifest.h — image manifests and indexes of the four media types a registry serves.
 *
 * sl_manifest_parse() turns registry bytes into plain structs and validates them strictly:
 * schemaVersion 2, every digest "sha256:<64 hex>", sizes >= 0, at most SL_MANIFEST_MAX_ITEMS
 * layers / index entries and SL_MANIFEST_MAX_ANNOTATIONS annotations per object, documents of
 * at most SL_MANIFEST_MAX_BYTES. The media type comes from the JSON `mediaType` field, else
 * from the Content-Type, else from the shape (OCI allows omitting it); the two must agree when
 * both name a manifest type. Unknown or unsupported types (schema 1 included) are an error
 * naming the type.
 *
 * The parsed struct does not keep the bytes: callers that re-serve or re-sign a manifest
 * keep the original bytes themselves (digests are over those bytes). Plain data owned by
 * the struct; free with sl_manifest_free(). Thread-safe (no shared state). */
#ifndef SL_REGISTRY_MANIFEST_H
#define SL_REGISTRY_MANIFEST_H

#include "cleanup.h"
#include "digest.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_MANIFEST_MAX_BYTES       (4 * 1024 * 1024)
#define SL_MANIFEST_MAX_ITEMS       4096
#define SL_MANIFEST_MAX_ANNOTATIONS 256

#define SL_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define SL_MT_DOCKER_LIST     "application/vnd.docker.distribution.manifest.list.v2+json"
#define SL_MT_OCI_MANIFEST    "application/vnd.oci.image.manifest.v1+json"
#define SL_MT_OCI_INDEX       "application/vnd.oci.image.index.v1+json"
#define SL_MT_DOCKER_CONFIG   "application/vnd.docker.container.image.v1+json"
#define SL_MT_OCI_CONFIG      "application/vnd.oci.image.config.v1+json"
#define SL_MT_DOCKER_LAYER    "application/vnd.docker.image.rootfs.diff.tar.gzip"
#define SL_MT_OCI_LAYER_GZIP  "application/vnd.oci.image.layer.v1.tar+gzip"
#define SL_MT_OCI_LAYER_ZSTD  "application/vnd.oci.image.layer.v1.tar+zstd"
#define SL_MT_OCI_LAYER       "application/vnd.oci.image.layer.v1.tar"

/* The Accept header value for manifest GETs: all four types. */
#define SL_MANIFEST_ACCEPT                                                                         \
    SL_MT_OCI_INDEX ", " SL_MT_DOCKER_LIST ", " SL_MT_OCI_MANIFEST ", " SL_MT_DOCKER_MANIFEST

enum sl_manifest_kind {
    SL_MANIFEST_UNKNOWN = 0,
    SL_MANIFEST_DOCKER_V2,   /* SL_MT_DOCKER_MANIFEST */
    SL_MANIFEST_DOCKER_LIST, /* SL_MT_DOCKER_LIST */
    SL_MANIFEST_OCI,         /* SL_MT_OCI_MANIFEST */
    SL_MANIFEST_OCI_INDEX,   /* SL_MT_OCI_INDEX */
};

struct sl_annotation {
    char *key;
    char *value;
};

struct sl_platform {
    char *os;           /* required in index entries */
    char *architecture; /* required in index entries */
    char *variant;      /* NULL when absent */
    char *os_version;   /* NULL when absent */
};

struct sl_descriptor {
    char *media_type; /* as written; required */
    char digest[SL_DIGEST_STR_LEN];
    int64_t size;
    struct sl_annotation *annotations;
    size_t n_annotations;
    bool has_platform; /* index entries only */
    struct sl_platform platform;
};

struct sl_manifest {
    enum sl_manifest_kind kind;
    const char *media_type; /* static string of the kind */
    /* Image manifests (DOCKER_V2, OCI). */
    struct sl_descriptor config;
    struct sl_descriptor *layers;
    size_t n_layers;
    /* Indexes (DOCKER_LIST, OCI_INDEX). */
    struct sl_descriptor *manifests;
    size_t n_manifests;
    /* Top-level annotations (OCI). */
    struct sl_annotation *annotations;
    size_t n_annotations;
};

/* Maps a media type (parameters such as "; charset=utf-8" ignored) to a kind. */
enum sl_manifest_kind sl_manifest_kind_from_type(const char *media_type);
const char *sl_manifest_kind_type(enum sl_manifest_kind kind);
static inline bool sl_manifest_kind_is_index(enum sl_manifest_kind k)
{
    return k == SL_MANIFEST_DOCKER_LIST || k == SL_MANIFEST_OCI_INDEX;
}

/* Parses `len` bytes. `content_type` is the HTTP Content-Type or NULL. Returns 0 and a new
 * manifest in *ret, or -EINVAL (bad JSON, failed validation: the error names the JSON path),
 * -EFBIG (too large), -EPROTONOSUPPORT (unknown/unsupported media type, named in the error). */
int sl_manifest_parse(const void *data, size_t len, const char *content_type,
                      struct sl_manifest **ret, sl_error_t *err);
/* Frees a manifest (NULL is fine). */
void sl_manifest_free(struct sl_manifest *m);
SL_DEFINE_CLEANUP(struct sl_manifest, sl_manifest_free)
#define _cleanup_manifest_ _cleanup_(sl_manifest_freep)

/* Annotation lookup on a descriptor; borrowed value or NULL. */
const char *sl_descriptor_annotation(const struct sl_descriptor *d, const char *key);

/* Parses "os/arch[/variant]" (e.g. "linux/arm64/v8"). Returns 0 or -EINVAL. Caller frees
 * with sl_platform_free(). */
int sl_platform_parse(const char *s, struct sl_platform *ret, sl_error_t *err);
void sl_platform_free(struct sl_platform *p);
/* Index entry matching `want` (os and architecture equal, variant equal when `want` has one;
 * arm64 without variant matches v8). Returns the entry index, or -ENOENT. */
int sl_manifest_find_platform(const struct sl_manifest *index, const struct sl_platform *want);

#endif
