/* delta.c — encoder and validating decoder of the delta head (docs/protocol.md §3).
 *
 * Both directions share one validator over the plain struct, so whatever the proxy encodes is
 * exactly what a worker accepts. The JSON is built with jansson in a fixed key order and
 * dumped compactly: equal structs give equal bytes. */
#include "delta.h"
#include "base64.h"
#include "gzip.h"
#include "json.h"

#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#define ANN_STARLIGHT_TOC "containerd.io/snapshot/remote/starlight/toc.digest"
#define ANN_STARGZ_TOC    "containerd.io/snapshot/stargz/toc.digest"

/* ---------------------------------------------------------------- free */

const char *sl_delta_file_source_name(enum sl_delta_file_source s)
{
    switch (s) {
    case SL_DELTA_FILE_PAYLOAD:
        return "payload";
    case SL_DELTA_FILE_HELD:
        return "held";
    case SL_DELTA_FILE_EMPTY:
        return "empty";
    }
    return "?";
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

void sl_delta_header_free(struct sl_delta_header *h)
{
    if (!h)
        return;
    free(h->reference);
    free(h->repository);
    free(h->platform);
    free(h->media_type);
    free(h->manifest);
    free(h->config);
    strv_free(h->held_images, h->n_held_images);
    strv_free(h->held_layers, h->n_held_layers);
    for (size_t i = 0; i < h->n_layers; i++) {
        struct sl_delta_hlayer *l = &h->layers[i];
        free(l->toc_tail);
        for (size_t f = 0; f < l->n_files; f++)
            free(l->files[f].path);
        free(l->files);
    }
    free(h->layers);
    for (size_t i = 0; i < h->n_contents; i++)
        free(h->contents[i].chunks);
    free(h->contents);
    free(h);
}

/* ---------------------------------------------------------------- validation */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool in_sorted(char *const *v, size_t n, const char *s)
{
    return n && bsearch(&s, v, n, sizeof(*v), cmp_str) != NULL;
}

static bool str_ok(const char *s, bool allow_empty)
{
    if (!s)
        return false;
    size_t n = strnlen(s, SL_DELTA_MAX_STRING + 1);
    return n <= SL_DELTA_MAX_STRING && (allow_empty || n > 0);
}

/* Checks a sorted list of distinct digests. */
static int check_digest_list(char *const *v, size_t n, const char *what, sl_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!v[i] || !sl_digest_valid(v[i]))
            return sl_error_make(err, EINVAL, "%s[%zu]: not a sha256 digest", what, i);
        if (i && strcmp(v[i - 1], v[i]) >= 0)
            return sl_error_make(err, EINVAL, "%s[%zu]: not sorted or duplicated", what, i);
    }
    return 0;
}

/* The manifest must list exactly these layers and this config; the config's diff_ids must
 * match; TOC-digest annotations, where present, must match. */
static int check_manifest(const struct sl_delta_header *h, sl_error_t *err)
{
    json_auto_t *m = NULL;
    int r = sl_json_parse((const char *)h->manifest, h->manifest_len, SL_DELTA_MAX_BLOB,
                          ".target.manifest", &m, err);
    if (r < 0)
        return r;
    json_t *cfg = NULL, *layers = NULL;
    if ((r = sl_json_get_obj(m, "config", ".target.manifest", &cfg, err)) < 0 ||
        (r = sl_json_get_arr(m, "layers", ".target.manifest", &layers, err)) < 0)
        return r;
    const char *cd = NULL;
    if ((r = sl_json_get_str(cfg, "digest", ".target.manifest.config", &cd, err)) < 0)
        return r;
    if (strcmp(cd, h->config_digest) != 0)
        return sl_error_make(err, EINVAL, ".target.configDigest: manifest names %s", cd);
    if (json_array_size(layers) != h->n_layers)
        return sl_error_make(err, EINVAL, ".layers: %zu layers, the manifest lists %zu",
                             h->n_layers, json_array_size(layers));
    json_auto_t *c = NULL;
    r = sl_json_parse((const char *)h->config, h->config_len, SL_DELTA_MAX_BLOB, ".target.config",
                      &c, err);
    if (r < 0)
        return r;
    json_t *rootfs = NULL, *diff_ids = NULL;
    if ((r = sl_json_get_obj(c, "rootfs", ".target.config", &rootfs, err)) < 0 ||
        (r = sl_json_get_arr(rootfs, "diff_ids", ".target.config.rootfs", &diff_ids, err)) < 0)
        return r;
    if (json_array_size(diff_ids) != h->n_layers)
        return sl_error_make(err, EINVAL, ".target.config: %zu diff_ids for %zu layers",
                             json_array_size(diff_ids), h->n_layers);
    for (size_t i = 0; i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        json_t *d = json_array_get(layers, i);
        const char *dg = NULL;
        int64_t size = 0;
        char path[64];
        snprintf(path, sizeof(path), ".target.manifest.layers[%zu]", i);
        if ((r = sl_json_get_str(d, "digest", path, &dg, err)) < 0 ||
            (r = sl_json_get_i64(d, "size", path, &size, err)) < 0)
            return r;
        if (strcmp(dg, l->digest) != 0 || size < 0 || (uint64_t)size != l->size)
            return sl_error_make(err, EINVAL, ".layers[%zu]: %s (%" PRIu64 " bytes) but %s: %s", i,
                                 l->digest, l->size, path, dg);
        json_t *ann = json_object_get(d, "annotations");
        const char *keys[] = {ANN_STARLIGHT_TOC, ANN_STARGZ_TOC};
        for (size_t k = 0; k < SL_ELEMENTSOF(keys); k++) {
            json_t *a = ann ? json_object_get(ann, keys[k]) : NULL;
            if (a && (!json_is_string(a) || strcmp(json_string_value(a), l->toc_digest) != 0))
                return sl_error_make(err, EINVAL, ".layers[%zu].tocDigest: annotation %s differs",
                                     i, keys[k]);
        }
        json_t *di = json_array_get(diff_ids, i);
        if (!json_is_string(di) || strcmp(json_string_value(di), l->diff_id) != 0)
            return sl_error_make(err, EINVAL, ".layers[%zu].diffID: config says otherwise", i);
    }
    return 0;
}

