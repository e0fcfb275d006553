/* ctr-starlight notify — asks a starlight-proxy to read the TOCs of an image and store them,
 * so workers can pull it lazily. */
#include "cleanup.h"
#include "cli.h"
#include "json.h"
#include "log.h"
#include "proxyclient.h"
#include "verbs.h"

#include <stdio.h>

struct notify_config {
    struct sl_cli_common common;
    struct sl_cli_proxy proxy;
    bool insecure;
};

static const struct sl_opt notify_opts[] = {
    SL_CLI_COMMON_OPTS(struct notify_config),
    SL_CLI_PROXY_OPTS(struct notify_config),
    {"insecure", SL_OPT_BOOL, offsetof(struct notify_config, insecure), "false", NULL, 0, NULL,
     "The proxy reaches the image's registry over plain HTTP"},
};

static const struct sl_cmd notify_cmd = {
    .name = "ctr-starlight notify",
    .args = "REF",
    .summary = "Tells the proxy about image REF (already converted): it reads the footer and TOC "
               "of every layer\nfrom the registry and stores them, so workers can pull REF "
               "lazily. Re-notifying is harmless.",
    .opts = notify_opts,
    .nopts = SL_ELEMENTSOF(notify_opts),
    .config_key = "config",
    .min_args = 1,
    .max_args = 1,
};

int sl_cli_notify(const struct sl_cli_proxy *proxy, const char *ref, bool insecure, sl_error_t *err)
{
    if (!proxy->url || !*proxy->url)
        return sl_error_make(err, EINVAL, "no proxy given: use --proxy URL or STARLIGHT_PROXY");
    struct sl_proxy_target t = {proxy->url, proxy->user, proxy->token};
    json_auto_t *answer = NULL;
    int r = sl_proxy_notify(&t, ref, insecure, &answer, err);
    if (r < 0)
        return r;
    const char *msg = json_string_value(json_object_get(answer, "message"));
    log_info("proxy %s stored %s%s%s", proxy->url, ref, msg ? ": " : "", msg ? msg : "");
    return 0;
}

int sl_cmd_notify(int argc, char **argv)
{
    struct notify_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(&notify_cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(&notify_cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    r = sl_cli_notify(&cfg.proxy, argv[argi], cfg.insecure, &err);
    int code = r < 0 ? sl_cli_fail(&err, r, "notify") : 0;
    sl_config_free(&notify_cmd, &cfg);
    return code;
}
