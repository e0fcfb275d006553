/* core.c — the proxy's data plane API (core.h): lifetime, registry clients, health, metrics,
 * reports, delta planning and payload reads. Notify lives in notify.c, SQL in store.c, the
 * planner's pure logic in plan.c, trace parsing in trace.c. */
#include "buf.h"
#include "cleanup.h"
#include "core-int.h"
#include "delta.h"
#include "json.h"
#include "log.h"
#include "plan.h"
#include "trace.h"

#if __has_include("blobcache.h")
#include "blobcache.h"
#define SL_HAVE_BLOBCACHE 1
#endif

#include <inttypes.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_FROM          64
#define MAX_HELD_LAYERS   4096
#define MAX_HELD_CONTENTS 8192
#define MAX_REQUEST       (1u << 20)
/* Plans kept for reuse (core.c, "shared plans"): at most this many, of at most this many
 * bytes in total (head + segments); plans still streamed stay alive by reference anyway. */
#define PLAN_CACHE_ENTRIES 16
#define PLAN_CACHE_BYTES   (64u << 20)
/* Plans computed at once (different requests): planning a redis-sized image allocates ~30 MB
 * for a moment and is CPU-bound, so more at once would only raise the memory peak. */
#define PLAN_CONCURRENCY 2
/* sl_core_read_payload reads through a gap of at most this many bytes between two segments
 * of one blob (and drops it) rather than splitting the read. */
#define READ_GAP_MAX (64u * 1024)
/* sl_core_read_payload prefetches the payload up to a horizon PREFETCH_AHEAD past its read
 * (at most a quarter of the cache, so prefetched blocks are not evicted before they are read),
 * rounded down to a half of that (so the horizon moves in steps and the new blocks go out
 * as multi-block Range requests, not one block per read), asking for segments of one blob at
 * most PREFETCH_GAP apart as one range. */
#define PREFETCH_AHEAD (32u << 20)
#define PREFETCH_GAP   (1u << 20)
/* Prewarm jobs waiting at most (core.c, "prewarm"); more are dropped. */
#define PREWARM_QUEUE 16

uint64_t sl_core_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static char *dup_or_null(const char *s)
{
    return s ? sl_xstrdup(s) : NULL;
}

int sl_core_new(const struct sl_core_config *cfg, struct sl_core **ret, sl_error_t *err)
{
    if (!cfg || !cfg->postgres)
        return sl_error_make(err, EINVAL, "proxy core: a PostgreSQL conninfo is required");
    if (cfg->default_registry && !sl_ref_valid_domain(cfg->default_registry))
        return sl_error_make(err, EINVAL, "proxy core: default registry `%s` is not a host[:port]",
                             cfg->default_registry);
    struct sl_core *core = sl_xcalloc(1, sizeof(*core));
    core->postgres = sl_xstrdup(cfg->postgres);
    core->default_registry = dup_or_null(cfg->default_registry);
    core->default_insecure = cfg->default_insecure;
    core->docker_config = dup_or_null(cfg->docker_config);
    core->cache_dir = dup_or_null(cfg->cache_dir);
    core->cache_max_bytes = cfg->cache_max_bytes;
    pthread_mutex_init(&core->reg_mu, NULL);
    pthread_mutex_init(&core->plan_mu, NULL);
    pthread_cond_init(&core->plan_cv, NULL);
    pthread_cond_init(&core->prewarm_cv, NULL);
    pthread_mutex_init(&core->prune_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&core->prune_cv, &ca);
    pthread_condattr_destroy(&ca);
    core->prune_interval_ms = cfg->prune_interval_ms;
    core->prune_min_age_s = cfg->prune_min_age_s;
    int r = sl_store_new(cfg->postgres, cfg->db_connections > 0 ? cfg->db_connections : 1,
                         &core->store, err);
#ifdef SL_HAVE_BLOBCACHE
    if (r >= 0 && cfg->cache_dir && cfg->cache_max_bytes > 0) {
        struct sl_blobcache *cache = NULL;
        r = sl_blobcache_new(cfg->cache_dir, cfg->cache_max_bytes, &cache, err);
        if (r < 0)
            r = sl_error_wrap(err, r, "proxy core: blob cache in %s", cfg->cache_dir);
        core->cache = cache;
    }
#endif
    if (r >= 0 && cfg->prune_interval_ms > 0)
        r = sl_core_prune_start(core, err);
    if (r < 0) {
        sl_core_free(core);
        return r;
    }
    *ret = core;
    return 0;
}

static void plan_cache_clear(struct sl_core *core);
static void prewarm_cached(struct sl_core *core);
static void prewarm_stop(struct sl_core *core);

void sl_core_free(struct sl_core *core)
{
    if (!core)
        return;
    sl_core_prune_stop(core);
    prewarm_stop(core);
    plan_cache_clear(core);
    pthread_cond_destroy(&core->prewarm_cv);
    pthread_cond_destroy(&core->plan_cv);
    pthread_mutex_destroy(&core->plan_mu);
    pthread_cond_destroy(&core->prune_cv);
    pthread_mutex_destroy(&core->prune_mu);
#ifdef SL_HAVE_BLOBCACHE
    sl_blobcache_free(core->cache);
#endif
    sl_store_free(core->store);
    for (size_t i = 0; i < core->n_regs; i++) {
        free(core->regs[i].host);
        sl_registry_free(core->regs[i].reg);
    }
    free(core->regs);
    pthread_mutex_destroy(&core->reg_mu);
    free(core->postgres);
    free(core->default_registry);
    free(core->docker_config);
    free(core->cache_dir);
    free(core);
}

/* ---------------------------------------------------------------- helpers */

int sl_core_registry(struct sl_core *core, const char *host, bool insecure,
                     struct sl_registry **ret, sl_error_t *err)
{
    pthread_mutex_lock(&core->reg_mu);
    for (size_t i = 0; i < core->n_regs; i++) {
        if (core->regs[i].insecure == insecure && strcmp(core->regs[i].host, host) == 0) {
            *ret = core->regs[i].reg;
            pthread_mutex_unlock(&core->reg_mu);
            return 0;
        }
    }
    struct sl_registry_options o = {.insecure = insecure, .docker_config = core->docker_config};
    struct sl_registry *reg = NULL;
    int r = sl_registry_new(host, &o, &reg, err);
    if (r >= 0) {
        core->regs = sl_xrealloc(core->regs, (core->n_regs + 1) * sizeof(*core->regs));
        core->regs[core->n_regs++] = (struct reg_entry){sl_xstrdup(host), insecure, reg};
        *ret = reg;
    }
    pthread_mutex_unlock(&core->reg_mu);
    return r;
}

/* A reference names its registry when its first component has a '.' or ':' or is
 * "localhost" (the distribution rule). */
static bool names_registry(const char *s)
{
    const char *slash = strchr(s, '/');
    if (!slash)
        return false;
    size_t n = (size_t)(slash - s);
    return memchr(s, '.', n) || memchr(s, ':', n) || (n == 9 && strncmp(s, "localhost", 9) == 0);
}

int sl_core_parse_ref(struct sl_core *core, const char *s, bool insecure, struct sl_image_ref *ret,
                      bool *ret_insecure, sl_error_t *err)
{
    int r;
    bool by_default = core->default_registry && !names_registry(s);
    if (by_default) {
        _cleanup_free_ char *full = sl_xasprintf("%s/%s", core->default_registry, s);
        r = sl_image_ref_parse(full, ret, err);
    } else {
        r = sl_image_ref_parse(s, ret, err);
    }
    if (r < 0)
        return -EINVAL;
    *ret_insecure =
        insecure || (core->default_registry && strcmp(ret->domain, core->default_registry) == 0 &&
                     core->default_insecure);
    return 0;
}

