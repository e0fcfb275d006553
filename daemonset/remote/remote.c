/* remote.c — the remote-snapshot path (remote.h): labels -> image, one pull per image and
 * namespace at a time, Prepare waits (no lock held) until the image is ready or failed. */
#include "remote.h"

#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_WAIT_S 120
/* A failed pull is remembered this long: the image's other layers (and a retry by the same
 * unpack) fall back at once, and the fallback counts once per image. */
#define FAILED_TTL_S 30

enum job_state { JOB_RUNNING, JOB_READY, JOB_FAILED };

struct job {
    struct job *next;
    struct sl_remote *owner;
    char *ns, *ref;
    enum job_state state;
    bool ended;          /* the pull thread is done */
    struct timespec end; /* CLOCK_MONOTONIC, when ended */
    char *error;
    int refs; /* the table's entry (while running) + the thread + waiters; under owner->lock */
};

struct sl_remote {
    struct sl_remote_options o;
    char *proxy_url, *platform;
    struct sl_snap *snap;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* job state changes, thread ends */
    struct job *jobs;    /* running pulls */
    unsigned waiters, threads;
    atomic_bool stopping;
    struct sl_metric *fallbacks, *remote, *pulls, *fetched;
};

static const char *label(const struct sl_snap_label *l, size_t n, const char *key)
{
    for (size_t i = 0; i < n; i++)
        if (l[i].key && l[i].value && *l[i].value && strcmp(l[i].key, key) == 0)
            return l[i].value;
    return NULL;
}

int sl_remote_parse(const char *key, const struct sl_snap_label *labels, size_t nlabels,
                    struct sl_remote_target *ret)
{
    *ret = (struct sl_remote_target){0};
    if (!key || label(labels, nlabels, SL_SNAP_LABEL_STARLIGHT_LAYER))
        return 0;
    const char *slash = strchr(key, '/');
    if (!slash || slash == key || (size_t)(slash - key) >= sizeof(ret->ns))
        return 0;
    memcpy(ret->ns, key, (size_t)(slash - key));
    ret->ns[slash - key] = '\0';
    ret->chain = label(labels, nlabels, SL_SNAP_LABEL_REF);
    ret->ref = label(labels, nlabels, SL_REMOTE_LABEL_CRI_REF);
    ret->layer = label(labels, nlabels, SL_REMOTE_LABEL_CRI_LAYER);
    if (!ret->ref) {
        ret->ref = label(labels, nlabels, SL_REMOTE_LABEL_STARGZ_REF);
        ret->layer = label(labels, nlabels, SL_REMOTE_LABEL_STARGZ_LAYER);
    }
    if (!ret->chain || !ret->ref)
        return 0;
    return 1;
}

struct sl_remote *sl_remote_new(const struct sl_remote_options *o)
{
    struct sl_remote *r = sl_xcalloc(1, sizeof(*r));
    r->o = *o;
    r->proxy_url = sl_xstrdup(o->proxy_url);
    r->platform = o->platform ? sl_xstrdup(o->platform) : NULL;
    r->o.proxy_url = r->proxy_url;
    r->o.platform = r->platform;
    if (!r->o.wait_s)
        r->o.wait_s = DEFAULT_WAIT_S;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    if (o->metrics) {
        /* the same families as the control API's (sl_metrics_counter returns known ones) */
        r->fallbacks = sl_metrics_counter(o->metrics, "starlight_fallbacks_total",
                                          "Pulls that fell back to a normal unpack");
        r->pulls = sl_metrics_counter(o->metrics, "starlight_pulls_total", "Pulls by result");
        r->fetched = sl_metrics_counter(o->metrics, "starlight_pull_bytes_fetched_total",
                                        "Bytes received from proxies (delta streams)");
        r->remote = sl_metrics_counter(o->metrics, "starlight_remote_prepares_total",
                                       "Prepares with a remote-snapshot target, by result "
                                       "(remote: ALREADY_EXISTS, fallback: normal unpack)");
        sl_metric_add(r->fallbacks, NULL, 0);
        sl_metric_add(r->remote, "result=\"remote\"", 0);
        sl_metric_add(r->remote, "result=\"fallback\"", 0);
    }
    return r;
}

void sl_remote_attach(struct sl_remote *r, struct sl_snap *snap)
{
    pthread_mutex_lock(&r->lock);
    r->snap = snap;
    pthread_mutex_unlock(&r->lock);
}

