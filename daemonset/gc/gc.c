/* gc.c — the node's garbage collector (gc.h). */
#include "gc.h"
#include "store-gc.h"

#include "cleanup.h"
#include "config.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/statvfs.h>
#include <time.h>

#define HIGH_WATER_CHECK_S 30

struct sl_gc {
    struct sl_gc_options o;
    char *root;
    pthread_mutex_t run_lock; /* one collection at a time */
    pthread_mutex_t lock;     /* stop flag */
    pthread_cond_t cond;
    bool stop;
    pthread_t thread;
    bool running;
    struct sl_metric *m_runs, *m_freed, *m_layers, *m_contents;
};

int sl_gc_parse_high_water(const char *s, int64_t *ret_pct, uint64_t *ret_bytes, sl_error_t *err)
{
    *ret_pct = 0;
    *ret_bytes = 0;
    if (!s || !*s || strcmp(s, "0") == 0)
        return 0;
    size_t n = strlen(s);
    if (s[n - 1] == '%') {
        _cleanup_free_ char *num = sl_xstrndup(s, n - 1);
        int64_t v = 0;
        if (sl_parse_int(num, &v) < 0 || v < 1 || v > 99)
            return sl_error_make(err, EINVAL, "--gc-high-water `%s`: a percentage is 1%%..99%%", s);
        *ret_pct = v;
        return 0;
    }
    if (sl_parse_size(s, ret_bytes) < 0)
        return sl_error_make(err, EINVAL,
                             "--gc-high-water `%s`: expected N%% or a size such as 200GiB", s);
    return 0;
}

void sl_gc_report_clear(struct sl_gc_report *r)
{
    if (!r)
        return;
    free(r->removed);
    memset(r, 0, sizeof *r);
}

