/* core.h — the proxy's data plane, as the HTTP server sees it.
 *
 * Every function here may block (PostgreSQL, registry round trips, the blob cache) and is
 * called from the server's worker threads, never from its event loop. All functions are
 * thread-safe: one struct sl_core serves every request.
 *
 * Error classes map to HTTP statuses through one table in the server:
 *   -EINVAL → 400 (malformed parameters or body)      -ENOENT → 404 (unknown image)
 *   -EMEDIUMTYPE → 422 (image not in Starlight format) -EAGAIN → 503 (database or registry
 *   unreachable right now; the request may be retried)  anything else → 500.
 * The error message (sl_error_t) becomes the JSON body's "error" field. */
#ifndef SL_PROXY_CORE_H
#define SL_PROXY_CORE_H

#include "digest.h"
#include "error.h"
#include "http.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_core_config {
    const char *postgres;         /* libpq conninfo */
    const char *default_registry; /* host[:port] for short names; NULL = docker.io */
    bool default_insecure;        /* plain HTTP to the default registry */
    const char *docker_config;    /* registry credentials (config.json path) or NULL */
    const char *cache_dir;        /* blob cache directory */
    uint64_t cache_max_bytes;     /* blob cache bound */
    int db_connections;           /* PostgreSQL connection pool size (>= 1) */
    /* Periodic prune (prune.c): every prune_interval_ms (0 = off) a background thread runs
     * sl_core_prune(core, false, prune_min_age_s, …); the first run comes one interval after
     * the start. */
    int64_t prune_interval_ms;
    int64_t prune_min_age_s;
};

struct sl_core;

/* Connects to PostgreSQL and applies the schema migrations (safe when several proxies start
 * at once). A database that is down at start is not fatal: each request retries the
 * connection (and the migrations) and gets -EAGAIN meanwhile. With cache_dir set and
 * cache_max_bytes > 0 payload reads go through the blob cache (-EBUSY when another process
 * uses that directory). */
int sl_core_new(const struct sl_core_config *cfg, struct sl_core **ret, sl_error_t *err);
void sl_core_free(struct sl_core *core);

/* Health: fills *ret with {"database": "ok"|"<error>", "registry": "ok"|"<error>"} and returns
 * 0 when both are reachable, -EAGAIN otherwise (the JSON is filled either way). */
int sl_core_health(struct sl_core *core, json_t **ret, sl_error_t *err);

/* POST /starlight/prune[?insecure=1][&min-age=S] (prune.c): asks the registry for the manifest
 * of every image the database holds, by digest; the images it answers 404 (MANIFEST_UNKNOWN)
 * for are deleted, then the layers no image lists any more and ingested more than `min_age_s`
 * seconds ago (< 0: 600; a notify ingests layers before it records its image), with their
 * files and ranks. Images whose registry cannot be asked (any other error) are kept and
 * counted. *ret: {"imagesChecked", "imagesRemoved": ["repo@digest"…], "layersRemoved",
 * "unchecked"}. */
int sl_core_prune(struct sl_core *core, bool insecure, int64_t min_age_s, json_t **ret,
                  sl_error_t *err);

/* POST /starlight/notify?ref=REF[&insecure=1]: resolves REF (an index yields one image per
 * platform), reads the footer and TOC of each layer by Range, ingests each distinct layer
 * once (concurrent notifies of one image both succeed with one ingest). *ret is the 200 JSON
 * body. -EMEDIUMTYPE when a layer is not a Starlight/eStargz layer. */
int sl_core_notify(struct sl_core *core, const char *ref, bool insecure, json_t **ret,
                   sl_error_t *err);

/* An image config as notify reads it from the registry (pure, no core state; fuzzed by
 * fuzz-image-config): rootfs.diff_ids, one sha256 digest per manifest layer (`n_layers`), and
 * with `want_platform` the platform from os/architecture/variant, normalised (arm64/v8 →
 * arm64). -EINVAL naming the field when malformed, -EFBIG over 8 MiB. Caller clears *ret. */
struct sl_core_image_config {
    char **diff_ids; /* n_layers of them */
    size_t n;
    char *platform; /* NULL without want_platform */
};
int sl_core_parse_image_config(const char *data, size_t len, size_t n_layers, bool want_platform,
                               struct sl_core_image_config *ret, sl_error_t *err);