/* A path appears once per layer (the TOC resolves duplicates before the proxy sees them). */
static int check_paths_unique(const struct sl_delta_header *h, sl_error_t *err)
{
    for (size_t i = 0; i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        if (l->n_files < 2)
            continue;
        _cleanup_free_ char **v = sl_xcalloc(l->n_files, sizeof(char *));
        for (size_t f = 0; f < l->n_files; f++)
            v[f] = l->files[f].path;
        qsort(v, l->n_files, sizeof(*v), cmp_str);
        for (size_t f = 1; f < l->n_files; f++)
            if (strcmp(v[f - 1], v[f]) == 0)
                return sl_error_make(err, EINVAL, ".layers[%zu].files: path `%s` repeated", i,
                                     v[f]);
    }
    return 0;
}

/* with_files: the layers list their files (version 1, and any header being encoded); a decoded
 * version-2 header has none, and the worker checks the contents against the TOCs instead. */
static int check_header(const struct sl_delta_header *h, bool with_files, sl_error_t *err)
{
    int r;
    if (!str_ok(h->reference, false) || !str_ok(h->repository, false) ||
        !str_ok(h->platform, false) || !str_ok(h->media_type, false))
        return sl_error_make(err, EINVAL,
                             ".target: reference, repository, platform and "
                             "mediaType must be non-empty strings");
    if (!sl_digest_valid(h->digest) || !sl_digest_valid(h->config_digest))
        return sl_error_make(err, EINVAL, ".target: digest and configDigest must be sha256");
    if (!h->manifest || !h->config || h->manifest_len > SL_DELTA_MAX_BLOB ||
        h->config_len > SL_DELTA_MAX_BLOB)
        return sl_error_make(err, EINVAL, ".target: manifest and config bytes are required");
    char d[SL_DIGEST_STR_LEN];
    sl_sha256_str(h->manifest, h->manifest_len, d);
    if (strcmp(d, h->digest) != 0)
        return sl_error_make(err, EBADMSG, ".target.manifest: bytes hash to %s, not %s", d,
                             h->digest);
    sl_sha256_str(h->config, h->config_len, d);
    if (strcmp(d, h->config_digest) != 0)
        return sl_error_make(err, EBADMSG, ".target.config: bytes hash to %s, not %s", d,
                             h->config_digest);
    if ((r = check_digest_list(h->held_images, h->n_held_images, ".held.images", err)) < 0 ||
        (r = check_digest_list(h->held_layers, h->n_held_layers, ".held.layers", err)) < 0)
        return r;
    if (h->n_layers == 0 || h->n_layers > SL_DELTA_MAX_LAYERS)
        return sl_error_make(err, EINVAL, ".layers: %zu layers (1..%u allowed)", h->n_layers,
                             SL_DELTA_MAX_LAYERS);
    if (h->n_contents > SL_DELTA_MAX_ITEMS)
        return sl_error_make(err, EFBIG, ".contents: too many");
    if ((r = check_manifest(h, err)) < 0)
        return r;

    /* contents: offsets tile the payload, chunks tile each file */
    uint64_t pos = 0;
    size_t total_chunks = 0;
    for (size_t i = 0; i < h->n_contents; i++) {
        const struct sl_delta_content *c = &h->contents[i];
        if (!sl_digest_valid(c->digest))
            return sl_error_make(err, EINVAL, ".contents[%zu].digest: not a sha256 digest", i);
        if (c->layer >= h->n_layers || h->layers[c->layer].held)
            return sl_error_make(err, EINVAL,
                                 ".contents[%zu].layer: %" PRIu32
                                 " is not a target layer the worker lacks",
                                 i, c->layer);
        if (c->payload_offset != pos)
            return sl_error_make(err, EINVAL,
                                 ".contents[%zu].payloadOffset: %" PRIu64 ", expected %" PRIu64, i,
                                 c->payload_offset, pos);
        if (c->n_chunks == 0 || c->size == 0)
            return sl_error_make(err, EINVAL, ".contents[%zu]: empty content", i);
        total_chunks += c->n_chunks;
        if (total_chunks > SL_DELTA_MAX_ITEMS)
            return sl_error_make(err, EFBIG, ".contents: too many chunks");
        const struct sl_delta_hlayer *l = &h->layers[c->layer];
        uint64_t coff = 0, cpos = pos;
        for (size_t k = 0; k < c->n_chunks; k++) {
            const struct sl_delta_chunk *ch = &c->chunks[k];
            if (!sl_digest_valid(ch->digest))
                return sl_error_make(err, EINVAL, ".contents[%zu].chunks[%zu].chunkDigest", i, k);
            if (ch->chunk_offset != coff || ch->size == 0 || ch->size > c->size - coff)
                return sl_error_make(err, EINVAL,
                                     ".contents[%zu].chunks[%zu]: chunks must tile the file", i, k);
            if (ch->compressed_size == 0 || ch->blob_offset > l->toc_offset ||
                ch->compressed_size > l->toc_offset - ch->blob_offset)
                return sl_error_make(err, EINVAL,
                                     ".contents[%zu].chunks[%zu]: blob range outside the layer's "
                                     "data",
                                     i, k);
            if (ch->payload_offset != cpos)
                return sl_error_make(err, EINVAL,
                                     ".contents[%zu].chunks[%zu].payloadOffset: %" PRIu64
                                     ", expected %" PRIu64,
                                     i, k, ch->payload_offset, cpos);
            if (ch->compressed_size > UINT64_MAX / 2 - cpos)
                return sl_error_make(err, EINVAL, ".contents[%zu]: payload overflows", i);
            cpos += ch->compressed_size;
            coff += ch->size;
        }
        if (coff != c->size)
            return sl_error_make(err, EINVAL,
                                 ".contents[%zu]: chunks cover %" PRIu64 " of %" PRIu64 " bytes", i,
                                 coff, c->size);
        if (cpos - pos != c->payload_length)
            return sl_error_make(err, EINVAL,
                                 ".contents[%zu].payloadLength: %" PRIu64 ", chunks hold %" PRIu64,
                                 i, c->payload_length, cpos - pos);
        pos = cpos;
    }
    if (pos != h->payload_length)
        return sl_error_make(err, EINVAL, ".payloadLength: %" PRIu64 ", contents hold %" PRIu64,
                             h->payload_length, pos);

    /* content digests are distinct: sort a copy of the pointers */
    _cleanup_free_ const char **digs = sl_xcalloc(h->n_contents + 1, sizeof(*digs));
    for (size_t i = 0; i < h->n_contents; i++)
        digs[i] = h->contents[i].digest;
    qsort(digs, h->n_contents, sizeof(*digs), cmp_str);
    for (size_t i = 1; i < h->n_contents; i++)
        if (strcmp(digs[i - 1], digs[i]) == 0)
            return sl_error_make(err, EINVAL, ".contents: %s listed twice", digs[i]);

    /* layers and their files */
    _cleanup_free_ bool *used = sl_xcalloc(h->n_contents + 1, sizeof(bool));
    size_t total_files = 0;
    for (size_t i = 0; i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        if (!sl_digest_valid(l->digest) || !sl_digest_valid(l->diff_id) ||
            !sl_digest_valid(l->toc_digest))
            return sl_error_make(err, EINVAL,
                                 ".layers[%zu]: digest, diffID and tocDigest must "
                                 "be sha256 digests",
                                 i);
        if (l->held != in_sorted(h->held_layers, h->n_held_layers, l->digest))
            return sl_error_make(err, EINVAL, ".layers[%zu].held: disagrees with .held.layers", i);
        if (l->held) {
            if (l->toc_tail || l->n_files)
                return sl_error_make(err, EINVAL,
                                     ".layers[%zu]: a held layer carries no TOC "
                                     "and no files",
                                     i);
            continue;
        }
        if (!l->toc_tail || l->toc_offset >= l->size || l->toc_tail_len != l->size - l->toc_offset)
            return sl_error_make(
                err, EINVAL, ".layers[%zu].tocTail: must hold the blob bytes [tocOffset, size)", i);
        if (!with_files) {
            if (l->n_files)
                return sl_error_make(err, EINVAL, ".layers[%zu].files: not in version 2", i);
            continue;
        }
        total_files += l->n_files;
        if (total_files > SL_DELTA_MAX_ITEMS)
            return sl_error_make(err, EFBIG, ".layers: too many files");
        for (size_t f = 0; f < l->n_files; f++) {
            const struct sl_delta_file *fi = &l->files[f];
            if (!str_ok(fi->path, false) || !sl_digest_valid(fi->digest))
                return sl_error_make(err, EINVAL,
                                     ".layers[%zu].files[%zu]: path and digest "
                                     "required",
                                     i, f);
            switch (fi->source) {
            case SL_DELTA_FILE_EMPTY:
                if (fi->size != 0)
                    return sl_error_make(err, EINVAL,
                                         ".layers[%zu].files[%zu]: \"empty\" file "
                                         "of %" PRIu64 " bytes",
                                         i, f, fi->size);
                break;
            case SL_DELTA_FILE_HELD:
                if (fi->size == 0)
                    return sl_error_make(err, EINVAL,
                                         ".layers[%zu].files[%zu]: zero-length "
                                         "files are \"empty\"",
                                         i, f);
                break;
            case SL_DELTA_FILE_PAYLOAD:
                if (fi->content >= h->n_contents ||
                    strcmp(h->contents[fi->content].digest, fi->digest) != 0 ||
                    h->contents[fi->content].size != fi->size)
                    return sl_error_make(err, EINVAL,
                                         ".layers[%zu].files[%zu].content: does "
                                         "not name a content with this digest and size",
                                         i, f);
                used[fi->content] = true;
                break;
            default:
                return sl_error_make(err, EINVAL, ".layers[%zu].files[%zu].source", i, f);
            }
        }
    }
    for (size_t i = 0; with_files && i < h->n_contents; i++)
        if (!used[i])
            return sl_error_make(err, EINVAL, ".contents[%zu]: no file uses it", i);
    return check_paths_unique(h, err);
}

