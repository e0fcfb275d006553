/* hook.c — registry push notifications → conversion queue → convert + notify (hook.h). */
#include "hook.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <time.h>

#define HOOK_BODY_MAX (4u << 20)

/* ---- parsing ------------------------------------------------------------------------------ */

static void event_add(struct sl_hook_event **v, size_t *n, const char *host, size_t host_len,
                      const char *repo, const char *tag, const char *digest)
{
    *v = sl_xrealloc(*v, (*n + 1) * sizeof(**v));
    (*v)[*n] = (struct sl_hook_event){
        .host = host && host_len ? sl_xstrndup(host, host_len) : NULL,
        .repository = sl_xstrdup(repo),
        .tag = sl_xstrdup(tag),
        .digest = digest && *digest ? sl_xstrdup(digest) : NULL,
    };
    (*n)++;
}

static bool is_manifest_type(const char *mt)
{
    /* Blob pushes come with application/octet-stream and no tag; an absent type is fine. */
    return !mt || strstr(mt, "manifest") || strstr(mt, "index");
}

static const char *str_of(const json_t *o, const char *key)
{
    return json_string_value(json_object_get(o, key));
}

/* distribution: {"events":[{"action":"push","target":{…},"request":{"host":…}}]} */
static int parse_distribution(const json_t *events, struct sl_hook_event **v, size_t *n,
                              sl_error_t *err)
{
    size_t i;
    const json_t *e;
    json_array_foreach(events, i, e)
    {
        if (!json_is_object(e))
            return sl_error_make(err, EINVAL, "hook payload: events[%zu] is not an object", i);
        const char *action = str_of(e, "action");
        const json_t *target = json_object_get(e, "target");
        if (!action || !json_is_object(target))
            return sl_error_make(err, EINVAL, "hook payload: events[%zu] lacks action or target",
                                 i);
        const char *repo = str_of(target, "repository");
        const char *tag = str_of(target, "tag");
        if (strcmp(action, "push") != 0 || !repo || !*repo || !tag || !*tag ||
            !is_manifest_type(str_of(target, "mediaType")))
            continue;
        if (*n >= SL_HOOK_MAX_EVENTS)
            return sl_error_make(err, E2BIG, "hook payload: more than %d pushes",
                                 SL_HOOK_MAX_EVENTS);
        const char *host = str_of(json_object_get(e, "request"), "host");
        event_add(v, n, host, host ? strlen(host) : 0, repo, tag, str_of(target, "digest"));
    }
    return 0;
}

/* Harbor: {"type":"PUSH_ARTIFACT","event_data":{"repository":{"repo_full_name":…},
 * "resources":[{"tag":…,"resource_url":"host/path:tag"}]}} */
static int parse_harbor(const json_t *doc, const char *type, struct sl_hook_event **v, size_t *n,
                        sl_error_t *err)
{
    if (strcmp(type, "PUSH_ARTIFACT") != 0)
        return 0; /* PULL_ARTIFACT, DELETE_ARTIFACT, SCANNING_…: not ours */
    const json_t *data = json_object_get(doc, "event_data");
    const json_t *repo = json_object_get(data, "repository");
    const json_t *res = json_object_get(data, "resources");
    const char *name = str_of(repo, "repo_full_name");
    if (!name || !*name || !json_is_array(res))
        return sl_error_make(err, EINVAL,
                             "hook payload: Harbor event_data lacks repository.repo_full_name "
                             "or resources");
    size_t i;
    const json_t *r;
    json_array_foreach(res, i, r)
    {
        const char *tag = str_of(r, "tag");
        if (!tag || !*tag)
            continue;
        if (*n >= SL_HOOK_MAX_EVENTS)
            return sl_error_make(err, E2BIG, "hook payload: more than %d pushes",
                                 SL_HOOK_MAX_EVENTS);
        /* resource_url is "host/path:tag" (or @digest): its host is where to pull from. */
        const char *url = str_of(r, "resource_url");
        const char *slash = url ? strchr(url, '/') : NULL;
        event_add(v, n, url, slash ? (size_t)(slash - url) : 0, name, tag, str_of(r, "digest"));
    }
    return 0;
}