int sl_core_platform_normalize(const char *s, char **ret, sl_error_t *err)
{
    struct sl_platform p = {0};
    int r = sl_platform_parse(s, &p, err);
    if (r < 0)
        return -EINVAL;
    bool drop_variant =
        p.variant && strcmp(p.architecture, "arm64") == 0 && strcmp(p.variant, "v8") == 0;
    *ret = p.variant && !drop_variant ? sl_xasprintf("%s/%s/%s", p.os, p.architecture, p.variant)
                                      : sl_xasprintf("%s/%s", p.os, p.architecture);
    sl_platform_free(&p);
    return 0;
}

struct count_sink {
    sl_http_sink_fn sink;
    void *ud;
    uint64_t n;
};

static int count_sink_write(void *ud, const void *data, size_t len)
{
    struct count_sink *c = ud;
    c->n += len;
    return c->sink(c->ud, data, len);
}

/* Through the blob cache (proxy/cache) when one is configured, else one Range request. */
static int fetch_range(struct sl_core *core, struct sl_registry *reg, const char *repo,
                       const char *digest, uint64_t blob_size, uint64_t off, uint64_t len,
                       sl_http_sink_fn sink, void *ud, sl_error_t *err)
{
#ifdef SL_HAVE_BLOBCACHE
    if (core->cache)
        return sl_blobcache_read(core->cache, reg, repo, digest, blob_size, off, len, sink, ud,
                                 err);
#else
    (void)core;
#endif
    if (off > blob_size || len > blob_size - off)
        return sl_error_make(err, ERANGE,
                             "blob %s: range %" PRIu64 "+%" PRIu64 " outside its %" PRIu64 " bytes",
                             digest, off, len, blob_size);
    return sl_registry_get_blob_range(reg, repo, digest, (int64_t)off, (int64_t)len, sink, ud, err);
}

int sl_core_fetch(struct sl_core *core, struct sl_registry *reg, const char *repo,
                  const char *digest, uint64_t blob_size, uint64_t off, uint64_t len,
                  sl_http_sink_fn sink, void *ud, sl_error_t *err)
{
    uint64_t t0 = sl_core_now_ns();
    struct count_sink cs = {sink, ud, 0};
    int r = fetch_range(core, reg, repo, digest, blob_size, off, len, count_sink_write, &cs, err);
    atomic_fetch_add(&core->fetches, 1);
    atomic_fetch_add(&core->fetch_bytes, cs.n);
    atomic_fetch_add(&core->fetch_ns, sl_core_now_ns() - t0);
    if (r < 0)
        atomic_fetch_add(&core->fetch_errors, 1);
    return r;
}

/* ---------------------------------------------------------------- health, metrics */

int sl_core_health(struct sl_core *core, json_t **ret, sl_error_t *err)
{
    json_t *j = json_object();
    _cleanup_error_ sl_error_t dberr = NULL, regerr = NULL;
    int rd = sl_store_ping(core->store, &dberr);
    json_object_set_new(j, "database", json_string(rd < 0 ? sl_error_msg(dberr, rd) : "ok"));
    int rr = 0;
    if (core->default_registry) {
        struct sl_registry *reg = NULL;
        rr = sl_core_registry(core, core->default_registry, core->default_insecure, &reg, &regerr);
        if (rr >= 0)
            rr = sl_registry_ping(reg, &regerr);
        json_object_set_new(j, "registry", json_string(rr < 0 ? sl_error_msg(regerr, rr) : "ok"));
    } else {
        json_object_set_new(j, "registry", json_string("not configured"));
    }
    *ret = j;
    if (rd < 0)
        return sl_error_make(err, EAGAIN, "database: %s", sl_error_msg(dberr, rd));
    if (rr < 0)
        return sl_error_make(err, EAGAIN, "registry: %s", sl_error_msg(regerr, rr));
    return 0;
}

static void counter(struct sl_buf *b, const char *name, const char *help, uint64_t v)
{
    sl_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %" PRIu64 "\n", name, help, name, name,
                  v);
}

static void seconds(struct sl_buf *b, const char *name, const char *help, uint64_t ns)
{
    sl_buf_printf(b, "# HELP %s %s\n# TYPE %s counter\n%s %.6f\n", name, help, name, name,
                  (double)ns / 1e9);
}

void sl_core_metrics(struct sl_core *core, char **out)
{
    struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    if (*out)
        sl_buf_puts(&b, *out);
    counter(&b, "starlight_notify_total", "Notify requests handled.", core->notifies);
    counter(&b, "starlight_notify_errors_total", "Notify requests that failed.",
            core->notify_errors);
    seconds(&b, "starlight_notify_seconds_total", "Time spent in notify requests.",
            core->notify_ns);
    counter(&b, "starlight_layers_ingested_total", "Layers whose TOC was ingested.",
            core->layers_ingested);
    counter(&b, "starlight_layers_reused_total", "Layers notified again (already ingested).",
            core->layers_reused);
    counter(&b, "starlight_reports_total", "Trace reports handled.", core->reports);
    counter(&b, "starlight_report_errors_total", "Trace reports rejected.", core->report_errors);
    counter(&b, "starlight_report_accesses_total", "File accesses received in reports.",
            core->report_accesses);
    counter(&b, "starlight_delta_plans_total", "Delta plans made.", core->plans);
    counter(&b, "starlight_delta_plan_errors_total", "Delta plans that failed.", core->plan_errors);
    counter(&b, "starlight_delta_plans_shared_total",
            "Delta requests answered with an existing identical plan (database unchanged).",
            core->plans_shared);
    seconds(&b, "starlight_delta_plan_seconds_total", "Time spent planning deltas.", core->plan_ns);
    counter(&b, "starlight_delta_plans_prewarmed_total",
            "Fresh-pull plans computed in the background after a notify or report.",
            core->plans_prewarmed);
    counter(&b, "starlight_delta_prewarm_errors_total", "Background plans that failed.",
            core->prewarm_errors);
    seconds(&b, "starlight_delta_prewarm_seconds_total", "Time spent on background plans.",
            core->prewarm_ns);
    counter(&b, "starlight_delta_planned_bytes_total", "Payload bytes of planned deltas.",
            core->planned_bytes);
    counter(&b, "starlight_delta_saved_bytes_total",
            "Compressed bytes not sent because the worker held the content.", core->saved_bytes);
    counter(&b, "starlight_registry_fetches_total", "Blob range reads from the registry.",
            core->fetches);
    counter(&b, "starlight_registry_fetch_errors_total", "Blob range reads that failed.",
            core->fetch_errors);
    counter(&b, "starlight_registry_fetch_bytes_total", "Blob bytes read from the registry.",
            core->fetch_bytes);
    seconds(&b, "starlight_registry_fetch_seconds_total", "Time spent reading blob ranges.",
            core->fetch_ns);
    counter(&b, "starlight_prune_runs_total",
            "Prunes of images deleted from the registry (POST /starlight/prune and periodic).",
            core->prunes);
    counter(&b, "starlight_prune_periodic_runs_total", "Prunes run by --prune-interval.",
            core->prunes_periodic);
    counter(&b, "starlight_prune_errors_total", "Prunes that failed (database).",
            core->prune_errors);
    counter(&b, "starlight_prune_images_removed_total",
            "Image rows deleted because the registry no longer has the manifest.",
            core->pruned_images);
    counter(&b, "starlight_prune_layers_removed_total",
            "Layers (files, ranks) deleted because no image lists them.", core->pruned_layers);
    counter(&b, "starlight_prune_unchecked_total",
            "Images kept because their registry could not be asked.", core->prune_unchecked);
#ifdef SL_HAVE_BLOBCACHE
    if (core->cache) {
        struct sl_blobcache_stats st;
        sl_blobcache_get_stats(core->cache, &st);
        counter(&b, "starlight_cache_hits_total", "Blob cache blocks served from disk.", st.hits);
        counter(&b, "starlight_cache_misses_total", "Blob cache blocks fetched or waited for.",
                st.misses);
        counter(&b, "starlight_cache_evictions_total", "Blob cache blocks evicted.", st.evictions);
        counter(&b, "starlight_cache_fetch_bytes_total", "Bytes the cache fetched by Range.",
                st.bytes_fetched);
        counter(&b, "starlight_cache_fetches_total", "Range requests the cache made.", st.fetches);
        sl_buf_printf(&b,
                      "# HELP starlight_cache_size_bytes Bytes of cached blocks on disk.\n"
                      "# TYPE starlight_cache_size_bytes gauge\nstarlight_cache_size_bytes %" PRIu64
                      "\n# TYPE starlight_cache_max_bytes gauge\nstarlight_cache_max_bytes %" PRIu64
                      "\n",
                      st.size_bytes, st.max_bytes);
    }
#endif
    sl_store_metrics(core->store, &b);
    free(*out);
    *out = sl_buf_steal(&b, NULL);
}