/* ---------------------------------------------------------------- encode */

static json_t *jstr(const char *s)
{
    json_t *j = json_string(s);
    if (!j)
        abort(); /* callers validated UTF-8-free-of-NUL strings; OOM aborts */
    return j;
}

static json_t *ju64(uint64_t v)
{
    return json_integer((json_int_t)v);
}

static json_t *jbytes(const uint8_t *p, size_t n)
{
    size_t l;
    _cleanup_free_ char *s = sl_base64_encode(p, n, &l);
    return json_stringn(s, l);
}

static json_t *jstrv(char *const *v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, jstr(v[i]));
    return a;
}

static void put_be(uint8_t *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (uint8_t)v;
        v >>= 8;
    }
}

static uint64_t get_be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

int sl_delta_header_encode(const struct sl_delta_header *h, uint8_t **ret, size_t *ret_len,
                           sl_error_t *err)
{
    uint32_t version = h->version ? h->version : SL_DELTA_VERSION;
    if (version != SL_DELTA_VERSION && version != SL_DELTA_VERSION_2)
        return sl_error_make(err, EINVAL, "encode delta header: version %" PRIu32, version);
    /* version 2 from a decoded version-2 header: no files to check */
    bool with_files = version == SL_DELTA_VERSION;
    for (size_t i = 0; i < h->n_layers && !with_files; i++)
        with_files = h->layers[i].n_files > 0;
    int r = check_header(h, with_files, err);
    if (r < 0)
        return sl_error_wrap(err, r, "encode delta header");
    json_auto_t *j = json_object();
    json_object_set_new(j, "version", json_integer(version));
    json_t *t = json_object();
    json_object_set_new(j, "target", t);
    json_object_set_new(t, "reference", json_string(h->reference));
    json_object_set_new(t, "repository", json_string(h->repository));
    json_object_set_new(t, "platform", json_string(h->platform));
    json_object_set_new(t, "digest", jstr(h->digest));
    json_object_set_new(t, "mediaType", json_string(h->media_type));
    json_object_set_new(t, "manifest", jbytes(h->manifest, h->manifest_len));
    json_object_set_new(t, "configDigest", jstr(h->config_digest));
    json_object_set_new(t, "config", jbytes(h->config, h->config_len));
    json_t *held = json_object();
    json_object_set_new(j, "held", held);
    json_object_set_new(held, "images", jstrv(h->held_images, h->n_held_images));
    json_object_set_new(held, "layers", jstrv(h->held_layers, h->n_held_layers));
    /* strings given by the proxy come from the registry or the database; json_string()
     * returns NULL on invalid UTF-8, which is a caller bug we report rather than encode */
    if (!json_object_get(t, "reference") || !json_object_get(t, "repository") ||
        !json_object_get(t, "platform") || !json_object_get(t, "mediaType"))
        return sl_error_make(err, EINVAL, "encode delta header: .target strings not UTF-8");

    json_t *layers = json_array();
    json_object_set_new(j, "layers", layers);
    for (size_t i = 0; i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        json_t *o = json_object();
        json_array_append_new(layers, o);
        json_object_set_new(o, "index", ju64(i));
        json_object_set_new(o, "digest", jstr(l->digest));
        json_object_set_new(o, "size", ju64(l->size));
        json_object_set_new(o, "diffID", jstr(l->diff_id));
        json_object_set_new(o, "tocDigest", jstr(l->toc_digest));
        json_object_set_new(o, "held", json_boolean(l->held));
        json_object_set_new(o, "tocOffset", l->held ? json_null() : ju64(l->toc_offset));
        json_object_set_new(o, "tocTail",
                            l->held ? json_null() : jbytes(l->toc_tail, l->toc_tail_len));
        if (version == SL_DELTA_VERSION_2)
            continue; /* derivable from the TOC, the contents and the held set */
        json_t *files = json_array();
        json_object_set_new(o, "files", files);
        for (size_t f = 0; f < l->n_files; f++) {
            const struct sl_delta_file *fi = &l->files[f];
            json_t *fo = json_object();
            json_t *p = json_string(fi->path);
            if (!p) {
                json_decref(fo);
                return sl_error_make(err, EINVAL,
                                     "encode delta header: .layers[%zu].files[%zu]:"
                                     " path is not UTF-8",
                                     i, f);
            }
            json_object_set_new(fo, "path", p);
            json_object_set_new(fo, "digest", jstr(fi->digest));
            json_object_set_new(fo, "size", ju64(fi->size));
            json_object_set_new(fo, "source", jstr(sl_delta_file_source_name(fi->source)));
            json_object_set_new(fo, "content",
                                fi->source == SL_DELTA_FILE_PAYLOAD ? ju64(fi->content)
                                                                    : json_null());
            json_array_append_new(files, fo);
        }
    }
    json_t *contents = json_array();
    json_object_set_new(j, "contents", contents);
    for (size_t i = 0; i < h->n_contents; i++) {
        const struct sl_delta_content *c = &h->contents[i];
        json_t *o = json_object();
        json_array_append_new(contents, o);
        json_object_set_new(o, "index", ju64(i));
        json_object_set_new(o, "digest", jstr(c->digest));
        json_object_set_new(o, "size", ju64(c->size));
        json_object_set_new(o, "layer", ju64(c->layer));
        json_object_set_new(o, "traced", json_boolean(c->traced));
        json_object_set_new(o, "payloadOffset", ju64(c->payload_offset));
        json_object_set_new(o, "payloadLength", ju64(c->payload_length));
        json_t *chunks = json_array();
        json_object_set_new(o, "chunks", chunks);
        for (size_t k = 0; k < c->n_chunks; k++) {
            const struct sl_delta_chunk *ch = &c->chunks[k];
            json_t *co = json_object();
            json_object_set_new(co, "blobOffset", ju64(ch->blob_offset));
            json_object_set_new(co, "compressedSize", ju64(ch->compressed_size));
            json_object_set_new(co, "chunkOffset", ju64(ch->chunk_offset));
            json_object_set_new(co, "size", ju64(ch->size));
            json_object_set_new(co, "chunkDigest", jstr(ch->digest));
            json_object_set_new(co, "payloadOffset", ju64(ch->payload_offset));
            json_array_append_new(chunks, co);
        }
    }
    json_object_set_new(j, "payloadLength", ju64(h->payload_length));

    size_t jl = 0;
    _cleanup_free_ char *js = sl_json_dump(j, &jl);
    if (jl > SL_DELTA_MAX_HEADER)
        return sl_error_make(err, EFBIG, "encode delta header: %zu bytes (limit %u)", jl,
                             SL_DELTA_MAX_HEADER);
    _cleanup_free_ uint8_t *gz = NULL;
    if (version == SL_DELTA_VERSION_2) {
        size_t gl = 0;
        if ((r = sl_gzip_compress(js, jl, 6, &gz, &gl, err)) < 0)
            return sl_error_wrap(err, r, "encode delta header");
        free(js);
        js = (char *)TAKE_PTR(gz);
        jl = gl;
    }
    uint8_t *out = sl_xmalloc(SL_DELTA_PRELUDE_SIZE + jl);
    memcpy(out, SL_DELTA_MAGIC, 8);
    put_be(out + 8, version, 4);
    put_be(out + 12, 0, 4);
    put_be(out + 16, jl, 8);
    put_be(out + 24, h->payload_length, 8);
    memcpy(out + SL_DELTA_PRELUDE_SIZE, js, jl);
    *ret = out;
    *ret_len = SL_DELTA_PRELUDE_SIZE + jl;
    return 0;
}

