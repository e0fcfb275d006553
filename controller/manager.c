/* manager.c — see manager.h. */
#include "manager.h"
#include "cleanup.h"
#include "json.h"
#include "k8s.h"
#include "lease.h"
#include "log.h"
#include "prewarm.h"
#include "tracejobs.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define NS_CACHE_S 30

struct sl_manager {
    struct sl_manager_options o;
    struct sl_k8s_client *client;
    struct sl_k8s_lease *lease;
    char *identity;
    pthread_mutex_t lock; /* controllers, ns cache */
    struct sl_prewarm *prewarm;
    struct sl_tracejobs *tracejobs;
    bool leading;
    json_t *ns_cache; /* ns → {"v": 0|1, "t": time} */
    struct sl_metric *leader_gauge;
};

static void start_controllers(void *ud)
{
    struct sl_manager *m = ud;
    pthread_mutex_lock(&m->lock);
    m->leading = true;
    _cleanup_error_ sl_error_t err = NULL;
    if (m->o.prewarm && !m->prewarm) {
        const struct sl_prewarm_options po = {.client = m->client, .metrics = m->o.metrics};
        int r = sl_prewarm_start(&po, &m->prewarm, &err);
        if (r < 0)
            log_error("%s", sl_error_msg(err, r));
    }
    if (m->o.trace_jobs && !m->tracejobs) {
        sl_error_free(&err);
        const struct sl_tracejobs_options to = {
            .client = m->client, .metrics = m->o.metrics, .grace_ms = m->o.trace_grace_ms};
        int r = sl_tracejobs_start(&to, &m->tracejobs, &err);
        if (r < 0)
            log_error("%s", sl_error_msg(err, r));
    }
    sl_metric_set(m->leader_gauge, NULL, 1);
    pthread_mutex_unlock(&m->lock);
    log_info("controllers running (%s%s)", m->o.prewarm ? "prewarm " : "",
             m->o.trace_jobs ? "trace-jobs" : "");
}

static void stop_controllers(void *ud)
{
    struct sl_manager *m = ud;
    pthread_mutex_lock(&m->lock);
    struct sl_prewarm *p = TAKE_PTR(m->prewarm);
    struct sl_tracejobs *t = TAKE_PTR(m->tracejobs);
    bool was = m->leading;
    m->leading = false;
    sl_metric_set(m->leader_gauge, NULL, 0);
    pthread_mutex_unlock(&m->lock);
    sl_prewarm_stop(p);
    sl_tracejobs_stop(t);
    if (was)
        log_info("controllers stopped");
}

int sl_manager_start(const struct sl_manager_options *o, struct sl_manager **ret, sl_error_t *err)
{
    struct sl_manager *m = sl_xcalloc(1, sizeof(*m));
    m->o = *o;
    pthread_mutex_init(&m->lock, NULL);
    m->ns_cache = json_object();
    if (o->metrics) {
        m->leader_gauge = sl_metrics_gauge(o->metrics, "starlight_controller_leader",
                                           "1 while this replica runs the controllers");
        sl_metric_set(m->leader_gauge, NULL, 0);
    }
    struct sl_k8s_config kc = {0};
    int r = sl_k8s_config_load(o->kubeconfig && *o->kubeconfig ? o->kubeconfig : NULL, &kc, err);
    if (r >= 0) {
        const struct sl_k8s_client_options co = {.field_manager = "starlight-controller"};
        r = sl_k8s_client_new(&kc, &co, &m->client, err);
        if (r >= 0)
            log_info("Kubernetes API %s (%s)", sl_k8s_client_server(m->client), kc.source);
    }
    sl_k8s_config_free(&kc);
    if (r < 0) {
        sl_manager_stop(m);
        return sl_error_wrap(err, r, "Kubernetes API");
    }
    if (!o->leader_elect) {
        start_controllers(m);
        *ret = m;
        return 0;
    }
    char host[128] = "controller";
    gethostname(host, sizeof(host) - 1);
    uint32_t rnd = 0;
    if (getrandom(&rnd, sizeof(rnd), 0) != sizeof(rnd))
        rnd = (uint32_t)time(NULL) ^ (uint32_t)getpid();
    m->identity = sl_xasprintf("%s_%08x", o->identity && *o->identity ? o->identity : host, rnd);
    const struct sl_k8s_lease_options lo = {
        .ns = o->lease_namespace && *o->lease_namespace ? o->lease_namespace : NULL,
        .name = o->lease_name,
        .identity = m->identity,
        .lease_duration_ms = (unsigned)o->lease_duration_ms,
        .renew_deadline_ms = (unsigned)o->renew_deadline_ms,
        .retry_period_ms = (unsigned)o->retry_period_ms,
        .on_started_leading = start_controllers,
        .on_stopped_leading = stop_controllers,
        .userdata = m,
    };
    r = sl_k8s_lease_new(m->client, &lo, &m->lease, err);
    if (r >= 0)
        r = sl_k8s_lease_start(m->lease, err);
    if (r < 0) {
        sl_manager_stop(m);
        return sl_error_wrap(err, r, "leader election");
    }
    log_info("leader election: Lease %s/%s as %s",
             lo.ns ? lo.ns : sl_k8s_client_namespace(m->client), o->lease_name, m->identity);
    *ret = m;
    return 0;
}

void sl_manager_stop(struct sl_manager *m)
{
    if (!m)
        return;
    sl_k8s_lease_free(m->lease); /* stops leading first (callbacks), then releases */
    stop_controllers(m);
    sl_k8s_client_free(m->client);
    json_decref(m->ns_cache);
    pthread_mutex_destroy(&m->lock);
    free(m->identity);
    free(m);
}

const char *sl_manager_status(void *ud)
{
    struct sl_manager *m = ud;
    if (!m->lease)
        return "single";
    return sl_k8s_lease_is_leader(m->lease) ? "leader" : "standby";
}

int sl_manager_namespace_opted_in(void *ud, const char *ns)
{
    struct sl_manager *m = ud;
    time_t now = time(NULL);
    pthread_mutex_lock(&m->lock);
    json_t *c = json_object_get(m->ns_cache, ns);
    if (c && now - (time_t)json_integer_value(json_object_get(c, "t")) < NS_CACHE_S) {
        int v = (int)json_integer_value(json_object_get(c, "v"));
        pthread_mutex_unlock(&m->lock);
        return v;
    }
    pthread_mutex_unlock(&m->lock);
    _cleanup_free_ char *path = sl_k8s_path("v1", NULL, "namespaces", ns, NULL);
    _cleanup_error_ sl_error_t err = NULL;
    json_t *obj = NULL;
    int r = sl_k8s_get(m->client, path, &obj, &err);
    if (r < 0 && r != -ENOENT) {
        log_warn("namespace %s: %s", ns, sl_error_msg(err, r));
        return r;
    }
    const char *l = obj ? sl_k8s_label(obj, "starlight-c.dev/provision") : NULL;
    int v = l && strcmp(l, "enabled") == 0;
    json_decref(obj);
    pthread_mutex_lock(&m->lock);
    if (json_object_size(m->ns_cache) > 4096)
        json_object_clear(m->ns_cache);
    json_object_set_new(m->ns_cache, ns, json_pack("{s:i,s:I}", "v", v, "t", (json_int_t)now));
    pthread_mutex_unlock(&m->lock);
    return v;
}
