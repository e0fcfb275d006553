/* store.h — the proxy's PostgreSQL store: the only module that talks to libpq.
 *
 * A small connection pool (n connections, opened lazily). Every call borrows a connection,
 * runs its statements and gives it back; a connection that broke (database restarted or
 * stopped) is closed and reopened by a later call, so the proxy recovers without a restart.
 * The schema is versioned (schema_version table); migrations run on the first connection
 * inside one transaction holding a transaction-level advisory lock, so proxies starting at
 * the same time apply them once. The schema and the EXPLAIN findings behind its indexes are
 * documented next to the migration in store.c and in docs/architecture.md.
 *
 * Errors: -EAGAIN when the database is unreachable or the connection broke (the request may be
 * retried), -ENOENT for lookups that find nothing, -EIO for other database errors, -EPROTO
 * when the database schema is newer than this build. Thread-safe: one store serves every
 * thread; calls block while all connections are busy. */
#ifndef SL_PROXY_STORE_H
#define SL_PROXY_STORE_H

#include "digest.h"
#include "error.h"
#include "plan.h"
#include "toc.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_STORE_SCHEMA_VERSION 2

struct sl_store;

/* Creates the pool and tries to connect and migrate once; a database that is down is not an
 * error here (calls return -EAGAIN until it is up). Errors: -EINVAL (n_conns < 1). */
int sl_store_new(const char *conninfo, int n_conns, struct sl_store **ret, sl_error_t *err);
void sl_store_free(struct sl_store *s);

/* Connects (and migrates) if needed and runs SELECT 1. */
int sl_store_ping(struct sl_store *s, sl_error_t *err);

/* 1 when a layer with this blob digest is ingested, 0 when not. Records the use (last_used):
 * a prune keeps the layer for its minimum age from now. */
int sl_store_layer_known(struct sl_store *s, const char *digest, sl_error_t *err);

struct sl_store_layer_in {
    const char *digest;
    uint64_t size;
    const char *toc_digest;
    uint64_t toc_offset;
    const uint8_t *toc_tail; /* blob bytes [toc_offset, size) */
    size_t toc_tail_len;
    const struct sl_toc *toc;
};

/* Ingests a layer (row + every TOC entry by COPY) unless present, under a per-layer advisory
 * lock: returns 1 when this call ingested it, 0 when it was already there. */
int sl_store_ingest_layer(struct sl_store *s, const struct sl_store_layer_in *l, sl_error_t *err);

struct sl_store_image_in {
    const char *repository; /* "host/path" */
    const char *digest;
    const char *media_type;
    const char *platform; /* normalised "os/arch[/variant]" */
    const uint8_t *manifest;
    size_t manifest_len;
    const char *config_digest;
    const uint8_t *config;
    size_t config_len;
    const char *const *layer_digests; /* stack order; every layer already ingested */
    const char *const *diff_ids;
    size_t n_layers;
    const char *const *tags; /* tags, or the digest of the index that lists this image */
    size_t n_tags;
};

/* Upserts the image, its layer list and tags (pointing the tags at it), and marks its layers
 * used, in one transaction. Idempotent; a known image gets a fresh updated_at (a prune whose
 * registry check started before keeps it). -EAGAIN, nothing stored, when a layer is not in the
 * store (a prune removed it since the notify found it). */
int sl_store_put_image(struct sl_store *s, const struct sl_store_image_in *img, sl_error_t *err);

/* Finds an image of `repository` by tag or digest (`reference`), for `platform`. A digest
 * naming an image manifest finds it whatever the platform; a tag or index digest is looked up
 * per platform. -ENOENT (message lists the platforms known for the tag, if any). */
int sl_store_find_image(struct sl_store *s, const char *repository, const char *reference,
                        const char *platform, int64_t *ret_id, sl_error_t *err);
/* Any image with this manifest digest (whatever its repository): -ENOENT when none. */
int sl_store_find_image_by_digest(struct sl_store *s, const char *digest, int64_t *ret_id,
                                  sl_error_t *err);

struct sl_store_layer {
    int64_t id;
    char digest[SL_DIGEST_STR_LEN];
    uint64_t size;
    char diff_id[SL_DIGEST_STR_LEN];
    char toc_digest[SL_DIGEST_STR_LEN];
    uint64_t toc_offset;
    uint8_t *toc_tail; /* NULL unless loaded with tails */
    size_t toc_tail_len;
};

