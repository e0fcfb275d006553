#include "manifest.h"
#include "cleanup.h"
#include "json.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

static const struct {
    enum sl_manifest_kind kind;
    const char *type;
} kinds[] = {
    {SL_MANIFEST_DOCKER_V2, SL_MT_DOCKER_MANIFEST},
    {SL_MANIFEST_DOCKER_LIST, SL_MT_DOCKER_LIST},
    {SL_MANIFEST_OCI, SL_MT_OCI_MANIFEST},
    {SL_MANIFEST_OCI_INDEX, SL_MT_OCI_INDEX},
};

/* Media type without parameters and surrounding blanks, into out (truncated when huge). */
static void bare_type(const char *s, char *out, size_t outlen)
{
    while (*s == ' ' || *s == '\t')
        s++;
    size_t n = strcspn(s, ";");
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n >= outlen)
        n = outlen - 1;
    for (size_t i = 0; i < n; i++)
        out[i] = (char)tolower((unsigned char)s[i]);
    out[n] = 0;
}

enum sl_manifest_kind sl_manifest_kind_from_type(const char *media_type)
{
    char t[256];
    if (!media_type)
        return SL_MANIFEST_UNKNOWN;
    bare_type(media_type, t, sizeof(t));
    for (size_t i = 0; i < SL_ELEMENTSOF(kinds); i++)
        if (strcmp(t, kinds[i].type) == 0)
            return kinds[i].kind;
    return SL_MANIFEST_UNKNOWN;
}

const char *sl_manifest_kind_type(enum sl_manifest_kind kind)
{
    for (size_t i = 0; i < SL_ELEMENTSOF(kinds); i++)
        if (kinds[i].kind == kind)
            return kinds[i].type;
    return NULL;
}

/* Content types that say nothing about the manifest kind. */
static bool generic_type(const char *t)
{
    return !*t || strcmp(t, "application/json") == 0 || strcmp(t, "text/plain") == 0 ||
           strcmp(t, "application/octet-stream") == 0;
}

static void annotations_free(struct sl_annotation *a, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(a[i].key);
        free(a[i].value);
    }
    free(a);
}

void sl_platform_free(struct sl_platform *p)
{
    if (!p)
        return;
    free(p->os);
    free(p->architecture);
    free(p->variant);
    free(p->os_version);
    *p = (struct sl_platform){0};
}

static void descriptor_free(struct sl_descriptor *d)
{
    free(d->media_type);
    annotations_free(d->annotations, d->n_annotations);
    sl_platform_free(&d->platform);
    *d = (struct sl_descriptor){0};
}

static void descriptors_free(struct sl_descriptor *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        descriptor_free(&v[i]);
    free(v);
}

void sl_manifest_free(struct sl_manifest *m)
{
    if (!m)
        return;
    descriptor_free(&m->config);
    descriptors_free(m->layers, m->n_layers);
    descriptors_free(m->manifests, m->n_manifests);
    annotations_free(m->annotations, m->n_annotations);
    free(m);
}

static int parse_annotations(const json_t *obj, const char *path, struct sl_annotation **ret,
                             size_t *ret_n, sl_error_t *err)
{
    json_t *a = json_object_get(obj, "annotations");
    if (!a || json_is_null(a))
        return 0;
    if (!json_is_object(a))
        return sl_error_make(err, EINVAL, "manifest: %s.annotations: expected an object", path);
    size_t n = json_object_size(a);
    if (n > SL_MANIFEST_MAX_ANNOTATIONS)
        return sl_error_make(err, EINVAL, "manifest: %s.annotations: more than %d entries", path,
                             SL_MANIFEST_MAX_ANNOTATIONS);
    struct sl_annotation *v = sl_xcalloc(n ? n : 1, sizeof(*v));
    size_t i = 0;
    const char *k;
    json_t *val;
    json_object_foreach(a, k, val)
    {
        if (!json_is_string(val)) {
            annotations_free(v, i);
            return sl_error_make(err, EINVAL, "manifest: %s.annotations.%s: expected a string",
                                 path, k);
        }
        v[i].key = sl_xstrdup(k);
        v[i].value = sl_xstrdup(json_string_value(val));
        i++;
    }
    *ret = v;
    *ret_n = i;
    return 0;
}