/* ---------------------------------------------------------------- decode */

int sl_delta_prelude_parse(const void *p, size_t len, uint64_t *ret_header_len,
                           uint64_t *ret_payload_len, sl_error_t *err)
{
    uint32_t v = 0;
    int r = sl_delta_prelude_parse_v(p, len, ret_header_len, ret_payload_len, &v, err);
    if (r < 0)
        return r;
    if (v != SL_DELTA_VERSION)
        return sl_error_make(err, EPROTONOSUPPORT,
                             "delta prelude: format version %" PRIu32 ", expected %u", v,
                             SL_DELTA_VERSION);
    return 0;
}

int sl_delta_prelude_parse_v(const void *p, size_t len, uint64_t *ret_header_len,
                             uint64_t *ret_payload_len, uint32_t *ret_version, sl_error_t *err)
{
    const uint8_t *b = p;
    if (len < SL_DELTA_PRELUDE_SIZE)
        return sl_error_make(err, EINVAL, "delta prelude: %zu bytes, need %d", len,
                             SL_DELTA_PRELUDE_SIZE);
    if (memcmp(b, SL_DELTA_MAGIC, 8) != 0)
        return sl_error_make(err, EINVAL, "delta prelude: bad magic (not a Starlight delta)");
    uint64_t v = get_be(b + 8, 4);
    if (v != SL_DELTA_VERSION && v != SL_DELTA_VERSION_2)
        return sl_error_make(
            err, EPROTONOSUPPORT,
            "delta prelude: format version %" PRIu64 ", this build reads versions 1 and 2", v);
    if (get_be(b + 12, 4) != 0)
        return sl_error_make(err, EINVAL, "delta prelude: reserved bytes are not zero");
    uint64_t hl = get_be(b + 16, 8);
    if (hl > SL_DELTA_MAX_HEADER)
        return sl_error_make(err, EFBIG, "delta prelude: header of %" PRIu64 " bytes (limit %u)",
                             hl, SL_DELTA_MAX_HEADER);
    uint64_t pl = get_be(b + 24, 8);
    if (pl > (UINT64_MAX >> 2))
        return sl_error_make(err, EINVAL, "delta prelude: payload length %" PRIu64, pl);
    *ret_header_len = hl;
    *ret_payload_len = pl;
    *ret_version = (uint32_t)v;
    return 0;
}

