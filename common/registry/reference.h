/* reference.h — container image references, normalised like docker/distribution.
 *
 *     redis                      → docker.io/library/redis:latest
 *     host:5000/a/b:tag          → domain host:5000, path a/b, tag "tag"
 *     localhost/app              → domain localhost (a one-word domain only for localhost)
 *     app@sha256:<64 hex>        → digest, no tag
 *     app:v1@sha256:<64 hex>     → both (the digest decides what is fetched)
 *
 * Every component is validated (domain labels and port, lowercase path components separated
 * by [._-] or `__`, tags `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`, names ≤ 255 characters, sha256
 * digests only). Plain data: the caller owns the strings and frees them with
 * sl_image_ref_free(). Thread-safe (no shared state). */
#ifndef SL_REGISTRY_REFERENCE_H
#define SL_REGISTRY_REFERENCE_H

#include "error.h"

#define SL_REF_NAME_MAX 255
#define SL_REF_TAG_MAX  128
#define SL_DOCKER_HUB   "docker.io"

struct sl_image_ref {
    char *domain; /* "docker.io", "localhost:5000", "127.0.0.1:5000" */
    char *path;   /* repository path without domain: "library/redis" */
    char *tag;    /* "latest" when neither tag nor digest was given; NULL with a bare digest */
    char *digest; /* "sha256:<hex>" or NULL */
};

/* Parses and normalises `s`. Returns 0, or -EINVAL with an error naming the reference and
 * what is wrong ("image reference `Foo`: repository name must be lowercase"). On failure
 * *ret is left empty. */
int sl_image_ref_parse(const char *s, struct sl_image_ref *ret, sl_error_t *err);
/* Full normalised form "domain/path[:tag][@digest]"; caller frees. */
char *sl_image_ref_str(const struct sl_image_ref *ref);
/* "domain/path" (no tag or digest); caller frees. */
char *sl_image_ref_name(const struct sl_image_ref *ref);
/* What to put after /manifests/: the digest when present, else the tag. Borrowed. */
const char *sl_image_ref_reference(const struct sl_image_ref *ref);
/* Host to send API calls to: docker.io maps to registry-1.docker.io. Borrowed (static or
 * ref->domain). */
const char *sl_registry_api_host(const char *domain);
/* Deep copy. */
void sl_image_ref_copy(const struct sl_image_ref *src, struct sl_image_ref *dst);
/* Frees the strings and zeroes the struct (safe on a zeroed struct). */
void sl_image_ref_free(struct sl_image_ref *ref);

/* Component validators, also used for API input (1 = valid). */
int sl_ref_valid_tag(const char *s);
int sl_ref_valid_path(const char *s);
int sl_ref_valid_domain(const char *s);

#endif