/* ---------------------------------------------------------------- report */

struct rank_row {
    int64_t layer_id;
    const char *path;
    double rank;
};

static int cmp_rank_row(const void *pa, const void *pb)
{
    const struct rank_row *a = pa, *b = pb;
    if (a->layer_id != b->layer_id)
        return a->layer_id < b->layer_id ? -1 : 1;
    int c = strcmp(a->path, b->path);
    if (c)
        return c;
    return a->rank < b->rank ? -1 : a->rank > b->rank;
}

struct group_rows {
    struct rank_row *v;
    size_t n;
};

static int report(struct sl_core *core, const char *body, size_t len, json_t **ret, sl_error_t *err)
{
    _cleanup_trace_doc_ struct sl_trace_doc *doc = NULL;
    int r = sl_trace_parse(body, len, &doc, err);
    if (r < 0)
        return r;
    atomic_fetch_add(&core->report_accesses, doc->n_accesses);
    /* resolve every group before changing anything */
    struct group_rows *rows = sl_xcalloc(doc->n_groups + 1, sizeof(*rows));
    for (size_t g = 0; g < doc->n_groups && r >= 0; g++) {
        const struct sl_trace_group *grp = &doc->groups[g];
        _cleanup_free_ int64_t **ids = sl_xcalloc(grp->n_images, sizeof(*ids));
        _cleanup_free_ size_t *nids = sl_xcalloc(grp->n_images, sizeof(*nids));
        for (size_t i = 0; i < grp->n_images && r >= 0; i++) {
            int64_t id;
            r = sl_store_find_image_by_digest(core->store, grp->images[i], &id, err);
            if (r >= 0)
                r = sl_store_image_layer_ids(core->store, id, &ids[i], &nids[i], err);
            if (r < 0)
                r = sl_error_wrap(err, r, ".groups[%zu].images[%zu]", g, i);
        }
        if (r >= 0) {
            struct sl_trace_ranked *ranked = NULL;
            size_t n = 0;
            sl_trace_rank(grp, &ranked, &n);
            rows[g].v = sl_xcalloc(n + 1, sizeof(*rows[g].v));
            for (size_t k = 0; k < n && r >= 0; k++) {
                if (ranked[k].layer >= nids[ranked[k].image]) {
                    r = sl_error_make(err, EINVAL,
                                      ".groups[%zu]: access to `%s` in layer %" PRIu32
                                      " of image %s, which has %zu layers",
                                      g, ranked[k].path, ranked[k].layer,
                                      grp->images[ranked[k].image], nids[ranked[k].image]);
                    break;
                }
                rows[g].v[k] = (struct rank_row){ids[ranked[k].image][ranked[k].layer],
                                                 ranked[k].path, (double)ranked[k].rank};
            }
            rows[g].n = n;
            free(ranked);
            /* two images of a group may share a layer: one observation per (layer, path),
             * the earliest */
            qsort(rows[g].v, rows[g].n, sizeof(*rows[g].v), cmp_rank_row);
            size_t k = 0;
            for (size_t i = 0; i < rows[g].n; i++)
                if (!k || rows[g].v[k - 1].layer_id != rows[g].v[i].layer_id ||
                    strcmp(rows[g].v[k - 1].path, rows[g].v[i].path) != 0)
                    rows[g].v[k++] = rows[g].v[i];
            rows[g].n = k;
        }
        for (size_t i = 0; i < grp->n_images; i++)
            free(ids[i]);
    }
    size_t applied_total = 0;
    for (size_t g = 0; g < doc->n_groups && r >= 0; g++) {
        size_t n = rows[g].n, applied = 0;
        _cleanup_free_ int64_t *lids = sl_xcalloc(n + 1, sizeof(*lids));
        _cleanup_free_ char **paths = sl_xcalloc(n + 1, sizeof(*paths));
        _cleanup_free_ double *ranks = sl_xcalloc(n + 1, sizeof(*ranks));
        for (size_t i = 0; i < n; i++) {
            lids[i] = rows[g].v[i].layer_id;
            paths[i] = (char *)rows[g].v[i].path;
            ranks[i] = rows[g].v[i].rank;
        }
        r = sl_store_add_ranks(core->store, lids, paths, ranks, n, &applied, err);
        applied_total += applied;
    }
    for (size_t g = 0; g < doc->n_groups; g++)
        free(rows[g].v);
    free(rows);
    if (r < 0)
        return r;
    atomic_fetch_add(&core->report_ranked, applied_total);
    json_t *j = json_object();
    json_object_set_new(j, "status", json_string("OK"));
    json_object_set_new(j, "code", json_integer(200));
    json_object_set_new(j, "message", json_string("traces ranked"));
    json_object_set_new(j, "groups", json_integer((json_int_t)doc->n_groups));
    json_object_set_new(j, "accesses", json_integer((json_int_t)doc->n_accesses));
    json_object_set_new(j, "ranked", json_integer((json_int_t)applied_total));
    *ret = j;
    return 0;
}

int sl_core_report(struct sl_core *core, const char *body, size_t len, json_t **ret,
                   sl_error_t *err)
{
    atomic_fetch_add(&core->reports, 1);
    int r = report(core, body, len, ret, err);
    if (r < 0) {
        atomic_fetch_add(&core->report_errors, 1);
        return sl_error_wrap(err, r, "report");
    }
    prewarm_cached(core);
    return 0;
}

/* ---------------------------------------------------------------- delta request */

/* The request's string arrays must live as long as *ret_json: they are stored inside it, as
 * the bytes of a private string member (jansson copies them into its own allocation). */
static const char *const *stash_ptrs(json_t *root, const char *key, const char **v, size_t n)
{
    json_t *s = json_stringn_nocheck((const char *)v, n * sizeof(*v));
    json_object_set_new(root, key, s);
    return (const char *const *)json_string_value(s);
}

static int string_list(json_t *body, const char *key, size_t max, json_t *root,
                       const char *const **ret, size_t *ret_n, sl_error_t *err)
{
    json_t *a = json_object_get(body, key);
    *ret = NULL;
    *ret_n = 0;
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_array(a) || json_array_size(a) > max)
        return sl_error_make(err, EINVAL,
                             "delta request: .%s: expected an array of at most %zu "
                             "strings",
                             key, max);
    size_t n = json_array_size(a);
    _cleanup_free_ const char **v = sl_xcalloc(n + 1, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s))
            return sl_error_make(err, EINVAL, "delta request: .%s[%zu]: expected a string", key, i);
        v[i] = json_string_value(s);
    }
    char priv[32];
    snprintf(priv, sizeof(priv), "\x01%s", key);
    *ret = n ? stash_ptrs(root, priv, v, n) : NULL;
    *ret_n = n;
    return 0;
}

