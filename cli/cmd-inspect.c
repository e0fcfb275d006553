/* ctr-starlight inspect — reads only the footer and TOC of each layer of an image in a
 * registry (HTTP Range reads), validates them, checks them against the TOC digest annotation
 * and prints a summary. */
#include "cleanup.h"
#include "cli.h"
#include "json.h"
#include "log.h"
#include "manifest.h"
#include "reference.h"
#include "registry.h"
#include "toc.h"
#include "verbs.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

struct inspect_config {
    struct sl_cli_common common;
    bool insecure;
    char *platform;
    bool json;
};

static const struct sl_opt inspect_opts[] = {
    SL_CLI_COMMON_OPTS(struct inspect_config),
    {"insecure", SL_OPT_BOOL, offsetof(struct inspect_config, insecure), "false", NULL, 0, NULL,
     "Use plain HTTP for the registry"},
    {"platform", SL_OPT_STR, offsetof(struct inspect_config, platform), NULL, NULL, 0, "OS/ARCH",
     "Platform to pick from an index (default: this machine's)"},
    {"json", SL_OPT_BOOL, offsetof(struct inspect_config, json), "false", NULL, 0, NULL,
     "Print JSON instead of a table"},
};

static const struct sl_cmd inspect_cmd = {
    .name = "ctr-starlight inspect",
    .args = "REF",
    .summary = "Shows the Starlight layers of image REF: for every layer, the footer and table of "
               "contents are\nread by HTTP Range requests, validated, and checked against the "
               "TOC digest annotation.",
    .opts = inspect_opts,
    .nopts = SL_ELEMENTSOF(inspect_opts),
    .config_key = "config",
    .min_args = 1,
    .max_args = 1,
};

struct range_reader {
    struct sl_registry *reg;
    const char *repo;
    const char *digest;
};

static int range_read_at(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err)
{
    struct range_reader *rr = ud;
    struct sl_http_mem_sink s = {buf, len};
    int r = sl_registry_get_blob_range(rr->reg, rr->repo, rr->digest, (int64_t)off, (int64_t)len,
                                       sl_http_sink_mem, &s, err);
    if (r >= 0 && s.left)
        return sl_error_make(err, EIO, "short read of blob `%s`", rr->digest);
    return r;
}

static int resolve_platform(struct sl_registry *reg, const struct sl_image_ref *ref,
                            const char *platform, struct sl_registry_manifest *m, sl_error_t *err)
{
    int r = sl_registry_get_manifest(reg, ref->path, sl_image_ref_reference(ref), m, err);
    if (r < 0 || !sl_manifest_kind_is_index(m->manifest->kind))
        return r;
    struct sl_platform want = {0};
    r = sl_platform_parse(platform, &want, err);
    if (r < 0)
        return r;
    r = sl_manifest_find_platform(m->manifest, &want);
    sl_platform_free(&want);
    if (r < 0)
        return sl_error_make(err, ENOENT, "no manifest for platform %s in the index", platform);
    char digest[SL_DIGEST_STR_LEN];
    memcpy(digest, m->manifest->manifests[r].digest, sizeof(digest));
    sl_registry_manifest_free(m);
    memset(m, 0, sizeof(*m));
    r = sl_registry_get_manifest(reg, ref->path, digest, m, err);
    if (r >= 0 && sl_manifest_kind_is_index(m->manifest->kind))
        return sl_error_make(err, EPROTONOSUPPORT, "nested indexes are not supported");
    return r;
}

int sl_cmd_inspect(int argc, char **argv)
{
    struct inspect_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(&inspect_cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(&inspect_cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    struct sl_image_ref ref = {0};
    struct sl_registry *reg = NULL;
    struct sl_registry_manifest m = {0};
    json_auto_t *out = json_object();
    json_t *layers = json_array();
    json_object_set_new(out, "layers", layers);
    int exit_code = 1;
    _cleanup_free_ char *refstr = NULL;

    r = sl_image_ref_parse(argv[argi], &ref, &err);
    if (r < 0)
        goto fail;
    refstr = sl_image_ref_str(&ref);
    struct sl_registry_options ro = {.insecure = cfg.insecure,
                                     .docker_config = cfg.common.docker_config};
    r = sl_registry_new(ref.domain, &ro, &reg, &err);
    if (r < 0)
        goto fail;
    r = resolve_platform(reg, &ref, cfg.platform ? cfg.platform : sl_cli_host_platform(), &m, &err);
    if (r < 0)
        goto fail;
    json_object_set_new(out, "image", json_string(refstr));
    json_object_set_new(out, "manifest", json_string(m.digest));
    json_object_set_new(out, "mediaType", json_string(m.media_type));

    if (!cfg.json)
        printf("%s\nmanifest %s (%s)\n\n%-5s %-20s %12s %8s %8s %8s  %s\n", refstr, m.digest,
               m.media_type, "LAYER", "DIGEST", "SIZE", "ENTRIES", "FILES", "CHUNKS", "TOC");
    for (size_t i = 0; i < m.manifest->n_layers; i++) {
        const struct sl_descriptor *d = &m.manifest->layers[i];
        const char *want = sl_descriptor_annotation(d, SL_ANN_STARLIGHT_TOC);
        if (!want)
            want = sl_descriptor_annotation(d, SL_ANN_STARGZ_TOC);
        struct range_reader rr = {reg, ref.path, d->digest};
        _cleanup_toc_ struct sl_toc *toc = NULL;
        r = sl_toc_load(range_read_at, &rr, (uint64_t)d->size, want, &toc, &err);
        if (r < 0) {
            r = sl_error_wrap(&err, r, "layer %zu `%s`%s", i, d->digest,
                              want ? "" : " (no TOC digest annotation: convert the image first)");
            goto fail;
        }
        json_t *l = json_object();
        json_object_set_new(l, "digest", json_string(d->digest));
        json_object_set_new(l, "size", json_integer(d->size));
        json_object_set_new(l, "tocDigest", json_string(sl_toc_digest(toc)));
        json_object_set_new(l, "tocOffset", json_integer((json_int_t)sl_toc_offset(toc)));
        json_object_set_new(l, "tocVerified", json_boolean(want != NULL));
        json_object_set_new(l, "entries", json_integer((json_int_t)sl_toc_count(toc)));
        json_object_set_new(l, "files", json_integer((json_int_t)sl_toc_regular_files(toc)));
        json_object_set_new(l, "chunks", json_integer((json_int_t)sl_toc_chunks(toc)));
        json_array_append_new(layers, l);
        if (!cfg.json)
            printf("%-5zu %-20.19s %12.1f %8zu %8zu %8zu  %.19s%s\n", i, d->digest,
                   (double)d->size / 1e6, sl_toc_count(toc), sl_toc_regular_files(toc),
                   sl_toc_chunks(toc), sl_toc_digest(toc),
                   want ? " (matches annotation)" : " (no annotation)");
    }
    if (cfg.json) {
        _cleanup_free_ char *s = json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        printf("%s\n", s);
    } else {
        printf("\nSIZE in MB (compressed). Every TOC was read by Range, validated, and checked "
               "against its layer annotation.\n");
    }
    exit_code = 0;
    goto out;
fail:
    exit_code = sl_cli_fail(&err, r, refstr ? refstr : "inspect");
out:
    sl_registry_manifest_free(&m);
    sl_registry_free(reg);
    sl_image_ref_free(&ref);
    sl_config_free(&inspect_cmd, &cfg);
    return exit_code;
}