static void job_unref(struct job *j);

void sl_remote_free(struct sl_remote *r)
{
    if (!r)
        return;
    atomic_store(&r->stopping, true);
    pthread_mutex_lock(&r->lock);
    while (r->threads || r->waiters)
        pthread_cond_wait(&r->cond, &r->lock);
    while (r->jobs) { /* failed pulls kept for FAILED_TTL_S */
        struct job *j = r->jobs;
        r->jobs = j->next;
        job_unref(j);
    }
    pthread_mutex_unlock(&r->lock);
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r->proxy_url);
    free(r->platform);
    free(r);
}

/* Under r->lock. */
static void job_unref(struct job *j)
{
    if (--j->refs > 0)
        return;
    free(j->ns);
    free(j->ref);
    free(j->error);
    free(j);
}

static int on_event(void *ud, enum sl_pull_phase phase, const struct sl_pull_stats *s)
{
    (void)s;
    struct job *j = ud;
    struct sl_remote *r = j->owner;
    if (atomic_load(&r->stopping))
        return -ECANCELED;
    if (phase == SL_PULL_READY) {
        pthread_mutex_lock(&r->lock);
        j->state = JOB_READY;
        pthread_cond_broadcast(&r->cond);
        pthread_mutex_unlock(&r->lock);
    }
    return 0;
}

static void *pull_main(void *arg)
{
    struct job *j = arg;
    struct sl_remote *r = j->owner;
    _cleanup_error_ sl_error_t err = NULL;
    struct sl_pull_request req = {
        .proxy_url = r->o.proxy_url,
        .ref = j->ref,
        .platform = r->o.platform,
        .ns = j->ns,
        .on_event = on_event,
        .event_ud = j,
        .on_register = r->o.on_register,
        .register_ud = r->o.register_ud,
    };
    struct sl_pull_stats st;
    log_info("remote snapshot: pull %s (namespace %s) from %s", j->ref, j->ns, r->o.proxy_url);
    int rc = sl_pull_run(r->o.store, r->o.fs, &req, &st, &err);
    sl_metric_add(r->pulls, rc < 0 ? "result=\"error\"" : "result=\"ok\"", 1);
    sl_metric_add(r->fetched, NULL, (double)st.bytes_received);
    if (rc < 0 && j->state != JOB_READY) {
        log_warn("remote snapshot: falling back to a normal unpack of %s (namespace %s): %s",
                 j->ref, j->ns, sl_error_msg(err, rc));
        sl_metric_add(r->fallbacks, NULL, 1);
    } else if (rc < 0) {
        log_warn("remote snapshot: pull %s after it was ready: %s", j->ref, sl_error_msg(err, rc));
    } else {
        log_info("pull %s: %" PRIu64 " bytes (payload %" PRIu64 "), ready after %.0f ms, "
                 "complete after %.0f ms (remote snapshot)",
                 j->ref, st.bytes_received, st.payload_bytes, st.ms_ready, st.ms_complete);
    }
    pthread_mutex_lock(&r->lock);
    if (rc < 0 && j->state != JOB_READY) {
        j->state = JOB_FAILED;
        j->error = sl_xstrdup(sl_error_msg(err, rc));
    }
    j->ended = true;
    clock_gettime(CLOCK_MONOTONIC, &j->end);
    for (struct job **pp = &r->jobs; *pp && j->state != JOB_FAILED; pp = &(*pp)->next) {
        if (*pp == j) {
            *pp = j->next;
            j->refs--; /* the table's */
            break;
        }
    }
    job_unref(j); /* the thread's */
    r->threads--;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);
    return NULL;
}

/* Whether a committed snapshot labelled snapshot.ref=chain on `parent` exists (what
 * containerd's metadata store walks for after ALREADY_EXISTS). */
static bool chain_exists(struct sl_snap *snap, const char *chain, const char *parent)
{
    _cleanup_free_ char *f = sl_xasprintf("labels.\"" SL_SNAP_LABEL_REF "\"==\"%s\"", chain);
    const char *filters[] = {f};
    struct sl_snap_info_list l = {0};
    bool found = false;
    if (sl_snap_list(snap, filters, 1, &l, NULL) < 0)
        return false;
    for (size_t i = 0; i < l.n && !found; i++) {
        const char *p = l.v[i].parent ? l.v[i].parent : "";
        found = l.v[i].kind == SL_SNAP_KIND_COMMITTED && strcmp(p, parent ? parent : "") == 0;
    }
    sl_snap_info_list_clear(&l);
    return found;
}

