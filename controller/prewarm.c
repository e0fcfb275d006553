/* prewarm.c — see prewarm.h. */
#include "prewarm.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "reflector.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>

enum kind { K_DEPLOY, K_STS, K_DS, K_POD, K_N };

static const struct {
    const char *kind, *api, *resource;
} kinds[K_N] = {
    [K_DEPLOY] = {"Deployment", "apps/v1", "deployments"},
    [K_STS] = {"StatefulSet", "apps/v1", "statefulsets"},
    [K_DS] = {"DaemonSet", "apps/v1", "daemonsets"},
    [K_POD] = {"Pod", "v1", "pods"},
};

struct watch {
    struct sl_prewarm *p;
    enum kind k;
};

struct sl_prewarm {
    struct sl_prewarm_options o;
    struct sl_k8s_reflector *refl[K_N];
    struct watch w[K_N];
    pthread_mutex_t lock;  /* objects */
    json_t *objs[K_N];     /* "ns/name" → object */
    pthread_mutex_t write; /* node writes, one at a time */
    json_t *written;       /* "node\nowner\nto" → true: entries known to be on the node */
    struct sl_metric *patches;
};

static const char *meta(const json_t *o, const char *k)
{
    return json_string_value(json_object_get(json_object_get(o, "metadata"), k));
}

static bool labels_match(const json_t *sel, const json_t *labels)
{
    if (!json_is_object(sel) || json_object_size(sel) == 0)
        return false; /* an empty selector would match everything: not a workload's */
    const char *k;
    const json_t *v;
    json_object_foreach((json_t *)sel, k, v)
    {
        const char *have = json_string_value(json_object_get(labels, k));
        if (!have || !json_is_string(v) || strcmp(have, json_string_value(v)) != 0)
            return false;
    }
    return true;
}

json_t *sl_prewarm_desired(const char *kind, const json_t *workload, const json_t *pods)
{
    json_t *out = json_array();
    const char *ns = meta(workload, "namespace"), *name = meta(workload, "name");
    const json_t *spec = json_object_get(workload, "spec");
    const json_t *sel = json_object_get(json_object_get(spec, "selector"), "matchLabels");
    const json_t *tmpl =
        json_object_get(json_object_get(json_object_get(spec, "template"), "spec"), "containers");
    json_int_t gen =
        json_integer_value(json_object_get(json_object_get(workload, "metadata"), "generation"));
    if (!ns || !name || !json_is_array(tmpl))
        return out;
    _cleanup_free_ char *owner = sl_xasprintf("%s/%s/%s", ns, kind, name);
    size_t i, j, k;
    const json_t *pod, *pc, *tc;
    json_array_foreach((json_t *)pods, i, pod)
    {
        const char *pns = meta(pod, "namespace");
        const json_t *pspec = json_object_get(pod, "spec");
        const char *node = json_string_value(json_object_get(pspec, "nodeName"));
        const char *phase =
            json_string_value(json_object_get(json_object_get(pod, "status"), "phase"));
        if (!pns || strcmp(pns, ns) != 0 || !node || !*node ||
            json_object_get(json_object_get(pod, "metadata"), "deletionTimestamp") ||
            (phase && (strcmp(phase, "Succeeded") == 0 || strcmp(phase, "Failed") == 0)) ||
            !labels_match(sel, json_object_get(json_object_get(pod, "metadata"), "labels")))
            continue;
        json_array_foreach(json_object_get(pspec, "containers"), j, pc)
        {
            const char *cn = json_string_value(json_object_get(pc, "name"));
            const char *old = json_string_value(json_object_get(pc, "image"));
            if (!cn || !old)
                continue;
            json_array_foreach((json_t *)tmpl, k, tc)
            {
                const char *tn = json_string_value(json_object_get(tc, "name"));
                const char *img = json_string_value(json_object_get(tc, "image"));
                if (!tn || !img || strcmp(tn, cn) != 0 || strcmp(img, old) == 0)
                    continue;
                bool dup = false;
                size_t d;
                const json_t *e;
                json_array_foreach(out, d, e)
                {
                    dup =
                        dup || (strcmp(json_string_value(json_object_get(e, "node")), node) == 0 &&
                                strcmp(json_string_value(json_object_get(e, "from")), old) == 0 &&
                                strcmp(json_string_value(json_object_get(e, "to")), img) == 0);
                }
                if (!dup)
                    json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:s,s:I}", "node", node,
                                                         "from", old, "to", img, "owner", owner,
                                                         "generation", gen));
            }
        }
    }
    return out;
}

