/* nodewatch.c — pods bound to this node → prefetch pulls and trace windows; the Node's prewarm
 * annotation → update pulls (nodewatch.h). */
#include "nodewatch.h"

#include "cleanup.h"
#include "json.h"
#include "k8s.h"
#include "log.h"
#include "reflector.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define PREFIX           "starlight-c.dev/"
#define INIT_NAME        "starlight-init"
#define MAX_PREWARMED    64
#define TRACE_DEFAULT_MS 30000

enum reason { R_POD, R_PREWARM };

struct job {
    struct job *next;
    enum reason reason;
    char *ref, *proxy, *from;
    char *pod_ns, *pod_name, *pod_uid;
};

struct evq {
    struct evq *next;
    char *ns, *name, *uid, *reason, *type, *msg;
    char *ann; /* SL_K8S_TRACE_REPORT_ANNOTATION's value, or NULL */
};

static void evq_free(struct evq *e)
{
    free(e->ns);
    free(e->name);
    free(e->uid);
    free(e->reason);
    free(e->type);
    free(e->msg);
    free(e->ann);
    free(e);
}

struct sl_nodewatch {
    char *node, *ctrd_ns;
    struct sl_control *control;
    struct sl_trace *trace;
    struct sl_k8s_client *client;
    struct sl_k8s_reflector *pods, *nodes;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail;
    json_t *inflight;     /* ref → true: queued or running */
    json_t *seen_pods;    /* uid → true: pulls started */
    json_t *prewarm_done; /* ref → true: prewarmed in this run */
    pthread_mutex_t patch_lock;
    pthread_t workers[SL_NODEWATCH_WORKERS];
    int n_workers;
    pthread_t timer;
    bool timer_started;
    volatile int stopping;
    struct evq *events; /* Events to send (newest first), under lock */
    int n_events;

    /* trace session: uid → {ns, name, deadline (ms, monotonic), running} */
    json_t *trace_pods;
    char *trace_group, *trace_proxy;
    bool trace_on;