/* Strict object access: exactly the listed keys, no others. */
static int only_keys(const json_t *o, const char *path, const char *const *keys, size_t n,
                     sl_error_t *err)
{
    if (!json_is_object(o))
        return sl_error_make(err, EINVAL, "%s: expected an object", path);
    const char *k;
    json_t *v;
    json_object_foreach((json_t *)o, k, v)
    {
        bool known = false;
        for (size_t i = 0; i < n && !known; i++)
            known = strcmp(keys[i], k) == 0;
        if (!known)
            return sl_error_make(err, EINVAL, "%s.%s: unknown key", path, k);
    }
    for (size_t i = 0; i < n; i++)
        if (!json_object_get(o, keys[i]))
            return sl_error_make(err, EINVAL, "%s.%s: missing", path, keys[i]);
    return 0;
}

#define ONLY_KEYS(o, path, ...)                                                                    \
    ({                                                                                             \
        static const char *const _k[] = {__VA_ARGS__};                                             \
        only_keys(o, path, _k, SL_ELEMENTSOF(_k), err);                                            \
    })

static int get_u64(const json_t *o, const char *key, const char *path, uint64_t max, uint64_t *ret,
                   sl_error_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0 || (uint64_t)json_integer_value(v) > max)
        return sl_error_make(err, EINVAL, "%s.%s: expected an integer in 0..%" PRIu64, path, key,
                             max);
    *ret = (uint64_t)json_integer_value(v);
    return 0;
}

