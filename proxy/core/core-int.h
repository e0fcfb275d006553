/* core-int.h — internals shared by the core's modules (not for the server). */
#ifndef SL_PROXY_CORE_INT_H
#define SL_PROXY_CORE_INT_H

#include "core.h"
#include "reference.h"
#include "registry.h"
#include "store.h"

#include <pthread.h>
#include <stdatomic.h>

struct reg_entry {
    char *host;
    bool insecure;
    struct sl_registry *reg;
};

struct sl_core {
    char *postgres;
    char *default_registry;
    bool default_insecure;
    char *docker_config;
    char *cache_dir;
    uint64_t cache_max_bytes;
    struct sl_store *store;
    void *cache; /* struct sl_blobcache when proxy/cache is built in */

    pthread_mutex_t reg_mu;
    struct reg_entry *regs;
    size_t n_regs;

    /* shared delta plans (core.c, "shared plans") */
    pthread_mutex_t plan_mu;
    pthread_cond_t plan_cv;
    struct plan_entry *plan_cache;
    uint64_t plan_tick;
    unsigned plans_running; /* at most PLAN_CONCURRENCY */

    /* plans computed ahead of the first request (core.c, "prewarm"); under plan_mu */
    pthread_cond_t prewarm_cv;
    pthread_t prewarm_thread;
    bool prewarm_started, prewarm_stop;
    struct prewarm_job *prewarm_queue;
    size_t prewarm_queued;

    /* periodic prune (prune.c); under prune_mu */
    pthread_mutex_t prune_mu;
    pthread_cond_t prune_cv;
    pthread_t prune_thread;
    bool prune_started, prune_stop;
    int64_t prune_interval_ms, prune_min_age_s;

    /* counters for /metrics */
    _Atomic uint64_t notifies, notify_errors, notify_ns, layers_ingested, layers_reused;
    _Atomic uint64_t reports, report_errors, report_accesses, report_ranked;
    _Atomic uint64_t plans, plan_errors, plan_ns, planned_bytes, saved_bytes, plans_shared;
    _Atomic uint64_t plans_prewarmed, prewarm_errors, prewarm_ns;
    _Atomic uint64_t fetches, fetch_errors, fetch_bytes, fetch_ns;
    _Atomic uint64_t prunes, prune_errors, prunes_periodic, pruned_images, pruned_layers;
    _Atomic uint64_t prune_unchecked;
};

/* Parses a reference, applying the default registry to short names ("redis:7",
 * "library/redis"), and says whether plain HTTP applies (`insecure` or the default registry's
 * setting). */
int sl_core_parse_ref(struct sl_core *core, const char *s, bool insecure, struct sl_image_ref *ret,
                      bool *ret_insecure, sl_error_t *err);

/* The shared registry client for host (created on first use, freed with the core). */
int sl_core_registry(struct sl_core *core, const char *host, bool insecure,
                     struct sl_registry **ret, sl_error_t *err);

/* "os/arch[/variant]" normalised (arm64/v8 → arm64); caller frees. -EINVAL when malformed. */
int sl_core_platform_normalize(const char *s, char **ret, sl_error_t *err);

/* Reads `len` bytes at `off` of a blob, through the blob cache when built in, else by a
 * registry Range request. */
int sl_core_fetch(struct sl_core *core, struct sl_registry *reg, const char *repo,
                  const char *digest, uint64_t blob_size, uint64_t off, uint64_t len,
                  sl_http_sink_fn sink, void *ud, sl_error_t *err);

uint64_t sl_core_now_ns(void);

/* Queues, for a background thread, the plan of a fresh pull of `to` for `platform` (no held
 * images or layers) into the shared-plan cache, so the first real request finds it. Bounded:
 * a full queue drops the job. Never blocks on the database. */
void sl_core_prewarm(struct sl_core *core, const char *to, const char *platform, bool insecure);

/* The periodic prune's thread (prune.c): started by sl_core_new when prune_interval_ms > 0,
 * stopped (a run in progress finishes first) by sl_core_free. */
int sl_core_prune_start(struct sl_core *core, sl_error_t *err);
void sl_core_prune_stop(struct sl_core *core);

#endif
