/* ctr-starlight convert — converts an image to the Starlight layer format and pushes it.
 *
 * Options and output only; the conversion itself (phase 1 converts every layer, phase 2
 * pushes and moves the tag last) is common/convert (convert.h), shared with the proxy's
 * conversion hook. */
#include "cleanup.h"
#include "cli.h"
#include "convert.h"
#include "format.h"
#include "log.h"
#include "progress.h"
#include "reference.h"
#include "verbs.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

struct convert_config {
    struct sl_cli_common common;
    struct sl_cli_proxy proxy;
    bool notify;
    struct sl_strlist platforms;
    bool insecure_source;
    bool insecure_destination;
    uint64_t chunk_size;
    int64_t level;
    int64_t jobs;
    char *tmp_dir;
    bool progress;
};

static const struct sl_opt convert_opts[] = {
    SL_CLI_COMMON_OPTS(struct convert_config),
    SL_CLI_PROXY_OPTS(struct convert_config),
    {"notify", SL_OPT_BOOL, offsetof(struct convert_config, notify), "false", NULL, 0, NULL,
     "After pushing, tell the proxy (--proxy) about DST"},
    {"platform", SL_OPT_STRLIST, offsetof(struct convert_config, platforms), "all", NULL, 0,
     "P,...", "Platforms of an index to convert (os/arch[/variant]), or `all`"},
    {"insecure-source", SL_OPT_BOOL, offsetof(struct convert_config, insecure_source), "false",
     NULL, 0, NULL, "Use plain HTTP for the source registry"},
    {"insecure-destination", SL_OPT_BOOL, offsetof(struct convert_config, insecure_destination),
     "false", NULL, 0, NULL, "Use plain HTTP for the destination registry"},
    {"chunk-size", SL_OPT_SIZE, offsetof(struct convert_config, chunk_size), "4MiB", NULL, 0, NULL,
     "Largest uncompressed chunk of a file (each chunk is one gzip member)",
     SL_FORMAT_MIN_CHUNK_SIZE, SL_FORMAT_MAX_CHUNK_SIZE},
    {"compression-level", SL_OPT_INT, offsetof(struct convert_config, level), "6", NULL, 0, NULL,
     "gzip level of the chunks (1 fastest .. 12 smallest)", 1, 12},
    {"jobs", SL_OPT_INT, offsetof(struct convert_config, jobs), "0", "STARLIGHT_JOBS", 'j', NULL,
     "Layers converted at once (0 = number of CPUs)", 0, 256},
    {"tmp-dir", SL_OPT_STR, offsetof(struct convert_config, tmp_dir), NULL, "TMPDIR", 0, "DIR",
     "Where layers are staged while converting (default /var/tmp)"},
    {"progress", SL_OPT_BOOL, offsetof(struct convert_config, progress), "true", NULL, 0, NULL,
     "Show progress when stderr is a terminal"},
};

static const struct sl_cmd convert_cmd = {
    .name = "ctr-starlight convert",
    .args = "SRC DST",
    .summary = "Converts image SRC to the Starlight format (eStargz-compatible, one gzip member "
               "per file chunk,\nwith a table of contents) and pushes it as DST. The result "
               "still runs on stock containerd\nand Docker. An index is converted platform by "
               "platform into a new index.",
    .opts = convert_opts,
    .nopts = SL_ELEMENTSOF(convert_opts),
    .config_key = "config",
    .min_args = 2,
    .max_args = 2,
    .epilog = "Example:\n  ctr-starlight convert --insecure-source --insecure-destination \\\n"
              "      127.0.0.1:5000/redis:7.0 127.0.0.1:5000/redis:7.0-starlight",
};

