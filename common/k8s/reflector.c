/* reflector.c — list+watch state machine, watch-stream splitter and the local cache. */
#include "reflector.h"
#include "k8s-internal.h"

#include "cleanup.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EMPTY_STREAMS_RELIST 3 /* streams in a row ending at once with nothing → relist */

/* ---- line splitter ----------------------------------------------------------------------------
 */

int sl_k8s_lines_feed(struct sl_k8s_lines *l, const char *data, size_t len,
                      int (*fn)(void *ud, const char *line, size_t len), void *ud)
{
    size_t max = l->max ? l->max : SL_K8S_WATCH_LINE_MAX;
    while (len > 0) {
        const char *nl = memchr(data, '\n', len);
        size_t take = nl ? (size_t)(nl - data) : len;
        if (l->len + take > max) {
            l->len = 0;
            return -EFBIG;
        }
        if (l->len + take + 1 > l->cap) {
            size_t cap = l->cap ? l->cap : 4096;
            while (cap < l->len + take + 1)
                cap *= 2;
            l->buf = sl_xrealloc(l->buf, cap);
            l->cap = cap;
        }
        memcpy(l->buf + l->len, data, take);
        l->len += take;
        data += take + (nl ? 1 : 0);
        len -= take + (nl ? 1 : 0);
        if (!nl)
            break;
        size_t n = l->len;
        l->len = 0;
        while (n > 0 && l->buf[n - 1] == '\r')
            n--;
        if (n == 0)
            continue;
        l->buf[n] = 0;
        int r = fn(ud, l->buf, n);
        if (r != 0)
            return r;
    }
    return 0;
}

void sl_k8s_lines_free(struct sl_k8s_lines *l)
{
    free(l->buf);
    *l = (struct sl_k8s_lines){.max = l->max};
}

int sl_k8s_watch_event_parse(const char *line, size_t len, json_t **ret_event,
                             const char **ret_type, json_t **ret_obj, sl_error_t *err)
{
    json_t *ev = NULL;
    int r = sl_json_parse(line, len, SL_K8S_WATCH_LINE_MAX, "watch event", &ev, err);
    if (r < 0)
        return r;
    const char *type = json_string_value(json_object_get(ev, "type"));
    json_t *obj = json_object_get(ev, "object");
    if (!json_is_object(ev) || !type || !json_is_object(obj)) {
        json_decref(ev);
        return sl_error_make(err, EINVAL, "watch event: expected {\"type\":…,\"object\":{…}}");
    }
    if (strcmp(type, "ADDED") && strcmp(type, "MODIFIED") && strcmp(type, "DELETED") &&
        strcmp(type, "BOOKMARK") && strcmp(type, "ERROR")) {
        r = sl_error_make(err, EINVAL, "watch event: unknown type `%.32s`", type);
        json_decref(ev);
        return r;
    }
    *ret_event = ev;
    *ret_type = type;
    *ret_obj = obj;
    return 0;
}

/* ---- reflector ---------------------------------------------------------------------------- */

struct sl_k8s_reflector {
    struct sl_k8s_client *client;
    char *path, *label_selector, *field_selector, *name;
    unsigned tmin, tmax, backoff_ms, backoff_max_ms;
    struct sl_k8s_reflector_callbacks cbs;

    pthread_mutex_t lock; /* cache, rv, stats, synced */
    pthread_cond_t cond;
    json_t *cache; /* key → object */
    char *rv;
    bool resume; /* first step: watch from rv (options.resume_rv) */
    bool synced;
    struct sl_k8s_reflector_stats stats;

    struct sl_k8s_lines lines;
    volatile int stop;
    bool thread_started;
    pthread_t thread;

    /* per-stream state */
    int stream_result; /* SL_K8S_WATCH_* or negative */
    sl_error_t stream_err;
    uint64_t stream_events;
};

static char *dupn(const char *s)
{
    return s && s[0] ? sl_xstrdup(s) : NULL;
}

