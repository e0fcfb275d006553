/* trace.c — trace document parsing and timeline merge (trace.h). */
#include "trace.h"
#include "json.h"
#include "toc.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void sl_trace_doc_free(struct sl_trace_doc *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n_groups; i++) {
        struct sl_trace_group *g = &d->groups[i];
        free(g->name);
        free(g->images);
        for (size_t k = 0; k < g->n_accesses; k++)
            free(g->accesses[k].path);
        free(g->accesses);
    }
    free(d->groups);
    free(d);
}

static int check_keys(const json_t *o, const char *path, const char *const *keys, size_t n,
                      sl_error_t *err)
{
    if (!json_is_object(o))
        return sl_error_make(err, EINVAL, "%s: expected an object", path);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        size_t i = 0;
        while (i < n && strcmp(keys[i], k) != 0)
            i++;
        if (i == n)
            return sl_error_make(err, EINVAL, "%s.%s: unknown key", path, k);
    }
    for (size_t i = 0; i < n; i++)
        if (!json_object_get(o, keys[i]))
            return sl_error_make(err, EINVAL, "%s.%s: missing", path, keys[i]);
    return 0;
}

static int get_uint(const json_t *o, const char *key, const char *path, uint64_t max, uint64_t *ret,
                    sl_error_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return sl_error_make(err, EINVAL, "%s.%s: expected an integer in 0..%" PRIu64, path, key,
                             max);
    *ret = (uint64_t)json_integer_value(v);
    return 0;
}

static int parse_group(const json_t *o, size_t gi, struct sl_trace_group *g, size_t *total,
                       sl_error_t *err)
{
    char path[48];
    snprintf(path, sizeof(path), ".groups[%zu]", gi);
    static const char *const gkeys[] = {"name", "images", "accesses"};
    int r = check_keys(o, path, gkeys, SL_ELEMENTSOF(gkeys), err);
    if (r < 0)
        return r;
    json_t *name = json_object_get(o, "name");
    if (!json_is_string(name) || json_string_length(name) > 256 ||
        strlen(json_string_value(name)) != json_string_length(name))
        return sl_error_make(err, EINVAL, "%s.name: expected a string of at most 256 bytes", path);
    g->name = sl_xstrdup(json_string_value(name));
    json_t *images = json_object_get(o, "images");
    if (!json_is_array(images) || json_array_size(images) == 0 ||
        json_array_size(images) > SL_TRACE_MAX_IMAGES)
        return sl_error_make(err, EINVAL, "%s.images: expected 1..%d manifest digests", path,
                             SL_TRACE_MAX_IMAGES);
    g->n_images = json_array_size(images);
    g->images = sl_xcalloc(g->n_images, sizeof(*g->images));
    for (size_t i = 0; i < g->n_images; i++) {
        json_t *d = json_array_get(images, i);
        if (!json_is_string(d) || !sl_digest_valid(json_string_value(d)))
            return sl_error_make(err, EINVAL, "%s.images[%zu]: expected a sha256 digest", path, i);
        memcpy(g->images[i], json_string_value(d), SL_DIGEST_STR_LEN);
        for (size_t k = 0; k < i; k++)
            if (strcmp(g->images[k], g->images[i]) == 0)
                return sl_error_make(err, EINVAL, "%s.images[%zu]: listed twice", path, i);
    }
    json_t *acc = json_object_get(o, "accesses");
    if (!json_is_array(acc))
        return sl_error_make(err, EINVAL, "%s.accesses: expected an array", path);
    size_t n = json_array_size(acc);
    if (n > SL_TRACE_MAX_ACCESSES - *total)
        return sl_error_make(err, EFBIG, "%s.accesses: more than %u accesses in the document", path,
                             SL_TRACE_MAX_ACCESSES);
    *total += n;
    g->accesses = sl_xcalloc(n + 1, sizeof(*g->accesses));
    static const char *const akeys[] = {"image", "layer", "path", "timeNs"};
    for (size_t i = 0; i < n; i++) {
        char ap[80];
        snprintf(ap, sizeof(ap), "%s.accesses[%zu]", path, i);
        json_t *a = json_array_get(acc, i);
        struct sl_trace_access *x = &g->accesses[i];
        uint64_t img, layer;
        if ((r = check_keys(a, ap, akeys, SL_ELEMENTSOF(akeys), err)) < 0 ||
            (r = get_uint(a, "image", ap, g->n_images - 1, &img, err)) < 0 ||
            (r = get_uint(a, "layer", ap, SL_TRACE_MAX_LAYERS - 1, &layer, err)) < 0 ||
            (r = get_uint(a, "timeNs", ap, INT64_MAX, &x->time_ns, err)) < 0)
            return r;
        json_t *p = json_object_get(a, "path");
        if (!json_is_string(p) || json_string_length(p) > SL_TOC_MAX_NAME ||
            strlen(json_string_value(p)) != json_string_length(p))
            return sl_error_make(err, EINVAL, "%s.path: expected a string of at most %d bytes", ap,
                                 SL_TOC_MAX_NAME);
        x->path = sl_xmalloc(json_string_length(p) + 1);
        g->n_accesses = i + 1;
        if (sl_toc_path_normalize(json_string_value(p), x->path) < 0 || x->path[0] == 0)
            return sl_error_make(err, EINVAL, "%s.path: `%s` is not a file path in the image", ap,
                                 json_string_value(p));
        x->image = (uint32_t)img;
        x->layer = (uint32_t)layer;
    }
    g->n_accesses = n;
    return 0;
}