int sl_prewarm_merge(const char *current, const json_t *entry, char **ret_text)
{
    json_t *list = current ? json_loads(current, 0, NULL) : NULL;
    if (!json_is_array(list)) {
        json_decref(list);
        list = json_array();
    }
    const char *owner = json_string_value(json_object_get(entry, "owner"));
    const char *to = json_string_value(json_object_get(entry, "to"));
    const char *from = json_string_value(json_object_get(entry, "from"));
    json_int_t gen = json_integer_value(json_object_get(entry, "generation"));
    json_t *out = json_array();
    size_t i;
    json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *eo = json_string_value(json_object_get(e, "owner"));
        const char *et = json_string_value(json_object_get(e, "to"));
        const char *ef = json_string_value(json_object_get(e, "from"));
        json_int_t eg = json_integer_value(json_object_get(e, "generation"));
        if (!json_is_object(e) || !eo || !et)
            continue; /* garbage in someone else's write: drop it */
        if (strcmp(eo, owner) == 0 && strcmp(et, to) == 0 && ef && strcmp(ef, from) == 0) {
            json_decref(out);
            json_decref(list);
            *ret_text = NULL;
            return 0; /* already there */
        }
        if (strcmp(eo, owner) == 0 && eg < gen)
            continue; /* superseded by this rollout */
        json_array_append(out, e);
    }
    json_array_append_new(out, json_pack("{s:s,s:s,s:s,s:I}", "from", from, "to", to, "owner",
                                         owner, "generation", gen));
    while (json_array_size(out) > SL_PREWARM_MAX_ENTRIES)
        json_array_remove(out, 0);
    size_t n;
    *ret_text = sl_json_dump(out, &n);
    json_decref(out);
    json_decref(list);
    return 1;
}

/* Writes one entry on its node (GET, merge, merge patch). Under p->write. */
static void write_entry(struct sl_prewarm *p, const json_t *e)
{
    const char *node = json_string_value(json_object_get(e, "node"));
    _cleanup_free_ char *key = sl_xasprintf(
        "%s\n%s\n%s\n%s", node, json_string_value(json_object_get(e, "owner")),
        json_string_value(json_object_get(e, "from")), json_string_value(json_object_get(e, "to")));
    if (json_object_get(p->written, key))
        return;
    _cleanup_free_ char *path = sl_k8s_path("v1", NULL, "nodes", node, NULL);
    _cleanup_error_ sl_error_t err = NULL;
    for (int attempt = 0; attempt < 3; attempt++) {
        json_t *obj = NULL;
        int r = sl_k8s_get(p->o.client, path, &obj, &err);
        if (r < 0) {
            log_warn("prewarm: node %s: %s", node, sl_error_msg(err, r));
            return;
        }
        _cleanup_free_ char *text = NULL;
        sl_prewarm_merge(sl_k8s_annotation(obj, SL_PREWARM_ANNOTATION), e, &text);
        if (!text) {
            json_decref(obj);
            json_object_set_new(p->written, key, json_true());
            return;
        }
        /* resourceVersion in the patch: a concurrent writer makes it 409, and we merge again */
        json_t *patch = json_pack("{s:{s:s,s:{s:s}}}", "metadata", "resourceVersion",
                                  meta(obj, "resourceVersion") ? meta(obj, "resourceVersion") : "",
                                  "annotations", SL_PREWARM_ANNOTATION, text);
        json_decref(obj);
        size_t n;
        _cleanup_free_ char *body = sl_json_dump(patch, &n);
        json_decref(patch);
        sl_error_free(&err);
        r = sl_k8s_patch(p->o.client, path, SL_K8S_PATCH_MERGE, body, NULL, &err);
        if (r == -ESTALE) {
            sl_error_free(&err);
            continue;
        }
        if (r < 0) {
            log_warn("prewarm: annotate node %s: %s", node, sl_error_msg(err, r));
            sl_metric_add(p->patches, "result=\"error\"", 1);
            return;
        }
        json_object_set_new(p->written, key, json_true());
        sl_metric_add(p->patches, "result=\"ok\"", 1);
        const char *kv[] = {"node", node, NULL};
        sl_log_kv(SL_LOG_INFO, kv,
                  "prewarm: node %s: %s -> %s (%s generation %" JSON_INTEGER_FORMAT ")", node,
                  json_string_value(json_object_get(e, "from")),
                  json_string_value(json_object_get(e, "to")),
                  json_string_value(json_object_get(e, "owner")),
                  json_integer_value(json_object_get(e, "generation")));
        return;
    }
    log_warn("prewarm: node %s: kept changing under us, giving up for now", node);
}

