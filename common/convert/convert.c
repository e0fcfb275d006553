/* convert.c — the image converter (convert.h), shared by `ctr-starlight convert` and the
 * proxy's conversion hook. */
#include "convert.h"
#include "cleanup.h"
#include "format.h"
#include "json.h"
#include "log.h"
#include "manifest.h"
#include "registry.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CONFIG_MAX (16u << 20)

struct sl_convert {
    struct sl_convert_options opts; /* platforms, docker_config, tmp_dir: not kept */
    struct sl_registry *src;
    struct sl_registry *dst;
    struct sl_image_ref sref;
    struct sl_image_ref dref;
    char **platforms;
    size_t n_platforms;
    char *tmpdir;
};

static void progress_add(struct sl_convert *c, enum sl_convert_counter k, uint64_t n)
{
    const struct sl_convert_events *e = c->opts.events;
    if (e && e->add)
        e->add(e->ud, k, n);
}

static void progress_phase(struct sl_convert *c, const char *phase)
{
    const struct sl_convert_events *e = c->opts.events;
    if (e && e->phase)
        e->phase(e->ud, phase);
}

/* One source layer through download, conversion and push. */
struct layer_job {
    struct sl_convert *c;
    const char *image_label; /* "host/repo:tag (linux/amd64)" */
    size_t index;
    const struct sl_descriptor *desc;
    int out_fd;
    uint64_t converted; /* input bytes the converter consumed so far */
    struct sl_format_result res;
    int r;
    sl_error_t err;
};

/* One platform image: its source manifest and config, its layers, and what was pushed. */
struct image_job {
    char *label;
    struct sl_registry_manifest src;         /* source manifest bytes */
    const struct sl_descriptor *index_entry; /* NULL for a single-manifest source */
    char *config;
    size_t config_len;
    struct layer_job *layers;
    size_t n_layers;
    /* results */
    char *new_config;
    size_t new_config_len;
    char new_config_digest[SL_DIGEST_STR_LEN];
    char *new_manifest;
    size_t new_manifest_len;
    char new_manifest_digest[SL_DIGEST_STR_LEN];
};

static bool layer_type_supported(const char *mt)
{
    static const char *const ok[] = {
        SL_MT_DOCKER_LAYER,
        SL_MT_OCI_LAYER_GZIP,
        SL_MT_OCI_LAYER_ZSTD,
        SL_MT_OCI_LAYER,
        "application/vnd.docker.image.rootfs.diff.tar",
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(ok); i++)
        if (strcmp(mt, ok[i]) == 0)
            return true;
    return false;
}

static int open_tmp(const char *dir, sl_error_t *err)
{
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd >= 0)
        return fd;
    /* Filesystems without O_TMPFILE: a named file unlinked at once. */
    _cleanup_free_ char *path = sl_xasprintf("%s/layer-XXXXXX", dir);
    fd = mkostemp(path, O_CLOEXEC);
    if (fd < 0)
        return sl_error_make(err, errno, "create a temporary file in `%s`: %s", dir,
                             strerror(errno));
    unlink(path);
    return fd;
}