int sl_trace_parse(const char *body, size_t len, struct sl_trace_doc **ret, sl_error_t *err)
{
    json_auto_t *j = NULL;
    int r = sl_json_parse(body, len, SL_TRACE_MAX_BODY, "trace document", &j, err);
    if (r < 0)
        return r;
    static const char *const keys[] = {"version", "groups"};
    if ((r = check_keys(j, "", keys, SL_ELEMENTSOF(keys), err)) < 0)
        return sl_error_wrap(err, r, "trace document");
    uint64_t v;
    if ((r = get_uint(j, "version", "", UINT32_MAX, &v, err)) < 0)
        return sl_error_wrap(err, r, "trace document");
    if (v != SL_TRACE_VERSION)
        return sl_error_make(err, EINVAL, "trace document: .version %" PRIu64 ", expected %d", v,
                             SL_TRACE_VERSION);
    json_t *groups = json_object_get(j, "groups");
    if (!json_is_array(groups) || json_array_size(groups) > SL_TRACE_MAX_GROUPS)
        return sl_error_make(err, EINVAL,
                             "trace document: .groups: expected an array of at "
                             "most %d groups",
                             SL_TRACE_MAX_GROUPS);
    _cleanup_(sl_trace_doc_freep) struct sl_trace_doc *d = sl_xcalloc(1, sizeof(*d));
    size_t n = json_array_size(groups);
    d->groups = sl_xcalloc(n + 1, sizeof(*d->groups));
    for (size_t i = 0; i < n; i++) {
        d->n_groups = i + 1;
        r = parse_group(json_array_get(groups, i), i, &d->groups[i], &d->n_accesses, err);
        if (r < 0)
            return sl_error_wrap(err, r, "trace document");
    }
    *ret = TAKE_PTR(d);
    return 0;
}

struct ord {
    const struct sl_trace_access *a;
    size_t pos; /* document order, for a stable sort */
};

static int cmp_time(const void *pa, const void *pb)
{
    const struct ord *a = pa, *b = pb;
    if (a->a->time_ns != b->a->time_ns)
        return a->a->time_ns < b->a->time_ns ? -1 : 1;
    return a->pos < b->pos ? -1 : a->pos > b->pos;
}

static int cmp_key(const void *pa, const void *pb)
{
    const struct ord *a = pa, *b = pb;
    if (a->a->image != b->a->image)
        return a->a->image < b->a->image ? -1 : 1;
    if (a->a->layer != b->a->layer)
        return a->a->layer < b->a->layer ? -1 : 1;
    int c = strcmp(a->a->path, b->a->path);
    if (c)
        return c;
    return cmp_time(pa, pb);
}

void sl_trace_rank(const struct sl_trace_group *g, struct sl_trace_ranked **ret, size_t *ret_n)
{
    size_t n = g->n_accesses;
    _cleanup_free_ struct ord *o = sl_xcalloc(n + 1, sizeof(*o));
    for (size_t i = 0; i < n; i++)
        o[i] = (struct ord){&g->accesses[i], i};
    /* keep the first access per (image, layer, path): sort by key then time, take heads */
    qsort(o, n, sizeof(*o), cmp_key);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (k && o[k - 1].a->image == o[i].a->image && o[k - 1].a->layer == o[i].a->layer &&
            strcmp(o[k - 1].a->path, o[i].a->path) == 0)
            continue;
        o[k++] = o[i];
    }
    qsort(o, k, sizeof(*o), cmp_time);
    struct sl_trace_ranked *r = sl_xcalloc(k + 1, sizeof(*r));
    for (size_t i = 0; i < k; i++)
        r[i] = (struct sl_trace_ranked){o[i].a->image, o[i].a->layer, o[i].a->path, i};
    *ret = r;
    *ret_n = k;
}