static int get_bool(const json_t *o, const char *key, const char *path, bool *ret, sl_error_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_boolean(v))
        return sl_error_make(err, EINVAL, "%s.%s: expected true or false", path, key);
    *ret = json_is_true(v);
    return 0;
}

static int get_string(const json_t *o, const char *key, const char *path, char **ret,
                      sl_error_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) > SL_DELTA_MAX_STRING ||
        strlen(json_string_value(v)) != json_string_length(v))
        return sl_error_make(err, EINVAL,
                             "%s.%s: expected a string without NUL of at most %d "
                             "bytes",
                             path, key, SL_DELTA_MAX_STRING);
    *ret = sl_xstrdup(json_string_value(v));
    return 0;
}

static int get_digest(const json_t *o, const char *key, const char *path,
                      char out[SL_DIGEST_STR_LEN], sl_error_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || !sl_digest_valid(json_string_value(v)))
        return sl_error_make(err, EINVAL, "%s.%s: expected a sha256 digest", path, key);
    memcpy(out, json_string_value(v), SL_DIGEST_STR_LEN);
    return 0;
}

static int get_bytes(const json_t *o, const char *key, const char *path, uint8_t **ret,
                     size_t *ret_len, sl_error_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) > SL_DELTA_MAX_BLOB / 3 * 4 + 4)
        return sl_error_make(err, EINVAL, "%s.%s: expected a base64 string", path, key);
    if (sl_base64_decode(json_string_value(v), json_string_length(v), ret, ret_len) < 0)
        return sl_error_make(err, EINVAL, "%s.%s: invalid base64", path, key);
    return 0;
}

static int get_array(const json_t *o, const char *key, const char *path, size_t max, json_t **ret,
                     sl_error_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_array(v))
        return sl_error_make(err, EINVAL, "%s.%s: expected an array", path, key);
    if (json_array_size(v) > max)
        return sl_error_make(err, EFBIG, "%s.%s: more than %zu items", path, key, max);
    *ret = v;
    return 0;
}

static int get_strv(const json_t *o, const char *key, const char *path, char ***ret, size_t *ret_n,
                    sl_error_t *err)
{
    json_t *a = NULL;
    int r = get_array(o, key, path, SL_DELTA_MAX_ITEMS, &a, err);
    if (r < 0)
        return r;
    size_t n = json_array_size(a);
    *ret = sl_xcalloc(n + 1, sizeof(char *));
    *ret_n = n;
    for (size_t i = 0; i < n; i++) {
        json_t *s = json_array_get(a, i);
        if (!json_is_string(s) || !sl_digest_valid(json_string_value(s)))
            return sl_error_make(err, EINVAL, "%s.%s[%zu]: expected a sha256 digest", path, key, i);
        (*ret)[i] = sl_xstrdup(json_string_value(s));
    }
    return 0;
}

static int decode_file(const json_t *o, const char *path, struct sl_delta_file *f, sl_error_t *err)
{
    int r = ONLY_KEYS(o, path, "path", "digest", "size", "source", "content");
    if (r < 0)
        return r;
    if ((r = get_string(o, "path", path, &f->path, err)) < 0 ||
        (r = get_digest(o, "digest", path, f->digest, err)) < 0 ||
        (r = get_u64(o, "size", path, UINT64_MAX >> 2, &f->size, err)) < 0)
        return r;
    const char *src = json_string_value(json_object_get(o, "source"));
    if (src && strcmp(src, "payload") == 0)
        f->source = SL_DELTA_FILE_PAYLOAD;
    else if (src && strcmp(src, "held") == 0)
        f->source = SL_DELTA_FILE_HELD;
    else if (src && strcmp(src, "empty") == 0)
        f->source = SL_DELTA_FILE_EMPTY;
    else
        return sl_error_make(err, EINVAL,
                             "%s.source: expected \"payload\", \"held\" or "
                             "\"empty\"",
                             path);
    json_t *c = json_object_get(o, "content");
    if (f->source == SL_DELTA_FILE_PAYLOAD) {
        uint64_t v;
        if ((r = get_u64(o, "content", path, SL_DELTA_MAX_ITEMS, &v, err)) < 0)
            return r;
        f->content = (uint32_t)v;
    } else if (!json_is_null(c)) {
        return sl_error_make(err, EINVAL,
                             "%s.content: must be null unless source is "
                             "\"payload\"",
                             path);
    }
    return 0;
}