static int write_all(int fd, const void *p, size_t n)
{
    const char *s = p;
    while (n > 0) {
        ssize_t w = write(fd, s, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        s += w;
        n -= (size_t)w;
    }
    return 0;
}

struct fd_sink {
    int fd;
    struct sl_convert *c;
};

static int fd_sink_write(void *ud, const void *data, size_t len)
{
    struct fd_sink *s = ud;
    int r = write_all(s->fd, data, len);
    if (r < 0)
        return r;
    progress_add(s->c, SL_CONVERT_DOWNLOADED, len);
    return 0;
}

static void on_convert_progress(uint64_t in_bytes, void *ud)
{
    struct layer_job *j = ud;
    progress_add(j->c, SL_CONVERT_CONVERTED, in_bytes - j->converted);
    j->converted = in_bytes;
}

static void layer_convert(struct layer_job *j)
{
    struct sl_convert *c = j->c;
    const struct sl_descriptor *d = j->desc;
    sl_error_t *err = &j->err;
    int r;

    if (!layer_type_supported(d->media_type)) {
        j->r =
            sl_error_make(err, EPROTONOSUPPORT, "layer %zu `%s`: unsupported layer media type `%s`",
                          j->index, d->digest, d->media_type);
        return;
    }
    _cleanup_close_ int in_fd = open_tmp(c->tmpdir, err);
    if (in_fd < 0) {
        j->r = in_fd;
        return;
    }
    struct fd_sink sink = {in_fd, c};
    r = sl_registry_get_blob(c->src, c->sref.path, d->digest, fd_sink_write, &sink, err);
    if (r < 0) {
        j->r = sl_error_wrap(err, r, "layer %zu `%s`", j->index, d->digest);
        return;
    }
    if (lseek(in_fd, 0, SEEK_SET) < 0) {
        j->r = sl_error_make(err, errno, "layer %zu: seek: %s", j->index, strerror(errno));
        return;
    }
    j->out_fd = open_tmp(c->tmpdir, err);
    if (j->out_fd < 0) {
        j->r = j->out_fd;
        return;
    }
    struct sl_format_options fo = {
        .chunk_size = c->opts.chunk_size,
        .level = c->opts.level,
        .progress = on_convert_progress,
        .progress_ud = j,
    };
    r = sl_format_convert(in_fd, j->out_fd, &fo, &j->res, err);
    if (r < 0) {
        j->r = sl_error_wrap(err, r, "layer %zu `%s`", j->index, d->digest);
        return;
    }
    progress_add(c, SL_CONVERT_LAYERS_DONE, 1);
    log_debug("layer %zu %s -> %s (%" PRIu64 " -> %" PRIu64 " bytes, %" PRIu64 " files)", j->index,
              d->digest, j->res.blob_digest, (uint64_t)d->size, j->res.blob_size,
              j->res.regular_files);
    j->r = 0;
}

static void layer_push(struct layer_job *j)
{
    struct sl_convert *c = j->c;
    struct sl_blob_source bs = {.fd = j->out_fd, .offset = 0, .size = (int64_t)j->res.blob_size};
    int r = sl_registry_push_blob(
        c->dst, c->dref.path, j->res.blob_digest, &bs,
        strcmp(sl_registry_host(c->src), sl_registry_host(c->dst)) == 0 ? c->sref.path : NULL,
        &j->err);
    if (r < 0) {
        j->r = sl_error_wrap(&j->err, r, "push layer %zu `%s` as `%s`", j->index, j->desc->digest,
                             j->res.blob_digest);
        return;
    }
    progress_add(c, SL_CONVERT_PUSHED, j->res.blob_size);
    j->r = 0;
}

/* A fixed pool of threads runs fn over every job; the first failure stops new jobs. */
struct pool {
    struct layer_job **jobs;
    size_t n;
    atomic_size_t next;
    atomic_bool failed;
    void (*fn)(struct layer_job *);
};

static void *pool_worker(void *arg)
{
    struct pool *p = arg;
    for (;;) {
        size_t i = atomic_fetch_add(&p->next, 1);
        if (i >= p->n || atomic_load(&p->failed))
            return NULL;
        p->fn(p->jobs[i]);
        if (p->jobs[i]->r < 0)
            atomic_store(&p->failed, true);
    }
}

static void pool_run(struct layer_job **jobs, size_t n, size_t threads,
                     void (*fn)(struct layer_job *))
{
    struct pool p = {.jobs = jobs, .n = n, .fn = fn};
    atomic_init(&p.next, 0);
    atomic_init(&p.failed, false);
    if (threads > n)
        threads = n;
    if (threads <= 1) {
        pool_worker(&p);
        return;
    }
    pthread_t *tids = sl_xcalloc(threads, sizeof(pthread_t));
    size_t started = 0;
    for (; started < threads; started++)
        if (pthread_create(&tids[started], NULL, pool_worker, &p) != 0)
            break;
    if (started == 0)
        pool_worker(&p);
    for (size_t i = 0; i < started; i++)
        pthread_join(tids[i], NULL);
    free(tids);
}

/* The first failed job's error, moved into *err, wrapped with the job's image (and the
 * destination once pushing). */
static int pool_error(struct layer_job **jobs, size_t n, const char *dst, sl_error_t *err)
{
    for (size_t i = 0; i < n; i++)
        if (jobs[i]->r < 0) {
            sl_error_free(err);
            *err = TAKE_PTR(jobs[i]->err);
            return sl_error_wrap(err, jobs[i]->r, "convert `%s`%s%s%s", jobs[i]->image_label,
                                 dst ? " to `" : "", dst ? dst : "", dst ? "`" : "");
        }
    return 0;
}

/* Rewrites the config: rootfs.diff_ids become the converted layers' diffIDs. */
static int build_config(struct image_job *im, sl_error_t *err)
{
    json_auto_t *cfg = NULL;
    int r = sl_json_parse(im->config, im->config_len, CONFIG_MAX, "image config", &cfg, err);
    if (r < 0)
        return r;
    json_t *rootfs = NULL, *ids = NULL;
    r = sl_json_get_obj(cfg, "rootfs", "", &rootfs, err);
    if (r >= 0)
        r = sl_json_get_arr(rootfs, "diff_ids", ".rootfs", &ids, err);
    if (r < 0)
        return sl_error_wrap(err, r, "image config");
    if (json_array_size(ids) != im->n_layers)
        return sl_error_make(err, EINVAL,
                             "image config: %zu diff_ids for %zu layers in the manifest",
                             json_array_size(ids), im->n_layers);
    for (size_t i = 0; i < im->n_layers; i++)
        json_array_set_new(ids, i, json_string(im->layers[i].res.diff_id));
    im->new_config = sl_json_dump(cfg, &im->new_config_len);
    sl_sha256_str(im->new_config, im->new_config_len, im->new_config_digest);
    return 0;
}

static void set_descriptor(json_t *d, const char *digest, uint64_t size)
{
    json_object_set_new(d, "digest", json_string(digest));
    json_object_set_new(d, "size", json_integer((json_int_t)size));
}

/* Rewrites the source manifest: config and layer descriptors point at the converted blobs;
 * layers carry the TOC digest annotations. Media types follow the source's family. */
static int build_manifest(struct image_job *im, sl_error_t *err)
{
    json_auto_t *m = NULL;
    int r = sl_json_parse(im->src.data, im->src.len, SL_MANIFEST_MAX_BYTES, "manifest", &m, err);
    if (r < 0)
        return r;
    json_t *config = json_object_get(m, "config");
    json_t *layers = json_object_get(m, "layers");
    if (!json_is_object(config) || !json_is_array(layers) ||
        json_array_size(layers) != im->n_layers)
        return sl_error_make(err, EINVAL, "manifest: unexpected shape");
    set_descriptor(config, im->new_config_digest, im->new_config_len);
    bool oci = im->src.manifest->kind == SL_MANIFEST_OCI;
    for (size_t i = 0; i < im->n_layers; i++) {
        const struct layer_job *j = &im->layers[i];
        json_t *l = json_array_get(layers, i);
        json_object_set_new(l, "mediaType",
                            json_string(oci ? SL_MT_OCI_LAYER_GZIP : SL_MT_DOCKER_LAYER));
        set_descriptor(l, j->res.blob_digest, j->res.blob_size);
        json_t *ann = json_object_get(l, "annotations");
        if (!json_is_object(ann)) {
            ann = json_object();
            json_object_set_new(l, "annotations", ann);
        }
        json_object_set_new(ann, SL_ANN_STARLIGHT_TOC, json_string(j->res.toc_digest));
        json_object_set_new(ann, SL_ANN_STARGZ_TOC, json_string(j->res.toc_digest));
        char usize[32];
        snprintf(usize, sizeof(usize), "%" PRIu64, j->res.tar_size);
        json_object_set_new(ann, SL_ANN_ESTARGZ_USIZE, json_string(usize));
    }
    im->new_manifest = sl_json_dump(m, &im->new_manifest_len);
    sl_sha256_str(im->new_manifest, im->new_manifest_len, im->new_manifest_digest);
    return 0;
}

static int platform_str(const struct sl_platform *p, char *out, size_t n)
{
    return snprintf(out, n, "%s/%s%s%s", p->os, p->architecture, p->variant ? "/" : "",
                    p->variant ? p->variant : "");
}

/* Fetches the config of one platform image and prepares its layer jobs. */
static int image_prepare(struct sl_convert *c, struct image_job *im, sl_error_t *err)
{
    const struct sl_manifest *m = im->src.manifest;
    int r = sl_registry_get_blob_buf(c->src, c->sref.path, m->config.digest, CONFIG_MAX,
                                     &im->config, &im->config_len, err);
    if (r < 0)
        return sl_error_wrap(err, r, "config `%s`", m->config.digest);
    im->n_layers = m->n_layers;
    im->layers = sl_xcalloc(m->n_layers ? m->n_layers : 1, sizeof(struct layer_job));
    for (size_t i = 0; i < m->n_layers; i++) {
        im->layers[i] = (struct layer_job){
            .c = c, .image_label = im->label, .index = i, .desc = &m->layers[i], .out_fd = -1};
        progress_add(c, SL_CONVERT_LAYERS_TOTAL, 1);
        progress_add(c, SL_CONVERT_DOWNLOAD_TOTAL, (uint64_t)m->layers[i].size);
    }
    return 0;
}

static void image_free(struct image_job *im)
{
    for (size_t i = 0; i < im->n_layers; i++) {
        if (im->layers[i].out_fd >= 0)
            close(im->layers[i].out_fd);
        sl_error_free(&im->layers[i].err);
    }
    free(im->layers);
    free(im->label);
    free(im->config);
    free(im->new_config);
    free(im->new_manifest);
    sl_registry_manifest_free(&im->src);
}

static bool platform_selected(const struct sl_convert *c, const struct sl_descriptor *d,
                              sl_error_t *err, int *ret_r)
{
    *ret_r = 0;
    if (!d->has_platform)
        return false;
    if (strcmp(d->platform.os, "unknown") == 0 || strcmp(d->platform.architecture, "unknown") == 0)
        return false; /* attestation manifests of buildx and the like */
    if (c->n_platforms == 0)
        return true;
    for (size_t i = 0; i < c->n_platforms; i++) {
        if (strcmp(c->platforms[i], "all") == 0)
            return true;
        struct sl_platform want = {0};
        int r = sl_platform_parse(c->platforms[i], &want, err);
        if (r < 0) {
            *ret_r = r;
            return false;
        }
        struct sl_manifest one = {.kind = SL_MANIFEST_OCI_INDEX,
                                  .manifests = (struct sl_descriptor *)d,
                                  .n_manifests = 1};
        bool match = sl_manifest_find_platform(&one, &want) == 0;
        sl_platform_free(&want);
        if (match)
            return true;
    }
    return false;
}

int sl_convert_run(struct sl_convert *c, struct sl_convert_result *ret, sl_error_t *err)
{
    *ret = (struct sl_convert_result){0};
    struct sl_registry_manifest top = {0};
    int r =
        sl_registry_get_manifest(c->src, c->sref.path, sl_image_ref_reference(&c->sref), &top, err);
    if (r < 0)
        return r;

    struct image_job *images = NULL;
    size_t n_images = 0;
    bool is_index = sl_manifest_kind_is_index(top.manifest->kind);
    _cleanup_free_ char *srcstr = sl_image_ref_str(&c->sref);
    _cleanup_free_ char *dststr = sl_image_ref_str(&c->dref);

    if (!is_index) {
        images = sl_xcalloc(1, sizeof(*images));
        images[0].src = top;
        memset(&top, 0, sizeof(top));
        images[0].label = sl_xstrdup(srcstr);
        n_images = 1;
    } else {
        const struct sl_manifest *idx = top.manifest;
        images = sl_xcalloc(idx->n_manifests ? idx->n_manifests : 1, sizeof(*images));
        for (size_t i = 0; i < idx->n_manifests; i++) {
            const struct sl_descriptor *d = &idx->manifests[i];
            bool sel = platform_selected(c, d, err, &r);
            if (r < 0)
                goto out;
            if (!sel)
                continue;
            char plat[128];
            platform_str(&d->platform, plat, sizeof(plat));
            struct image_job *im = &images[n_images++];
            im->index_entry = d;
            im->label = sl_xasprintf("%s (%s)", srcstr, plat);
            r = sl_registry_get_manifest(c->src, c->sref.path, d->digest, &im->src, err);
            if (r < 0) {
                r = sl_error_wrap(err, r, "convert `%s`", im->label);
                goto out;
            }
            if (sl_manifest_kind_is_index(im->src.manifest->kind)) {
                r = sl_error_make(err, EPROTONOSUPPORT,
                                  "convert `%s`: nested indexes are not supported", im->label);
                goto out;
            }
        }
        if (n_images == 0) {
            r = sl_error_make(err, ENOENT,
                              "convert `%s`: no manifest in the index matches --platform", srcstr);
            goto out;
        }
    }

    /* Phase 1: download and convert every layer of every image; nothing is pushed yet. */
    for (size_t i = 0; i < n_images; i++) {
        r = image_prepare(c, &images[i], err);
        if (r < 0) {
            r = sl_error_wrap(err, r, "convert `%s`", images[i].label);
            goto out;
        }
    }
    size_t total = 0;
    for (size_t i = 0; i < n_images; i++)
        total += images[i].n_layers;
    struct layer_job **all = sl_xcalloc(total ? total : 1, sizeof(*all));
    size_t k = 0;
    for (size_t i = 0; i < n_images; i++)
        for (size_t l = 0; l < images[i].n_layers; l++)
            all[k++] = &images[i].layers[l];
    size_t threads =
        c->opts.jobs > 0 ? (size_t)c->opts.jobs : (size_t)sysconf(_SC_NPROCESSORS_ONLN);
    progress_phase(c, "converting");
    pool_run(all, total, threads, layer_convert);
    r = pool_error(all, total, NULL, err);
    if (r < 0) {
        free(all);
        goto out;
    }
    for (size_t i = 0; i < n_images; i++) {
        r = build_config(&images[i], err);
        if (r >= 0)
            r = build_manifest(&images[i], err);
        if (r < 0) {
            r = sl_error_wrap(err, r, "convert `%s`", images[i].label);
            free(all);
            goto out;
        }
    }

    /* Phase 2: blobs, configs, manifests by digest, then the tag. */
    progress_phase(c, "pushing");
    pool_run(all, total, threads, layer_push);
    r = pool_error(all, total, dststr, err);
    free(all);
    if (r < 0)
        goto out;
    const char *dst_tag = sl_image_ref_reference(&c->dref);
    for (size_t i = 0; i < n_images; i++) {
        struct image_job *im = &images[i];
        struct sl_blob_source bs = {
            .fd = -1, .data = im->new_config, .size = (int64_t)im->new_config_len};
        r = sl_registry_push_blob(c->dst, c->dref.path, im->new_config_digest, &bs, NULL, err);
        if (r >= 0)
            r = sl_registry_put_manifest(
                c->dst, c->dref.path, is_index ? im->new_manifest_digest : dst_tag,
                im->new_manifest, im->new_manifest_len, im->src.media_type, NULL, err);
        if (r < 0) {
            r = sl_error_wrap(err, r, "convert to `%s`", dststr);
            goto out;
        }
    }
    char final_digest[SL_DIGEST_STR_LEN];
    if (is_index) {
        json_auto_t *idx = NULL;
        r = sl_json_parse(top.data, top.len, SL_MANIFEST_MAX_BYTES, "index", &idx, err);
        if (r < 0)
            goto out;
        json_t *list = json_object_get(idx, "manifests");
        json_t *out_list = json_array();
        for (size_t i = 0; i < n_images; i++) {
            size_t pos = (size_t)(images[i].index_entry - top.manifest->manifests);
            json_t *e = json_deep_copy(json_array_get(list, pos));
            set_descriptor(e, images[i].new_manifest_digest, images[i].new_manifest_len);
            json_array_append_new(out_list, e);
        }
        json_object_set_new(idx, "manifests", out_list);
        size_t len;
        _cleanup_free_ char *data = sl_json_dump(idx, &len);
        r = sl_registry_put_manifest(c->dst, c->dref.path, dst_tag, data, len, top.media_type,
                                     final_digest, err);
        if (r < 0) {
            r = sl_error_wrap(err, r, "convert to `%s`", dststr);
            goto out;
        }
    } else {
        memcpy(final_digest, images[0].new_manifest_digest, SL_DIGEST_STR_LEN);
    }
    progress_phase(c, NULL);

    ret->reference = TAKE_PTR(dststr);
    memcpy(ret->digest, final_digest, SL_DIGEST_STR_LEN);
    ret->images = sl_xcalloc(n_images, sizeof(*ret->images));
    ret->n_images = n_images;
    for (size_t i = 0; i < n_images; i++) {
        struct sl_convert_image *o = &ret->images[i];
        o->label = TAKE_PTR(images[i].label);
        o->n_layers = images[i].n_layers;
        for (size_t l = 0; l < images[i].n_layers; l++) {
            o->in_bytes += (uint64_t)images[i].layers[l].desc->size;
            o->out_bytes += images[i].layers[l].res.blob_size;
        }
        memcpy(o->manifest_digest, images[i].new_manifest_digest, SL_DIGEST_STR_LEN);
        log_debug("converted %s: %zu layers, manifest %s", o->label, o->n_layers,
                  o->manifest_digest);
    }
    r = 0;
out:
    for (size_t i = 0; i < n_images; i++)
        image_free(&images[i]);
    free(images);
    sl_registry_manifest_free(&top);
    return r;
}

int sl_convert_new(const struct sl_image_ref *src, const struct sl_image_ref *dst,
                   const struct sl_convert_options *opts, struct sl_convert **ret, sl_error_t *err)
{
    if (dst->digest) {
        _cleanup_free_ char *s = sl_image_ref_str(dst);
        return sl_error_make(err, EINVAL, "destination `%s` must name a tag, not a digest", s);
    }
    struct sl_convert *c = sl_xcalloc(1, sizeof(*c));
    c->opts = *opts;
    c->opts.platforms = NULL;
    c->opts.docker_config = NULL;
    c->opts.tmp_dir = NULL;
    sl_image_ref_copy(src, &c->sref);
    sl_image_ref_copy(dst, &c->dref);
    c->n_platforms = opts->n_platforms;
    c->platforms = sl_xcalloc(opts->n_platforms + 1, sizeof(char *));
    for (size_t i = 0; i < opts->n_platforms; i++)
        c->platforms[i] = sl_xstrdup(opts->platforms[i]);
    struct sl_registry_options so = {.insecure = opts->insecure_source,
                                     .docker_config = opts->docker_config};
    struct sl_registry_options dopt = {.insecure = opts->insecure_destination,
                                       .docker_config = opts->docker_config};
    int r;
    if ((r = sl_registry_new(c->sref.domain, &so, &c->src, err)) < 0 ||
        (r = sl_registry_new(c->dref.domain, &dopt, &c->dst, err)) < 0) {
        sl_convert_free(c);
        return r;
    }
    const char *base = opts->tmp_dir && *opts->tmp_dir ? opts->tmp_dir : "/var/tmp";
    c->tmpdir = sl_xasprintf("%s/starlight-convert-XXXXXX", base);
    if (!mkdtemp(c->tmpdir)) {
        r = -errno;
        sl_error_make(err, -r, "create a staging directory in `%s`: %s", base, strerror(-r));
        free(TAKE_PTR(c->tmpdir));
        sl_convert_free(c);
        return r;
    }
    *ret = c;
    return 0;
}

void sl_convert_free(struct sl_convert *c)
{
    if (!c)
        return;
    if (c->tmpdir) {
        rmdir(c->tmpdir);
        free(c->tmpdir);
    }
    sl_registry_free(c->src);
    sl_registry_free(c->dst);
    sl_image_ref_free(&c->sref);
    sl_image_ref_free(&c->dref);
    for (size_t i = 0; i < c->n_platforms; i++)
        free(c->platforms[i]);
    free(c->platforms);
    free(c);
}

void sl_convert_result_free(struct sl_convert_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_images; i++)
        free(r->images[i].label);
    free(r->images);
    free(r->reference);
    *r = (struct sl_convert_result){0};
}

int sl_convert_image_refs(const char *src, const char *dst, const struct sl_convert_options *opts,
                          struct sl_convert_result *ret, sl_error_t *err)
{
    struct sl_image_ref s = {0}, d = {0};
    struct sl_convert *c = NULL;
    int r = sl_image_ref_parse(src, &s, err);
    if (r >= 0)
        r = sl_image_ref_parse(dst, &d, err);
    if (r >= 0)
        r = sl_convert_new(&s, &d, opts, &c, err);
    if (r >= 0)
        r = sl_convert_run(c, ret, err);
    sl_convert_free(c);
    sl_image_ref_free(&s);
    sl_image_ref_free(&d);
    return r;
}