static int parse_platform(const json_t *obj, const char *path, struct sl_descriptor *d,
                          sl_error_t *err)
{
    json_t *p = json_object_get(obj, "platform");
    if (!p || json_is_null(p))
        return 0;
    _cleanup_free_ char *pp = sl_xasprintf("%s.platform", path);
    const char *os = NULL, *arch = NULL, *variant = NULL, *osv = NULL;
    int r;
    if ((r = sl_json_get_str(p, "os", pp, &os, err)) < 0 ||
        (r = sl_json_get_str(p, "architecture", pp, &arch, err)) < 0 ||
        (r = sl_json_opt_str(p, "variant", pp, &variant, err)) < 0 ||
        (r = sl_json_opt_str(p, "os.version", pp, &osv, err)) < 0)
        return sl_error_wrap(err, r, "manifest");
    d->has_platform = true;
    d->platform.os = sl_xstrdup(os);
    d->platform.architecture = sl_xstrdup(arch);
    d->platform.variant = variant ? sl_xstrdup(variant) : NULL;
    d->platform.os_version = osv ? sl_xstrdup(osv) : NULL;
    return 0;
}

static int parse_descriptor(const json_t *obj, const char *path, bool index_entry,
                            struct sl_descriptor *d, sl_error_t *err)
{
    const char *mt = NULL, *dig = NULL;
    int64_t size = 0;
    int r;
    if (!json_is_object(obj))
        return sl_error_make(err, EINVAL, "manifest: %s: expected an object", path);
    if ((r = sl_json_get_str(obj, "mediaType", path, &mt, err)) < 0 ||
        (r = sl_json_get_str(obj, "digest", path, &dig, err)) < 0 ||
        (r = sl_json_get_i64(obj, "size", path, &size, err)) < 0)
        return sl_error_wrap(err, r, "manifest");
    if (!sl_digest_valid(dig))
        return sl_error_make(err, EINVAL, "manifest: %s.digest: invalid digest `%.80s`", path, dig);
    if (size < 0)
        return sl_error_make(err, EINVAL, "manifest: %s.size: negative", path);
    if (!*mt)
        return sl_error_make(err, EINVAL, "manifest: %s.mediaType: empty", path);
    d->media_type = sl_xstrdup(mt);
    memcpy(d->digest, dig, SL_DIGEST_STR_LEN);
    d->size = size;
    if ((r = parse_annotations(obj, path, &d->annotations, &d->n_annotations, err)) < 0)
        return r;
    if (index_entry && (r = parse_platform(obj, path, d, err)) < 0)
        return r;
    return 0;
}

static int parse_list(const json_t *root, const char *key, bool index_entry,
                      struct sl_descriptor **ret, size_t *ret_n, sl_error_t *err)
{
    json_t *arr = NULL;
    int r = sl_json_get_arr(root, key, "", &arr, err);
    if (r < 0)
        return sl_error_wrap(err, r, "manifest");
    size_t n = json_array_size(arr);
    if (n > SL_MANIFEST_MAX_ITEMS)
        return sl_error_make(err, EINVAL, "manifest: .%s: %zu entries, more than the limit of %d",
                             key, n, SL_MANIFEST_MAX_ITEMS);
    struct sl_descriptor *v = sl_xcalloc(n ? n : 1, sizeof(*v));
    for (size_t i = 0; i < n; i++) {
        char path[64];
        snprintf(path, sizeof(path), ".%s[%zu]", key, i);
        r = parse_descriptor(json_array_get(arr, i), path, index_entry, &v[i], err);
        if (r < 0) {
            descriptors_free(v, i + 1);
            return r;
        }
    }
    *ret = v;
    *ret_n = n;
    return 0;
}

int sl_manifest_parse(const void *data, size_t len, const char *content_type,
                      struct sl_manifest **ret, sl_error_t *err)
{
    json_auto_t *j = NULL;
    int r = sl_json_parse(data, len, SL_MANIFEST_MAX_BYTES, "manifest", &j, err);
    if (r < 0)
        return r;
    if (!json_is_object(j))
        return sl_error_make(err, EINVAL, "manifest: expected a JSON object");

    int64_t schema = 0;
    if ((r = sl_json_get_i64(j, "schemaVersion", "", &schema, err)) < 0)
        return sl_error_wrap(err, r, "manifest");
    if (schema == 1)
        return sl_error_make(err, EPROTONOSUPPORT,
                             "manifest: schema 1 manifests are not supported (push the image "
                             "again with a current client)");
    if (schema != 2)
        return sl_error_make(err, EINVAL, "manifest: .schemaVersion: %lld is not 2",
                             (long long)schema);

