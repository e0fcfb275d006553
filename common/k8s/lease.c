/* lease.c — client-go style leader election over a coordination.k8s.io/v1 Lease. */
#include "lease.h"
#include "k8s-internal.h"

#include "cleanup.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct sl_k8s_lease {
    struct sl_k8s_client *client;
    char *ns, *name, *identity, *path, *collection;
    unsigned duration_ms, renew_deadline_ms, retry_ms;
    struct sl_k8s_lease_options o; /* callbacks; strings above are the owned copies */

    pthread_mutex_t lock;
    bool leader;
    char *holder;        /* last observed holderIdentity */
    char *observed;      /* last observed record (holder|renew|acquire|transitions|duration) */
    int64_t observed_ms; /* our clock when `observed` last changed */
    int64_t observed_duration_ms;
    int64_t last_renew_ms; /* our clock at the last successful acquire/renew */

    volatile int stop;
    bool thread_started;
    pthread_t thread;
};

int sl_k8s_lease_new(struct sl_k8s_client *c, const struct sl_k8s_lease_options *opts,
                     struct sl_k8s_lease **ret, sl_error_t *err)
{
    if (!opts->name || !opts->name[0] || !opts->identity || !opts->identity[0])
        return sl_error_make(err, EINVAL, "lease: a name and an identity are required");
    unsigned d = opts->lease_duration_ms ? opts->lease_duration_ms : 15000;
    unsigned rd = opts->renew_deadline_ms ? opts->renew_deadline_ms : 10000;
    unsigned rp = opts->retry_period_ms ? opts->retry_period_ms : 2000;
    if (rd >= d || rp >= rd)
        return sl_error_make(err, EINVAL,
                             "lease: need retry period (%u ms) < renew deadline (%u ms) < lease "
                             "duration (%u ms)",
                             rp, rd, d);
    struct sl_k8s_lease *l = sl_xcalloc(1, sizeof(*l));
    l->client = c;
    l->ns = sl_xstrdup(opts->ns && opts->ns[0] ? opts->ns : sl_k8s_client_namespace(c));
    l->name = sl_xstrdup(opts->name);
    l->identity = sl_xstrdup(opts->identity);
    l->path = sl_k8s_path("coordination.k8s.io/v1", l->ns, "leases", l->name, NULL);
    l->collection = sl_k8s_path("coordination.k8s.io/v1", l->ns, "leases", NULL, NULL);
    l->duration_ms = d;
    l->renew_deadline_ms = rd;
    l->retry_ms = rp;
    l->o = *opts;
    pthread_mutex_init(&l->lock, NULL);
    *ret = l;
    return 0;
}

static unsigned duration_s(const struct sl_k8s_lease *l)
{
    unsigned s = (l->duration_ms + 999) / 1000;
    return s ? s : 1;
}

static json_t *spec_of(const json_t *lease)
{
    json_t *s = json_object_get(lease, "spec");
    return json_is_object(s) ? s : NULL;
}

/* Notes the record we read; when it changed, restart the validity clock. */
static void observe(struct sl_k8s_lease *l, const json_t *lease, bool *ret_changed_holder)
{
    const json_t *s = spec_of(lease);
    const char *holder = json_string_value(json_object_get(s, "holderIdentity"));
    const char *renew = json_string_value(json_object_get(s, "renewTime"));
    const char *acq = json_string_value(json_object_get(s, "acquireTime"));
    long long tr = json_integer_value(json_object_get(s, "leaseTransitions"));
    long long dur = json_integer_value(json_object_get(s, "leaseDurationSeconds"));
    _cleanup_free_ char *rec = sl_xasprintf("%s|%s|%s|%lld|%lld", holder ? holder : "",
                                            renew ? renew : "", acq ? acq : "", tr, dur);
    pthread_mutex_lock(&l->lock);
    bool changed_holder = !l->holder || strcmp(l->holder, holder ? holder : "") != 0;
    if (!l->observed || strcmp(l->observed, rec) != 0) {
        free(l->observed);
        l->observed = TAKE_PTR(rec);
        l->observed_ms = sl_k8s_now_ms();
        l->observed_duration_ms = (dur > 0 ? dur : 1) * 1000;
    }
    if (changed_holder) {
        free(l->holder);
        l->holder = sl_xstrdup(holder ? holder : "");
    }
    pthread_mutex_unlock(&l->lock);
    if (ret_changed_holder)
        *ret_changed_holder = changed_holder;
}

