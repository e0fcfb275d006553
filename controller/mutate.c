/* mutate.c — see mutate.h. */
#include "mutate.h"
#include "base64.h"
#include "buf.h"
#include "cleanup.h"
#include "json.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define MAX_IMAGES 256 /* containers a Pod may name (the API allows fewer in practice) */

const char *sl_mutate_result_name(enum sl_mutate_result r)
{
    switch (r) {
    case SL_MUTATE_PATCHED:
        return "patched";
    case SL_MUTATE_NOT_POD:
        return "not-pod-create";
    case SL_MUTATE_NOT_OPTED:
        return "not-opted-in";
    case SL_MUTATE_INJECTED:
        return "already-injected";
    case SL_MUTATE_NO_STARLIGHT:
        return "no-starlight-image";
    case SL_MUTATE_UNKNOWN:
        return "proxy-unavailable";
    }
    return "?";
}

/* JSON Pointer token escaping (RFC 6901): ~ → ~0, / → ~1. Caller frees. */
static char *ptr_escape(const char *s)
{
    struct sl_buf b;
    sl_buf_init(&b, 4096);
    for (; *s; s++) {
        if (*s == '~')
            (void)sl_buf_puts(&b, "~0");
        else if (*s == '/')
            (void)sl_buf_puts(&b, "~1");
        else
            (void)sl_buf_append(&b, s, 1);
    }
    (void)sl_buf_append(&b, "", 1);
    return (char *)b.data;
}

static void add_op(json_t *patch, const char *path, json_t *value)
{
    json_array_append_new(patch,
                          json_pack("{s:s,s:s,s:o}", "op", "add", "path", path, "value", value));
}

/* Adds key=value to the map at /metadata/<map> (which exists), creating the map when absent. */
static void add_map_entry(json_t *patch, const json_t *meta, const char *map, const char *key,
                          const char *value)
{
    const json_t *m = json_object_get(meta, map);
    if (!json_is_object(m)) {
        _cleanup_free_ char *p = sl_xasprintf("/metadata/%s", map);
        add_op(patch, p, json_pack("{s:s}", key, value));
        return;
    }
    _cleanup_free_ char *k = ptr_escape(key);
    _cleanup_free_ char *p = sl_xasprintf("/metadata/%s/%s", map, k);
    add_op(patch, p, json_string(value));
}

static bool has_named(const json_t *arr, const char *name)
{
    size_t i;
    const json_t *e;
    json_array_foreach(arr, i, e)
    {
        const char *n = json_string_value(json_object_get(e, "name"));
        if (n && strcmp(n, name) == 0)
            return true;
    }
    return false;
}

json_t *sl_mutate_pod_patch(const json_t *pod, const char *const *images, size_t n,
                            const struct sl_mutate_options *o)
{
    json_t *patch = json_array();
    const json_t *meta = json_object_get(pod, "metadata");
    if (!json_is_object(meta))
        meta = NULL;
    const json_t *spec = json_object_get(pod, "spec");
    struct sl_buf joined;
    sl_buf_init(&joined, SIZE_MAX);
    for (size_t i = 0; i < n; i++) {
        if (i)
            (void)sl_buf_puts(&joined, ",");
        (void)sl_buf_puts(&joined, images[i]);
    }
    (void)sl_buf_append(&joined, "", 1);
    if (!meta) {
        add_op(patch, "/metadata",
               json_pack("{s:{s:s},s:{s:s}}", "labels", SL_ANN_PROVISION, "true", "annotations",
                         SL_ANN_IMAGES, (const char *)joined.data));
    } else {
        add_map_entry(patch, meta, "labels", SL_ANN_PROVISION, "true");
        add_map_entry(patch, meta, "annotations", SL_ANN_IMAGES, (const char *)joined.data);
    }

    json_t *args = json_pack("[s,s,s,s]", "--socket", SL_INIT_SOCKET, "--namespace", "k8s.io");
    for (size_t i = 0; i < n; i++) {
        json_array_append_new(args, json_string("--image"));
        json_array_append_new(args, json_string(images[i]));
    }
    if (o->init_insecure)
        json_array_append_new(args, json_string("--insecure"));
    json_t *init = json_pack("{s:s,s:s,s:o,s:[{s:s,s:s}],s:[{s:s,s:s}]}", "name", SL_INIT_NAME,
                             "image", o->init_image, "args", args, "env", "name",
                             "STARLIGHT_IMAGES", "value", (const char *)joined.data, "volumeMounts",
                             "name", SL_INIT_VOLUME, "mountPath", SL_INIT_RUN_DIR);
    sl_buf_free(&joined);
    const json_t *inits = json_object_get(spec, "initContainers");
    if (json_is_array(inits) && json_array_size(inits) > 0)
        add_op(patch, "/spec/initContainers/0", init);
    else
        add_op(patch, "/spec/initContainers", json_pack("[o]", init));

    const json_t *vols = json_object_get(spec, "volumes");
    json_t *vol = json_pack("{s:s,s:{s:s,s:s}}", "name", SL_INIT_VOLUME, "hostPath", "path",
                            SL_INIT_RUN_DIR, "type", "DirectoryOrCreate");
    if (json_is_array(vols) && has_named(vols, SL_INIT_VOLUME))
        json_decref(vol); /* re-invocation after another webhook copied it: keep theirs */
    else if (json_is_array(vols))
        add_op(patch, "/spec/volumes/-", vol);
    else
        add_op(patch, "/spec/volumes", json_pack("[o]", vol));
    return patch;
}