int sl_delta_request_parse_json(const char *body, size_t len, struct sl_delta_request *ret,
                                json_t **ret_json, sl_error_t *err)
{
    json_auto_t *j = NULL;
    int r = sl_json_parse(body, len, MAX_REQUEST, "delta request", &j, err);
    if (r < 0)
        return -EINVAL == r ? r : sl_error_wrap(err, -EINVAL, "delta request");
    if (!json_is_object(j))
        return sl_error_make(err, EINVAL, "delta request: expected a JSON object");
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v)
    {
        if (strcmp(k, "to") && strcmp(k, "platform") && strcmp(k, "from") && strcmp(k, "layers") &&
            strcmp(k, "contents") && strcmp(k, "insecure"))
            return sl_error_make(err, EINVAL, "delta request: .%s: unknown key", k);
    }
    struct sl_delta_request req = {0};
    if ((r = sl_json_get_str(j, "to", "delta request", &req.to, err)) < 0 ||
        (r = sl_json_get_str(j, "platform", "delta request", &req.platform, err)) < 0)
        return r;
    json_t *ins = json_object_get(j, "insecure");
    if (ins && !json_is_boolean(ins))
        return sl_error_make(err, EINVAL, "delta request: .insecure: expected true or false");
    req.insecure = json_is_true(ins);
    json_t *root = json_object();
    json_object_set(root, "body", j);
    if ((r = string_list(j, "from", MAX_FROM, root, &req.from, &req.n_from, err)) < 0 ||
        (r = string_list(j, "layers", MAX_HELD_LAYERS, root, &req.held_layers, &req.n_held_layers,
                         err)) < 0 ||
        (r = string_list(j, "contents", MAX_HELD_CONTENTS, root, &req.held_contents,
                         &req.n_held_contents, err)) < 0) {
        json_decref(root);
        return r;
    }
    *ret = req;
    *ret_json = root;
    return 0;
}

/* ---------------------------------------------------------------- delta plan */

struct delta_priv {
    struct sl_registry *reg; /* borrowed from the core */
    char *repo;              /* repository path on that registry */
    atomic_uint refs;        /* the plan cache and every stream of this plan */
};

static struct sl_delta *delta_ref(struct sl_delta *d)
{
    struct delta_priv *p = d->priv;
    atomic_fetch_add(&p->refs, 1);
    return d;
}

void sl_delta_free(struct sl_delta *d)
{
    if (!d)
        return;
    struct delta_priv *p = d->priv;
    if (p && atomic_fetch_sub(&p->refs, 1) != 1)
        return;
    if (p) {
        free(p->repo);
        free(p);
    }
    free(d->head);
    free(d->segments);
    free(d->layers);
    free(d);
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorts and removes duplicates (freeing them). */
static size_t uniq_strv(char **v, size_t n)
{
    qsort(v, n, sizeof(*v), cmp_strp);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && strcmp(v[k - 1], v[i]) == 0) {
            free(v[i]);
            continue;
        }
        v[k++] = v[i];
    }
    return k;
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

struct plan_ctx {
    struct sl_store_image *target;
    char **held_images;
    size_t n_held_images;
    char **held_layers;
    size_t n_held_layers;
    int64_t *held_ids;
    size_t n_held_ids;
    char **held_contents;
    size_t n_held_contents;
    struct sl_store_files files;
    struct sl_plan_file *pfiles;
    size_t n_pfiles;
    struct sl_plan_result plan;
    struct sl_delta_hlayer *hlayers;
};

static void plan_ctx_free(struct plan_ctx *c)
{
    if (c->hlayers && c->target)
        for (size_t i = 0; i < c->target->n_layers; i++)
            free(c->hlayers[i].files);
    free(c->hlayers);
    sl_plan_result_free(&c->plan);
    free(c->pfiles);
    sl_store_files_free(&c->files);
    strv_free(c->held_contents, c->n_held_contents);
    free(c->held_ids);
    strv_free(c->held_layers, c->n_held_layers);
    strv_free(c->held_images, c->n_held_images);
    sl_store_image_free(c->target);
}

static bool in_sorted(char *const *v, size_t n, const char *s)
{
    return n && bsearch(&s, v, n, sizeof(*v), cmp_strp) != NULL;
}

static int validate_request(const struct sl_delta_request *req, sl_error_t *err)
{
    if (!req || !req->to || !*req->to)
        return sl_error_make(err, EINVAL, "delta: parameter `to` is required");
    if (!req->platform || !*req->platform)
        return sl_error_make(err, EINVAL,
                             "delta: parameter `platform` is required "
                             "(e.g. linux/amd64)");
    if (req->n_from > MAX_FROM)
        return sl_error_make(err, EINVAL, "delta: at most %d `from` images", MAX_FROM);
    if (req->n_held_layers > MAX_HELD_LAYERS)
        return sl_error_make(err, EINVAL, "delta: at most %d held layers", MAX_HELD_LAYERS);
    for (size_t i = 0; i < req->n_held_layers; i++)
        if (!req->held_layers[i] || !sl_digest_valid(req->held_layers[i]))
            return sl_error_make(err, EINVAL, "delta: held layer `%s` is not a sha256 digest",
                                 req->held_layers[i] ? req->held_layers[i] : "(null)");
    if (req->n_held_contents > MAX_HELD_CONTENTS)
        return sl_error_make(err, EINVAL, "delta: at most %d held contents", MAX_HELD_CONTENTS);
    for (size_t i = 0; i < req->n_held_contents; i++)
        if (!req->held_contents[i] || !sl_digest_valid(req->held_contents[i]))
            return sl_error_make(err, EINVAL, "delta: held content `%s` is not a sha256 digest",
                                 req->held_contents[i] ? req->held_contents[i] : "(null)");
    return 0;
}

/* The delta format a request gets: 2 when asked for, else 1. */
static unsigned delta_version(const struct sl_delta_request *req)
{
    return req->version == SL_DELTA_VERSION_2 ? SL_DELTA_VERSION_2 : SL_DELTA_VERSION;
}