static json_t *make_spec(struct sl_k8s_lease *l, const char *acquire, long long transitions,
                         const char *now)
{
    return json_pack("{s:s,s:i,s:s,s:s,s:I}", "holderIdentity", l->identity, "leaseDurationSeconds",
                     (int)duration_s(l), "acquireTime", acquire, "renewTime", now,
                     "leaseTransitions", (json_int_t)transitions);
}

int sl_k8s_lease_try(struct sl_k8s_lease *l, bool *ret_leader, sl_error_t *err)
{
    char now[40];
    sl_k8s_time(0, true, now, sizeof(now));
    json_t *cur = NULL;
    *ret_leader = false;
    int r = sl_k8s_get(l->client, l->path, &cur, err);
    if (r == -ENOENT) {
        sl_error_free(err);
        json_t *obj = json_pack("{s:s,s:s,s:{s:s,s:s},s:o}", "apiVersion", "coordination.k8s.io/v1",
                                "kind", "Lease", "metadata", "name", l->name, "namespace", l->ns,
                                "spec", make_spec(l, now, 0, now));
        json_t *made = NULL;
        r = sl_k8s_create(l->client, l->collection, obj, &made, err);
        json_decref(obj);
        if (r < 0)
            return r; /* -EEXIST: another replica created it first */
        observe(l, made, NULL);
        json_decref(made);
        pthread_mutex_lock(&l->lock);
        l->last_renew_ms = sl_k8s_now_ms();
        pthread_mutex_unlock(&l->lock);
        *ret_leader = true;
        return 0;
    }
    if (r < 0)
        return r;
    bool changed = false;
    observe(l, cur, &changed);
    if (changed && l->o.on_new_leader) {
        const char *h = json_string_value(json_object_get(spec_of(cur), "holderIdentity"));
        l->o.on_new_leader(l->o.userdata, h ? h : "");
    }
    const json_t *s = spec_of(cur);
    const char *holder = json_string_value(json_object_get(s, "holderIdentity"));
    bool mine = holder && strcmp(holder, l->identity) == 0;
    pthread_mutex_lock(&l->lock);
    bool valid = l->observed_ms + l->observed_duration_ms > sl_k8s_now_ms();
    pthread_mutex_unlock(&l->lock);
    if (holder && holder[0] && !mine && valid) {
        json_decref(cur);
        return 0; /* someone else holds a live lease */
    }
    /* take it over, or renew it */
    const char *acq = json_string_value(json_object_get(s, "acquireTime"));
    long long tr = json_integer_value(json_object_get(s, "leaseTransitions"));
    json_t *spec = mine ? make_spec(l, acq ? acq : now, tr, now) : make_spec(l, now, tr + 1, now);
    json_object_set_new(cur, "spec", spec);
    json_t *upd = NULL;
    r = sl_k8s_update(l->client, l->path, cur, &upd, err);
    json_decref(cur);
    if (r < 0)
        return r; /* -ESTALE: lost the race */
    observe(l, upd, NULL);
    json_decref(upd);
    pthread_mutex_lock(&l->lock);
    l->last_renew_ms = sl_k8s_now_ms();
    pthread_mutex_unlock(&l->lock);
    *ret_leader = true;
    return 0;
}

int sl_k8s_lease_release(struct sl_k8s_lease *l, sl_error_t *err)
{
    json_t *cur = NULL;
    int r = sl_k8s_get(l->client, l->path, &cur, err);
    if (r < 0)
        return r;
    json_t *s = spec_of(cur);
    const char *holder = json_string_value(json_object_get(s, "holderIdentity"));
    if (!s || !holder || strcmp(holder, l->identity) != 0) {
        json_decref(cur);
        return 0;
    }
    char now[40];
    sl_k8s_time(0, true, now, sizeof(now));
    json_object_set_new(s, "holderIdentity", json_string(""));
    json_object_set_new(s, "leaseDurationSeconds", json_integer(1));
    json_object_set_new(s, "renewTime", json_string(now));
    r = sl_k8s_update(l->client, l->path, cur, NULL, err);
    json_decref(cur);
    return r;
}