struct sl_store_image {
    int64_t id;
    char *repository;
    char *media_type;
    char *platform;
    char digest[SL_DIGEST_STR_LEN];
    char config_digest[SL_DIGEST_STR_LEN];
    uint8_t *manifest;
    size_t manifest_len;
    uint8_t *config;
    size_t config_len;
    struct sl_store_layer *layers; /* stack order */
    size_t n_layers;
};

/* Loads an image (manifest and config only when `full`; TOC tails only when `full`). */
int sl_store_load_image(struct sl_store *s, int64_t id, bool full, struct sl_store_image **ret,
                        sl_error_t *err);
void sl_store_image_free(struct sl_store_image *img);

/* Ids of the layers among `digests` that are ingested (unknown digests are skipped). */
int sl_store_layer_ids(struct sl_store *s, char *const *digests, size_t n, int64_t **ret_ids,
                       size_t *ret_n, sl_error_t *err);

/* Distinct content digests of the regular files of these layers, sorted (strcmp). */
int sl_store_contents(struct sl_store *s, const int64_t *layer_ids, size_t n, char ***ret,
                      size_t *ret_n, sl_error_t *err);

/* Regular files of these layers with their trace rank (average position), ordered by layer id
 * then TOC order. */
struct sl_store_file {
    int64_t layer_id;
    uint32_t toc_index;
    char *path;
    char digest[SL_DIGEST_STR_LEN];
    uint64_t size;
    bool traced;
    double rank;
    struct sl_plan_chunk *chunks;
    size_t n_chunks;
};
struct sl_store_files {
    struct sl_store_file *v;
    size_t n;
};
int sl_store_layer_files(struct sl_store *s, const int64_t *layer_ids, size_t n,
                         struct sl_store_files *ret, sl_error_t *err);
void sl_store_files_free(struct sl_store_files *f);

/* The layers of an image by stack index: ids (for reports). */
int sl_store_image_layer_ids(struct sl_store *s, int64_t image_id, int64_t **ret_ids, size_t *ret_n,
                             sl_error_t *err);

/* A short string that changes whenever the trace ranks of any layer of the image change
 * (rank rows, their observation count and last update), for reusing a delta plan only while
 * it is still what planning again would give. Caller frees *ret. One cheap indexed query. */
int sl_store_rank_fingerprint(struct sl_store *s, int64_t image_id, char **ret, sl_error_t *err);

/* Adds one observation per (layer, path): rank_sum += rank, n += 1. Pairs naming no file of
 * the layer are skipped; *ret_applied counts the others. Ranks live apart from files and are
 * never deleted by ingests. */
int sl_store_add_ranks(struct sl_store *s, const int64_t *layer_ids, char *const *paths,
                       const double *ranks, size_t n, size_t *ret_applied, sl_error_t *err);

/* Pruning (proxy/core/prune.c): every image row, for re-checking with the registry. */
struct sl_store_image_row {
    int64_t id;
    char *repository; /* "domain/path" */
    char *digest;     /* manifest digest */
};
/* *ret_asof: the database time before the rows were read (text; caller frees), for
 * sl_store_prune. */
int sl_store_image_rows(struct sl_store *s, struct sl_store_image_row **ret, size_t *ret_n,
                        char **ret_asof, sl_error_t *err);
void sl_store_image_rows_free(struct sl_store_image_row *v, size_t n);

/* Deletes the images `ids` not stored again since `asof` (their tags and layer lists cascade)
 * and then every layer no image lists any more that was last used (ingested, found by a notify,
 * listed by a put_image) more than `min_age_s` seconds before `asof` (a notify in progress
 * ingests or finds layers before it records its image), with their files and ranks; one
 * transaction.
 * Layers still listed by another image keep their rows and ranks. *ret_layers counts the
 * layers deleted. */
int sl_store_prune(struct sl_store *s, const int64_t *ids, size_t n, const char *asof,
                   int64_t min_age_s, size_t *ret_layers, sl_error_t *err);

/* Prometheus text of the store's counters, appended to `out`. */
struct sl_buf;
void sl_store_metrics(struct sl_store *s, struct sl_buf *out);

#endif
