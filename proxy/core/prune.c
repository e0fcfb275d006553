/* prune.c — rows of images deleted from the registry (core.h, sl_core_prune), on request and
 * periodically (a thread of its own, never the server's event loop). The database work is in
 * store.c (the only file that speaks libpq); this file asks the registry. */
#include "core-int.h"

#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <string.h>
#include <time.h>

/* Default minimum age of a layer without image before it is deleted: a notify ingests its layers
 * first and records the image after. */
#define PRUNE_LAYER_MIN_AGE_S 600

/* 1 when the registry says the manifest is gone (404), 0 when it is there, < 0 when it could
 * not be asked. HEAD only (nothing downloaded, no pull counted against rate limits); GET only
 * when the registry refuses HEAD. */
static int manifest_gone(struct sl_core *core, const struct sl_store_image_row *row, bool insecure,
                         sl_error_t *err)
{
    _cleanup_free_ char *ref_s = sl_xasprintf("%s@%s", row->repository, row->digest);
    struct sl_image_ref ref = {0};
    bool ins = false;
    int r = sl_core_parse_ref(core, ref_s, insecure, &ref, &ins, err);
    struct sl_registry *reg = NULL;
    if (r >= 0)
        r = sl_core_registry(core, ref.domain, ins, &reg, err);
    if (r >= 0) {
        r = sl_registry_head_manifest(reg, ref.path, row->digest, err);
        if (r >= 0) {
            sl_image_ref_free(&ref);
            return r == 0;
        }
    }
    if (r == -EOPNOTSUPP) {
        if (err)
            sl_error_free(err);
        struct sl_registry_manifest m = {0};
        r = sl_registry_get_manifest(reg, ref.path, row->digest, &m, err);
        sl_registry_manifest_free(&m);
    }
    sl_image_ref_free(&ref);
    if (r == -ENOENT)
        return 1;
    return r < 0 ? r : 0;
}

static bool stopping(struct sl_core *core)
{
    pthread_mutex_lock(&core->prune_mu);
    bool stop = core->prune_stop;
    pthread_mutex_unlock(&core->prune_mu);
    return stop;
}

int sl_core_prune(struct sl_core *core, bool insecure, int64_t min_age_s, json_t **ret,
                  sl_error_t *err)
{
    if (min_age_s < 0)
        min_age_s = PRUNE_LAYER_MIN_AGE_S;
    struct sl_store_image_row *rows = NULL;
    size_t n = 0;
    atomic_fetch_add(&core->prunes, 1);
    _cleanup_free_ char *asof = NULL;
    int r = sl_store_image_rows(core->store, &rows, &n, &asof, err);
    if (r < 0) {
        atomic_fetch_add(&core->prune_errors, 1);
        return sl_error_wrap(err, r, "prune");
    }
    int64_t *gone = sl_xcalloc(n + 1, sizeof(*gone));
    size_t n_gone = 0, unchecked = 0;
    json_t *removed = json_array();
    for (size_t i = 0; i < n; i++) {
        if (stopping(core)) { /* shutting down: delete nothing, the next start checks again */
            json_decref(removed);
            free(gone);
            sl_store_image_rows_free(rows, n);
            return sl_error_make(err, ECANCELED, "prune: stopped after %zu of %zu images", i, n);
        }
        _cleanup_error_ sl_error_t e = NULL;
        int g = manifest_gone(core, &rows[i], insecure, &e);
        if (g < 0) {
            unchecked++;
            log_warn("prune: %s@%s kept: %s", rows[i].repository, rows[i].digest,
                     sl_error_msg(e, g));
        } else if (g > 0) {
            gone[n_gone++] = rows[i].id;
            json_array_append_new(removed,
                                  json_sprintf("%s@%s", rows[i].repository, rows[i].digest));
        }
    }
    size_t layers = 0;
    r = sl_store_prune(core->store, gone, n_gone, asof, min_age_s, &layers, err);
    atomic_fetch_add(&core->prune_unchecked, unchecked);
    if (r < 0) {
        atomic_fetch_add(&core->prune_errors, 1);
        json_decref(removed);
        free(gone);
        sl_store_image_rows_free(rows, n);
        return sl_error_wrap(err, r, "prune");
    }
    atomic_fetch_add(&core->pruned_images, n_gone);
    atomic_fetch_add(&core->pruned_layers, layers);
    log_info("prune: %zu images checked, %zu removed (gone from the registry), %zu layers "
             "removed, %zu not checked",
             n, n_gone, layers, unchecked);
    *ret = json_pack("{s:I,s:o,s:I,s:I}", "imagesChecked", (json_int_t)n, "imagesRemoved", removed,
                     "layersRemoved", (json_int_t)layers, "unchecked", (json_int_t)unchecked);
    free(gone);
    sl_store_image_rows_free(rows, n);
    return 0;
}

static void *prune_main(void *arg)
{
    struct sl_core *core = arg;
    pthread_mutex_lock(&core->prune_mu);
    for (;;) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        int64_t ns = ts.tv_nsec + (core->prune_interval_ms % 1000) * 1000000;
        ts.tv_sec += (time_t)(core->prune_interval_ms / 1000 + ns / 1000000000);
        ts.tv_nsec = (long)(ns % 1000000000);
        while (!core->prune_stop &&
               pthread_cond_timedwait(&core->prune_cv, &core->prune_mu, &ts) != ETIMEDOUT)
            ;
        if (core->prune_stop)
            break;
        pthread_mutex_unlock(&core->prune_mu);
        atomic_fetch_add(&core->prunes_periodic, 1);
        json_t *ans = NULL;
        _cleanup_error_ sl_error_t e = NULL;
        /* plain HTTP only where the configuration says so (the default registry's setting) */
        int r = sl_core_prune(core, false, core->prune_min_age_s, &ans, &e);
        if (r < 0)
            log_warn("periodic prune: %s (next in %lld ms)", sl_error_msg(e, r),
                     (long long)core->prune_interval_ms);
        json_decref(ans);
        pthread_mutex_lock(&core->prune_mu);
    }
    pthread_mutex_unlock(&core->prune_mu);
    return NULL;
}

int sl_core_prune_start(struct sl_core *core, sl_error_t *err)
{
    if (core->prune_interval_ms <= 0 || core->prune_started)
        return 0;
    int r = pthread_create(&core->prune_thread, NULL, prune_main, core);
    if (r != 0)
        return sl_error_make(err, r, "periodic prune: thread: %s", strerror(r));
    core->prune_started = true;
    log_info("periodic prune every %lld ms (layers older than %lld s)",
             (long long)core->prune_interval_ms, (long long)core->prune_min_age_s);
    return 0;
}

void sl_core_prune_stop(struct sl_core *core)
{
    if (!core->prune_started)
        return;
    pthread_mutex_lock(&core->prune_mu);
    core->prune_stop = true;
    pthread_cond_broadcast(&core->prune_cv);
    pthread_mutex_unlock(&core->prune_mu);
    pthread_join(core->prune_thread, NULL);
    core->prune_started = false;
}