    struct {
        struct sl_metric *events, *relists, *pulls, *traces;
    } mx;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void event_ann(struct sl_nodewatch *w, const char *ns, const char *name, const char *uid,
                      const char *reason, const char *type, const char *ann, const char *fmt, ...)
    __attribute__((format(printf, 8, 9)));
#define event(w, ns, name, uid, reason, type, ...)                                                 \
    event_ann(w, ns, name, uid, reason, type, NULL, __VA_ARGS__)

static void event_ann(struct sl_nodewatch *w, const char *ns, const char *name, const char *uid,
                      const char *reason, const char *type, const char *ann, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (n >= (int)sizeof(msg)) /* truncated: never in the middle of a UTF-8 character */
        msg[sl_k8s_utf8_cut(msg, strlen(msg))] = '\0';
    /* queued: the timer thread sends it, so no reflector callback waits on the API server */
    struct evq *e = sl_xcalloc(1, sizeof(*e));
    e->ns = sl_xstrdup(ns ? ns : "default");
    e->name = sl_xstrdup(name ? name : "");
    e->uid = uid ? sl_xstrdup(uid) : NULL;
    e->reason = sl_xstrdup(reason);
    e->type = sl_xstrdup(type);
    e->msg = sl_xstrdup(msg);
    e->ann = ann ? sl_xstrdup(ann) : NULL;
    pthread_mutex_lock(&w->lock);
    if (w->n_events < 1024) {
        e->next = w->events;
        w->events = e;
        w->n_events++;
        e = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    if (e) { /* a flood: drop it (Events are best effort) */
        evq_free(e);
    }
}

/* Sends the queued Events, oldest first. */
static void events_flush(struct sl_nodewatch *w)
{
    pthread_mutex_lock(&w->lock);
    struct evq *list = w->events, *rev = NULL;
    w->events = NULL;
    w->n_events = 0;
    pthread_mutex_unlock(&w->lock);
    while (list) {
        struct evq *n = list->next;
        list->next = rev;
        rev = list;
        list = n;
    }
    while (rev) {
        struct evq *e = rev;
        rev = e->next;
        struct sl_k8s_event ev = {.kind = "Pod",
                                  .ns = e->ns,
                                  .name = e->name,
                                  .uid = e->uid,
                                  .reason = e->reason,
                                  .message = e->msg,
                                  .type = e->type,
                                  .component = "starlight-daemon",
                                  .annotation_key = e->ann ? SL_K8S_TRACE_REPORT_ANNOTATION : NULL,
                                  .annotation_value = e->ann,
                                  .host = w->node};
        sl_error_t err = NULL;
        int r = sl_k8s_event_record(w->client, &ev, &err);
        if (r < 0)
            log_warn("node watcher: %s", sl_error_msg(err, r)); /* Events are best effort */
        sl_error_free(&err);
        evq_free(e);
    }
}

/* ---- pulls ---------------------------------------------------------------------------------- */

/* Queues a pull of `ref` unless one is queued or running. Called under w->lock. */
static bool enqueue_locked(struct sl_nodewatch *w, enum reason reason, const char *ref,
                           const char *proxy, const char *from, const json_t *pod)
{
    if (json_object_get(w->inflight, ref))
        return false;
    struct job *j = sl_xcalloc(1, sizeof(*j));
    j->reason = reason;
    j->ref = sl_xstrdup(ref);
    j->proxy = proxy ? sl_xstrdup(proxy) : NULL;
    j->from = from ? sl_xstrdup(from) : NULL;
    if (pod) {
        const char *ns = sl_k8s_meta_str(pod, "namespace"), *name = sl_k8s_meta_str(pod, "name");
        j->pod_ns = sl_xstrdup(ns ? ns : "default"); /* pod_seen requires both */
        j->pod_name = sl_xstrdup(name ? name : "");
        const char *uid = sl_k8s_meta_str(pod, "uid");
        j->pod_uid = uid ? sl_xstrdup(uid) : NULL;
    }
    json_object_set_new(w->inflight, ref, json_true());
    if (w->tail)
        w->tail->next = j;
    else
        w->head = j;
    w->tail = j;
    pthread_cond_signal(&w->cond);
    return true;
}

static void job_free(struct job *j)
{
    free(j->ref);
    free(j->proxy);
    free(j->from);
    free(j->pod_ns);
    free(j->pod_name);
    free(j->pod_uid);
    free(j);
}

static int pull_event(void *ud, enum sl_pull_phase phase, const struct sl_pull_stats *s)
{
    (void)phase, (void)s;
    struct sl_nodewatch *w = ud;
    return w->stopping ? -ECANCELED : 0;
}

/* Adds `ref` to the Node's prewarmed annotation (read-modify-merge-patch, serialised). */
static int mark_prewarmed(struct sl_nodewatch *w, const char *ref, sl_error_t *err)
{
    pthread_mutex_lock(&w->patch_lock);
    _cleanup_free_ char *path = sl_k8s_path("v1", NULL, "nodes", w->node, NULL);
    json_t *node = NULL;
    int r = sl_k8s_get(w->client, path, &node, err);
    if (r < 0)
        goto out;
    json_t *list = NULL;
    const char *cur = sl_k8s_annotation(node, PREFIX "prewarmed");
    if (!cur ||
        sl_json_parse(cur, strlen(cur), SL_NODEWATCH_PREWARM_JSON_MAX, "prewarmed", &list, NULL) <
            0 ||
        !json_is_array(list)) {
        json_decref(list);
        list = json_array();
    }
    bool have = false;
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v) if (json_is_string(v) && strcmp(json_string_value(v), ref) == 0)
        have = true;
    if (!have) {
        json_array_append_new(list, json_string(ref));
        while (json_array_size(list) > MAX_PREWARMED)
            json_array_remove(list, 0);
        _cleanup_free_ char *text = sl_json_dump(list, NULL);
        json_t *patch =
            json_pack("{s:{s:{s:s}}}", "metadata", "annotations", PREFIX "prewarmed", text);
        _cleanup_free_ char *body = sl_json_dump(patch, NULL);
        json_decref(patch);
        r = sl_k8s_patch(w->client, path, SL_K8S_PATCH_MERGE, body, NULL, err);
    }
    json_decref(list);
    json_decref(node);
out:
    pthread_mutex_unlock(&w->patch_lock);
    return r;
}

static void run_job(struct sl_nodewatch *w, struct job *j)
{
    const char *from[2] = {j->from, NULL};
    struct sl_control_pull p = {.ref = j->ref,
                                .ns = w->ctrd_ns,
                                .proxy = j->proxy,
                                .from = j->from ? from : NULL,
                                .on_event = pull_event,
                                .event_ud = w};
    struct sl_pull_stats st;
    sl_error_t e = NULL;
    int r = sl_control_pull(w->control, &p, &st, &e);
    const char *reason = j->reason == R_POD ? "pod" : "prewarm";
    char labels[64];
    snprintf(labels, sizeof(labels), "reason=\"%s\",result=\"%s\"", reason, r < 0 ? "error" : "ok");
    sl_metric_add(w->mx.pulls, labels, 1);
    if (j->reason == R_POD && j->pod_name) {
        if (r < 0)
            event(w, j->pod_ns, j->pod_name, j->pod_uid, "StarlightPrefetchFailed", "Warning",
                  "prefetch of %s failed: %s", j->ref, sl_error_msg(e, r));
        else
            event(w, j->pod_ns, j->pod_name, j->pod_uid, "StarlightPrefetched", "Normal",
                  "%s prefetched into %s: ready after %.0f ms, complete after %.0f ms, %" PRIu64
                  " bytes received",
                  j->ref, w->ctrd_ns, st.ms_ready, st.ms_complete, st.bytes_received);
    }
    if (j->reason == R_PREWARM) {
        if (r < 0) {
            log_warn("prewarm %s: %s", j->ref, sl_error_msg(e, r));
        } else {
            sl_error_free(&e);
            r = mark_prewarmed(w, j->ref, &e);
            if (r < 0)
                log_warn("prewarm %s: annotate node %s: %s", j->ref, w->node, sl_error_msg(e, r));
            else
                log_info("prewarm %s: done, recorded on node %s", j->ref, w->node);
        }
    }
    sl_error_free(&e);
    pthread_mutex_lock(&w->lock);
    json_object_del(w->inflight, j->ref);
    if (j->reason == R_PREWARM && r >= 0)
        json_object_set_new(w->prewarm_done, j->ref, json_true());
    pthread_mutex_unlock(&w->lock);
}

static void *worker_main(void *p)
{
    struct sl_nodewatch *w = p;
    for (;;) {
        pthread_mutex_lock(&w->lock);
        while (!w->head && !w->stopping)
            pthread_cond_wait(&w->cond, &w->lock);
        if (w->stopping) {
            pthread_mutex_unlock(&w->lock);
            return NULL;
        }
        struct job *j = w->head;
        w->head = j->next;
        if (!w->head)
            w->tail = NULL;
        pthread_mutex_unlock(&w->lock);
        run_job(w, j);
        job_free(j);
    }
}

/* ---- trace windows -------------------------------------------------------------------------- */

/* Go-style durations as kubectl writes them: "30s", "1m30s", "500ms", "2h". -EINVAL. */
static bool pod_running(const json_t *pod)
{
    const json_t *cs = json_object_get(json_object_get(pod, "status"), "containerStatuses");
    size_t i;
    json_t *c;
    json_array_foreach(cs, i,
                       c) if (json_object_get(json_object_get(c, "state"), "running")) return true;
    return false;
}

static bool pod_done(const json_t *pod)
{
    const char *ph = json_string_value(json_object_get(json_object_get(pod, "status"), "phase"));
    return ph && (strcmp(ph, "Succeeded") == 0 || strcmp(ph, "Failed") == 0);
}

/* Opens or extends this Pod's trace window. Under w->lock. */
static void trace_pod_locked(struct sl_nodewatch *w, const json_t *pod)
{
    const char *uid = sl_k8s_meta_str(pod, "uid");
    if (!w->trace || !uid)
        return;
    int64_t dur = TRACE_DEFAULT_MS;
    const char *ds = sl_k8s_annotation(pod, PREFIX "trace-duration");
    if (ds && sl_nodewatch_parse_duration_ms(ds, &dur) < 0) {
        log_warn("pod %s/%s: bad %strace-duration `%.32s`: using 30s",
                 sl_k8s_meta_str(pod, "namespace"), sl_k8s_meta_str(pod, "name"), PREFIX, ds);
        dur = TRACE_DEFAULT_MS;
    }
    json_t *t = json_object_get(w->trace_pods, uid);
    bool running = pod_running(pod);
    if (t) {
        /* the window counts from the moment the Pod is first seen running */
        if (running && !json_is_true(json_object_get(t, "running"))) {
            json_object_set_new(t, "deadline", json_integer(now_ms() + dur));
            json_object_set_new(t, "running", json_true());
        }
        return;
    }
    if (json_object_get(w->trace_pods, "_closed_") &&
        json_object_get(json_object_get(w->trace_pods, "_closed_"), uid))
        return;
    if (!w->trace_on) {
        const char *g = sl_k8s_annotation(pod, PREFIX "trace-group");
        const char *px = sl_k8s_annotation(pod, PREFIX "proxy");
        sl_error_t e = NULL;
        int r = sl_trace_set_optimizer(w->trace, true, g, NULL, &e);
        if (r < 0) {
            log_warn("trace for pod %s: %s", uid, sl_error_msg(e, r));
            sl_error_free(&e);
            return;
        }
        free(w->trace_group);
        free(w->trace_proxy);
        w->trace_group = sl_xstrdup(g && *g ? g : SL_TRACE_DEFAULT_GROUP);
        w->trace_proxy = px ? sl_xstrdup(px) : NULL;
        w->trace_on = true;
        log_info("trace window opened for pod %s/%s (group %s)", sl_k8s_meta_str(pod, "namespace"),
                 sl_k8s_meta_str(pod, "name"), w->trace_group);
    }
    json_object_set_new(w->trace_pods, uid,
                        json_pack("{s:s,s:s,s:I,s:b}", "ns", sl_k8s_meta_str(pod, "namespace"),
                                  "name", sl_k8s_meta_str(pod, "name"), "deadline",
                                  (json_int_t)(now_ms() + dur), "running", running));
}

static void trace_end_locked(struct sl_nodewatch *w, const char *uid)
{
    json_t *t = json_object_get(w->trace_pods, uid);
    if (t)
        json_object_set_new(t, "deadline", json_integer(0));
}

static bool cgroup_has_uid(const char *cg, const char *uid)
{
    if (strstr(cg, uid))
        return true;
    _cleanup_free_ char *u = sl_xstrdup(uid);
    for (char *p = u; *p; p++)
        if (*p == '-')
            *p = '_';
    return strstr(cg, u) != NULL;
}

/* Ends the session: optimizer off, report, Events on every Pod of the session. Called without
 * the lock; `pods` is the session's uid → info map (owned). */
static void trace_close(struct sl_nodewatch *w, json_t *pods, const char *proxy)
{
    sl_error_t e = NULL;
    int finished = 0;
    int r = sl_trace_set_optimizer(w->trace, false, NULL, &finished, &e);
    json_t *list = NULL;
    if (r >= 0)
        r = sl_trace_list(w->trace, &list, &e);
    _cleanup_free_ char *url = NULL, *auth = NULL;
    if (r >= 0)
        r = sl_control_proxy(w->control, proxy, &url, &auth, &e);
    struct sl_trace_report_result res = {0};
    if (r >= 0)
        r = sl_trace_report(w->trace, url, auth, &res, &e);
    sl_metric_add(w->mx.traces, r < 0 ? "result=\"error\"" : "result=\"ok\"", 1);
    const char *uid;
    json_t *info;
    json_object_foreach(pods, uid, info)
    {
        int mine = 0;
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(list, "traces"), i, t)
        {
            const char *cg = json_string_value(json_object_get(t, "cgroup"));
            if (cg && json_is_true(json_object_get(t, "finished")) && cgroup_has_uid(cg, uid))
                mine++;
        }
        const char *ns = json_string_value(json_object_get(info, "ns"));
        const char *name = json_string_value(json_object_get(info, "name"));
        if (r < 0)
            event(w, ns, name, uid, "StarlightTraceFailed", "Warning",
                  "trace report failed: %s (traces kept on the node)", sl_error_msg(e, r));
        else {
            char ann[160];
            snprintf(ann, sizeof(ann),
                     "{\"traces\":%d,\"podTraces\":%d,\"accesses\":%d,\"groups\":%d}", res.traces,
                     mine, res.accesses, res.groups);
            event_ann(w, ns, name, uid, "StarlightTraceReported", "Normal", ann,
                      "reported %d traces (%d of this pod's containers), %d accesses, %d groups "
                      "to %s",
                      res.traces, mine, res.accesses, res.groups, url);
        }
    }
    if (r < 0)
        log_warn("trace report: %s", sl_error_msg(e, r));
    else
        log_info("trace window closed: %d traces finished, %d reported", finished, res.traces);
    json_decref(res.reply);
    json_decref(list);
    sl_error_free(&e);
}