static int decode_layer(const json_t *o, size_t i, uint32_t version, struct sl_delta_hlayer *l,
                        sl_error_t *err)
{
    char path[48];
    snprintf(path, sizeof(path), ".layers[%zu]", i);
    int r = version == SL_DELTA_VERSION_2
                ? ONLY_KEYS(o, path, "index", "digest", "size", "diffID", "tocDigest", "held",
                            "tocOffset", "tocTail")
                : ONLY_KEYS(o, path, "index", "digest", "size", "diffID", "tocDigest", "held",
                            "tocOffset", "tocTail", "files");
    if (r < 0)
        return r;
    uint64_t idx;
    if ((r = get_u64(o, "index", path, UINT64_MAX, &idx, err)) < 0)
        return r;
    if (idx != i)
        return sl_error_make(err, EINVAL, "%s.index: %" PRIu64, path, idx);
    if ((r = get_digest(o, "digest", path, l->digest, err)) < 0 ||
        (r = get_u64(o, "size", path, UINT64_MAX >> 2, &l->size, err)) < 0 ||
        (r = get_digest(o, "diffID", path, l->diff_id, err)) < 0 ||
        (r = get_digest(o, "tocDigest", path, l->toc_digest, err)) < 0 ||
        (r = get_bool(o, "held", path, &l->held, err)) < 0)
        return r;
    json_t *files = NULL;
    if (version != SL_DELTA_VERSION_2 &&
        (r = get_array(o, "files", path, SL_DELTA_MAX_ITEMS, &files, err)) < 0)
        return r;
    if (l->held) {
        if (!json_is_null(json_object_get(o, "tocOffset")) ||
            !json_is_null(json_object_get(o, "tocTail")) || json_array_size(files) != 0)
            return sl_error_make(err, EINVAL,
                                 "%s: a held layer has null tocOffset and tocTail "
                                 "and no files",
                                 path);
        return 0;
    }
    if ((r = get_u64(o, "tocOffset", path, UINT64_MAX >> 2, &l->toc_offset, err)) < 0 ||
        (r = get_bytes(o, "tocTail", path, &l->toc_tail, &l->toc_tail_len, err)) < 0)
        return r;
    size_t n = json_array_size(files); /* 0 for NULL (version 2) */
    l->files = sl_xcalloc(n + 1, sizeof(*l->files));
    for (size_t f = 0; f < n; f++) {
        char fp[80];
        snprintf(fp, sizeof(fp), "%s.files[%zu]", path, f);
        l->n_files = f + 1;
        if ((r = decode_file(json_array_get(files, f), fp, &l->files[f], err)) < 0)
            return r;
    }
    return 0;
}

static int decode_content(const json_t *o, size_t i, struct sl_delta_content *c, sl_error_t *err)
{
    char path[48];
    snprintf(path, sizeof(path), ".contents[%zu]", i);
    int r = ONLY_KEYS(o, path, "index", "digest", "size", "layer", "traced", "payloadOffset",
                      "payloadLength", "chunks");
    if (r < 0)
        return r;
    uint64_t idx, layer;
    if ((r = get_u64(o, "index", path, UINT64_MAX, &idx, err)) < 0)
        return r;
    if (idx != i)
        return sl_error_make(err, EINVAL, "%s.index: %" PRIu64, path, idx);
    if ((r = get_digest(o, "digest", path, c->digest, err)) < 0 ||
        (r = get_u64(o, "size", path, UINT64_MAX >> 2, &c->size, err)) < 0 ||
        (r = get_u64(o, "layer", path, SL_DELTA_MAX_LAYERS, &layer, err)) < 0 ||
        (r = get_bool(o, "traced", path, &c->traced, err)) < 0 ||
        (r = get_u64(o, "payloadOffset", path, UINT64_MAX >> 2, &c->payload_offset, err)) < 0 ||
        (r = get_u64(o, "payloadLength", path, UINT64_MAX >> 2, &c->payload_length, err)) < 0)
        return r;
    c->layer = (uint32_t)layer;
    json_t *chunks = NULL;
    if ((r = get_array(o, "chunks", path, SL_DELTA_MAX_ITEMS, &chunks, err)) < 0)
        return r;
    size_t n = json_array_size(chunks);
    c->chunks = sl_xcalloc(n + 1, sizeof(*c->chunks));
    c->n_chunks = n;
    for (size_t k = 0; k < n; k++) {
        char cp[80];
        snprintf(cp, sizeof(cp), "%s.chunks[%zu]", path, k);
        json_t *co = json_array_get(chunks, k);
        struct sl_delta_chunk *ch = &c->chunks[k];
        if ((r = ONLY_KEYS(co, cp, "blobOffset", "compressedSize", "chunkOffset", "size",
                           "chunkDigest", "payloadOffset")) < 0 ||
            (r = get_u64(co, "blobOffset", cp, UINT64_MAX >> 2, &ch->blob_offset, err)) < 0 ||
            (r = get_u64(co, "compressedSize", cp, UINT64_MAX >> 2, &ch->compressed_size, err)) <
                0 ||
            (r = get_u64(co, "chunkOffset", cp, UINT64_MAX >> 2, &ch->chunk_offset, err)) < 0 ||
            (r = get_u64(co, "size", cp, UINT64_MAX >> 2, &ch->size, err)) < 0 ||
            (r = get_digest(co, "chunkDigest", cp, ch->digest, err)) < 0 ||
            (r = get_u64(co, "payloadOffset", cp, UINT64_MAX >> 2, &ch->payload_offset, err)) < 0)
            return r;
    }
    return 0;
}