void sl_core_image_config_clear(struct sl_core_image_config *c);

/* POST /starlight/report: the trace document of docs/protocol.md. *ret is the 200 body. */
int sl_core_report(struct sl_core *core, const char *body, size_t len, json_t **ret,
                   sl_error_t *err);

/* A delta request: GET /starlight/delta?to=&platform=&from=... or the POST JSON body. */
struct sl_delta_request {
    const char *to;          /* image reference (tag or digest) */
    const char *platform;    /* "os/arch[/variant]" */
    const char *const *from; /* images the worker holds (references) */
    size_t n_from;
    const char *const *held_layers; /* layer blob digests the worker holds */
    size_t n_held_layers;
    const char *const *held_contents; /* content digests the worker holds verified (POST only) */
    size_t n_held_contents;
    bool insecure;    /* plain HTTP to the registry of `to` */
    uint32_t version; /* delta format to answer: 0 or 1, or 2 (Accept, docs/protocol.md §3) */
};

/* Parses a POST body {"to":..., "platform":..., "from":[...], "layers":[...], "contents":[...],
 * "insecure":bool}
 * into *ret; the strings and the from/held_layers arrays live inside *ret_json, which the
 * caller keeps alive and frees (json_decref). Unknown keys and wrong types: -EINVAL. */
int sl_delta_request_parse_json(const char *body, size_t len, struct sl_delta_request *ret,
                                json_t **ret_json, sl_error_t *err);

/* One contiguous piece of payload: `length` bytes at `blob_offset` of a layer blob. Adjacent
 * ranges of one blob are already coalesced. */
struct sl_delta_segment {
    uint32_t layer; /* index into sl_delta.layers */
    uint64_t blob_offset;
    uint64_t length;
    uint64_t response_offset; /* where these bytes start in the response body */
};

struct sl_delta_layer {
    char digest[SL_DIGEST_STR_LEN];
    uint64_t size;
};

/* A planned delta response. Immutable once made; freed with sl_delta_free. The response body
 * is head[0..head_len) followed by the segments in order; total_len counts both. Identical
 * requests (and rank versions) give identical bytes and the same etag. */
struct sl_delta {
    char etag[80]; /* quoted strong ETag, e.g. "\"sha256:...\"" */
    uint8_t *head; /* framing + header (docs/protocol.md) */
    size_t head_len;
    struct sl_delta_segment *segments;
    size_t n_segments;
    struct sl_delta_layer *layers; /* blobs the segments read from */
    size_t n_layers;
    uint64_t total_len;
    /* accounting for /metrics */
    uint64_t payload_bytes; /* bytes of gzip members sent */
    uint64_t saved_bytes;   /* compressed bytes not sent because the worker holds the content */
    void *priv;             /* owned by the core (registry client, repository) */
};

/* Makes the plan: -ENOENT unknown image (not notified), -EINVAL bad parameters. */
int sl_core_delta_plan(struct sl_core *core, const struct sl_delta_request *req,
                       struct sl_delta **ret, sl_error_t *err);
void sl_delta_free(struct sl_delta *d);

/* Reads `len` bytes at `off` inside segment `seg` of a plan (through the blob cache; ranges
 * fetched from the registry by Range requests, concurrent readers of the same bytes share one
 * fetch) and hands them to `sink` in order. Blocks. */
int sl_core_read_segment(struct sl_core *core, const struct sl_delta *d, size_t seg, uint64_t off,
                         uint64_t len, sl_http_sink_fn sink, void *ud, sl_error_t *err);

/* Reads `len` bytes of the response body at `pos` (head_len <= pos, pos + len <= total_len),
 * across segments, and hands them to `sink` in order. Consecutive segments of one blob that
 * lie close together (gaps of tar headers between gzip members) are read with one cache read
 * whose gap bytes are dropped, so a delta of thousands of small contents costs a few large
 * reads. Blocks. */
int sl_core_read_payload(struct sl_core *core, const struct sl_delta *d, uint64_t pos, uint64_t len,
                         sl_http_sink_fn sink, void *ud, sl_error_t *err);

/* Prometheus text of the core's counters (database latency, notify durations, cache, registry
 * fetches), appended to *out (a malloc'd string the caller frees). */
void sl_core_metrics(struct sl_core *core, char **out);

#endif