static void *timer_main(void *p)
{
    struct sl_nodewatch *w = p;
    while (!w->stopping) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000L};
        nanosleep(&ts, NULL);
        json_t *closing = NULL;
        char *proxy = NULL;
        pthread_mutex_lock(&w->lock);
        if (w->trace_on) {
            bool all_due = json_object_size(w->trace_pods) > 0;
            const char *uid;
            json_t *t;
            int64_t now = now_ms();
            json_object_foreach(w->trace_pods, uid, t)
            {
                if (strcmp(uid, "_closed_") == 0)
                    continue;
                if (json_integer_value(json_object_get(t, "deadline")) > now)
                    all_due = false;
            }
            /* one optimizer session: it closes when every window in it is due */
            if (all_due) {
                closing = w->trace_pods;
                json_t *closed = json_incref(json_object_get(closing, "_closed_"));
                if (!closed)
                    closed = json_object();
                json_object_del(closing, "_closed_");
                json_object_foreach(closing, uid, t) json_object_set_new(closed, uid, json_true());
                w->trace_pods = json_object();
                json_object_set_new(w->trace_pods, "_closed_", closed);
                proxy = w->trace_proxy ? sl_xstrdup(w->trace_proxy) : NULL;
                w->trace_on = false;
            }
        }
        pthread_mutex_unlock(&w->lock);
        if (closing) {
            trace_close(w, closing, proxy);
            json_decref(closing);
            free(proxy);
        }
        events_flush(w);
    }
    events_flush(w);
    return NULL;
}