static int header_decode_json(const char *json, size_t len, uint32_t version,
                              struct sl_delta_header **ret, sl_error_t *err)
{
    json_auto_t *j = NULL;
    int r = sl_json_parse(json, len, SL_DELTA_MAX_HEADER, "delta header", &j, err);
    if (r < 0)
        return r;
    _cleanup_delta_header_ struct sl_delta_header *h = sl_xcalloc(1, sizeof(*h));
    if ((r = ONLY_KEYS(j, "", "version", "target", "held", "layers", "contents", "payloadLength")) <
        0)
        goto fail;
    uint64_t v;
    if ((r = get_u64(j, "version", "", UINT32_MAX, &v, err)) < 0)
        goto fail;
    if (v != version) {
        r = sl_error_make(err, EPROTONOSUPPORT, ".version: %" PRIu64 ", expected %" PRIu32, v,
                          version);
        goto fail;
    }
    h->version = version;
    json_t *t = json_object_get(j, "target");
    if ((r = ONLY_KEYS(t, ".target", "reference", "repository", "platform", "digest", "mediaType",
                       "manifest", "configDigest", "config")) < 0 ||
        (r = get_string(t, "reference", ".target", &h->reference, err)) < 0 ||
        (r = get_string(t, "repository", ".target", &h->repository, err)) < 0 ||
        (r = get_string(t, "platform", ".target", &h->platform, err)) < 0 ||
        (r = get_digest(t, "digest", ".target", h->digest, err)) < 0 ||
        (r = get_string(t, "mediaType", ".target", &h->media_type, err)) < 0 ||
        (r = get_bytes(t, "manifest", ".target", &h->manifest, &h->manifest_len, err)) < 0 ||
        (r = get_digest(t, "configDigest", ".target", h->config_digest, err)) < 0 ||
        (r = get_bytes(t, "config", ".target", &h->config, &h->config_len, err)) < 0)
        goto fail;
    json_t *held = json_object_get(j, "held");
    if ((r = ONLY_KEYS(held, ".held", "images", "layers")) < 0 ||
        (r = get_strv(held, "images", ".held", &h->held_images, &h->n_held_images, err)) < 0 ||
        (r = get_strv(held, "layers", ".held", &h->held_layers, &h->n_held_layers, err)) < 0)
        goto fail;
    json_t *layers = NULL, *contents = NULL;
    if ((r = get_array(j, "layers", "", SL_DELTA_MAX_LAYERS, &layers, err)) < 0 ||
        (r = get_array(j, "contents", "", SL_DELTA_MAX_ITEMS, &contents, err)) < 0 ||
        (r = get_u64(j, "payloadLength", "", UINT64_MAX >> 2, &h->payload_length, err)) < 0)
        goto fail;
    size_t nl = json_array_size(layers);
    h->layers = sl_xcalloc(nl + 1, sizeof(*h->layers));
    for (size_t i = 0; i < nl; i++) {
        h->n_layers = i + 1;
        if ((r = decode_layer(json_array_get(layers, i), i, version, &h->layers[i], err)) < 0)
            goto fail;
    }
    size_t nc = json_array_size(contents);
    h->contents = sl_xcalloc(nc + 1, sizeof(*h->contents));
    for (size_t i = 0; i < nc; i++) {
        h->n_contents = i + 1;
        if ((r = decode_content(json_array_get(contents, i), i, &h->contents[i], err)) < 0)
            goto fail;
    }
    if ((r = check_header(h, version != SL_DELTA_VERSION_2, err)) < 0)
        goto fail;
    *ret = TAKE_PTR(h);
    return 0;
fail:
    return sl_error_wrap(err, r, "delta header");
}

int sl_delta_header_decode(const char *json, size_t len, struct sl_delta_header **ret,
                           sl_error_t *err)
{
    return header_decode_json(json, len, SL_DELTA_VERSION, ret, err);
}

int sl_delta_header_decode_v(const void *data, size_t len, uint32_t version,
                             struct sl_delta_header **ret, sl_error_t *err)
{
    if (version == SL_DELTA_VERSION)
        return header_decode_json(data, len, version, ret, err);
    if (version != SL_DELTA_VERSION_2)
        return sl_error_make(err, EPROTONOSUPPORT, "delta header: format version %" PRIu32,
                             version);
    if (len > SL_DELTA_MAX_HEADER)
        return sl_error_make(err, EFBIG, "delta header: %zu compressed bytes (limit %u)", len,
                             SL_DELTA_MAX_HEADER);
    _cleanup_free_ uint8_t *json = NULL;
    size_t jl = 0;
    int r = sl_gzip_inflate_one(data, len, SL_DELTA_MAX_HEADER, &json, &jl, err);
    if (r < 0)
        return sl_error_wrap(err, r, "delta header (version 2)");
    return header_decode_json((const char *)json, jl, version, ret, err);
}

int sl_delta_head_decode(const void *p, size_t len, struct sl_delta_header **ret,
                         size_t *ret_head_len, sl_error_t *err)
{
    uint64_t hl, pl;
    uint32_t version = 0;
    int r = sl_delta_prelude_parse_v(p, len, &hl, &pl, &version, err);
    if (r < 0)
        return r;
    if (len - SL_DELTA_PRELUDE_SIZE < hl)
        return sl_error_make(err, EINVAL, "delta head: %zu header bytes, prelude says %" PRIu64,
                             len - SL_DELTA_PRELUDE_SIZE, hl);
    struct sl_delta_header *h = NULL;
    r = sl_delta_header_decode_v((const char *)p + SL_DELTA_PRELUDE_SIZE, (size_t)hl, version, &h,
                                 err);
    if (r < 0)
        return r;
    if (h->payload_length != pl) {
        uint64_t hp = h->payload_length;
        sl_delta_header_free(h);
        return sl_error_make(err, EINVAL,
                             "delta head: payload length %" PRIu64 " in the prelude, %" PRIu64
                             " in the header",
                             pl, hp);
    }
    *ret = h;
    *ret_head_len = SL_DELTA_PRELUDE_SIZE + (size_t)hl;
    return 0;
}