int sl_hook_parse(const char *body, size_t len, struct sl_hook_event **ret, size_t *n,
                  sl_error_t *err)
{
    *ret = NULL;
    *n = 0;
    json_auto_t *doc = NULL;
    int r = sl_json_parse(body, len, HOOK_BODY_MAX, "hook payload", &doc, err);
    if (r < 0)
        return r;
    if (!json_is_object(doc))
        return sl_error_make(err, EINVAL, "hook payload: not a JSON object");
    struct sl_hook_event *v = NULL;
    size_t cnt = 0;
    const json_t *events = json_object_get(doc, "events");
    const char *type = str_of(doc, "type");
    if (json_is_array(events))
        r = parse_distribution(events, &v, &cnt, err);
    else if (type)
        r = parse_harbor(doc, type, &v, &cnt, err);
    else
        r = sl_error_make(err, EINVAL,
                          "hook payload: neither a registry notification (\"events\") nor a "
                          "Harbor webhook (\"type\")");
    if (r < 0) {
        sl_hook_events_free(v, cnt);
        return r;
    }
    *ret = v;
    *n = cnt;
    return 0;
}

void sl_hook_events_free(struct sl_hook_event *ev, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(ev[i].host);
        free(ev[i].repository);
        free(ev[i].tag);
        free(ev[i].digest);
    }
    free(ev);
}

/* ---- queue and worker --------------------------------------------------------------------- */

struct job {
    struct job *next;
    char *src, *dst;
};

enum hook_result { RES_OK, RES_CONVERT_FAILED, RES_NOTIFY_FAILED, RES_N };
static const char *const result_names[RES_N] = {"ok", "convert_failed", "notify_failed"};

struct sl_hook {
    struct sl_core *core;
    char **repos;
    size_t n_repos;
    char *suffix;
    size_t queue_max;
    bool insecure;
    sl_hook_convert_fn convert;
    void *convert_ud;

    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct job *head, *tail; /* FIFO */
    size_t queued;
    char *running; /* dst of the conversion in progress, under lock */
    bool stop;
    pthread_t thread;
    bool started;

    atomic_uint_fast64_t results[RES_N];
    atomic_uint_fast64_t events_queued, events_ignored, events_duplicate, payloads_rejected;
    atomic_uint_fast64_t seconds_ms; /* total conversion + notify time */
};