int sl_k8s_reflector_new(struct sl_k8s_client *c, const struct sl_k8s_reflector_options *opts,
                         const struct sl_k8s_reflector_callbacks *cbs,
                         struct sl_k8s_reflector **ret, sl_error_t *err)
{
    if (!opts || !opts->path || opts->path[0] != '/')
        return sl_error_make(err, EINVAL, "reflector: a collection path is required");
    struct sl_k8s_reflector *r = sl_xcalloc(1, sizeof(*r));
    r->client = c;
    r->path = sl_xstrdup(opts->path);
    r->label_selector = dupn(opts->label_selector);
    r->field_selector = dupn(opts->field_selector);
    r->name = sl_xstrdup(opts->name ? opts->name : opts->path);
    r->tmin = opts->timeout_min_s ? opts->timeout_min_s : 300;
    r->tmax = opts->timeout_max_s ? opts->timeout_max_s : 600;
    if (r->tmax < r->tmin)
        r->tmax = r->tmin;
    r->backoff_ms = opts->backoff_ms ? opts->backoff_ms : 800;
    r->backoff_max_ms = opts->backoff_max_ms ? opts->backoff_max_ms : 30000;
    if (cbs)
        r->cbs = *cbs;
    r->cache = json_object();
    r->rv = dupn(opts->resume_rv);
    r->resume = r->rv != NULL;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    *ret = r;
    return 0;
}

void sl_k8s_reflector_free(struct sl_k8s_reflector *r)
{
    if (!r)
        return;
    sl_k8s_reflector_stop(r);
    json_decref(r->cache);
    free(r->path);
    free(r->label_selector);
    free(r->field_selector);
    free(r->name);
    free(r->rv);
    sl_k8s_lines_free(&r->lines);
    sl_error_free(&r->stream_err);
    pthread_mutex_destroy(&r->lock);
    pthread_cond_destroy(&r->cond);
    free(r);
}

static char *obj_key(const json_t *obj)
{
    const char *ns = sl_k8s_meta_str(obj, "namespace"), *name = sl_k8s_meta_str(obj, "name");
    if (!name || !name[0])
        return NULL;
    if (ns && ns[0])
        return sl_xasprintf("%s/%s", ns, name);
    return sl_xstrdup(name);
}

static void set_rv(struct sl_k8s_reflector *r, const char *rv)
{
    if (!rv || !rv[0])
        return;
    pthread_mutex_lock(&r->lock);
    free(r->rv);
    r->rv = sl_xstrdup(rv);
    pthread_mutex_unlock(&r->lock);
}

int sl_k8s_reflector_apply_list(struct sl_k8s_reflector *r, const json_t *list, sl_error_t *err)
{
    const json_t *items = json_object_get(list, "items");
    if (!json_is_object(list) || !(json_is_array(items) || !items || json_is_null(items)))
        return sl_error_make(err, EINVAL, "%s: list answer is not a List", r->name);
    json_t *fresh = json_object();
    size_t i;
    json_t *it;
    json_array_foreach(items, i, it)
    {
        _cleanup_free_ char *k = json_is_object(it) ? obj_key(it) : NULL;
        if (k)
            json_object_set(fresh, k, it);
    }
    /* Diff old → new under the lock, call back outside it. */
    json_t *adds = json_array(), *upds = json_array(), *dels = json_array();
    pthread_mutex_lock(&r->lock);
    const char *k;
    json_t *v;
    json_object_foreach(fresh, k, v)
    {
        json_t *old = json_object_get(r->cache, k);
        if (!old) {
            json_array_append(adds, v);
        } else {
            const char *a = sl_k8s_meta_str(old, "resourceVersion");
            const char *b = sl_k8s_meta_str(v, "resourceVersion");
            if (!a || !b || strcmp(a, b) != 0) {
                json_t *pair = json_pack("[OO]", old, v);
                json_array_append_new(upds, pair);
            }
        }
    }
    json_object_foreach(r->cache, k, v)
    {
        if (!json_object_get(fresh, k))
            json_array_append(dels, v);
    }
    json_decref(r->cache);
    r->cache = fresh;
    r->stats.lists++;
    r->stats.synthesized_deletes += json_array_size(dels);
    pthread_mutex_unlock(&r->lock);
    set_rv(r, json_string_value(
                  json_object_get(json_object_get(list, "metadata"), "resourceVersion")));
    json_array_foreach(adds, i, it) if (r->cbs.on_add) r->cbs.on_add(r->cbs.userdata, it);
    json_array_foreach(upds, i, it) if (r->cbs.on_update)
        r->cbs.on_update(r->cbs.userdata, json_array_get(it, 0), json_array_get(it, 1));
    json_array_foreach(dels, i, it) if (r->cbs.on_delete) r->cbs.on_delete(r->cbs.userdata, it);
    json_decref(adds);
    json_decref(upds);
    json_decref(dels);
    pthread_mutex_lock(&r->lock);
    r->synced = true;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    if (r->cbs.on_synced)
        r->cbs.on_synced(r->cbs.userdata);
    return 0;
}

