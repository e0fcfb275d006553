/* starlight-init — wiring only: options, logging, sl_init_run, exit status. Runs as the first
 * initContainer the webhook injects (docs/kubernetes.md §2-3). */
#include "cleanup.h"
#include "config.h"
#include "init.h"
#include "log.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

struct init_config {
    char *socket;
    struct sl_strlist images;
    char *ns;
    char *proxy;
    char *timeout;
    bool strict;
    bool insecure;
    char *log_format;
    char *log_level;
};

#define O(f) offsetof(struct init_config, f)
static const struct sl_opt init_opts[] = {
    {"socket", SL_OPT_STR, O(socket), "/run/starlight/starlight-daemon.sock", "STARLIGHT_SOCKET", 0,
     "PATH", "starlight-daemon's control socket (mounted from the host)"},
    {"image", SL_OPT_STRLIST, O(images), NULL, "STARLIGHT_IMAGES", 0, "REF",
     "Image to warm (repeat, or a comma list; STARLIGHT_IMAGES=REF1,REF2)"},
    {"namespace", SL_OPT_STR, O(ns), "k8s.io", "STARLIGHT_NAMESPACE", 0, "NS",
     "containerd namespace the images are registered in (kubelet's is k8s.io)"},
    {"proxy", SL_OPT_STR, O(proxy), NULL, "STARLIGHT_PROXY", 0, "NAME|URL",
     "Proxy profile name or URL for the pulls (default: the daemon's `default` profile)"},
    {"insecure", SL_OPT_BOOL, O(insecure), "false", "STARLIGHT_INSECURE", 0, NULL,
     "The proxy reaches the images' registry over plain HTTP"},
    {"timeout", SL_OPT_STR, O(timeout), "5m", "STARLIGHT_TIMEOUT", 0, "DURATION",
     "Give up waiting after this long, for all images together (30s, 5m, 1h)"},
    {"strict", SL_OPT_BOOL, O(strict), "false", "STARLIGHT_STRICT", 0, NULL,
     "Exit 1 when the daemon is absent, an image fails or the timeout passes (default: warn "
     "and exit 0, the pod then starts cold)"},
    {"log-format", SL_OPT_STR, O(log_format), "text", "STARLIGHT_LOG_FORMAT", 0, "text|json",
     "Log format"},
    {"log-level", SL_OPT_STR, O(log_level), "info", "STARLIGHT_LOG_LEVEL", 0, "LEVEL",
     "error, warn, info or debug"},
};
#undef O

static const struct sl_cmd init_cmd = {
    .name = "starlight-init",
    .args = "",
    .summary =
        "Warms a pod's images on its node before kubelet starts the app containers: asks\n"
        "starlight-daemon (over --socket) to pull each image through the Starlight proxy and "
        "waits until\nits startup set is local (the files recorded traces rank first, or the "
        "whole image when\nuntraced). Prints one progress line per phase: IMAGE PHASE "
        "bytes=… payload=…/… contents=…/….\nExit 0 when every image is warm; daemon absent, "
        "failure or timeout: a warning and exit 0\n(--strict: exit 1). Injected by "
        "starlight-controller's webhook as the first initContainer.",
    .opts = init_opts,
    .nopts = SL_ELEMENTSOF(init_opts),
    .config_key = NULL,
    .min_args = 0,
    .max_args = 0,
    .epilog = "Example:\n  starlight-init --image registry:5000/redis:7.0-starlight --timeout 2m",
};

int main(int argc, char **argv)
{
    struct init_config cfg = {0};
    _cleanup_error_ sl_error_t err = NULL;
    int argi = 0;
    int r = sl_config_parse(&init_cmd, &cfg, argc, argv, &argi, &err);
    int64_t timeout_ms = 0;
    enum sl_log_format fmt = SL_LOG_TEXT;
    enum sl_log_level lvl = SL_LOG_INFO;
    if (r == 0 && sl_parse_duration_ms(cfg.timeout, &timeout_ms) < 0)
        r = sl_error_make(&err, EINVAL, "--timeout `%s`: expected a duration (30s, 5m, 1h)",
                          cfg.timeout);
    if (r == 0 && (sl_log_parse_format(cfg.log_format, &fmt) < 0 ||
                   sl_log_parse_level(cfg.log_level, &lvl) < 0))
        r = sl_error_make(&err, EINVAL,
                          "--log-format must be text|json and --log-level error|warn|info|debug");
    if (r == 0 && cfg.images.n == 0)
        r = sl_error_make(&err, EINVAL, "no image: pass --image REF or set STARLIGHT_IMAGES");
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "starlight-init: %s\n", sl_error_msg(err, r));
        sl_config_free(&init_cmd, &cfg);
        return r < 0 ? 2 : 0;
    }
    sl_log_setup("starlight-init", fmt, lvl);
    signal(SIGPIPE, SIG_IGN);

    const struct sl_init_options o = {
        .socket = cfg.socket,
        .images = (const char *const *)cfg.images.v,
        .n_images = cfg.images.n,
        .ns = cfg.ns,
        .proxy = cfg.proxy,
        .insecure = cfg.insecure,
        .timeout_ms = timeout_ms,
        .out = stdout,
    };
    enum sl_init_outcome res = sl_init_run(&o, &err);
    int code = 0;
    if (res != SL_INIT_READY) {
        const char *what = sl_init_outcome_name(res);
        if (cfg.strict) {
            log_error("%s: %s (--strict: failing the pod)", what, sl_error_msg(err, -EIO));
            code = 1;
        } else {
            log_warn("%s: %s; the app containers start without a warm cache", what,
                     sl_error_msg(err, -EIO));
        }
    } else {
        log_info("%zu image(s) warm", cfg.images.n);
    }
    sl_config_free(&init_cmd, &cfg);
    return code;
}
