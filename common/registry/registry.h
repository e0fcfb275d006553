/* registry.h — OCI distribution (/v2) client for one registry host.
 *
 * A `struct sl_registry` talks to one host (as written in image references: "docker.io",
 * "127.0.0.1:5000"; docker.io is reached at registry-1.docker.io). It authenticates as the
 * registry asks: anonymous, Basic, or Bearer tokens fetched from the challenge's realm and
 * cached per scope (see auth.h); credentials come from explicit options or a Docker
 * config.json. Every request retries transient failures (5xx, 429 with Retry-After,
 * connection errors) and follows redirects without forwarding Authorization to other hosts
 * (see http.h).
 *
 * Errors name the operation and the image: "PUT manifest `127.0.0.1:5000/app:v1`: HTTP 400
 * MANIFEST_INVALID: manifest invalid", with the registry's JSON `errors` decoded. Classes:
 * -ENOENT (404), -EACCES (401/403), -EAGAIN (429 after retries), -EIO (5xx after retries,
 * transport), -EBADMSG (digest mismatch), -EINVAL (bad input or 400), -EPROTO (unexpected
 * answer), -EFBIG (over a cap).
 *
 * Thread-safety: one sl_registry may be used by any number of threads at once (the converter
 * pushes layers in parallel); its mutable state (auth challenge, token cache) is locked.
 * sl_registry_free() must not race with calls. */
#ifndef SL_REGISTRY_REGISTRY_H
#define SL_REGISTRY_REGISTRY_H

#include "digest.h"
#include "error.h"
#include "http.h"
#include "manifest.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_REGISTRY_CHUNK_DEFAULT      (16 * 1024 * 1024)
#define SL_REGISTRY_MONOLITHIC_DEFAULT (32 * 1024 * 1024)

struct sl_registry_options {
    bool insecure;             /* plain HTTP instead of HTTPS */
    bool tls_no_verify;        /* HTTPS without certificate checks (never default) */
    const char *docker_config; /* config.json path; NULL = $DOCKER_CONFIG, ~/.docker */
    const char *username;      /* explicit credentials; override config.json */
    const char *password;
    const char *user_agent;      /* NULL = "starlight-c/<version>" */
    int retries;                 /* extra attempts per request; 0 = default (4), < 0 = none */
    unsigned backoff_ms;         /* first retry delay; 0 = 200 ms */
    unsigned retry_after_max_ms; /* cap on Retry-After; 0 = 30 s */
    int64_t chunk_size;          /* PATCH size for chunked uploads; 0 = 16 MiB */
    int64_t monolithic_max;      /* blobs up to this size go in one PUT; 0 = 32 MiB */
};

struct sl_registry;

/* Creates a client for `host` (validated like a reference domain). Loads credentials now.
 * `opts` may be NULL. Returns 0, -EINVAL (bad host), or a config.json error. */
int sl_registry_new(const char *host, const struct sl_registry_options *opts,
                    struct sl_registry **ret, sl_error_t *err);
void sl_registry_free(struct sl_registry *reg);
SL_DEFINE_CLEANUP(struct sl_registry, sl_registry_free)
#define _cleanup_registry_ _cleanup_(sl_registry_freep)

/* Host as given to sl_registry_new (borrowed). */
const char *sl_registry_host(const struct sl_registry *reg);

/* GET /v2/ (with authentication if the registry asks). Returns 0 when the registry answers
 * and accepts our credentials (or anonymous access). */
int sl_registry_ping(struct sl_registry *reg, sl_error_t *err);

struct sl_registry_manifest {
    char *data; /* the bytes exactly as served (NUL-terminated, not counted in len) */
    size_t len;
    char *content_type;             /* Content-Type as served, or NULL */
    const char *media_type;         /* one of the four SL_MT_* manifest types (static) */
    char digest[SL_DIGEST_STR_LEN]; /* sha256 of data, computed locally */
    struct sl_manifest *manifest;   /* parsed and validated */
};
void sl_registry_manifest_free(struct sl_registry_manifest *m);

/* GET /v2/<repo>/manifests/<reference> (a tag or a digest) with an Accept header naming all
 * four manifest types. The digest is computed locally and checked against `reference` when
 * it is a digest and against Docker-Content-Digest when served (-EBADMSG on mismatch).
 * Documents over SL_MANIFEST_MAX_BYTES fail with -EFBIG. *ret is caller-owned. */
