/* tracejobs.c — see tracejobs.h. */
#include "tracejobs.h"
#include "cleanup.h"
#include "json.h"
#include "k8s.h"
#include "log.h"
#include "reflector.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

struct sl_tracejobs {
    struct sl_tracejobs_options o;
    struct sl_k8s_reflector *refl;
    pthread_mutex_t lock;
    json_t *pending; /* "ns/name" → first time seen finished (ms, monotonic) */
    json_t *busy;    /* "ns/name" being examined (the ticker and the reflector may race) */
    pthread_t ticker;
    bool ticker_started;
    atomic_bool stop;
    struct sl_metric *results;
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *meta(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), k));
}

int sl_tracejobs_finished(const json_t *job, const char **ret_message)
{
    const json_t *tmeta =
        json_object_get(json_object_get(json_object_get(job, "spec"), "template"), "metadata");
    const char *t = json_string_value(
        json_object_get(json_object_get(tmeta, "annotations"), SL_TRACE_ANNOTATION));
    if (!t || strcmp(t, "true") != 0 || sl_k8s_annotation(job, SL_TRACE_RESULT_ANNOTATION))
        return 0;
    size_t i;
    const json_t *c;
    json_array_foreach(json_object_get(json_object_get(job, "status"), "conditions"), i, c)
    {
        const char *type = json_string_value(json_object_get(c, "type"));
        const char *st = json_string_value(json_object_get(c, "status"));
        if (!type || !st || strcmp(st, "True") != 0)
            continue;
        if (strcmp(type, "Complete") == 0)
            return 1;
        if (strcmp(type, "Failed") == 0) {
            *ret_message = json_string_value(json_object_get(c, "message"));
            if (!*ret_message)
                *ret_message = json_string_value(json_object_get(c, "reason"));
            return 2;
        }
    }
    return 0;
}

int sl_tracejobs_outcome(const json_t *events, const json_t *pod_uids, long *ret_accesses,
                         const char **ret_message)
{
    size_t i, j;
    const json_t *ev, *u;
    int found = 0;
    json_array_foreach((json_t *)events, i, ev)
    {
        const json_t *io = json_object_get(ev, "involvedObject");
        const char *uid = json_string_value(json_object_get(io, "uid"));
        const char *reason = json_string_value(json_object_get(ev, "reason"));
        const char *msg = json_string_value(json_object_get(ev, "message"));
        bool mine = false;
        json_array_foreach((json_t *)pod_uids, j, u) mine =
            mine || (uid && json_string_value(u) && strcmp(uid, json_string_value(u)) == 0);
        if (!mine || !reason)
            continue;
        if (strcmp(reason, "StarlightTraceReported") == 0) {
            /* the numbers: the Event's trace-report annotation (JSON), never the message */
            long acc = 0;
            const char *rep = json_string_value(
                json_object_get(json_object_get(json_object_get(ev, "metadata"), "annotations"),
                                SL_K8S_TRACE_REPORT_ANNOTATION));
            json_t *doc = rep ? json_loads(rep, 0, NULL) : NULL;
            json_t *a = json_object_get(doc, "accesses");
            if (json_is_integer(a) && json_integer_value(a) >= 0 &&
                json_integer_value(a) <= LONG_MAX)
                acc = (long)json_integer_value(a);
            json_decref(doc);
            *ret_accesses = acc;
            *ret_message = msg;
            return 1; /* a report wins over an earlier failure */
        }
        if (strcmp(reason, "StarlightTraceFailed") == 0) {
            *ret_message = msg;
            found = 2;
        }
    }
    return found;
}