int sl_k8s_reflector_apply_event(struct sl_k8s_reflector *r, const char *type, const json_t *obj,
                                 sl_error_t *err)
{
    if (strcmp(type, "ERROR") == 0) {
        json_int_t code = json_integer_value(json_object_get(obj, "code"));
        const char *msg = json_string_value(json_object_get(obj, "message"));
        const char *reason = json_string_value(json_object_get(obj, "reason"));
        pthread_mutex_lock(&r->lock);
        r->stats.errors++;
        pthread_mutex_unlock(&r->lock);
        if (code == 410 ||
            (reason && (strcmp(reason, "Expired") == 0 || strcmp(reason, "Gone") == 0))) {
            log_debug("k8s %s: watch ERROR 410 (%s): relist", r->name, msg ? msg : "");
            return SL_K8S_WATCH_RELIST;
        }
        return sl_error_make(err, EIO, "%s: watch ERROR event %lld %s: %s", r->name,
                             (long long)code, reason ? reason : "", msg ? msg : "");
    }
    const char *rv = sl_k8s_meta_str(obj, "resourceVersion");
    if (strcmp(type, "BOOKMARK") == 0) {
        set_rv(r, rv);
        pthread_mutex_lock(&r->lock);
        r->stats.bookmarks++;
        pthread_mutex_unlock(&r->lock);
        return SL_K8S_WATCH_CONTINUE;
    }
    _cleanup_free_ char *k = obj_key(obj);
    if (!k)
        return sl_error_make(err, EINVAL, "%s: %s event object has no metadata.name", r->name,
                             type);
    json_t *old = NULL;
    bool del = strcmp(type, "DELETED") == 0;
    pthread_mutex_lock(&r->lock);
    old = json_incref(json_object_get(r->cache, k));
    if (del)
        json_object_del(r->cache, k);
    else
        json_object_set(r->cache, k, (json_t *)obj);
    r->stats.events++;
    r->stream_events++;
    pthread_mutex_unlock(&r->lock);
    set_rv(r, rv);
    if (del) {
        if (r->cbs.on_delete)
            r->cbs.on_delete(r->cbs.userdata, obj);
    } else if (old) {
        /* MODIFIED, or an ADDED for an object we already had (replayed after a re-watch) */
        const char *a = sl_k8s_meta_str(old, "resourceVersion");
        if (r->cbs.on_update && !(a && rv && strcmp(a, rv) == 0))
            r->cbs.on_update(r->cbs.userdata, old, obj);
    } else if (r->cbs.on_add) {
        r->cbs.on_add(r->cbs.userdata, obj);
    }
    json_decref(old);
    return SL_K8S_WATCH_CONTINUE;
}

static int line_cb(void *ud, const char *line, size_t len)
{
    struct sl_k8s_reflector *r = ud;
    json_t *ev = NULL, *obj = NULL;
    const char *type = NULL;
    sl_error_free(&r->stream_err);
    int x = sl_k8s_watch_event_parse(line, len, &ev, &type, &obj, &r->stream_err);
    if (x < 0)
        return x;
    x = sl_k8s_reflector_apply_event(r, type, obj, &r->stream_err);
    json_decref(ev);
    return x; /* 0 continues; RELIST (1) or an error stops the splitter */
}

int sl_k8s_reflector_feed(struct sl_k8s_reflector *r, const char *data, size_t len, sl_error_t *err)
{
    int x = sl_k8s_lines_feed(&r->lines, data, len, line_cb, r);
    if (x == -EFBIG)
        return sl_error_make(err, EFBIG, "%s: watch event longer than %u bytes", r->name,
                             SL_K8S_WATCH_LINE_MAX);
    if (x < 0) {
        if (err) {
            sl_error_free(err);
            *err = r->stream_err;
            r->stream_err = NULL;
        }
        sl_error_free(&r->stream_err);
        return x;
    }
    return x;
}

void sl_k8s_reflector_reset_stream(struct sl_k8s_reflector *r)
{
    r->lines.len = 0;
}