/* Recomputes every workload of `ns` (NULL = all) and writes what is missing. */
static void reconcile(struct sl_prewarm *p, const char *ns)
{
    json_t *want = json_array();
    pthread_mutex_lock(&p->lock);
    json_t *pods = json_array();
    const char *key;
    json_t *o;
    json_object_foreach(p->objs[K_POD], key, o) json_array_append(pods, o);
    for (int k = K_DEPLOY; k <= K_DS; k++) {
        json_object_foreach(p->objs[k], key, o)
        {
            const char *wns = meta(o, "namespace");
            if (ns && (!wns || strcmp(wns, ns) != 0))
                continue;
            json_t *d = sl_prewarm_desired(kinds[k].kind, o, pods);
            json_array_extend(want, d);
            json_decref(d);
        }
    }
    pthread_mutex_unlock(&p->lock);
    json_decref(pods);
    pthread_mutex_lock(&p->write);
    size_t i;
    json_t *e;
    json_array_foreach(want, i, e) write_entry(p, e);
    pthread_mutex_unlock(&p->write);
    json_decref(want);
}

static void put(struct watch *w, const json_t *obj, bool del)
{
    const char *ns = meta(obj, "namespace"), *name = meta(obj, "name");
    if (!ns || !name)
        return;
    _cleanup_free_ char *key = sl_xasprintf("%s/%s", ns, name);
    pthread_mutex_lock(&w->p->lock);
    if (del)
        json_object_del(w->p->objs[w->k], key);
    else
        json_object_set(w->p->objs[w->k], key, (json_t *)obj);
    pthread_mutex_unlock(&w->p->lock);
    if (!del)
        reconcile(w->p, ns);
}

static void on_add(void *ud, const json_t *obj)
{
    put(ud, obj, false);
}

static void on_update(void *ud, const json_t *old, const json_t *obj)
{
    (void)old;
    put(ud, obj, false);
}

static void on_delete(void *ud, const json_t *obj)
{
    put(ud, obj, true);
}

int sl_prewarm_start(const struct sl_prewarm_options *o, struct sl_prewarm **ret, sl_error_t *err)
{
    struct sl_prewarm *p = sl_xcalloc(1, sizeof(*p));
    p->o = *o;
    pthread_mutex_init(&p->lock, NULL);
    pthread_mutex_init(&p->write, NULL);
    p->written = json_object();
    if (o->metrics) {
        p->patches = sl_metrics_counter(o->metrics, "starlight_controller_prewarm_patches_total",
                                        "Node prewarm annotation writes, by result");
        sl_metric_add(p->patches, "result=\"ok\"", 0);
    }
    for (int k = 0; k < K_N; k++) {
        p->objs[k] = json_object();
        p->w[k] = (struct watch){.p = p, .k = k};
        _cleanup_free_ char *path = sl_k8s_path(kinds[k].api, NULL, kinds[k].resource, NULL, NULL);
        const struct sl_k8s_reflector_options ro = {
            .path = path,
            .label_selector = k == K_POD ? "starlight-c.dev/provision=true" : NULL,
            .name = kinds[k].resource,
        };
        const struct sl_k8s_reflector_callbacks cb = {
            .on_add = on_add, .on_update = on_update, .on_delete = on_delete, .userdata = &p->w[k]};
        int r = sl_k8s_reflector_new(o->client, &ro, &cb, &p->refl[k], err);
        if (r >= 0)
            r = sl_k8s_reflector_start(p->refl[k], err);
        if (r < 0) {
            sl_prewarm_stop(p);
            return sl_error_wrap(err, r, "prewarm: watch %s", kinds[k].resource);
        }
    }
    *ret = p;
    return 0;
}

void sl_prewarm_stop(struct sl_prewarm *p)
{
    if (!p)
        return;
    for (int k = 0; k < K_N; k++)
        sl_k8s_reflector_free(p->refl[k]);
    for (int k = 0; k < K_N; k++)
        json_decref(p->objs[k]);
    json_decref(p->written);
    pthread_mutex_destroy(&p->lock);
    pthread_mutex_destroy(&p->write);
    free(p);
}