static int plan(struct sl_core *core, const struct sl_delta_request *req, struct sl_delta **ret,
                sl_error_t *err)
{
    int r = validate_request(req, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *platform = NULL;
    if ((r = sl_core_platform_normalize(req->platform, &platform, err)) < 0)
        return sl_error_wrap(err, r, "delta: parameter `platform`");
    struct sl_image_ref ref = {0};
    bool plain = false;
    if ((r = sl_core_parse_ref(core, req->to, req->insecure, &ref, &plain, err)) < 0)
        return sl_error_wrap(err, r, "delta: parameter `to`");
    _cleanup_free_ char *name = sl_image_ref_name(&ref);
    _cleanup_free_ char *refstr = sl_image_ref_str(&ref);
    _cleanup_free_ char *repo = sl_xstrdup(ref.path);
    _cleanup_free_ char *domain = sl_xstrdup(ref.domain);
    _cleanup_free_ char *reference = sl_xstrdup(sl_image_ref_reference(&ref));
    sl_image_ref_free(&ref);

    struct plan_ctx c = {0};
    _cleanup_free_ int64_t *need = NULL;
    _cleanup_free_ bool *held = NULL, *used = NULL;
    _cleanup_free_ size_t *first = NULL;
    _cleanup_free_ uint32_t *map = NULL;
    _cleanup_free_ uint8_t *head = NULL;
    size_t head_len = 0;
    struct sl_delta *d = NULL;
    int64_t id;
    if ((r = sl_store_find_image(core->store, name, reference, platform, &id, err)) < 0 ||
        (r = sl_store_load_image(core->store, id, true, &c.target, err)) < 0)
        goto out;

    /* what the worker holds: images (resolved for the same platform) and layers */
    size_t cap = req->n_held_layers + 1;
    c.held_layers = sl_xcalloc(cap, sizeof(char *));
    c.held_images = sl_xcalloc(req->n_from + 1, sizeof(char *));
    c.held_ids = sl_xcalloc(1, sizeof(int64_t));
    for (size_t i = 0; i < req->n_held_layers; i++)
        c.held_layers[c.n_held_layers++] = sl_xstrdup(req->held_layers[i]);
    for (size_t i = 0; i < req->n_from; i++) {
        struct sl_image_ref fr = {0};
        bool fplain;
        if (!req->from[i] ||
            (r = sl_core_parse_ref(core, req->from[i], false, &fr, &fplain, err)) < 0) {
            r = sl_error_wrap(err, -EINVAL, "delta: parameter `from`");
            goto out;
        }
        _cleanup_free_ char *fname = sl_image_ref_name(&fr);
        int64_t fid;
        _cleanup_error_ sl_error_t ferr = NULL;
        r = sl_store_find_image(core->store, fname, sl_image_ref_reference(&fr), platform, &fid,
                                &ferr);
        sl_image_ref_free(&fr);
        if (r == -ENOENT) { /* unknown to the proxy: it cannot vouch for its contents */
            log_debug("delta: held image %s unknown, ignored", req->from[i]);
            r = 0;
            continue;
        }
        if (r < 0) {
            r = sl_error_make(err, -r, "%s", sl_error_msg(ferr, r));
            goto out;
        }
        struct sl_store_image *fimg = NULL;
        if ((r = sl_store_load_image(core->store, fid, false, &fimg, err)) < 0)
            goto out;
        c.held_images[c.n_held_images++] = sl_xstrdup(fimg->digest);
        c.held_layers =
            sl_xrealloc(c.held_layers, (c.n_held_layers + fimg->n_layers + 1) * sizeof(char *));
        c.held_ids = sl_xrealloc(c.held_ids, (c.n_held_ids + fimg->n_layers + 1) * sizeof(int64_t));
        for (size_t k = 0; k < fimg->n_layers; k++) {
            c.held_layers[c.n_held_layers++] = sl_xstrdup(fimg->layers[k].digest);
            c.held_ids[c.n_held_ids++] = fimg->layers[k].id;
        }
        sl_store_image_free(fimg);
    }
    c.n_held_images = uniq_strv(c.held_images, c.n_held_images);
    c.n_held_layers = uniq_strv(c.held_layers, c.n_held_layers);
    {
        _cleanup_free_ int64_t *ids = NULL;
        size_t n = 0;
        if ((r = sl_store_layer_ids(core->store, c.held_layers, c.n_held_layers, &ids, &n, err)) <
            0)
            goto out;
        /* the query returns every held layer the proxy knows, which covers held_ids */
        free(c.held_ids);
        c.held_ids = TAKE_PTR(ids);
        c.n_held_ids = n;
    }
    if ((r = sl_store_contents(core->store, c.held_ids, c.n_held_ids, &c.held_contents,
                               &c.n_held_contents, err)) < 0)
        goto out;
    if (req->n_held_contents) { /* contents the worker verified outside complete layers */
        c.held_contents = sl_xrealloc(
            c.held_contents, (c.n_held_contents + req->n_held_contents + 1) * sizeof(char *));
        for (size_t i = 0; i < req->n_held_contents; i++)
            c.held_contents[c.n_held_contents++] = sl_xstrdup(req->held_contents[i]);
        c.n_held_contents = uniq_strv(c.held_contents, c.n_held_contents);
    }

    /* files of the target layers the worker lacks */
    struct sl_store_image *t = c.target;
    need = sl_xcalloc(t->n_layers + 1, sizeof(int64_t));
    held = sl_xcalloc(t->n_layers + 1, sizeof(bool));
    size_t n_need = 0;
    for (size_t i = 0; i < t->n_layers; i++) {
        held[i] = in_sorted(c.held_layers, c.n_held_layers, t->layers[i].digest);
        if (!held[i])
            need[n_need++] = t->layers[i].id;
    }
    if ((r = sl_store_layer_files(core->store, need, n_need, &c.files, err)) < 0)
        goto out;
    c.pfiles = sl_xcalloc(c.files.n * (t->n_layers ? t->n_layers : 1) + 1, sizeof(*c.pfiles));
    c.hlayers = sl_xcalloc(t->n_layers + 1, sizeof(*c.hlayers));
    first = sl_xcalloc(t->n_layers + 1, sizeof(size_t));
    for (size_t i = 0; i < t->n_layers; i++) {
        first[i] = c.n_pfiles;
        if (held[i])
            continue;
        /* files arrive ordered by layer id then TOC order; a blob may sit at two stack
         * indexes, so scan by id */
        for (size_t k = 0; k < c.files.n; k++) {
            const struct sl_store_file *f = &c.files.v[k];
            if (f->layer_id != t->layers[i].id)
                continue;
            struct sl_plan_file *pf = &c.pfiles[c.n_pfiles++];
            *pf = (struct sl_plan_file){.layer = (uint32_t)i,
                                        .toc_index = f->toc_index,
                                        .path = f->path,
                                        .size = f->size,
                                        .traced = f->traced,
                                        .rank = f->rank,
                                        .chunks = f->chunks,
                                        .n_chunks = f->n_chunks};
            memcpy(pf->digest, f->digest, sizeof(pf->digest));
        }
    }
    struct sl_plan_input in = {c.pfiles, c.n_pfiles, c.held_contents, c.n_held_contents};
    if ((r = sl_plan_compute(&in, &c.plan, err)) < 0)
        goto out;

    /* the header */
    for (size_t i = 0; i < t->n_layers; i++) {
        struct sl_delta_hlayer *hl = &c.hlayers[i];
        const struct sl_store_layer *sl = &t->layers[i];
        memcpy(hl->digest, sl->digest, sizeof(hl->digest));
        hl->size = sl->size;
        memcpy(hl->diff_id, sl->diff_id, sizeof(hl->diff_id));
        memcpy(hl->toc_digest, sl->toc_digest, sizeof(hl->toc_digest));
        hl->held = held[i];
        if (held[i])
            continue;
        hl->toc_offset = sl->toc_offset;
        hl->toc_tail = sl->toc_tail;
        hl->toc_tail_len = sl->toc_tail_len;
        size_t end = i + 1 < t->n_layers ? first[i + 1] : c.n_pfiles;
        hl->files = sl_xcalloc(end - first[i] + 1, sizeof(*hl->files));
        for (size_t k = first[i]; k < end; k++) {
            struct sl_delta_file *df = &hl->files[hl->n_files++];
            df->path = (char *)c.pfiles[k].path;
            memcpy(df->digest, c.pfiles[k].digest, sizeof(df->digest));
            df->size = c.pfiles[k].size;
            df->source = c.plan.source[k];
            df->content = c.plan.content[k];
        }
    }
    struct sl_delta_header h = {
        .reference = refstr,
        .repository = name,
        .platform = platform,
        .media_type = t->media_type,
        .manifest = t->manifest,
        .manifest_len = t->manifest_len,
        .config = t->config,
        .config_len = t->config_len,
        .held_images = c.held_images,
        .n_held_images = c.n_held_images,
        .held_layers = c.held_layers,
        .n_held_layers = c.n_held_layers,
        .layers = c.hlayers,
        .n_layers = t->n_layers,
        .contents = c.plan.contents,
        .n_contents = c.plan.n_contents,
        .payload_length = c.plan.payload_length,
    };
    memcpy(h.digest, t->digest, sizeof(h.digest));
    memcpy(h.config_digest, t->config_digest, sizeof(h.config_digest));
    h.version = delta_version(req);
    if ((r = sl_delta_header_encode(&h, &head, &head_len, err)) < 0)
        goto out;

    /* the plan the server streams */
    d = sl_xcalloc(1, sizeof(*d));
    char hd[SL_DIGEST_STR_LEN];
    sl_sha256_str(head, head_len, hd);
    snprintf(d->etag, sizeof(d->etag), "\"%s\"", hd);
    map = sl_xcalloc(t->n_layers + 1, sizeof(uint32_t));
    used = sl_xcalloc(t->n_layers + 1, sizeof(bool));
    for (size_t i = 0; i < c.plan.n_contents; i++)
        used[c.plan.contents[i].layer] = true;
    d->layers = sl_xcalloc(t->n_layers + 1, sizeof(*d->layers));
    for (size_t i = 0; i < t->n_layers; i++) {
        if (!used[i])
            continue;
        map[i] = (uint32_t)d->n_layers;
        memcpy(d->layers[d->n_layers].digest, t->layers[i].digest, SL_DIGEST_STR_LEN);
        d->layers[d->n_layers].size = t->layers[i].size;
        d->n_layers++;
    }
    sl_plan_segments(c.plan.contents, c.plan.n_contents, map, head_len, &d->segments,
                     &d->n_segments);
    d->head_len = head_len;
    d->total_len = head_len + c.plan.payload_length;
    d->payload_bytes = c.plan.payload_length;
    d->saved_bytes = c.plan.saved_bytes;
    for (size_t i = 0; i < t->n_layers; i++)
        if (held[i])
            d->saved_bytes += t->layers[i].size;
    struct delta_priv *p = sl_xcalloc(1, sizeof(*p));
    atomic_init(&p->refs, 1);
    p->repo = TAKE_PTR(repo);
    d->priv = p;
    if ((r = sl_core_registry(core, domain, plain, &p->reg, err)) < 0)
        goto out;
    d->head = TAKE_PTR(head);
    *ret = TAKE_PTR(d);
    r = 0;
out:
    sl_delta_free(d);
    plan_ctx_free(&c);
    return r;
}

/* ---------------------------------------------------------------- shared plans
 *
 * A plan is immutable, so identical requests can share one: the plan cache maps the
 * normalised request (platform, target, held images and layers) to a plan and the database
 * fingerprint it was made at (target image id, its rank fingerprint, held image ids, held
 * layer ids). A request first computes the fingerprint (a few indexed queries, ~1 ms; the
 * database being down fails here exactly as planning would), then reuses the plan when both
 * key and fingerprint match, else plans and replaces the entry. So a report, a moved tag or
 * a newly ingested held layer — through this proxy or another one on the same database —
 * gives a fresh plan, and a reused plan is byte for byte what planning again would give.
 * Concurrent identical requests wait for the one planning (one plan, one head in memory for
 * all their streams: the head holds the TOC tails, ~3.4 MB for redis). Entries are bounded
 * (PLAN_CACHE_ENTRIES, PLAN_CACHE_BYTES, least recently used dropped first); a dropped plan
 * lives on while streams hold it. */

struct plan_entry {
    struct plan_entry *next;
    char *key, *fp;
    char *fresh_to, *fresh_platform; /* a fresh pull (nothing held): its request, for prewarm */
    bool fresh_insecure;
    bool building;      /* a thread is planning it; d == NULL */
    struct sl_delta *d; /* the cache's reference */
    size_t bytes;
    uint64_t used;
};

static void plan_entry_free(struct plan_entry *e)
{
    sl_delta_free(e->d);
    free(e->key);
    free(e->fp);
    free(e->fresh_to);
    free(e->fresh_platform);
    free(e);
}

/* Unlinks e. plan_mu held. */
static void plan_cache_unlink(struct sl_core *core, struct plan_entry *e)
{
    for (struct plan_entry **pp = &core->plan_cache; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            return;
        }
    }
}