static json_t *answer(const char *uid, json_t *patch)
{
    json_t *resp = json_pack("{s:s,s:b}", "uid", uid, "allowed", 1);
    if (patch) {
        size_t len = 0;
        _cleanup_free_ char *s = sl_json_dump(patch, &len);
        _cleanup_free_ char *b64 = sl_base64_encode(s, len, NULL);
        json_object_set_new(resp, "patchType", json_string("JSONPatch"));
        json_object_set_new(resp, "patch", json_string(b64));
    }
    return json_pack("{s:s,s:s,s:o}", "apiVersion", "admission.k8s.io/v1", "kind",
                     "AdmissionReview", "response", resp);
}

static bool ns_listed(const struct sl_mutate_options *o, const char *ns)
{
    for (size_t i = 0; ns && i < o->n_opt_in_ns; i++)
        if (strcmp(o->opt_in_ns[i], ns) == 0)
            return true;
    return false;
}

int sl_mutate_review(const json_t *review, const struct sl_mutate_options *o, json_t **ret_review,
                     enum sl_mutate_result *ret_result, sl_error_t *err)
{
    if (!json_is_object(review))
        return sl_error_make(err, EINVAL, "AdmissionReview: not a JSON object");
    const char *api = json_string_value(json_object_get(review, "apiVersion"));
    const char *kind = json_string_value(json_object_get(review, "kind"));
    if (!api || strcmp(api, "admission.k8s.io/v1") != 0)
        return sl_error_make(err, EINVAL,
                             "AdmissionReview: .apiVersion must be \"admission.k8s.io/v1\" "
                             "(admissionReviewVersions: [v1])");
    if (!kind || strcmp(kind, "AdmissionReview") != 0)
        return sl_error_make(err, EINVAL, "AdmissionReview: .kind must be \"AdmissionReview\"");
    const json_t *req = json_object_get(review, "request");
    if (!json_is_object(req))
        return sl_error_make(err, EINVAL, "AdmissionReview: .request: expected an object");
    const char *uid = json_string_value(json_object_get(req, "uid"));
    if (!uid || !*uid)
        return sl_error_make(err, EINVAL, "AdmissionReview: .request.uid: expected a string");
    if (strlen(uid) > 256)
        return sl_error_make(err, EINVAL, "AdmissionReview: .request.uid: longer than 256 bytes");

    const json_t *res = json_object_get(req, "resource");
    const char *group = json_string_value(json_object_get(res, "group"));
    const char *resource = json_string_value(json_object_get(res, "resource"));
    const char *op = json_string_value(json_object_get(req, "operation"));
    const char *sub = json_string_value(json_object_get(req, "subResource"));
    const json_t *pod = json_object_get(req, "object");
    if (!resource || strcmp(resource, "pods") != 0 || (group && *group) || !op ||
        strcmp(op, "CREATE") != 0 || (sub && *sub) || !json_is_object(pod)) {
        *ret_result = SL_MUTATE_NOT_POD;
        *ret_review = answer(uid, NULL);
        return 0;
    }

    const json_t *meta = json_object_get(pod, "metadata");
    const char *ann =
        json_string_value(json_object_get(json_object_get(meta, "annotations"), SL_ANN_PROVISION));
    const char *ns = json_string_value(json_object_get(req, "namespace"));
    if (!ns)
        ns = json_string_value(json_object_get(meta, "namespace"));
    bool opted = ann ? strcmp(ann, "true") == 0 : (o->namespace_opted_in || ns_listed(o, ns));
    if (!opted) {
        *ret_result = SL_MUTATE_NOT_OPTED;
        *ret_review = answer(uid, NULL);
        return 0;
    }
    const json_t *spec = json_object_get(pod, "spec");
    if (has_named(json_object_get(spec, "initContainers"), SL_INIT_NAME)) {
        *ret_result = SL_MUTATE_INJECTED;
        *ret_review = answer(uid, NULL);
        return 0;
    }