/* The engine's progress events drive the CLI's progress line. */
static void on_add(void *ud, enum sl_convert_counter c, uint64_t n)
{
    static const enum sl_progress_counter map[] = {
        [SL_CONVERT_LAYERS_TOTAL] = SL_PROGRESS_LAYERS_TOTAL,
        [SL_CONVERT_LAYERS_DONE] = SL_PROGRESS_LAYERS_DONE,
        [SL_CONVERT_DOWNLOAD_TOTAL] = SL_PROGRESS_DOWNLOAD_TOTAL,
        [SL_CONVERT_DOWNLOADED] = SL_PROGRESS_DOWNLOADED,
        [SL_CONVERT_CONVERTED] = SL_PROGRESS_CONVERTED,
        [SL_CONVERT_PUSHED] = SL_PROGRESS_PUSHED,
    };
    sl_progress_add(ud, map[c], n);
}

static void on_phase(void *ud, const char *phase)
{
    if (phase)
        sl_progress_phase(ud, phase);
    else
        sl_progress_done(ud);
}

int sl_cmd_convert(int argc, char **argv)
{
    struct convert_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(&convert_cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(&convert_cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    struct sl_image_ref sref = {0}, dref = {0};
    struct sl_convert *c = NULL;
    struct sl_progress *progress = NULL;
    int exit_code = 1;

    if ((r = sl_image_ref_parse(argv[argi], &sref, &err)) < 0 ||
        (r = sl_image_ref_parse(argv[argi + 1], &dref, &err)) < 0) {
        exit_code = sl_cli_fail(&err, r, "convert");
        goto out;
    }
    if (cfg.notify && (!cfg.proxy.url || !*cfg.proxy.url)) {
        sl_error_make(&err, EINVAL, "--notify needs --proxy URL (or STARLIGHT_PROXY)");
        exit_code = sl_cli_fail(&err, -EINVAL, "convert");
        goto out;
    }
    if (dref.digest) {
        sl_error_make(&err, EINVAL, "destination `%s` must name a tag, not a digest",
                      argv[argi + 1]);
        exit_code = sl_cli_fail(&err, -EINVAL, "convert");
        goto out;
    }
    progress = sl_progress_new(cfg.progress && isatty(STDERR_FILENO), "convert");
    const struct sl_convert_events events = {.add = on_add, .phase = on_phase, .ud = progress};
    const struct sl_convert_options opts = {
        .platforms = (const char *const *)cfg.platforms.v,
        .n_platforms = cfg.platforms.n,
        .insecure_source = cfg.insecure_source,
        .insecure_destination = cfg.insecure_destination,
        .docker_config = cfg.common.docker_config,
        .chunk_size = cfg.chunk_size,
        .level = (int)cfg.level,
        .jobs = (int)cfg.jobs,
        .tmp_dir = cfg.tmp_dir,
        .events = &events,
    };
    if ((r = sl_convert_new(&sref, &dref, &opts, &c, &err)) < 0) {
        exit_code = sl_cli_fail(&err, r, "convert");
        goto out;
    }
    struct sl_convert_result res = {0};
    r = sl_convert_run(c, &res, &err);
    if (r < 0) {
        exit_code = sl_cli_fail(&err, r, "convert failed, nothing was tagged");
        goto out;
    }
    for (size_t i = 0; i < res.n_images; i++) {
        const struct sl_convert_image *im = &res.images[i];
        double in = (double)im->in_bytes, outb = (double)im->out_bytes;
        log_info("converted %s: %zu layers, %.1f MB -> %.1f MB (%+.1f%%), manifest %s", im->label,
                 im->n_layers, in / 1e6, outb / 1e6, in > 0 ? 100.0 * (outb - in) / in : 0.0,
                 im->manifest_digest);
    }
    printf("%s@%s\n", res.reference, res.digest);
    fflush(stdout);
    if (cfg.notify) {
        r = sl_cli_notify(&cfg.proxy, res.reference, cfg.insecure_destination, &err);
        exit_code = r < 0 ? sl_cli_fail(&err, r, "converted, but notify failed") : 0;
    } else {
        exit_code = 0;
    }
    sl_convert_result_free(&res);
out:
    sl_convert_free(c);
    sl_progress_free(progress);
    sl_image_ref_free(&sref);
    sl_image_ref_free(&dref);
    sl_config_free(&convert_cmd, &cfg);
    return exit_code;
}