/* Drops least recently used finished entries beyond the bounds, never `keep`. plan_mu held. */
static void plan_cache_trim(struct sl_core *core, const struct plan_entry *keep)
{
    for (;;) {
        size_t n = 0, bytes = 0;
        struct plan_entry *lru = NULL;
        for (struct plan_entry *e = core->plan_cache; e; e = e->next) {
            n++;
            bytes += e->bytes;
            if (!e->building && e != keep && (!lru || e->used < lru->used))
                lru = e;
        }
        if ((n <= PLAN_CACHE_ENTRIES && bytes <= PLAN_CACHE_BYTES) || !lru)
            return;
        plan_cache_unlink(core, lru);
        plan_entry_free(lru);
    }
}

static void plan_cache_clear(struct sl_core *core)
{
    while (core->plan_cache) {
        struct plan_entry *e = core->plan_cache;
        core->plan_cache = e->next;
        plan_entry_free(e);
    }
}

/* The normalised request (*ret_key) and the database state its plan depends on (*ret_fp).
 * -EINVAL (no message) for malformed input: the caller plans without sharing, which reports
 * it. Other errors (unknown target, database down) come with the message planning would
 * give; the caller returns them as they are — planning right after a failed fingerprint
 * (a database coming back) would make an unshared plan. */
static int plan_key(struct sl_core *core, const struct sl_delta_request *req, char **ret_key,
                    char **ret_fp, sl_error_t *err)
{
    _cleanup_error_ sl_error_t e = NULL;
    if (validate_request(req, &e) < 0)
        return -EINVAL;
    _cleanup_free_ char *platform = NULL;
    if (sl_core_platform_normalize(req->platform, &platform, &e) < 0)
        return -EINVAL;
    struct sl_image_ref ref = {0};
    bool plain = false;
    if (sl_core_parse_ref(core, req->to, req->insecure, &ref, &plain, &e) < 0)
        return -EINVAL;
    _cleanup_free_ char *name = sl_image_ref_name(&ref);
    _cleanup_free_ char *reference = sl_xstrdup(sl_image_ref_reference(&ref));
    sl_image_ref_free(&ref);

    /* held images as (name, reference) pairs, held layers: sorted, distinct */
    char **from = sl_xcalloc(req->n_from + 1, sizeof(char *));
    size_t n_from = 0;
    int r = 0;
    for (size_t i = 0; i < req->n_from && r == 0; i++) {
        struct sl_image_ref fr = {0};
        bool fplain;
        if (!req->from[i] || sl_core_parse_ref(core, req->from[i], false, &fr, &fplain, &e) < 0) {
            r = -EINVAL;
            break;
        }
        _cleanup_free_ char *fname = sl_image_ref_name(&fr);
        from[n_from++] = sl_xasprintf("%s\n%s", fname, sl_image_ref_reference(&fr));
        sl_image_ref_free(&fr);
    }
    char **layers = sl_xcalloc(req->n_held_layers + 1, sizeof(char *));
    size_t n_layers = 0;
    for (size_t i = 0; i < req->n_held_layers; i++)
        layers[n_layers++] = sl_xstrdup(req->held_layers[i]);
    n_from = uniq_strv(from, n_from);
    n_layers = uniq_strv(layers, n_layers);

    struct sl_buf key, fp;
    sl_buf_init(&key, SIZE_MAX);
    sl_buf_init(&fp, SIZE_MAX);
    int64_t id;
    _cleanup_free_ char *ranks = NULL;
    _cleanup_free_ int64_t *lids = NULL;
    size_t n_lids = 0;
    if (r == 0) {
        sl_buf_printf(&key, "v%u\n%s\n%s\n%s\n%d\n%zu", delta_version(req), platform, name,
                      reference, plain, n_from);
        if ((r = sl_store_find_image(core->store, name, reference, platform, &id, err)) < 0 ||
            (r = sl_store_rank_fingerprint(core->store, id, &ranks, err)) < 0)
            r = r == -EINVAL ? -EIO : r; /* -EINVAL means "plan instead" to the caller */
        else
            sl_buf_printf(&fp, "%" PRId64 "|%s|", id, ranks);
    }
    for (size_t i = 0; i < n_from && r == 0; i++) {
        sl_buf_printf(&key, "\n%s", from[i]);
        char *nl = strchr(from[i], '\n');
        *nl = '\0';
        int64_t fid = -1;
        _cleanup_error_ sl_error_t fe = NULL;
        int fr = sl_store_find_image(core->store, from[i], nl + 1, platform, &fid, &fe);
        if (fr < 0 && fr != -ENOENT)
            r = sl_error_make(err, -fr == EINVAL ? EIO : -fr, "%s", sl_error_msg(fe, fr));
        sl_buf_printf(&fp, "%" PRId64 ",", fr < 0 ? (int64_t)-1 : fid);
    }
    if (r == 0) {
        sl_buf_printf(&key, "\n%zu", n_layers);
        for (size_t i = 0; i < n_layers; i++)
            sl_buf_printf(&key, "\n%s", layers[i]);
        if (n_layers &&
            (r = sl_store_layer_ids(core->store, layers, n_layers, &lids, &n_lids, err)) < 0)
            r = r == -EINVAL ? -EIO : r;
        sl_buf_puts(&fp, "|");
        for (size_t i = 0; i < n_lids; i++)
            sl_buf_printf(&fp, "%" PRId64 ",", lids[i]);
    }
    if (r == 0 && req->n_held_contents) { /* verified contents named by a resuming worker */
        char **cv = sl_xcalloc(req->n_held_contents + 1, sizeof(char *));
        for (size_t i = 0; i < req->n_held_contents; i++)
            cv[i] = sl_xstrdup(req->held_contents[i]);
        size_t n_cv = uniq_strv(cv, req->n_held_contents);
        sl_buf_printf(&key, "\ncontents %zu", n_cv);
        for (size_t i = 0; i < n_cv; i++)
            sl_buf_printf(&key, "\n%s", cv[i]);
        strv_free(cv, n_cv);
    }
    strv_free(from, n_from);
    strv_free(layers, n_layers);
    if (r < 0) {
        sl_buf_free(&key);
        sl_buf_free(&fp);
        return r;
    }
    *ret_key = sl_buf_steal(&key, NULL);
    *ret_fp = sl_buf_steal(&fp, NULL);
    return 0;
}