/* ---- reflector callbacks ------------------------------------------------------------------- */

static void pod_seen(struct sl_nodewatch *w, const json_t *pod)
{
    const char *uid = sl_k8s_meta_str(pod, "uid"), *name = sl_k8s_meta_str(pod, "name"),
               *ns = sl_k8s_meta_str(pod, "namespace");
    const json_t *spec = json_object_get(pod, "spec");
    const char *node = json_string_value(json_object_get(spec, "nodeName"));
    const char *opt = sl_k8s_label(pod, PREFIX "provision");
    sl_metric_add(w->mx.events, "resource=\"pods\"", 1);
    if (!uid || !*uid || !name || !*name || !ns || !*ns) {
        log_warn("node watcher: ignoring a Pod without metadata.uid, .name or .namespace "
                 "(name '%s', namespace '%s')",
                 name ? name : "", ns ? ns : "");
        return;
    }
    /* the selectors are filters the server applies; check them anyway */
    if (!uid || !name || !node || strcmp(node, w->node) != 0 || !opt || strcmp(opt, "true") != 0)
        return;
    const char *proxy = sl_k8s_annotation(pod, PREFIX "proxy");
    bool trace = sl_k8s_annotation(pod, PREFIX "trace") &&
                 strcmp(sl_k8s_annotation(pod, PREFIX "trace"), "true") == 0;
    pthread_mutex_lock(&w->lock);
    if (trace && !pod_done(pod))
        trace_pod_locked(w, pod);
    else if (pod_done(pod))
        trace_end_locked(w, uid);
    bool first = !json_object_get(w->seen_pods, uid) && !pod_done(pod);
    int queued = 0, n = 0;
    struct sl_buf list;
    sl_buf_init(&list, 8192);
    if (first) {
        json_object_set_new(w->seen_pods, uid, json_true());
        static const char *const keys[] = {"initContainers", "containers"};
        for (size_t k = 0; k < SL_ELEMENTSOF(keys); k++) {
            size_t i;
            json_t *c;
            json_array_foreach(json_object_get(spec, keys[k]), i, c)
            {
                const char *cn = json_string_value(json_object_get(c, "name"));
                const char *img = json_string_value(json_object_get(c, "image"));
                if (k == 0 && cn && strcmp(cn, INIT_NAME) == 0)
                    continue; /* the warmer itself comes from the normal image path */
                if (!sl_nodewatch_ref_valid(img) || n >= SL_NODEWATCH_MAX_POD_IMAGES)
                    continue;
                n++;
                if (enqueue_locked(w, R_POD, img, proxy, NULL, pod)) {
                    queued++;
                    sl_buf_printf(&list, "%s%s", list.len ? ", " : "", img);
                }
            }
        }
    }
    pthread_mutex_unlock(&w->lock);
    if (first) {
        log_info("pod %s/%s bound to %s: prefetching %d of %d images%s%s",
                 sl_k8s_meta_str(pod, "namespace"), name, node, queued, n, queued ? ": " : "",
                 list.data ? list.data : "");
        if (n > 0)
            event(w, sl_k8s_meta_str(pod, "namespace"), name, uid, "StarlightPrefetching", "Normal",
                  "prefetching %d images on %s: %s", queued, w->node,
                  list.data ? list.data : "(already in flight)");
    }
    sl_buf_free(&list);
}