static void job_free(struct job *j)
{
    if (!j)
        return;
    free(j->src);
    free(j->dst);
    free(j);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void run_job(struct sl_hook *h, struct job *j)
{
    _cleanup_error_ sl_error_t err = NULL;
    uint64_t t0 = now_ms();
    log_info("hook: converting %s -> %s", j->src, j->dst);
    int r = h->convert(h->convert_ud, j->src, j->dst, h->insecure, &err);
    if (r < 0) {
        atomic_fetch_add(&h->seconds_ms, now_ms() - t0);
        atomic_fetch_add(&h->results[RES_CONVERT_FAILED], 1);
        log_warn("hook: convert %s -> %s: %s", j->src, j->dst, sl_error_msg(err, r));
        return;
    }
    json_t *out = NULL;
    r = sl_core_notify(h->core, j->dst, h->insecure, &out, &err);
    json_decref(out);
    atomic_fetch_add(&h->seconds_ms, now_ms() - t0);
    if (r < 0) {
        atomic_fetch_add(&h->results[RES_NOTIFY_FAILED], 1);
        log_warn("hook: converted %s, but notify failed: %s", j->dst, sl_error_msg(err, r));
        return;
    }
    atomic_fetch_add(&h->results[RES_OK], 1);
    log_info("hook: %s converted and notified in %" PRIu64 " ms", j->dst, now_ms() - t0);
}

static void *worker(void *arg)
{
    struct sl_hook *h = arg;
    pthread_mutex_lock(&h->lock);
    for (;;) {
        while (!h->stop && !h->head)
            pthread_cond_wait(&h->cond, &h->lock);
        if (h->stop)
            break;
        struct job *j = h->head;
        h->head = j->next;
        if (!h->head)
            h->tail = NULL;
        h->queued--;
        h->running = j->dst;
        pthread_mutex_unlock(&h->lock);
        run_job(h, j);
        pthread_mutex_lock(&h->lock);
        h->running = NULL;
        job_free(j);
    }
    pthread_mutex_unlock(&h->lock);
    return NULL;
}

int sl_hook_new(const struct sl_hook_config *cfg, struct sl_core *core, struct sl_hook **ret,
                sl_error_t *err)
{
    if (!cfg->convert || !cfg->suffix || !*cfg->suffix || cfg->queue_max == 0)
        return sl_error_make(err, EINVAL,
                             "hook: needs a converter, a non-empty target suffix and a queue");
    struct sl_hook *h = sl_xcalloc(1, sizeof(*h));
    h->core = core;
    h->n_repos = cfg->n_repos;
    h->repos = sl_xcalloc(cfg->n_repos + 1, sizeof(char *));
    for (size_t i = 0; i < cfg->n_repos; i++)
        h->repos[i] = sl_xstrdup(cfg->repos[i]);
    h->suffix = sl_xstrdup(cfg->suffix);
    h->queue_max = cfg->queue_max;
    h->insecure = cfg->insecure;
    h->convert = cfg->convert;
    h->convert_ud = cfg->convert_ud;
    pthread_mutex_init(&h->lock, NULL);
    pthread_cond_init(&h->cond, NULL);
    int r = pthread_create(&h->thread, NULL, worker, h);
    if (r != 0) {
        sl_hook_free(h);
        return sl_error_make(err, r, "hook: start the worker thread: %s", strerror(r));
    }
    h->started = true;
    *ret = h;
    return 0;
}

static bool repo_selected(const struct sl_hook *h, const char *host, const char *repo)
{
    _cleanup_free_ char *full = host ? sl_xasprintf("%s/%s", host, repo) : NULL;
    for (size_t i = 0; i < h->n_repos; i++)
        if (fnmatch(h->repos[i], repo, 0) == 0 || (full && fnmatch(h->repos[i], full, 0) == 0))
            return true;
    return false;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

/* Under lock: is dst waiting or being converted? */
static bool pending(const struct sl_hook *h, const char *dst)
{
    if (h->running && strcmp(h->running, dst) == 0)
        return false; /* a new push while converting: the tag may have moved, convert again */
    for (const struct job *j = h->head; j; j = j->next)
        if (strcmp(j->dst, dst) == 0)
            return true;
    return false;
}

int sl_hook_submit(struct sl_hook *h, const char *body, size_t len, json_t **ret, sl_error_t *err)
{
    struct sl_hook_event *ev = NULL;
    size_t n = 0;
    int r = sl_hook_parse(body, len, &ev, &n, err);
    if (r < 0) {
        atomic_fetch_add(&h->payloads_rejected, 1);
        return r;
    }
    struct job *first = NULL, **last = &first;
    size_t ignored = 0;
    json_auto_t *queued = json_array();
    for (size_t i = 0; i < n; i++) {
        const char *tag = ev[i].tag;
        if (!ev[i].host || ends_with(tag, h->suffix) ||
            !repo_selected(h, ev[i].host, ev[i].repository)) {
            ignored++;
            continue;
        }
        struct job *j = sl_xcalloc(1, sizeof(*j));
        j->src = ev[i].digest ? sl_xasprintf("%s/%s@%s", ev[i].host, ev[i].repository, ev[i].digest)
                              : sl_xasprintf("%s/%s:%s", ev[i].host, ev[i].repository, tag);
        j->dst = sl_xasprintf("%s/%s:%s%s", ev[i].host, ev[i].repository, tag, h->suffix);
        *last = j;
        last = &j->next;
    }
    sl_hook_events_free(ev, n);

    /* All or nothing: a sender that gets 503 retries the whole payload. */
    pthread_mutex_lock(&h->lock);
    size_t dup = 0, fresh = 0;
    for (struct job *j = first; j; j = j->next)
        if (!pending(h, j->dst))
            fresh++;
    if (h->queued + fresh > h->queue_max) {
        pthread_mutex_unlock(&h->lock);
        while (first) {
            struct job *j = first;
            first = j->next;
            job_free(j);
        }
        atomic_fetch_add(&h->payloads_rejected, 1);
        return sl_error_make(err, EAGAIN, "hook: conversion queue full (%zu waiting)",
                             h->queue_max);
    }
    while (first) {
        struct job *j = first;
        first = j->next;
        j->next = NULL;
        if (pending(h, j->dst)) {
            dup++;
            json_array_append_new(queued, json_string(j->src));
            job_free(j);
            continue;
        }
        json_array_append_new(queued, json_string(j->src));
        if (h->tail)
            h->tail->next = j;
        else
            h->head = j;
        h->tail = j;
        h->queued++;
    }
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->lock);
    atomic_fetch_add(&h->events_queued, fresh);
    atomic_fetch_add(&h->events_duplicate, dup);
    atomic_fetch_add(&h->events_ignored, ignored);
    *ret = json_pack("{s:s, s:i, s:s, s:O, s:I}", "status", "OK", "code", 200, "message",
                     fresh ? "conversion queued" : "nothing to convert", "queued", queued,
                     "ignored", (json_int_t)ignored);
    return 0;
}

int sl_hook_metrics(struct sl_hook *h, struct sl_buf *out)
{
    int r = sl_buf_puts(out, "# HELP starlight_proxy_hook_conversions_total Conversions run by "
                             "the registry hook, by result.\n"
                             "# TYPE starlight_proxy_hook_conversions_total counter\n");
    for (int i = 0; i < RES_N && r >= 0; i++)
        r = sl_buf_printf(out,
                          "starlight_proxy_hook_conversions_total{result=\"%s\"} %" PRIu64 "\n",
                          result_names[i], (uint64_t)atomic_load(&h->results[i]));
    pthread_mutex_lock(&h->lock);
    size_t queued = h->queued;
    bool running = h->running != NULL;
    pthread_mutex_unlock(&h->lock);
    if (r >= 0)
        r = sl_buf_printf(
            out,
            "# HELP starlight_proxy_hook_events_total Pushes named by hook payloads, by fate.\n"
            "# TYPE starlight_proxy_hook_events_total counter\n"
            "starlight_proxy_hook_events_total{result=\"queued\"} %" PRIu64 "\n"
            "starlight_proxy_hook_events_total{result=\"duplicate\"} %" PRIu64 "\n"
            "starlight_proxy_hook_events_total{result=\"ignored\"} %" PRIu64 "\n"
            "# HELP starlight_proxy_hook_payloads_rejected_total Hook payloads refused "
            "(malformed, or queue full).\n"
            "# TYPE starlight_proxy_hook_payloads_rejected_total counter\n"
            "starlight_proxy_hook_payloads_rejected_total %" PRIu64 "\n"
            "# HELP starlight_proxy_hook_queue_length Conversions waiting.\n"
            "# TYPE starlight_proxy_hook_queue_length gauge\n"
            "starlight_proxy_hook_queue_length %zu\n"
            "# HELP starlight_proxy_hook_running Conversions running now.\n"
            "# TYPE starlight_proxy_hook_running gauge\n"
            "starlight_proxy_hook_running %d\n"
            "# HELP starlight_proxy_hook_seconds_total Time spent converting and notifying.\n"
            "# TYPE starlight_proxy_hook_seconds_total counter\n"
            "starlight_proxy_hook_seconds_total %.3f\n",
            (uint64_t)atomic_load(&h->events_queued), (uint64_t)atomic_load(&h->events_duplicate),
            (uint64_t)atomic_load(&h->events_ignored), (uint64_t)atomic_load(&h->payloads_rejected),
            queued, running ? 1 : 0, (double)atomic_load(&h->seconds_ms) / 1000.0);
    return r;
}

void sl_hook_free(struct sl_hook *h)
{
    if (!h)
        return;
    if (h->started) {
        pthread_mutex_lock(&h->lock);
        h->stop = true;
        pthread_cond_broadcast(&h->cond);
        pthread_mutex_unlock(&h->lock);
        pthread_join(h->thread, NULL);
    }
    while (h->head) {
        struct job *j = h->head;
        h->head = j->next;
        job_free(j);
    }
    pthread_mutex_destroy(&h->lock);
    pthread_cond_destroy(&h->cond);
    for (size_t i = 0; i < h->n_repos; i++)
        free(h->repos[i]);
    free(h->repos);
    free(h->suffix);
    free(h);
}
