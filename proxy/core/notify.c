/* notify.c — POST /starlight/notify: resolve a reference, read each layer's footer and TOC by
 * Range, ingest each distinct layer once, record the image and its tags. */
#include "cleanup.h"
#include "core-int.h"
#include "json.h"
#include "log.h"
#include "manifest.h"
#include "toc.h"

#include <inttypes.h>
#include <string.h>

#define ANN_STARLIGHT_TOC "containerd.io/snapshot/remote/starlight/toc.digest"
#define ANN_STARGZ_TOC    "containerd.io/snapshot/stargz/toc.digest"
#define CONFIG_MAX        (8u << 20)

/* Registry failures that may pass (connection refused, 5xx after retries) are -EAGAIN. */
static int registry_class(int r)
{
    switch (-r) {
    case ECONNREFUSED:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ECONNRESET:
    case EIO:
        return -EAGAIN;
    default:
        return r;
    }
}

/* Reads blob ranges for sl_toc_load and keeps the two it asks for (footer, TOC member) so the
 * tail [toc_offset, size) can be stored verbatim. */
struct capture {
    struct sl_core *core;
    struct sl_registry *reg;
    const char *repo;
    const char *digest;
    uint64_t size;
    uint8_t *reads[2];
    uint64_t offs[2];
    size_t lens[2];
    int n;
};

static int capture_read_at(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err)
{
    struct capture *c = ud;
    struct sl_http_mem_sink s = {buf, len};
    int r = sl_core_fetch(c->core, c->reg, c->repo, c->digest, c->size, off, len, sl_http_sink_mem,
                          &s, err);
    if (r < 0)
        return r;
    if (s.left)
        return sl_error_make(err, EIO, "short read of blob %s", c->digest);
    if (c->n < 2) {
        c->reads[c->n] = sl_xmalloc(len + 1);
        memcpy(c->reads[c->n], buf, len);
        c->offs[c->n] = off;
        c->lens[c->n] = len;
        c->n++;
    }
    return 0;
}

static void capture_free(struct capture *c)
{
    for (int i = 0; i < c->n; i++)
        free(c->reads[i]);
}