int sl_registry_get_manifest(struct sl_registry *reg, const char *repo, const char *reference,
                             struct sl_registry_manifest *ret, sl_error_t *err);

/* HEAD /v2/<repo>/manifests/<reference> (Accept as for GET): 1 when the registry has it, 0 on
 * 404, -EOPNOTSUPP when the registry refuses the method (405/501: ask with GET instead), else a
 * negative errno. Nothing is downloaded, so it does not count against pull rate limits. */
int sl_registry_head_manifest(struct sl_registry *reg, const char *repo, const char *reference,
                              sl_error_t *err);

/* HEAD /v2/<repo>/blobs/<digest>. Returns 1 (exists; *ret_size set when non-NULL), 0 (not
 * found) or a negative errno. */
int sl_registry_head_blob(struct sl_registry *reg, const char *repo, const char *digest,
                          int64_t *ret_size, sl_error_t *err);

/* GET a blob, streaming it to `sink` while hashing it. Returns 0 when the bytes match
 * `digest`, -EBADMSG when they do not (the sink has seen them: discard its output). A
 * connection lost mid-blob is resumed with a Range request. */
int sl_registry_get_blob(struct sl_registry *reg, const char *repo, const char *digest,
                         sl_http_sink_fn sink, void *userdata, sl_error_t *err);
/* GET a whole blob into memory (at most `max` bytes, else -EFBIG), digest verified. The
 * caller frees *ret (NUL-terminated, not counted in *ret_len). */
int sl_registry_get_blob_buf(struct sl_registry *reg, const char *repo, const char *digest,
                             size_t max, char **ret, size_t *ret_len, sl_error_t *err);
/* GET bytes [offset, offset+length) of a blob to `sink` (not digest-verified: a range
 * cannot be). Works whether the server answers 206 or ignores Range and sends 200 with the
 * whole blob. Returns 0 when exactly `length` bytes were delivered, -ERANGE/-EIO when the
 * blob is shorter. */
int sl_registry_get_blob_range(struct sl_registry *reg, const char *repo, const char *digest,
                               int64_t offset, int64_t length, sl_http_sink_fn sink, void *userdata,
                               sl_error_t *err);

/* Blob upload source: a file descriptor read with pread from `offset`, or a buffer. */
struct sl_blob_source {
    int fd; /* -1 when `data` is used */
    int64_t offset;
    const void *data;
    int64_t size;
};

enum sl_push_result {
    SL_PUSH_UPLOADED = 0,
    SL_PUSH_EXISTS = 1,  /* HEAD found it: nothing sent */
    SL_PUSH_MOUNTED = 2, /* cross-repository mount from `mount_from` */
};

/* Pushes a blob whose sha256 is `digest`: skipped when HEAD finds it; else a mount from
 * repository `mount_from` (same registry, may be NULL) is tried; else it is uploaded —
 * POST then one PUT up to monolithic_max bytes, chunked PATCHes with Content-Range beyond
 * (following Location each time, resuming from the registry's Range after a failed chunk).
 * Returns an enum sl_push_result (>= 0) or a negative errno. */
int sl_registry_push_blob(struct sl_registry *reg, const char *repo, const char *digest,
                          const struct sl_blob_source *src, const char *mount_from,
                          sl_error_t *err);

/* PUT /v2/<repo>/manifests/<reference> (tag or digest) with Content-Type `media_type`.
 * Writes the manifest digest (computed locally, checked against Docker-Content-Digest and
 * against `reference` when it is a digest) into ret_digest when non-NULL. */
int sl_registry_put_manifest(struct sl_registry *reg, const char *repo, const char *reference,
                             const void *data, size_t len, const char *media_type,
                             char ret_digest[SL_DIGEST_STR_LEN], sl_error_t *err);

/* The error of a registry's non-2xx answer (`resp`: status, error body, attempts, headers):
 * "WHAT: HTTP 400 MANIFEST_INVALID: manifest invalid; …" from the body's `errors` array (the
 * first 4, each field cut at 200 bytes), else the start of the body, plus WWW-Authenticate
 * on 401; control characters of all of these (C0, DEL, and C1 as UTF-8) become spaces. Returns
 * the negative class of the status.
 * Pure; fuzzed by fuzz-error-bodies. */
int sl_registry_http_error(const struct sl_http_response *resp, const char *what, sl_error_t *err);

#endif