/* Writes the result on the Job and records the Event. */
static void conclude(struct sl_tracejobs *t, const json_t *job, bool ok, long accesses,
                     const char *message)
{
    const char *ns = meta(job, "namespace"), *name = meta(job, "name");
    json_t *images = json_array();
    size_t i;
    const json_t *c;
    json_array_foreach(
        json_object_get(
            json_object_get(json_object_get(json_object_get(job, "spec"), "template"), "spec"),
            "containers"),
        i, c)
    {
        const char *img = json_string_value(json_object_get(c, "image"));
        if (img)
            json_array_append_new(images, json_string(img));
    }
    json_t *res =
        json_pack("{s:s,s:o,s:I,s:s}", "phase", ok ? "Reported" : "Failed", "images", images,
                  "accesses", (json_int_t)accesses, "message", message ? message : "");
    size_t n;
    _cleanup_free_ char *text = sl_json_dump(res, &n);
    json_decref(res);
    json_t *patch =
        json_pack("{s:{s:{s:s}}}", "metadata", "annotations", SL_TRACE_RESULT_ANNOTATION, text);
    _cleanup_free_ char *body = sl_json_dump(patch, &n);
    json_decref(patch);
    _cleanup_free_ char *path = sl_k8s_path("batch/v1", ns, "jobs", name, NULL);
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_k8s_patch(t->o.client, path, SL_K8S_PATCH_MERGE, body, NULL, &err);
    if (r < 0) {
        log_warn("trace job %s/%s: write the result: %s", ns, name, sl_error_msg(err, r));
        return;
    }
    sl_metric_add(t->results, ok ? "phase=\"Reported\"" : "phase=\"Failed\"", 1);
    const char *kv[] = {"job", name, "namespace", ns, NULL};
    sl_log_kv(ok ? SL_LOG_INFO : SL_LOG_WARN, kv, "trace job %s/%s: %s: %s", ns, name,
              ok ? "Reported" : "Failed", text);
    _cleanup_free_ char *msg =
        ok ? sl_xasprintf("trace reported: %ld accesses (%s)", accesses, message ? message : "")
           : sl_xasprintf("trace failed: %s", message ? message : "unknown");
    const struct sl_k8s_event ev = {
        .api_version = "batch/v1",
        .kind = "Job",
        .ns = ns,
        .name = name,
        .uid = meta(job, "uid"),
        .reason = ok ? "StarlightTraceReported" : "StarlightTraceFailed",
        .message = msg,
        .type = ok ? "Normal" : "Warning",
        .component = "starlight-controller",
    };
    sl_error_free(&err);
    r = sl_k8s_event_record(t->o.client, &ev, &err);
    if (r < 0)
        log_warn("trace job %s/%s: event: %s", ns, name, sl_error_msg(err, r));
}

/* Looks at one Job; returns true when it needs another look later. */
static bool examine(struct sl_tracejobs *t, const json_t *job, int64_t first_seen)
{
    const char *msg = NULL;
    int f = sl_tracejobs_finished(job, &msg);
    if (f == 0)
        return false;
    /* Complete or Failed (a trace Job often ends at its activeDeadlineSeconds): the node's
     * Event on the Pod decides; without one, wait the grace period. */
    const char *ns = meta(job, "namespace"), *name = meta(job, "name");
    _cleanup_free_ char *sel = sl_xasprintf("batch.kubernetes.io/job-name=%s", name);
    _cleanup_free_ char *q = sl_k8s_query((const char *const[]){"labelSelector", sel, NULL});
    _cleanup_free_ char *pods_path = sl_k8s_path("v1", ns, "pods", NULL, NULL);
    _cleanup_free_ char *ev_path = sl_k8s_path("v1", ns, "events", NULL, NULL);
    _cleanup_error_ sl_error_t err = NULL;
    json_t *pods = NULL, *events = NULL;
    int r = sl_k8s_list(t->o.client, pods_path, q, &pods, NULL, &err);
    if (r >= 0)
        r = sl_k8s_list(t->o.client, ev_path, NULL, &events, NULL, &err);
    if (r < 0) {
        log_warn("trace job %s/%s: %s", ns, name, sl_error_msg(err, r));
        json_decref(pods);
        return true;
    }
    json_t *uids = json_array();
    size_t i;
    const json_t *p;
    json_array_foreach(pods, i, p) if (meta(p, "uid"))
        json_array_append_new(uids, json_string(meta(p, "uid")));
    long acc = 0;
    const char *m = NULL;
    int o = sl_tracejobs_outcome(events, uids, &acc, &m);
    bool again = false;
    if (o == 1 || o == 2) {
        _cleanup_free_ char *copy = m ? sl_xstrdup(m) : NULL;
        conclude(t, job, o == 1, acc, copy);
    } else if (mono_ms() - first_seen >= t->o.grace_ms) {
        _cleanup_free_ char *why =
            f == 2
                ? sl_xasprintf("the Job failed (%s) and no trace was reported",
                               msg ? msg : "no reason given")
                : sl_xasprintf("no trace report from the node within %" PRId64 " s of completion",
                               t->o.grace_ms / 1000);
        conclude(t, job, false, 0, why);
    } else {
        again = true;
    }
    json_decref(uids);
    json_decref(pods);
    json_decref(events);
    return again;
}