static struct plan_entry *plan_cache_find(struct sl_core *core, const char *key)
{
    for (struct plan_entry *e = core->plan_cache; e; e = e->next)
        if (strcmp(e->key, key) == 0)
            return e;
    return NULL;
}

/* plan() with at most PLAN_CONCURRENCY running at once. */
static int plan_limited(struct sl_core *core, const struct sl_delta_request *req,
                        struct sl_delta **ret, sl_error_t *err)
{
    pthread_mutex_lock(&core->plan_mu);
    while (core->plans_running >= PLAN_CONCURRENCY)
        pthread_cond_wait(&core->plan_cv, &core->plan_mu);
    core->plans_running++;
    pthread_mutex_unlock(&core->plan_mu);
    int r = plan(core, req, ret, err);
    /* Planning a large image allocates tens of MB of short-lived rows and JSON: hand the freed
     * pages back now, before the streams allocate, so they do not add to the peak. */
    malloc_trim(0);
    pthread_mutex_lock(&core->plan_mu);
    core->plans_running--;
    pthread_cond_broadcast(&core->plan_cv);
    pthread_mutex_unlock(&core->plan_mu);
    return r;
}

/* plan() through the cache; *ret_shared tells whether an existing plan was reused. */
static int plan_shared(struct sl_core *core, const struct sl_delta_request *req,
                       struct sl_delta **ret, bool *ret_shared, sl_error_t *err)
{
    *ret_shared = false;
    _cleanup_free_ char *key = NULL, *fp = NULL;
    int r = plan_key(core, req, &key, &fp, err);
    if (r == -EINVAL)
        return plan_limited(core, req, ret, err);
    if (r < 0)
        return r;
    pthread_mutex_lock(&core->plan_mu);
    struct plan_entry *e;
    while ((e = plan_cache_find(core, key))) {
        if (e->building) {
            pthread_cond_wait(&core->plan_cv, &core->plan_mu);
            continue;
        }
        if (strcmp(e->fp, fp) == 0) {
            e->used = ++core->plan_tick;
            *ret = delta_ref(e->d);
            pthread_mutex_unlock(&core->plan_mu);
            *ret_shared = true;
            return 0;
        }
        plan_cache_unlink(core, e); /* the database changed since */
        plan_entry_free(e);
    }
    e = sl_xcalloc(1, sizeof(*e));
    e->key = TAKE_PTR(key);
    e->fp = TAKE_PTR(fp);
    e->building = true;
    if (!req->n_from && !req->n_held_layers && !req->n_held_contents) {
        e->fresh_to = sl_xstrdup(req->to);
        e->fresh_platform = sl_xstrdup(req->platform);
        e->fresh_insecure = req->insecure;
    }
    e->next = core->plan_cache;
    core->plan_cache = e;
    pthread_mutex_unlock(&core->plan_mu);

    struct sl_delta *d = NULL;
    r = plan_limited(core, req, &d, err);

    pthread_mutex_lock(&core->plan_mu);
    if (r < 0) {
        plan_cache_unlink(core, e);
        plan_entry_free(e);
    } else {
        e->d = delta_ref(d);
        e->bytes = d->head_len + d->n_segments * sizeof(*d->segments) + sizeof(*d);
        e->building = false;
        e->used = ++core->plan_tick;
        plan_cache_trim(core, e);
        *ret = d;
    }
    pthread_cond_broadcast(&core->plan_cv);
    pthread_mutex_unlock(&core->plan_mu);
    return r;
}

/* ---------------------------------------------------------------- prewarm
 *
 * The first request for an image would pay its plan (100-600 ms for a redis-sized image), which
 * dominates a single transfer. So after a notify (per platform) and after a report (for every
 * cached fresh-pull plan, whose ranks may have moved), one background thread plans the fresh
 * pull through plan_shared: the result lands in the shared-plan cache under the key and
 * fingerprint a real request computes, so that request reuses it (or waits for it when it
 * arrives mid-plan) after the usual fingerprint check. One job at a time, PLAN_CONCURRENCY and
 * the cache bounds apply as for requests; a full queue drops jobs. */
struct prewarm_job {
    struct prewarm_job *next;
    char *to, *platform;
    bool insecure;
};

static void prewarm_job_free(struct prewarm_job *j)
{
    free(j->to);
    free(j->platform);
    free(j);
}

static void *prewarm_main(void *arg)
{
    struct sl_core *core = arg;
    pthread_mutex_lock(&core->plan_mu);
    for (;;) {
        while (!core->prewarm_stop && !core->prewarm_queue)
            pthread_cond_wait(&core->prewarm_cv, &core->plan_mu);
        if (core->prewarm_stop)
            break;
        struct prewarm_job *j = core->prewarm_queue;
        core->prewarm_queue = j->next;
        core->prewarm_queued--;
        pthread_mutex_unlock(&core->plan_mu);

        /* both delta formats: current workers ask for version 2, older ones for 1 */
        for (uint32_t v = SL_DELTA_VERSION_2; v >= SL_DELTA_VERSION; v--) {
            struct sl_delta_request req = {
                .to = j->to, .platform = j->platform, .insecure = j->insecure, .version = v};
            struct sl_delta *d = NULL;
            bool shared = false;
            _cleanup_error_ sl_error_t err = NULL;
            uint64_t t0 = sl_core_now_ns();
            int r = plan_shared(core, &req, &d, &shared, &err);
            atomic_fetch_add(&core->prewarm_ns, sl_core_now_ns() - t0);
            if (r < 0) {
                atomic_fetch_add(&core->prewarm_errors, 1);
                log_warn("prewarm %s (%s): %s", j->to, j->platform, sl_error_msg(err, r));
                break;
            }
            if (!shared)
                atomic_fetch_add(&core->plans_prewarmed, 1);
            log_debug("prewarm %s (%s, v%u): %s in %.1f ms", j->to, j->platform, v,
                      shared ? "plan unchanged" : "planned", (double)(sl_core_now_ns() - t0) / 1e6);
            sl_delta_free(d); /* the cache keeps its own reference */
        }
        prewarm_job_free(j);
        pthread_mutex_lock(&core->plan_mu);
    }
    pthread_mutex_unlock(&core->plan_mu);
    return NULL;
}