static void pod_add(void *ud, const json_t *o)
{
    pod_seen(ud, o);
}

static void pod_update(void *ud, const json_t *old, const json_t *o)
{
    (void)old;
    pod_seen(ud, o);
}

static void pod_delete(void *ud, const json_t *o)
{
    struct sl_nodewatch *w = ud;
    const char *uid = sl_k8s_meta_str(o, "uid");
    sl_metric_add(w->mx.events, "resource=\"pods\"", 1);
    if (!uid)
        return;
    pthread_mutex_lock(&w->lock);
    trace_end_locked(w, uid);           /* "when the container exits": the Pod is gone */
    json_object_del(w->seen_pods, uid); /* uids are never reused: keep the maps bounded */
    json_object_del(json_object_get(w->trace_pods, "_closed_"), uid);
    pthread_mutex_unlock(&w->lock);
}

static void node_seen(struct sl_nodewatch *w, const json_t *node)
{
    sl_metric_add(w->mx.events, "resource=\"nodes\"", 1);
    const char *name = sl_k8s_meta_str(node, "name");
    if (!name || strcmp(name, w->node) != 0)
        return;
    const char *pw = sl_k8s_annotation(node, PREFIX "prewarm");
    if (!pw)
        return;
    struct sl_nodewatch_prewarm *v = NULL;
    size_t n = 0, skipped = 0;
    sl_error_t e = NULL;
    int r = sl_nodewatch_parse_prewarm(pw, sl_k8s_annotation(node, PREFIX "prewarmed"), &v, &n,
                                       &skipped, &e);
    if (r < 0) {
        log_warn("node %s: %s", name, sl_error_msg(e, r));
        sl_error_free(&e);
        return;
    }
    if (skipped)
        log_warn("node %s: %zu %sprewarm entries without a valid `to` reference", name, skipped,
                 PREFIX);
    pthread_mutex_lock(&w->lock);
    for (size_t i = 0; i < n; i++) {
        if (json_object_get(w->prewarm_done, v[i].to))
            continue;
        if (enqueue_locked(w, R_PREWARM, v[i].to, NULL, v[i].from, NULL))
            log_info("node %s: prewarming %s (update from %s)", name, v[i].to,
                     v[i].from ? v[i].from : "-");
    }
    pthread_mutex_unlock(&w->lock);
    sl_nodewatch_prewarm_free(v, n);
}