/* ---- the loop ------------------------------------------------------------------------------- */

static int stream_sink(void *ud, const void *data, size_t len)
{
    struct sl_k8s_reflector *r = ud;
    if (r->stop)
        return SL_HTTP_SINK_STOP;
    sl_error_t e = NULL;
    int x = sl_k8s_reflector_feed(r, data, len, &e);
    if (x == SL_K8S_WATCH_RELIST) {
        r->stream_result = SL_K8S_WATCH_RELIST;
        return SL_HTTP_SINK_STOP;
    }
    if (x < 0) {
        r->stream_result = x;
        sl_error_free(&r->stream_err);
        r->stream_err = e;
        return SL_HTTP_SINK_STOP;
    }
    return r->stop ? SL_HTTP_SINK_STOP : 0;
}

static int64_t backoff(const struct sl_k8s_reflector *r, int k)
{
    int64_t d = r->backoff_ms;
    for (int i = 0; i < k && d < r->backoff_max_ms; i++)
        d *= 2;
    if (d > r->backoff_max_ms)
        d = r->backoff_max_ms;
    return d / 2 + (int64_t)(sl_k8s_rand() % (uint64_t)(d / 2 + 1));
}

static int do_list(struct sl_k8s_reflector *r, sl_error_t *err)
{
    const char *kv[] = {"labelSelector", r->label_selector, "fieldSelector", r->field_selector,
                        NULL};
    _cleanup_free_ char *q = sl_k8s_query(kv);
    json_t *items = NULL;
    _cleanup_free_ char *rv = NULL;
    int x = sl_k8s_list(r->client, r->path, q, &items, &rv, err);
    if (x < 0)
        return x;
    json_t *list = json_pack("{s:o,s:{s:s?}}", "items", items, "metadata", "resourceVersion", rv);
    x = sl_k8s_reflector_apply_list(r, list, err);
    json_decref(list);
    return x;
}

/* One watch. Returns SL_K8S_WATCH_CONTINUE (ended normally: re-watch), SL_K8S_WATCH_RELIST,
 * or a negative errno (re-watch after backoff). */
static int do_watch(struct sl_k8s_reflector *r, sl_error_t *err)
{
    unsigned t = r->tmin + (unsigned)(sl_k8s_rand() % (uint64_t)(r->tmax - r->tmin + 1));
    char ts[16];
    snprintf(ts, sizeof(ts), "%u", t);
    _cleanup_free_ char *rv = sl_k8s_reflector_resource_version(r);
    const char *kv[] = {"labelSelector",
                        r->label_selector,
                        "fieldSelector",
                        r->field_selector,
                        "resourceVersion",
                        rv,
                        "allowWatchBookmarks",
                        "true",
                        "timeoutSeconds",
                        ts,
                        "watch",
                        "true",
                        NULL};
    _cleanup_free_ char *q = sl_k8s_query(kv);
    sl_k8s_reflector_reset_stream(r);
    r->stream_result = SL_K8S_WATCH_CONTINUE;
    r->stream_events = 0;
    sl_error_free(&r->stream_err);
    long status = 0;
    /* idle guard a little above the server's timeout catches half-dead connections */
    int x = sl_k8s_stream(r->client, r->path, q, t + 30, stream_sink, r, &r->stop, &status, err);
    if (status == 200) {
        pthread_mutex_lock(&r->lock);
        r->stats.watches++;
        pthread_mutex_unlock(&r->lock);
    }
    if (r->stream_result == SL_K8S_WATCH_RELIST)
        return SL_K8S_WATCH_RELIST;
    if (r->stream_result < 0) {
        sl_error_free(err);
        if (err)
            *err = TAKE_PTR(r->stream_err);
        return r->stream_result;
    }
    if (x == -ETIME || status == 410)
        return SL_K8S_WATCH_RELIST;
    return x < 0 ? x : SL_K8S_WATCH_CONTINUE;
}