/* Queues a job. plan_mu held. */
static void prewarm_queue_locked(struct sl_core *core, const char *to, const char *platform,
                                 bool insecure)
{
    if (core->prewarm_stop)
        return;
    struct prewarm_job **pp = &core->prewarm_queue;
    for (; *pp; pp = &(*pp)->next)
        if (strcmp((*pp)->to, to) == 0 && strcmp((*pp)->platform, platform) == 0 &&
            (*pp)->insecure == insecure)
            return; /* already queued */
    if (core->prewarm_queued >= PREWARM_QUEUE) {
        log_debug("prewarm %s (%s): queue full, dropped", to, platform);
        return;
    }
    if (!core->prewarm_started) {
        if (pthread_create(&core->prewarm_thread, NULL, prewarm_main, core) != 0) {
            log_warn("prewarm: cannot start its thread; plans are made on request");
            return;
        }
        core->prewarm_started = true;
    }
    struct prewarm_job *j = sl_xcalloc(1, sizeof(*j));
    j->to = sl_xstrdup(to);
    j->platform = sl_xstrdup(platform);
    j->insecure = insecure;
    *pp = j;
    core->prewarm_queued++;
    pthread_cond_signal(&core->prewarm_cv);
}

void sl_core_prewarm(struct sl_core *core, const char *to, const char *platform, bool insecure)
{
    if (!to || !platform)
        return;
    pthread_mutex_lock(&core->plan_mu);
    prewarm_queue_locked(core, to, platform, insecure);
    pthread_mutex_unlock(&core->plan_mu);
}

/* After a report: plan again every cached fresh pull (its ranks may have changed). */
static void prewarm_cached(struct sl_core *core)
{
    pthread_mutex_lock(&core->plan_mu);
    for (struct plan_entry *e = core->plan_cache; e; e = e->next)
        if (e->fresh_to && !e->building)
            prewarm_queue_locked(core, e->fresh_to, e->fresh_platform, e->fresh_insecure);
    pthread_mutex_unlock(&core->plan_mu);
}

static void prewarm_stop(struct sl_core *core)
{
    pthread_mutex_lock(&core->plan_mu);
    core->prewarm_stop = true;
    pthread_cond_broadcast(&core->prewarm_cv);
    bool started = core->prewarm_started;
    while (core->prewarm_queue) {
        struct prewarm_job *j = core->prewarm_queue;
        core->prewarm_queue = j->next;
        prewarm_job_free(j);
    }
    core->prewarm_queued = 0;
    pthread_mutex_unlock(&core->plan_mu);
    if (started)
        pthread_join(core->prewarm_thread, NULL);
}

int sl_core_delta_plan(struct sl_core *core, const struct sl_delta_request *req,
                       struct sl_delta **ret, sl_error_t *err)
{
    uint64_t t0 = sl_core_now_ns();
    bool shared = false;
    int r = plan_shared(core, req, ret, &shared, err);
    atomic_fetch_add(shared ? &core->plans_shared : &core->plans, 1);
    atomic_fetch_add(&core->plan_ns, sl_core_now_ns() - t0);
    if (r < 0) {
        atomic_fetch_add(&core->plan_errors, 1);
        return r;
    }
    atomic_fetch_add(&core->planned_bytes, (*ret)->payload_bytes);
    atomic_fetch_add(&core->saved_bytes, (*ret)->saved_bytes);
    return 0;
}

int sl_core_read_segment(struct sl_core *core, const struct sl_delta *d, size_t seg, uint64_t off,
                         uint64_t len, sl_http_sink_fn sink, void *ud, sl_error_t *err)
{
    if (!d || seg >= d->n_segments)
        return sl_error_make(err, EINVAL, "read segment %zu: no such segment", seg);
    const struct sl_delta_segment *s = &d->segments[seg];
    if (off > s->length || len > s->length - off)
        return sl_error_make(err, EINVAL,
                             "read segment %zu: range %" PRIu64 "+%" PRIu64 " outside its %" PRIu64
                             " bytes",
                             seg, off, len, s->length);
    if (len == 0)
        return 0;
    const struct delta_priv *p = d->priv;
    const struct sl_delta_layer *l = &d->layers[s->layer];
    int r = sl_core_fetch(core, p->reg, p->repo, l->digest, l->size, s->blob_offset + off, len,
                          sink, ud, err);
    if (r < 0)
        return sl_error_wrap(err, r, "read layer %s", l->digest);
    return 0;
}

/* Index of the segment holding response position pos (>= head_len). */
static size_t find_segment(const struct sl_delta *d, uint64_t pos)
{
    size_t lo = 0, hi = d->n_segments;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (d->segments[mid].response_offset <= pos)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}

/* Starts background cache fetches for the payload from response position pos (in segment i)
 * to the prefetch horizon, so a single stream on an empty cache does not wait one registry
 * round trip per block: its reads end at its window, and a read fetches only its own blocks.
 * Called after the read's first run, whose blocks the read fetched itself (first byte); the
 * rest follows in payload order. Segments of one blob lying close together are asked for as
 * one range; blocks already present or being fetched are skipped by the cache. */
static void prefetch_ahead(struct sl_core *core, const struct sl_delta *d, size_t i, uint64_t pos)
{
#ifdef SL_HAVE_BLOBCACHE
    if (!core->cache)
        return;
    const struct delta_priv *p = d->priv;
    const uint64_t ahead = SL_MIN((uint64_t)PREFETCH_AHEAD, core->cache_max_bytes / 4);
    const uint64_t step = SL_MAX(ahead / 2, (uint64_t)1);
    const uint64_t horizon = (pos + ahead) / step * step;
    while (i < d->n_segments && d->segments[i].response_offset < horizon) {
        const struct sl_delta_segment *s = &d->segments[i];
        uint64_t skip = pos > s->response_offset ? pos - s->response_offset : 0;
        uint64_t start = s->blob_offset + skip, end = s->blob_offset + s->length;
        for (i++; i < d->n_segments && d->segments[i].response_offset < horizon; i++) {
            const struct sl_delta_segment *n = &d->segments[i];
            if (n->layer != s->layer || n->blob_offset < end || n->blob_offset - end > PREFETCH_GAP)
                break;
            end = n->blob_offset + n->length;
        }
        const struct sl_delta_layer *l = &d->layers[s->layer];
        _cleanup_error_ sl_error_t err = NULL;
        if (sl_blobcache_prefetch(core->cache, p->reg, p->repo, l->digest, l->size, start,
                                  end - start, &err) < 0)
            return; /* the read itself reports it */
    }
#else
    (void)core;
    (void)d;
    (void)i;
    (void)pos;
#endif
}

int sl_core_read_payload(struct sl_core *core, const struct sl_delta *d, uint64_t pos, uint64_t len,
                         sl_http_sink_fn sink, void *ud, sl_error_t *err)
{
    if (!d || pos < d->head_len || pos > d->total_len || len > d->total_len - pos ||
        d->n_segments == 0)
        return len == 0 ? 0
                        : sl_error_make(err, EINVAL,
                                        "read payload: range %" PRIu64 "+%" PRIu64
                                        " outside the payload",
                                        pos, len);
    const struct delta_priv *p = d->priv;
    size_t i = find_segment(d, pos);
    const size_t first = i;
    const uint64_t first_pos = pos;
    while (len > 0) {
        /* one read: segments i..j of one blob, ascending, gaps <= READ_GAP_MAX */
        uint64_t start, blob_end, want;
        size_t j = sl_plan_read_run(d->segments, d->n_segments, i, pos, len, READ_GAP_MAX, &start,
                                    &blob_end, &want);
        const struct sl_delta_layer *l = &d->layers[d->segments[i].layer];
        struct sl_plan_gap_filter g;
        sl_plan_gap_filter_init(&g, d->segments + i, start, want, sink, ud);
        int r = sl_core_fetch(core, p->reg, p->repo, l->digest, l->size, start, blob_end - start,
                              sl_plan_gap_filter_write, &g, err);
        if (r < 0)
            return sl_error_wrap(err, r, "read layer %s", l->digest);
        if (g.left != 0)
            return sl_error_make(err, EIO, "read layer %s: %" PRIu64 " bytes missing", l->digest,
                                 g.left);
        /* After the first run, so on an empty cache its blocks are fetched alone first
         * (first byte); the horizon counts from the read's start. */
        if (i == first)
            prefetch_ahead(core, d, first, first_pos);
        pos += want;
        len -= want;
        i = j + 1;
    }
    return 0;
}