    const char *jmt = NULL;
    if ((r = sl_json_opt_str(j, "mediaType", "", &jmt, err)) < 0)
        return sl_error_wrap(err, r, "manifest");
    char ct[256] = "";
    if (content_type)
        bare_type(content_type, ct, sizeof(ct));
    enum sl_manifest_kind ct_kind = sl_manifest_kind_from_type(ct);
    enum sl_manifest_kind kind;
    if (jmt) {
        kind = sl_manifest_kind_from_type(jmt);
        if (kind == SL_MANIFEST_UNKNOWN)
            return sl_error_make(err, EPROTONOSUPPORT, "manifest: unknown media type `%.200s`",
                                 jmt);
        if (ct_kind != SL_MANIFEST_UNKNOWN && ct_kind != kind)
            return sl_error_make(
                err, EINVAL, "manifest: Content-Type `%s` does not match mediaType `%s`", ct, jmt);
    } else if (ct_kind != SL_MANIFEST_UNKNOWN) {
        kind = ct_kind;
    } else if (!generic_type(ct)) {
        return sl_error_make(err, EPROTONOSUPPORT, "manifest: unknown media type `%s`", ct);
    } else if (json_object_get(j, "manifests")) {
        kind = SL_MANIFEST_OCI_INDEX;
    } else if (json_object_get(j, "config")) {
        kind = SL_MANIFEST_OCI;
    } else {
        return sl_error_make(err, EPROTONOSUPPORT,
                             "manifest: no media type and neither `config` nor `manifests`");
    }

    _cleanup_manifest_ struct sl_manifest *m = sl_xcalloc(1, sizeof(*m));
    m->kind = kind;
    m->media_type = sl_manifest_kind_type(kind);
    /* An index must not look like a manifest and vice versa (OCI image-spec guidance against
     * documents that parse as both). */
    if (sl_manifest_kind_is_index(kind)) {
        if (json_object_get(j, "layers") || json_object_get(j, "config"))
            return sl_error_make(err, EINVAL, "manifest: %s has `layers` or `config`",
                                 m->media_type);
        if ((r = parse_list(j, "manifests", true, &m->manifests, &m->n_manifests, err)) < 0)
            return r;
    } else {
        if (json_object_get(j, "manifests"))
            return sl_error_make(err, EINVAL, "manifest: %s has `manifests`", m->media_type);
        json_t *cfg = json_object_get(j, "config");
        if (!cfg)
            return sl_error_make(err, EINVAL, "manifest: .config: missing");
        if ((r = parse_descriptor(cfg, ".config", false, &m->config, err)) < 0)
            return r;
        if ((r = parse_list(j, "layers", false, &m->layers, &m->n_layers, err)) < 0)
            return r;
    }
    if ((r = parse_annotations(j, "", &m->annotations, &m->n_annotations, err)) < 0)
        return r;
    *ret = TAKE_PTR(m);
    return 0;
}

const char *sl_descriptor_annotation(const struct sl_descriptor *d, const char *key)
{
    for (size_t i = 0; i < d->n_annotations; i++)
        if (strcmp(d->annotations[i].key, key) == 0)
            return d->annotations[i].value;
    return NULL;
}

int sl_platform_parse(const char *s, struct sl_platform *ret, sl_error_t *err)
{
    *ret = (struct sl_platform){0};
    const char *a = s ? strchr(s, '/') : NULL;
    if (!a || a == s || !a[1] || a[1] == '/')
        return sl_error_make(err, EINVAL, "platform `%s`: expected os/arch[/variant]", s ? s : "");
    const char *v = strchr(a + 1, '/');
    if (v && (!v[1] || strchr(v + 1, '/')))
        return sl_error_make(err, EINVAL, "platform `%s`: expected os/arch[/variant]", s);
    ret->os = sl_xstrndup(s, (size_t)(a - s));
    ret->architecture = v ? sl_xstrndup(a + 1, (size_t)(v - a - 1)) : sl_xstrdup(a + 1);
    ret->variant = v ? sl_xstrdup(v + 1) : NULL;
    return 0;
}

static const char *norm_variant(const char *arch, const char *variant)
{
    if (!variant && strcmp(arch, "arm64") == 0)
        return "v8";
    return variant;
}

int sl_manifest_find_platform(const struct sl_manifest *index, const struct sl_platform *want)
{
    for (size_t i = 0; i < index->n_manifests; i++) {
        const struct sl_descriptor *d = &index->manifests[i];
        if (!d->has_platform || strcmp(d->platform.os, want->os) != 0 ||
            strcmp(d->platform.architecture, want->architecture) != 0)
            continue;
        if (want->variant) {
            const char *dv = norm_variant(d->platform.architecture, d->platform.variant);
            const char *wv = norm_variant(want->architecture, want->variant);
            if (!dv || strcmp(dv, wv) != 0)
                continue;
        }
        return (int)i;
    }
    return -ENOENT;
}