int sl_k8s_reflector_run(struct sl_k8s_reflector *r)
{
    bool need_list = !r->resume;
    int failures = 0, empty_streams = 0;
    if (r->resume)
        log_info("k8s %s: resuming the watch from resourceVersion %s", r->name, r->rv);
    while (!r->stop) {
        sl_error_t e = NULL;
        if (need_list) {
            int x = do_list(r, &e);
            if (x < 0) {
                log_warn("k8s %s: list: %s", r->name, sl_error_msg(e, x));
                sl_error_free(&e);
                pthread_mutex_lock(&r->lock);
                r->stats.errors++;
                pthread_mutex_unlock(&r->lock);
                sl_k8s_sleep_ms(backoff(r, failures++), &r->stop);
                continue;
            }
            need_list = false;
            failures = 0;
            empty_streams = 0;
        }
        int64_t t0 = sl_k8s_now_ms();
        int x = do_watch(r, &e);
        if (r->stop) {
            sl_error_free(&e);
            break;
        }
        if (x == SL_K8S_WATCH_RELIST) {
            sl_error_free(&e); /* an HTTP 410 leaves its Status in e */
            log_info("k8s %s: resourceVersion expired (410): relisting", r->name);
            pthread_mutex_lock(&r->lock);
            r->stats.relists_410++;
            pthread_mutex_unlock(&r->lock);
            need_list = true;
            sl_k8s_sleep_ms(backoff(r, 0), &r->stop);
            continue;
        }
        if (x < 0) {
            log_warn("k8s %s: watch: %s (re-watching)", r->name, sl_error_msg(e, x));
            sl_error_free(&e);
            pthread_mutex_lock(&r->lock);
            r->stats.errors++;
            pthread_mutex_unlock(&r->lock);
            sl_k8s_sleep_ms(backoff(r, failures++), &r->stop);
            if (failures >= 8) /* a long outage: start from a fresh list */
                need_list = true;
            continue;
        }
        failures = 0;
        /* a stream that ended at once with nothing may mean a stale RV served as empty */
        if (r->stream_events == 0 && sl_k8s_now_ms() - t0 < 1000) {
            if (++empty_streams >= EMPTY_STREAMS_RELIST) {
                log_info("k8s %s: %d empty watch streams in a row: relisting", r->name,
                         empty_streams);
                need_list = true;
            }
            sl_k8s_sleep_ms(backoff(r, empty_streams), &r->stop);
        } else {
            empty_streams = 0;
        }
        sl_error_free(&e);
    }
    return 0;
}

static void *thread_main(void *p)
{
    sl_k8s_reflector_run(p);
    return NULL;
}

int sl_k8s_reflector_start(struct sl_k8s_reflector *r, sl_error_t *err)
{
    if (r->thread_started)
        return sl_error_make(err, EALREADY, "%s: reflector already started", r->name);
    r->stop = 0;
    int x = pthread_create(&r->thread, NULL, thread_main, r);
    if (x != 0)
        return sl_error_make(err, x, "%s: cannot start the reflector thread", r->name);
    r->thread_started = true;
    return 0;
}

void sl_k8s_reflector_stop(struct sl_k8s_reflector *r)
{
    r->stop = 1;
    if (r->thread_started && !pthread_equal(pthread_self(), r->thread)) {
        pthread_join(r->thread, NULL);
        r->thread_started = false;
    }
}

bool sl_k8s_reflector_wait_synced(struct sl_k8s_reflector *r, int timeout_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += timeout_ms / 1000;
    ts.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&r->lock);
    while (!r->synced)
        if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) != 0)
            break;
    bool s = r->synced;
    pthread_mutex_unlock(&r->lock);
    return s;
}

char *sl_k8s_reflector_resource_version(struct sl_k8s_reflector *r)
{
    pthread_mutex_lock(&r->lock);
    char *v = r->rv ? sl_xstrdup(r->rv) : NULL;
    pthread_mutex_unlock(&r->lock);
    return v;
}

json_t *sl_k8s_reflector_get(struct sl_k8s_reflector *r, const char *key)
{
    pthread_mutex_lock(&r->lock);
    json_t *o = json_incref(json_object_get(r->cache, key));
    pthread_mutex_unlock(&r->lock);
    return o;
}

size_t sl_k8s_reflector_size(struct sl_k8s_reflector *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = json_object_size(r->cache);
    pthread_mutex_unlock(&r->lock);
    return n;
}

void sl_k8s_reflector_stats(struct sl_k8s_reflector *r, struct sl_k8s_reflector_stats *ret)
{
    pthread_mutex_lock(&r->lock);
    *ret = r->stats;
    pthread_mutex_unlock(&r->lock);
}