static void consider(struct sl_tracejobs *t, const json_t *job)
{
    const char *ns = meta(job, "namespace"), *name = meta(job, "name");
    const char *msg;
    if (!ns || !name || sl_tracejobs_finished(job, &msg) == 0)
        return;
    _cleanup_free_ char *key = sl_xasprintf("%s/%s", ns, name);
    pthread_mutex_lock(&t->lock);
    if (json_object_get(t->busy, key)) {
        pthread_mutex_unlock(&t->lock);
        return;
    }
    json_object_set_new(t->busy, key, json_true());
    json_t *seen = json_object_get(t->pending, key);
    int64_t first = seen ? (int64_t)json_integer_value(seen) : mono_ms();
    pthread_mutex_unlock(&t->lock);
    bool again = examine(t, job, first);
    pthread_mutex_lock(&t->lock);
    json_object_del(t->busy, key);
    if (again)
        json_object_set_new(t->pending, key, json_integer(first));
    else
        json_object_del(t->pending, key);
    pthread_mutex_unlock(&t->lock);
}

static void on_add(void *ud, const json_t *obj)
{
    consider(ud, obj);
}

static void on_update(void *ud, const json_t *old, const json_t *obj)
{
    (void)old;
    consider(ud, obj);
}

static void *ticker_main(void *arg)
{
    struct sl_tracejobs *t = arg;
    while (!atomic_load(&t->stop)) {
        for (int i = 0; i < 20 && !atomic_load(&t->stop); i++)
            usleep(100000);
        pthread_mutex_lock(&t->lock);
        json_t *keys = json_array();
        const char *k;
        json_t *v;
        json_object_foreach(t->pending, k, v) json_array_append_new(keys, json_string(k));
        pthread_mutex_unlock(&t->lock);
        size_t i;
        json_t *key;
        json_array_foreach(keys, i, key)
        {
            if (atomic_load(&t->stop))
                break;
            json_t *job = sl_k8s_reflector_get(t->refl, json_string_value(key));
            if (job)
                consider(t, job);
            else {
                pthread_mutex_lock(&t->lock);
                json_object_del(t->pending, json_string_value(key));
                pthread_mutex_unlock(&t->lock);
            }
            json_decref(job);
        }
        json_decref(keys);
    }
    return NULL;
}

int sl_tracejobs_start(const struct sl_tracejobs_options *o, struct sl_tracejobs **ret,
                       sl_error_t *err)
{
    struct sl_tracejobs *t = sl_xcalloc(1, sizeof(*t));
    t->o = *o;
    if (t->o.grace_ms <= 0)
        t->o.grace_ms = 120000;
    pthread_mutex_init(&t->lock, NULL);
    t->pending = json_object();
    t->busy = json_object();
    if (o->metrics) {
        t->results = sl_metrics_counter(o->metrics, "starlight_controller_trace_jobs_total",
                                        "Trace Jobs concluded, by phase");
        sl_metric_add(t->results, "phase=\"Reported\"", 0);
        sl_metric_add(t->results, "phase=\"Failed\"", 0);
    }
    _cleanup_free_ char *path = sl_k8s_path("batch/v1", NULL, "jobs", NULL, NULL);
    const struct sl_k8s_reflector_options ro = {.path = path, .name = "jobs"};
    const struct sl_k8s_reflector_callbacks cb = {
        .on_add = on_add, .on_update = on_update, .userdata = t};
    int r = sl_k8s_reflector_new(o->client, &ro, &cb, &t->refl, err);
    if (r >= 0)
        r = sl_k8s_reflector_start(t->refl, err);
    if (r >= 0) {
        if (pthread_create(&t->ticker, NULL, ticker_main, t) != 0)
            r = sl_error_make(err, EAGAIN, "trace jobs: cannot start a thread");
        else
            t->ticker_started = true;
    }
    if (r < 0) {
        sl_tracejobs_stop(t);
        return sl_error_wrap(err, r, "trace jobs: watch jobs");
    }
    *ret = t;
    return 0;
}

void sl_tracejobs_stop(struct sl_tracejobs *t)
{
    if (!t)
        return;
    atomic_store(&t->stop, true);
    if (t->ticker_started)
        pthread_join(t->ticker, NULL);
    sl_k8s_reflector_free(t->refl);
    json_decref(t->pending);
    json_decref(t->busy);
    pthread_mutex_destroy(&t->lock);
    free(t);
}