static void set_leader(struct sl_k8s_lease *l, bool v)
{
    pthread_mutex_lock(&l->lock);
    bool was = l->leader;
    l->leader = v;
    pthread_mutex_unlock(&l->lock);
    if (v && !was) {
        log_info("lease %s/%s: %s became the leader", l->ns, l->name, l->identity);
        if (l->o.on_started_leading)
            l->o.on_started_leading(l->o.userdata);
    } else if (!v && was) {
        log_warn("lease %s/%s: %s stopped leading", l->ns, l->name, l->identity);
        if (l->o.on_stopped_leading)
            l->o.on_stopped_leading(l->o.userdata);
    }
}

static void *loop(void *p)
{
    struct sl_k8s_lease *l = p;
    while (!l->stop) {
        bool leader = false;
        sl_error_t e = NULL;
        int r = sl_k8s_lease_try(l, &leader, &e);
        if (r < 0) {
            log_debug("lease %s/%s: %s", l->ns, l->name, sl_error_msg(e, r));
            sl_error_free(&e);
        }
        pthread_mutex_lock(&l->lock);
        bool was = l->leader;
        int64_t since = sl_k8s_now_ms() - l->last_renew_ms;
        pthread_mutex_unlock(&l->lock);
        if (leader)
            set_leader(l, true);
        else if (was && (r == 0 || since >= (int64_t)l->renew_deadline_ms))
            set_leader(l, false); /* someone else holds it, or no renewal within the deadline */
        /* jitter 0..20% on the retry period, as client-go's wait.JitterUntil */
        int64_t d = l->retry_ms + (int64_t)(sl_k8s_rand() % (l->retry_ms / 5 + 1));
        sl_k8s_sleep_ms(d, &l->stop);
    }
    return NULL;
}

int sl_k8s_lease_start(struct sl_k8s_lease *l, sl_error_t *err)
{
    if (l->thread_started)
        return sl_error_make(err, EALREADY, "lease: already started");
    l->stop = 0;
    int x = pthread_create(&l->thread, NULL, loop, l);
    if (x != 0)
        return sl_error_make(err, x, "lease: cannot start the election thread");
    l->thread_started = true;
    return 0;
}

void sl_k8s_lease_stop(struct sl_k8s_lease *l)
{
    if (!l)
        return;
    l->stop = 1;
    if (l->thread_started) {
        pthread_join(l->thread, NULL);
        l->thread_started = false;
    }
    if (sl_k8s_lease_is_leader(l)) {
        if (!l->o.no_release) {
            sl_error_t e = NULL;
            int r = sl_k8s_lease_release(l, &e);
            if (r < 0)
                log_warn("lease %s/%s: release: %s", l->ns, l->name, sl_error_msg(e, r));
            sl_error_free(&e);
        }
        set_leader(l, false);
    }
}

void sl_k8s_lease_free(struct sl_k8s_lease *l)
{
    if (!l)
        return;
    sl_k8s_lease_stop(l);
    free(l->ns);
    free(l->name);
    free(l->identity);
    free(l->path);
    free(l->collection);
    free(l->holder);
    free(l->observed);
    pthread_mutex_destroy(&l->lock);
    free(l);
}

bool sl_k8s_lease_is_leader(struct sl_k8s_lease *l)
{
    pthread_mutex_lock(&l->lock);
    bool v = l->leader;
    pthread_mutex_unlock(&l->lock);
    return v;
}

char *sl_k8s_lease_holder(struct sl_k8s_lease *l)
{
    pthread_mutex_lock(&l->lock);
    char *h = l->holder ? sl_xstrdup(l->holder) : NULL;
    pthread_mutex_unlock(&l->lock);
    return h;
}