static bool in_set(char **v, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

/* Layer digests some snapshot labels (gc.h, reference 1). */
static int snapshot_refs(struct sl_gc *gc, char ***ret, size_t *ret_n, sl_error_t *err)
{
    *ret = NULL;
    *ret_n = 0;
    if (!gc->o.snap)
        return 0;
    static const char *const filters[] = {"labels.\"" SL_SNAP_LABEL_STARLIGHT_LAYER "\""};
    struct sl_snap_info_list l = {0};
    int r = sl_snap_list(gc->o.snap, filters, 1, &l, err);
    if (r < 0)
        return sl_error_wrap(err, r, "gc: list snapshots");
    char **v = NULL;
    size_t n = 0;
    for (size_t i = 0; i < l.n; i++)
        for (size_t k = 0; k < l.v[i].nlabels; k++)
            if (strcmp(l.v[i].labels[k].key, SL_SNAP_LABEL_STARLIGHT_LAYER) == 0 &&
                !in_set(v, n, l.v[i].labels[k].value)) {
                v = sl_xrealloc(v, (n + 1) * sizeof *v);
                v[n++] = sl_xstrdup(l.v[i].labels[k].value);
            }
    sl_snap_info_list_clear(&l);
    *ret = v;
    *ret_n = n;
    return 0;
}

/* The whole of /proc/self/mountinfo (reference 2), or NULL. */
static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static char *read_mountinfo(void)
{
    FILE *f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, len = 0;
    char *buf = sl_xmalloc(cap);
    size_t k;
    while ((k = fread(buf + len, 1, cap - len - 1, f)) > 0) {
        len += k;
        if (cap - len < 4096)
            buf = sl_xrealloc(buf, cap *= 2);
    }
    fclose(f);
    buf[len] = 0;
    return buf;
}

int sl_gc_run(struct sl_gc *gc, int64_t grace_s, struct sl_gc_report *rep, sl_error_t *err)
{
    memset(rep, 0, sizeof *rep);
    if (grace_s < 0)
        grace_s = gc->o.grace_s;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    pthread_mutex_lock(&gc->run_lock);
    if (gc->o.mat)
        sl_mat_hold(gc->o.mat); /* no tree is being built meanwhile */
    char **refs = NULL;
    size_t n_refs = 0;
    struct sl_store_layer_info *infos = NULL;
    size_t n_infos = 0;
    char **aside = NULL;
    size_t n_aside = 0;
    double t_start = mono_s(), t_layers = t_start, t_contents = t_start;
    _cleanup_free_ char *mounts = read_mountinfo();
    int r = snapshot_refs(gc, &refs, &n_refs, err);
    if (r >= 0 && !mounts)
        r = sl_error_make(err, EIO, "gc: cannot read /proc/self/mountinfo");
    if (r >= 0) {
        /* Exclusive: no content is loaded or expected and no layer recorded meanwhile; the
         * records' age is read inside, so a layer a pull records now is seen as fresh. */
        sl_store_gc_lock(gc->o.store, true);
        r = sl_store_layer_infos(gc->o.store, &infos, &n_infos, err);
        int64_t now = (int64_t)time(NULL);
        for (size_t i = 0; r >= 0 && i < n_infos; i++) {
            const char *d = infos[i].digest;
            bool keep = in_set(refs, n_refs, d) || strstr(mounts, d + 7) != NULL ||
                        infos[i].recorded > now - grace_s ||
                        sl_store_layer_pinned(gc->o.store, d); /* an in-flight pull's */
            if (keep) {
                rep->layers_kept++;
                continue;
            }
            r = sl_store_layer_forget(gc->o.store, d, err);
            if (r == -ENOENT) {
                r = 0;
                continue;
            }
            if (r < 0)
                break;
            rep->resume_removed += (uint64_t)r;
            rep->removed = sl_xrealloc(rep->removed, (rep->n_removed + 1) * sizeof *rep->removed);
            snprintf(rep->removed[rep->n_removed++], sizeof *rep->removed, "%s", d);
            /* Leaves the FUSE tree under the lock, so a pull recording the layer again after
             * it publishes it anew. No mount uses it (mountinfo above); files still open there
             * keep their tree until released. */
            if (gc->o.fs) {
                _cleanup_error_ sl_error_t e = NULL;
                int k = sl_fs_remove_layer(gc->o.fs, d, &e);
                if (k < 0 && k != -ENOENT)
                    log_warn("gc: %s", sl_error_msg(e, k));
            }
            char *p = gc->o.mat ? sl_mat_unpublish(gc->o.mat, d) : NULL;
            if (p) {
                aside = sl_xrealloc(aside, (n_aside + 1) * sizeof *aside);
                aside[n_aside++] = p;
            }
        }
        /* points of pulls older than this change name no layer: judged by age alone */
        uint64_t unlinked = 0;
        if (r >= 0)
            r = sl_store_resume_prune_unlinked(gc->o.store, now - grace_s, &unlinked, err);
        rep->resume_removed += unlinked;
        struct sl_store_gc_result cr = {0};
        t_layers = mono_s();
        if (r >= 0)
            r = sl_store_gc_contents(gc->o.store, &cr, err);
        t_contents = mono_s();
        sl_store_gc_unlock(gc->o.store);
        rep->contents_removed = cr.contents_removed;
        rep->contents_busy = cr.contents_busy;
        rep->files_swept = cr.files_swept;
        rep->bytes_freed = cr.bytes_freed;
    }
    /* The fs frees removed trees outside the store's lock: it waits for its workers, and a
     * worker may be opening a content (which takes that lock shared). */
    if (gc->o.fs)
        sl_fs_reclaim(gc->o.fs);
    /* Trees moved aside are deleted without any lock: their links to removed contents were the
     * last ones, so their blocks are counted here. */
    for (size_t i = 0; i < n_aside; i++) {
        rep->bytes_freed += sl_mat_purge(aside[i]);
        free(aside[i]);
    }
    free(aside);
    if (gc->o.mat)
        sl_mat_release(gc->o.mat);
    pthread_mutex_unlock(&gc->run_lock);
    for (size_t i = 0; i < n_refs; i++)
        free(refs[i]);
    free(refs);
    free(infos);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    rep->seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    if (gc->m_runs)
        sl_metric_add(gc->m_runs, r < 0 ? "result=\"error\"" : "result=\"ok\"", 1);
    if (r < 0)
        return r;
    if (gc->m_freed) {
        sl_metric_add(gc->m_freed, NULL, (double)rep->bytes_freed);
        sl_metric_add(gc->m_layers, NULL, (double)rep->n_removed);
        sl_metric_add(gc->m_contents, NULL, (double)rep->contents_removed);
    }
    log_info("gc: %zu layers removed, %llu kept; %llu contents removed (%llu busy), %llu stray "
             "files, %llu resume points; %llu bytes freed in %.3f s (layers %.3f s, contents "
             "%.3f s, trees %.3f s)",
             rep->n_removed, (unsigned long long)rep->layers_kept,
             (unsigned long long)rep->contents_removed, (unsigned long long)rep->contents_busy,
             (unsigned long long)rep->files_swept, (unsigned long long)rep->resume_removed,
             (unsigned long long)rep->bytes_freed, rep->seconds, t_layers - t_start,
             t_contents - t_layers, mono_s() - t_contents);
    return 0;
}

int sl_gc_control(void *ud, int64_t grace_s, char **ret_json, sl_error_t *err)
{
    struct sl_gc_report rep;
    int r = sl_gc_run(ud, grace_s, &rep, err);
    if (r < 0)
        return r;
    json_auto_t *removed = json_array();
    for (size_t i = 0; i < rep.n_removed; i++)
        json_array_append_new(removed, json_string(rep.removed[i]));
    json_auto_t *j = json_pack(
        "{s:O,s:I,s:I,s:I,s:I,s:I,s:I,s:f}", "layersRemoved", removed, "layersKept",
        (json_int_t)rep.layers_kept, "contentsRemoved", (json_int_t)rep.contents_removed,
        "contentsBusy", (json_int_t)rep.contents_busy, "filesSwept", (json_int_t)rep.files_swept,
        "resumePointsRemoved", (json_int_t)rep.resume_removed, "bytesFreed",
        (json_int_t)rep.bytes_freed, "seconds", rep.seconds);
    sl_gc_report_clear(&rep);
    *ret_json = json_dumps(j, JSON_COMPACT);
    return *ret_json ? 0 : sl_error_make(err, ENOMEM, "gc: report");
}

/* True when the root's filesystem is used beyond the mark. */
static bool above_high_water(struct sl_gc *gc, double *ret_pct, uint64_t *ret_used)
{
    struct statvfs sv;
    if (statvfs(gc->root, &sv) < 0 || sv.f_blocks == 0)
        return false;
    uint64_t used = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
    double pct = 100.0 * (double)(sv.f_blocks - sv.f_bfree) /
                 (double)(sv.f_blocks - sv.f_bfree + sv.f_bavail);
    *ret_pct = pct;
    *ret_used = used;
    if (gc->o.high_water_pct > 0 && pct >= (double)gc->o.high_water_pct)
        return true;
    return gc->o.high_water_bytes > 0 && used >= gc->o.high_water_bytes;
}

static void *gc_thread(void *arg)
{
    struct sl_gc *gc = arg;
    bool high = gc->o.high_water_pct > 0 || gc->o.high_water_bytes > 0;
    int64_t step = high ? HIGH_WATER_CHECK_S : gc->o.interval_s;
    if (gc->o.interval_s > 0 && gc->o.interval_s < step)
        step = gc->o.interval_s;
    int64_t since = 0;
    pthread_mutex_lock(&gc->lock);
    while (!gc->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_sec += (time_t)step;
        pthread_cond_timedwait(&gc->cond, &gc->lock, &ts);
        if (gc->stop)
            break;
        pthread_mutex_unlock(&gc->lock);
        since += step;
        double pct = 0;
        uint64_t used = 0;
        const char *why = NULL;
        if (gc->o.interval_s > 0 && since >= gc->o.interval_s)
            why = "periodic";
        else if (high && above_high_water(gc, &pct, &used))
            why = "high water";
        if (why) {
            since = 0;
            if (strcmp(why, "high water") == 0)
                log_info("gc: %.1f%% (%llu bytes) of the filesystem of %s used: collecting", pct,
                         (unsigned long long)used, gc->root);
            struct sl_gc_report rep;
            _cleanup_error_ sl_error_t err = NULL;
            int r = sl_gc_run(gc, -1, &rep, &err);
            if (r < 0)
                log_warn("gc (%s): %s", why, sl_error_msg(err, r));
            else
                sl_gc_report_clear(&rep);
        }
        pthread_mutex_lock(&gc->lock);
    }
    pthread_mutex_unlock(&gc->lock);
    return NULL;
}

int sl_gc_new(const struct sl_gc_options *o, struct sl_gc **ret, sl_error_t *err)
{
    struct sl_gc *gc = sl_xcalloc(1, sizeof *gc);
    gc->o = *o;
    gc->root = sl_xstrdup(o->root ? o->root : sl_store_root(o->store));
    gc->o.root = gc->root;
    pthread_mutex_init(&gc->run_lock, NULL);
    pthread_mutex_init(&gc->lock, NULL);
    pthread_cond_init(&gc->cond, NULL);
    if (o->metrics) {
        gc->m_runs = sl_metrics_counter(o->metrics, "starlight_gc_runs_total",
                                        "Garbage collections of the node's store");
        sl_metric_add(gc->m_runs, "result=\"ok\"", 0);
        sl_metric_add(gc->m_runs, "result=\"error\"", 0);
        gc->m_freed = sl_metrics_counter(o->metrics, "starlight_gc_bytes_freed_total",
                                         "Disk bytes released by garbage collection");
        gc->m_layers = sl_metrics_counter(o->metrics, "starlight_gc_layers_removed_total",
                                          "Layer records removed by garbage collection");
        gc->m_contents = sl_metrics_counter(o->metrics, "starlight_gc_contents_removed_total",
                                            "Contents removed by garbage collection");
        sl_metric_add(gc->m_freed, NULL, 0);
        sl_metric_add(gc->m_layers, NULL, 0);
        sl_metric_add(gc->m_contents, NULL, 0);
    }
    bool autoon =
        o->automatic && (o->interval_s > 0 || o->high_water_pct > 0 || o->high_water_bytes > 0);
    if (autoon) {
        int r = pthread_create(&gc->thread, NULL, gc_thread, gc);
        if (r != 0) {
            sl_gc_free(gc);
            return sl_error_make(err, r, "gc: thread: %s", strerror(r));
        }
        gc->running = true;
    }
    *ret = gc;
    return 0;
}

void sl_gc_free(struct sl_gc *gc)
{
    if (!gc)
        return;
    if (gc->running) {
        pthread_mutex_lock(&gc->lock);
        gc->stop = true;
        pthread_cond_signal(&gc->cond);
        pthread_mutex_unlock(&gc->lock);
        pthread_join(gc->thread, NULL);
    }
    pthread_mutex_destroy(&gc->run_lock);
    pthread_mutex_destroy(&gc->lock);
    pthread_cond_destroy(&gc->cond);
    free(gc->root);
    free(gc);
}