/* A normal unpack of this layer. `counted`: the pull thread already warned and counted the
 * image's fallback. */
static int fallback(struct sl_remote *r, const struct sl_remote_target *t, const char *why,
                    bool counted)
{
    if (counted) {
        log_debug("remote snapshot: %s layer %s: normal unpack (%s)", t->ref,
                  t->layer ? t->layer : t->chain, why);
    } else {
        log_warn("remote snapshot: falling back to a normal unpack of %s layer %s: %s", t->ref,
                 t->layer ? t->layer : t->chain, why);
        sl_metric_add(r->fallbacks, NULL, 1);
    }
    sl_metric_add(r->remote, "result=\"fallback\"", 1);
    return 0;
}

int sl_remote_prepare_hook(void *ud, const char *key, const char *parent,
                           const struct sl_snap_label *labels, size_t nlabels, sl_error_t *err)
{
    struct sl_remote *r = ud;
    struct sl_remote_target t;
    if (!r || sl_remote_parse(key, labels, nlabels, &t) <= 0)
        return 0;
    if (parent && !*parent)
        parent = NULL;

    pthread_mutex_lock(&r->lock);
    struct sl_snap *snap = r->snap;
    if (!snap || atomic_load(&r->stopping)) {
        pthread_mutex_unlock(&r->lock);
        return fallback(r, &t, "the daemon is not ready or stopping", false);
    }
    if (r->waiters >= SL_REMOTE_MAX_WAITERS) {
        pthread_mutex_unlock(&r->lock);
        return fallback(r, &t, "too many remote prepares waiting", false);
    }
    struct job *j = NULL, **pp;
    for (pp = &r->jobs; (j = *pp); pp = &j->next)
        if (strcmp(j->ns, t.ns) == 0 && strcmp(j->ref, t.ref) == 0)
            break;
    if (j && j->ended && j->state == JOB_FAILED) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - j->end.tv_sec < FAILED_TTL_S) {
            _cleanup_free_ char *why = sl_xstrdup(j->error ? j->error : "the pull failed");
            pthread_mutex_unlock(&r->lock);
            return fallback(r, &t, why, true);
        }
        *pp = j->next; /* expired: try again */
        job_unref(j);
        j = NULL;
    }
    if (!j) {
        j = sl_xcalloc(1, sizeof(*j));
        j->owner = r;
        j->ns = sl_xstrdup(t.ns);
        j->ref = sl_xstrdup(t.ref);
        j->refs = 2; /* table + thread */
        pthread_t th;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &at, pull_main, j) != 0) {
            pthread_attr_destroy(&at);
            pthread_mutex_unlock(&r->lock);
            free(j->ns);
            free(j->ref);
            free(j);
            return fallback(r, &t, "cannot start a pull thread", false);
        }
        pthread_attr_destroy(&at);
        r->threads++;
        j->next = r->jobs;
        r->jobs = j;
    }
    j->refs++;
    r->waiters++;
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += (time_t)r->o.wait_s;
    bool timed_out = false;
    while (j->state == JOB_RUNNING && !j->ended && !timed_out)
        timed_out = pthread_cond_timedwait(&r->cond, &r->lock, &deadline) == ETIMEDOUT;
    enum job_state state = j->state;
    _cleanup_free_ char *why = j->error ? sl_xstrdup(j->error) : NULL;
    job_unref(j);
    r->waiters--;
    pthread_cond_broadcast(&r->cond);
    pthread_mutex_unlock(&r->lock);

    if (state == JOB_FAILED)
        return fallback(r, &t, why ? why : "the pull failed", true);
    if (state != JOB_READY)
        return fallback(
            r, &t, timed_out ? "the pull was not ready in time" : "the pull ended early", false);
    if (!chain_exists(snap, t.chain, parent))
        return fallback(r, &t, "the pull did not register this layer's chain snapshot", false);
    sl_metric_add(r->remote, "result=\"remote\"", 1);
    log_info("remote snapshot: %s layer %s served by Starlight (chain %s)", t.ref,
             t.layer ? t.layer : "?", t.chain);
    return sl_error_make(err, EEXIST, "target snapshot %s: already exists (Starlight)", t.chain);
}