    const char *images[MAX_IMAGES];
    size_t n = 0;
    size_t i;
    const json_t *c;
    bool unknown = false;
    json_array_foreach(json_object_get(spec, "containers"), i, c)
    {
        const char *img = json_string_value(json_object_get(c, "image"));
        if (!img || !*img || strlen(img) > 4096 || strchr(img, ',') || n == MAX_IMAGES)
            continue;
        bool dup = false;
        for (size_t k = 0; k < n && !dup; k++)
            dup = strcmp(images[k], img) == 0;
        if (dup)
            continue;
        if (o->is_starlight) {
            int r = o->is_starlight(o->is_starlight_ud, img);
            if (r < 0)
                unknown = true;
            if (r <= 0)
                continue;
        }
        images[n++] = img;
    }
    if (unknown || n == 0) {
        *ret_result = unknown ? SL_MUTATE_UNKNOWN : SL_MUTATE_NO_STARLIGHT;
        *ret_review = answer(uid, NULL);
        return 0;
    }
    json_t *patch = sl_mutate_pod_patch(pod, images, n, o);
    *ret_review = answer(uid, patch);
    json_decref(patch);
    *ret_result = SL_MUTATE_PATCHED;
    return 0;
}

int sl_mutate_review_bytes(const char *data, size_t len, const struct sl_mutate_options *o,
                           json_t **ret_review, enum sl_mutate_result *ret_result, sl_error_t *err)
{
    json_t *j = NULL;
    int r = sl_json_parse(data, len, SL_REVIEW_MAX, "AdmissionReview", &j, err);
    if (r < 0)
        return r;
    r = sl_mutate_review(j, o, ret_review, ret_result, err);
    json_decref(j);
    return r;
}

/* ------------------------------------------------------------------ JSONPatch (adds) */

static char *ptr_unescape(const char *s, size_t n)
{
    char *out = sl_xmalloc(n + 1), *p = out;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '~' && i + 1 < n && (s[i + 1] == '0' || s[i + 1] == '1')) {
            *p++ = s[i + 1] == '0' ? '~' : '/';
            i++;
        } else {
            *p++ = s[i];
        }
    }
    *p = 0;
    return out;
}

static int apply_add(json_t *doc, const char *path, json_t *value, sl_error_t *err)
{
    if (path[0] != '/')
        return sl_error_make(err, EINVAL, "JSONPatch path `%s`: must start with /", path);
    json_t *cur = doc;
    const char *p = path + 1;
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        _cleanup_free_ char *tok = ptr_unescape(p, n);
        if (!slash) { /* last token: add here */
            if (json_is_object(cur))
                return json_object_set(cur, tok, value) == 0
                           ? 0
                           : sl_error_make(err, EINVAL, "JSONPatch `%s`: cannot set", path);
            if (json_is_array(cur)) {
                if (strcmp(tok, "-") == 0)
                    return json_array_append(cur, value) == 0
                               ? 0
                               : sl_error_make(err, EINVAL, "JSONPatch `%s`", path);
                char *end = NULL;
                unsigned long idx = strtoul(tok, &end, 10);
                if (!*tok || *end || idx > json_array_size(cur))
                    return sl_error_make(err, EINVAL, "JSONPatch `%s`: bad index", path);
                return json_array_insert(cur, idx, value) == 0
                           ? 0
                           : sl_error_make(err, EINVAL, "JSONPatch `%s`", path);
            }
            return sl_error_make(err, EINVAL, "JSONPatch `%s`: parent is not a container", path);
        }
        json_t *next = NULL;
        if (json_is_object(cur)) {
            next = json_object_get(cur, tok);
        } else if (json_is_array(cur)) {
            char *end = NULL;
            unsigned long idx = strtoul(tok, &end, 10);
            if (*tok && !*end)
                next = json_array_get(cur, idx);
        }
        if (!next)
            return sl_error_make(err, EINVAL, "JSONPatch `%s`: `%s` does not exist", path, tok);
        cur = next;
        p = slash + 1;
    }
}

int sl_jsonpatch_apply_adds(json_t *doc, const json_t *patch, sl_error_t *err)
{
    if (!json_is_array(patch))
        return sl_error_make(err, EINVAL, "JSONPatch: not an array");
    size_t i;
    const json_t *op;
    json_array_foreach(patch, i, op)
    {
        const char *o = json_string_value(json_object_get(op, "op"));
        const char *path = json_string_value(json_object_get(op, "path"));
        json_t *value = json_object_get(op, "value");
        if (!o || strcmp(o, "add") != 0 || !path || !value)
            return sl_error_make(err, EINVAL, "JSONPatch [%zu]: only add operations", i);
        int r = apply_add(doc, path, value, err);
        if (r < 0)
            return r;
    }
    return 0;
}
