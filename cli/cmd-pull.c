/* ctr-starlight pull — asks starlight-daemon to pull an image through its proxy and follows the
 * progress (JSON lines from POST /v1/pull): a bar on a terminal, a summary at the end. */
#include "cleanup.h"
#include "cli.h"
#include "daemonclient.h"
#include "json.h"
#include "log.h"
#include "verbs.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

struct pull_config {
    struct sl_cli_common common;
    struct sl_cli_daemon daemon;
    char *proxy;
    char *platform;
    bool insecure;
    bool quiet;
};

static const struct sl_opt pull_opts[] = {
    SL_CLI_COMMON_OPTS(struct pull_config),
    SL_CLI_DAEMON_OPTS(struct pull_config),
    {"proxy", SL_OPT_STR, offsetof(struct pull_config, proxy), NULL, "STARLIGHT_PROXY", 0,
     "NAME|URL", "Proxy profile name (see add-proxy) or URL (default: the daemon's `default`)"},
    {"platform", SL_OPT_STR, offsetof(struct pull_config, platform), NULL, NULL, 0, "OS/ARCH",
     "Platform to pull (default: the daemon's)"},
    {"insecure", SL_OPT_BOOL, offsetof(struct pull_config, insecure), "false", NULL, 0, NULL,
     "The proxy reaches the image's registry over plain HTTP"},
    {"quiet", SL_OPT_BOOL, offsetof(struct pull_config, quiet), "false", NULL, 0, NULL,
     "No progress bar and no summary"},
};

static const struct sl_cmd pull_cmd = {
    .name = "ctr-starlight pull",
    .args = "REF",
    .summary = "Pulls image REF through starlight-daemon: one delta stream from the proxy; the "
               "image is usable\n(ready) as soon as its layers are published, the rest streams "
               "in behind.",
    .opts = pull_opts,
    .nopts = SL_ELEMENTSOF(pull_opts),
    .config_key = "config",
    .min_args = 1,
    .max_args = 1,
};

struct pull_state {
    bool tty, quiet;
    json_t *last; /* last line */
    const char *error;
};

static uint64_t u(const json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

static void bar(const json_t *l)
{
    uint64_t got = u(l, "payloadBytes"), total = u(l, "payloadTotal");
    int pct = total ? (int)(got * 100 / total) : 100;
    char b[31];
    int fill = pct * 30 / 100;
    for (int i = 0; i < 30; i++)
        b[i] = i < fill ? '#' : '.';
    b[30] = 0;
    fprintf(stderr, "\r[%s] %3d%% %.1f/%.1f MB, %" PRIu64 "/%" PRIu64 " contents%s", b, pct,
            (double)got / 1e6, (double)total / 1e6, u(l, "contentsDone"), u(l, "contentsTotal"),
            json_object_get(l, "readyMs") ? ", ready" : "");
    fflush(stderr);
}

static int on_line(void *ud, json_t *line)
{
    struct pull_state *s = ud;
    json_decref(s->last);
    s->last = json_incref(line);
    const char *phase = json_string_value(json_object_get(line, "phase"));
    if (phase && strcmp(phase, "ready") == 0 && !s->tty && !s->quiet)
        log_info("ready after %.1f s", json_real_value(json_object_get(line, "readyMs")) / 1e3);
    if (s->tty && !s->quiet)
        bar(line);
    return 0;
}

int sl_cmd_pull(int argc, char **argv)
{
    struct pull_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(&pull_cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(&pull_cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    json_t *req = json_pack("{s:s,s:s,s:b}", "ref", argv[argi], "namespace", cfg.daemon.ns,
                            "insecure", cfg.insecure);
    if (cfg.proxy)
        json_object_set_new(req, "proxy", json_string(cfg.proxy));
    if (cfg.platform)
        json_object_set_new(req, "platform", json_string(cfg.platform));
    struct pull_state s = {.tty = isatty(STDERR_FILENO), .quiet = cfg.quiet};
    r = sl_daemon_stream(cfg.daemon.socket, "POST", "/v1/pull", req, on_line, &s, &err);
    json_decref(req);
    if (s.tty && !s.quiet)
        fputc('\n', stderr);
    const char *phase = s.last ? json_string_value(json_object_get(s.last, "phase")) : NULL;
    if (r >= 0 && phase && strcmp(phase, "error") == 0)
        r = sl_error_make(&err, EIO, "%s",
                          json_string_value(json_object_get(s.last, "error"))
                              ? json_string_value(json_object_get(s.last, "error"))
                              : "failed");
    else if (r >= 0 && (!phase || strcmp(phase, "complete") != 0))
        r = sl_error_make(&err, EPROTO, "the daemon's stream ended before completion");
    int code = 0;
    if (r < 0) {
        code = sl_cli_fail(&err, r, "pull");
    } else if (!cfg.quiet) {
        const json_t *l = s.last;
        double got = (double)u(l, "bytes"), image = (double)u(l, "imageBytes");
        printf("%s: fetched %.1f of %.1f MB (%.0f%% saved), ready after %.1f s, complete after "
               "%.1f s\n",
               argv[argi], got / 1e6, image / 1e6,
               image > 0 && got < image ? 100.0 * (1.0 - got / image) : 0.0,
               json_real_value(json_object_get(l, "readyMs")) / 1e3,
               json_real_value(json_object_get(l, "completeMs")) / 1e3);
    }
    json_decref(s.last);
    sl_config_free(&pull_cmd, &cfg);
    return code;
}