/* Assembles [toc_offset, size) from the captured reads. */
static int capture_tail(struct capture *c, uint64_t toc_off, uint8_t **ret, size_t *ret_len,
                        sl_error_t *err)
{
    size_t n = (size_t)(c->size - toc_off);
    _cleanup_free_ uint8_t *t = sl_xcalloc(n + 1, 1);
    _cleanup_free_ bool *have = sl_xcalloc(n + 1, sizeof(bool));
    for (int i = 0; i < c->n; i++) {
        uint64_t a = SL_MAX(c->offs[i], toc_off), b = c->offs[i] + c->lens[i];
        for (uint64_t o = a; o < b && o < c->size; o++) {
            t[o - toc_off] = c->reads[i][o - c->offs[i]];
            have[o - toc_off] = true;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!have[i])
            return sl_error_make(err, EIO, "layer %s: TOC tail not fully read", c->digest);
    *ret = TAKE_PTR(t);
    *ret_len = n;
    return 0;
}

static int ingest_layer(struct sl_core *core, struct sl_registry *reg, const char *repo,
                        const struct sl_descriptor *d, size_t index, bool *ret_ingested,
                        char toc_digest[SL_DIGEST_STR_LEN], sl_error_t *err)
{
    if (strstr(d->media_type, "zstd") || strcmp(d->media_type, SL_MT_OCI_LAYER) == 0)
        return sl_error_make(err, EMEDIUMTYPE,
                             "layer %zu (%s) has media type %s, not a Starlight (gzip) layer: "
                             "convert the image with `ctr-starlight convert`",
                             index, d->digest, d->media_type);
    const char *want = sl_descriptor_annotation(d, ANN_STARLIGHT_TOC);
    if (!want)
        want = sl_descriptor_annotation(d, ANN_STARGZ_TOC);
    if (d->size <= 0)
        return sl_error_make(err, EMEDIUMTYPE, "layer %zu (%s) is empty", index, d->digest);
    int r = sl_store_layer_known(core->store, d->digest, err);
    if (r < 0)
        return r;
    if (r > 0 && want) {
        *ret_ingested = false;
        snprintf(toc_digest, SL_DIGEST_STR_LEN, "%s", want);
        return 0;
    }
    struct capture cap = {
        .core = core, .reg = reg, .repo = repo, .digest = d->digest, .size = (uint64_t)d->size};
    _cleanup_toc_ struct sl_toc *toc = NULL;
    r = sl_toc_load(capture_read_at, &cap, (uint64_t)d->size, want, &toc, err);
    if (r < 0) {
        capture_free(&cap);
        int cls = registry_class(r);
        if (cls == -EAGAIN || r == -ENOENT || r == -EACCES)
            return sl_error_wrap(err, cls, "layer %zu (%s)", index, d->digest);
        return sl_error_wrap(err, -EMEDIUMTYPE, "layer %zu (%s) is not a valid Starlight layer%s",
                             index, d->digest,
                             want ? ""
                                  : " (no TOC digest annotation): convert the image with "
                                    "`ctr-starlight convert`");
    }
    _cleanup_free_ uint8_t *tail = NULL;
    size_t tail_len = 0;
    r = capture_tail(&cap, sl_toc_offset(toc), &tail, &tail_len, err);
    capture_free(&cap);
    if (r < 0)
        return r;
    snprintf(toc_digest, SL_DIGEST_STR_LEN, "%s", sl_toc_digest(toc));
    if (sl_store_layer_known(core->store, d->digest, NULL) == 1) {
        *ret_ingested = false;
        return 0;
    }
    struct sl_store_layer_in in = {
        .digest = d->digest,
        .size = (uint64_t)d->size,
        .toc_digest = sl_toc_digest(toc),
        .toc_offset = sl_toc_offset(toc),
        .toc_tail = tail,
        .toc_tail_len = tail_len,
        .toc = toc,
    };
    r = sl_store_ingest_layer(core->store, &in, err);
    if (r < 0)
        return r;
    *ret_ingested = r == 1;
    return 0;
}

/* Platform from the config ("os/arch[/variant]"), normalised. */
static int config_platform(const json_t *cfg, char **ret, sl_error_t *err)
{
    const char *os = NULL, *arch = NULL, *variant = NULL;
    int r;
    if ((r = sl_json_get_str(cfg, "os", "config", &os, err)) < 0 ||
        (r = sl_json_get_str(cfg, "architecture", "config", &arch, err)) < 0 ||
        (r = sl_json_opt_str(cfg, "variant", "config", &variant, err)) < 0)
        return r;
    _cleanup_free_ char *p = variant && *variant ? sl_xasprintf("%s/%s/%s", os, arch, variant)
                                                 : sl_xasprintf("%s/%s", os, arch);
    return sl_core_platform_normalize(p, ret, err);
}

int sl_core_parse_image_config(const char *data, size_t len, size_t n_layers, bool want_platform,
                               struct sl_core_image_config *ret, sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    json_auto_t *cfg = NULL;
    int r = sl_json_parse(data, len, CONFIG_MAX, "image config", &cfg, err);
    if (r < 0)
        return r;
    json_t *rootfs = NULL, *diff_ids = NULL;
    if ((r = sl_json_get_obj(cfg, "rootfs", "config", &rootfs, err)) < 0 ||
        (r = sl_json_get_arr(rootfs, "diff_ids", "config.rootfs", &diff_ids, err)) < 0)
        return r;
    if (json_array_size(diff_ids) != n_layers)
        return sl_error_make(err, EINVAL, "config lists %zu diff_ids for %zu layers",
                             json_array_size(diff_ids), n_layers);
    for (size_t i = 0; i < n_layers; i++) {
        json_t *d = json_array_get(diff_ids, i);
        if (!json_is_string(d) || !sl_digest_valid(json_string_value(d)))
            return sl_error_make(err, EINVAL, "config.rootfs.diff_ids[%zu]: not a sha256 digest",
                                 i);
    }
    _cleanup_free_ char *platform = NULL;
    if (want_platform && (r = config_platform(cfg, &platform, err)) < 0)
        return r;
    ret->diff_ids = sl_xcalloc(n_layers + 1, sizeof(char *));
    for (size_t i = 0; i < n_layers; i++)
        ret->diff_ids[i] = sl_xstrdup(json_string_value(json_array_get(diff_ids, i)));
    ret->n = n_layers;
    ret->platform = TAKE_PTR(platform);
    return 0;
}

void sl_core_image_config_clear(struct sl_core_image_config *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->diff_ids[i]);
    free(c->diff_ids);
    free(c->platform);
    memset(c, 0, sizeof(*c));
}