static void node_add(void *ud, const json_t *o)
{
    node_seen(ud, o);
}

static void node_update(void *ud, const json_t *old, const json_t *o)
{
    (void)old;
    node_seen(ud, o);
}

static void node_delete(void *ud, const json_t *o)
{
    (void)o;
    struct sl_nodewatch *w = ud;
    sl_metric_add(w->mx.events, "resource=\"nodes\"", 1);
}

/* Every list after the first is a relist (after a 410, or a long outage). */
static void synced(struct sl_nodewatch *w, const char *labels, int *lists)
{
    if ((*lists)++ > 0)
        sl_metric_add(w->mx.relists, labels, 1);
}

static void pods_synced(void *ud)
{
    static int lists;
    synced(ud, "resource=\"pods\"", &lists);
}

static void nodes_synced(void *ud)
{
    static int lists;
    synced(ud, "resource=\"nodes\"", &lists);
}

/* ---- start/stop --------------------------------------------------------------------------- */

int sl_nodewatch_start(const struct sl_nodewatch_options *o, struct sl_nodewatch **ret,
                       sl_error_t *err)
{
    if (!o->node_name || !*o->node_name || !o->control)
        return sl_error_make(err, EINVAL,
                             "node watcher: a node name and the control API are "
                             "required");
    struct sl_k8s_config cfg = {0};
    int r = sl_k8s_config_load(o->kubeconfig, &cfg, err);
    if (r < 0)
        return sl_error_wrap(err, r, "node watcher: Kubernetes configuration");
    struct sl_k8s_client_options co = {.user_agent = "starlight-daemon/" SL_VERSION,
                                       .field_manager = "starlight-daemon"};
    struct sl_k8s_client *client = NULL;
    r = sl_k8s_client_new(&cfg, &co, &client, err);
    if (r < 0) {
        sl_k8s_config_free(&cfg);
        return sl_error_wrap(err, r, "node watcher");
    }
    log_info("node watcher: node %s, API server %s (%s)", o->node_name, cfg.server, cfg.source);
    sl_k8s_config_free(&cfg);

    struct sl_nodewatch *w = sl_xcalloc(1, sizeof(*w));
    w->node = sl_xstrdup(o->node_name);
    w->ctrd_ns = sl_xstrdup(o->ctrd_namespace ? o->ctrd_namespace : SL_NODEWATCH_NAMESPACE);
    w->control = o->control;
    w->trace = o->trace;
    w->client = client;
    w->inflight = json_object();
    w->seen_pods = json_object();
    w->prewarm_done = json_object();
    w->trace_pods = json_object();
    pthread_mutex_init(&w->lock, NULL);
    pthread_mutex_init(&w->patch_lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    if (o->metrics) {
        w->mx.events = sl_metrics_counter(o->metrics, "starlight_k8s_watch_events_total",
                                          "Objects seen by the node watcher (adds, updates, "
                                          "deletes, relist diffs)");
        w->mx.relists = sl_metrics_counter(o->metrics, "starlight_k8s_relists_total",
                                           "Lists after the first (a 410: resourceVersion "
                                           "expired, or a long outage)");
        w->mx.pulls = sl_metrics_counter(o->metrics, "starlight_k8s_pulls_total",
                                         "Pulls started by the node watcher");
        w->mx.traces = sl_metrics_counter(o->metrics, "starlight_k8s_trace_reports_total",
                                          "Trace windows closed and reported");
        sl_metric_add(w->mx.events, "resource=\"pods\"", 0);
        sl_metric_add(w->mx.events, "resource=\"nodes\"", 0);
        sl_metric_add(w->mx.pulls, "reason=\"pod\",result=\"ok\"", 0);
        sl_metric_add(w->mx.pulls, "reason=\"prewarm\",result=\"ok\"", 0);
    }
    _cleanup_free_ char *field = sl_xasprintf("spec.nodeName=%s", w->node);
    _cleanup_free_ char *nfield = sl_xasprintf("metadata.name=%s", w->node);
    struct sl_k8s_reflector_options po = {.path = "/api/v1/pods",
                                          .label_selector = PREFIX "provision=true",
                                          .field_selector = field,
                                          .name = "pods"};
    struct sl_k8s_reflector_callbacks pc = {.on_add = pod_add,
                                            .on_update = pod_update,
                                            .on_delete = pod_delete,
                                            .on_synced = pods_synced,
                                            .userdata = w};
    struct sl_k8s_reflector_options no = {
        .path = "/api/v1/nodes", .field_selector = nfield, .name = "node"};
    struct sl_k8s_reflector_callbacks nc = {.on_add = node_add,
                                            .on_update = node_update,
                                            .on_delete = node_delete,
                                            .on_synced = nodes_synced,
                                            .userdata = w};
    r = sl_k8s_reflector_new(client, &po, &pc, &w->pods, err);
    if (r >= 0)
        r = sl_k8s_reflector_new(client, &no, &nc, &w->nodes, err);
    for (int i = 0; r >= 0 && i < SL_NODEWATCH_WORKERS; i++) {
        int x = pthread_create(&w->workers[i], NULL, worker_main, w);
        if (x != 0)
            r = sl_error_make(err, x, "node watcher: cannot start a worker");
        else
            w->n_workers++;
    }
    if (r >= 0) {
        int x = pthread_create(&w->timer, NULL, timer_main, w);
        if (x != 0)
            r = sl_error_make(err, x, "node watcher: cannot start the trace timer");
        else
            w->timer_started = true;
    }
    if (r >= 0)
        r = sl_k8s_reflector_start(w->pods, err);
    if (r >= 0)
        r = sl_k8s_reflector_start(w->nodes, err);
    if (r < 0) {
        sl_nodewatch_stop(w);
        return r;
    }
    *ret = w;
    return 0;
}

void sl_nodewatch_stop(struct sl_nodewatch *w)
{
    if (!w)
        return;
    w->stopping = 1;
    sl_k8s_reflector_free(w->pods);
    sl_k8s_reflector_free(w->nodes);
    w->pods = w->nodes = NULL;
    pthread_mutex_lock(&w->lock);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n_workers; i++)
        pthread_join(w->workers[i], NULL);
    if (w->timer_started)
        pthread_join(w->timer, NULL);
    if (w->trace_on) { /* an open window: finish the traces, keep them for a later report */
        sl_error_t e = NULL;
        if (sl_trace_set_optimizer(w->trace, false, NULL, NULL, &e) < 0)
            sl_error_free(&e);
    }
    while (w->events) {
        struct evq *e = w->events;
        w->events = e->next;
        evq_free(e);
    }
    while (w->head) {
        struct job *j = w->head;
        w->head = j->next;
        job_free(j);
    }
    json_decref(w->inflight);
    json_decref(w->seen_pods);
    json_decref(w->prewarm_done);
    json_decref(w->trace_pods);
    free(w->trace_group);
    free(w->trace_proxy);
    free(w->node);
    free(w->ctrd_ns);
    sl_k8s_client_free(w->client);
    pthread_mutex_destroy(&w->lock);
    pthread_mutex_destroy(&w->patch_lock);
    pthread_cond_destroy(&w->cond);
    free(w);
}