static int notify_image(struct sl_core *core, struct sl_registry *reg, const char *repo,
                        const char *name, const struct sl_registry_manifest *m,
                        const char *index_platform, const char *const *tags, size_t n_tags,
                        json_t *out, sl_error_t *err)
{
    const struct sl_manifest *man = m->manifest;
    if (sl_manifest_kind_is_index(man->kind))
        return sl_error_make(err, EPROTONOSUPPORT, "nested indexes are not supported");
    if (man->n_layers == 0)
        return sl_error_make(err, EMEDIUMTYPE, "image %s has no layers", m->digest);
    _cleanup_free_ char *config = NULL;
    size_t config_len = 0;
    int r = sl_registry_get_blob_buf(reg, repo, man->config.digest, CONFIG_MAX, &config,
                                     &config_len, err);
    if (r < 0)
        return registry_class(r) == -EAGAIN ? sl_error_wrap(err, -EAGAIN, "config") : r;
    struct sl_core_image_config ic = {0};
    r = sl_core_parse_image_config(config, config_len, man->n_layers, !index_platform, &ic, err);
    if (r < 0)
        return r;
    _cleanup_free_ const char **layer_digests = sl_xcalloc(man->n_layers, sizeof(char *));
    for (size_t i = 0; i < man->n_layers; i++)
        layer_digests[i] = man->layers[i].digest;
    const char *platform = index_platform ? index_platform : ic.platform;

    json_t *img = json_object();
    json_array_append_new(out, img);
    json_object_set_new(img, "digest", json_string(m->digest));
    json_object_set_new(img, "platform", json_string(platform));
    json_t *layers = json_array();
    json_object_set_new(img, "layers", layers);
    for (size_t i = 0; i < man->n_layers; i++) {
        bool ingested = false;
        char toc_digest[SL_DIGEST_STR_LEN];
        r = ingest_layer(core, reg, repo, &man->layers[i], i, &ingested, toc_digest, err);
        if (r < 0) {
            sl_core_image_config_clear(&ic);
            return r;
        }
        atomic_fetch_add(ingested ? &core->layers_ingested : &core->layers_reused, 1);
        json_t *l = json_object();
        json_object_set_new(l, "digest", json_string(man->layers[i].digest));
        json_object_set_new(l, "size", json_integer(man->layers[i].size));
        json_object_set_new(l, "tocDigest", json_string(toc_digest));
        json_object_set_new(l, "ingested", json_boolean(ingested));
        json_array_append_new(layers, l);
    }
    struct sl_store_image_in in = {
        .repository = name,
        .digest = m->digest,
        .media_type = m->media_type,
        .platform = platform,
        .manifest = (const uint8_t *)m->data,
        .manifest_len = m->len,
        .config_digest = man->config.digest,
        .config = (const uint8_t *)config,
        .config_len = config_len,
        .layer_digests = layer_digests,
        .diff_ids = (const char *const *)ic.diff_ids,
        .n_layers = man->n_layers,
        .tags = tags,
        .n_tags = n_tags,
    };
    r = sl_store_put_image(core->store, &in, err);
    sl_core_image_config_clear(&ic);
    return r;
}

static int notify(struct sl_core *core, const char *refstr, bool insecure, json_t **ret,
                  sl_error_t *err)
{
    struct sl_image_ref ref = {0};
    bool plain = false;
    int r = sl_core_parse_ref(core, refstr, insecure, &ref, &plain, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *name = sl_image_ref_name(&ref);
    _cleanup_free_ char *full = sl_image_ref_str(&ref);
    struct sl_registry *reg = NULL;
    struct sl_registry_manifest m = {0};
    json_auto_t *body = json_object();
    json_t *images = json_array();
    r = sl_core_registry(core, ref.domain, plain, &reg, err);
    if (r < 0)
        goto out;
    r = sl_registry_get_manifest(reg, ref.path, sl_image_ref_reference(&ref), &m, err);
    if (r < 0) {
        r = registry_class(r);
        goto out;
    }
    json_object_set_new(body, "status", json_string("OK"));
    json_object_set_new(body, "code", json_integer(200));
    json_object_set_new(body, "message", json_string("TOCs stored"));
    json_object_set_new(body, "reference", json_string(full));
    json_object_set_new(body, "digest", json_string(m.digest));
    json_object_set_new(body, "images", images);
    if (sl_manifest_kind_is_index(m.manifest->kind)) {
        size_t done = 0;
        for (size_t i = 0; i < m.manifest->n_manifests; i++) {
            const struct sl_descriptor *e = &m.manifest->manifests[i];
            if (!e->has_platform || strcmp(e->platform.os, "unknown") == 0)
                continue; /* attestations and other non-image entries */
            _cleanup_free_ char *ps =
                e->platform.variant
                    ? sl_xasprintf("%s/%s/%s", e->platform.os, e->platform.architecture,
                                   e->platform.variant)
                    : sl_xasprintf("%s/%s", e->platform.os, e->platform.architecture);
            _cleanup_free_ char *platform = NULL;
            if ((r = sl_core_platform_normalize(ps, &platform, err)) < 0)
                goto out;
            struct sl_registry_manifest pm = {0};
            r = sl_registry_get_manifest(reg, ref.path, e->digest, &pm, err);
            if (r >= 0) {
                const char *tags[2] = {m.digest, ref.tag};
                r = notify_image(core, reg, ref.path, name, &pm, platform, tags,
                                 ref.tag && !ref.digest ? 2 : 1, images, err);
            }
            sl_registry_manifest_free(&pm);
            if (r < 0) {
                r = sl_error_wrap(err, registry_class(r), "platform %s", platform);
                goto out;
            }
            done++;
        }
        if (done == 0) {
            r = sl_error_make(err, EMEDIUMTYPE, "the index lists no image for any platform");
            goto out;
        }
    } else {
        const char *tags[1] = {ref.tag};
        r = notify_image(core, reg, ref.path, name, &m, NULL, tags, ref.tag && !ref.digest ? 1 : 0,
                         images, err);
        if (r < 0)
            goto out;
    }
    *ret = json_incref(body);
    r = 0;
out:
    if (!json_object_get(body, "images"))
        json_decref(images);
    sl_registry_manifest_free(&m);
    sl_image_ref_free(&ref);
    if (r < 0)
        return sl_error_wrap(err, r, "notify `%s`", full ? full : refstr);
    return 0;
}

int sl_core_notify(struct sl_core *core, const char *ref, bool insecure, json_t **ret,
                   sl_error_t *err)
{
    uint64_t t0 = sl_core_now_ns();
    if (!ref || !*ref)
        return sl_error_make(err, EINVAL, "notify: parameter `ref` is required");
    int r = notify(core, ref, insecure, ret, err);
    if (r >= 0) { /* the plan most workers ask for first: a fresh pull, per platform */
        json_t *img;
        size_t i;
        json_array_foreach(json_object_get(*ret, "images"), i, img)
        {
            const char *platform = json_string_value(json_object_get(img, "platform"));
            if (platform)
                sl_core_prewarm(core, ref, platform, insecure);
        }
    }
    atomic_fetch_add(&core->notifies, 1);
    atomic_fetch_add(&core->notify_ns, sl_core_now_ns() - t0);
    if (r < 0)
        atomic_fetch_add(&core->notify_errors, 1);
    return r;
}
