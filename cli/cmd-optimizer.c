/* ctr-starlight optimizer on|off [--group G] — turns startup-trace recording on or off in
 * starlight-daemon (POST /v1/optimizer). Turning it off (or on again) finishes the traces in
 * progress; `ctr-starlight report` uploads them. */
#include "cleanup.h"
#include "cli.h"
#include "daemonclient.h"
#include "json.h"
#include "verbs.h"

#include <stdio.h>
#include <string.h>

struct optimizer_config {
    struct sl_cli_common common;
    struct sl_cli_daemon daemon;
    char *group;
};

static const struct sl_opt optimizer_opts[] = {
    SL_CLI_COMMON_OPTS(struct optimizer_config),
    SL_CLI_DAEMON_OPTS(struct optimizer_config),
    {"group", SL_OPT_STR, offsetof(struct optimizer_config, group), NULL, NULL, 0, "G",
     "Trace group: containers traced in one group are optimised jointly (default: each "
     "container on its own)"},
};

static const struct sl_cmd optimizer_cmd = {
    .name = "ctr-starlight optimizer",
    .args = "on|off",
    .summary = "Turns startup-trace recording on or off. With it on, the daemon records the "
               "first access to each file per container; `off` finishes the traces, "
               "`ctr-starlight report` sends them to the proxy.",
    .opts = optimizer_opts,
    .nopts = SL_ELEMENTSOF(optimizer_opts),
    .config_key = "config",
    .min_args = 1,
    .max_args = 1};

int sl_cmd_optimizer(int argc, char **argv)
{
    struct optimizer_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(&optimizer_cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(&optimizer_cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    const char *arg = argv[argi];
    bool on = strcmp(arg, "on") == 0;
    if (!on && strcmp(arg, "off") != 0) {
        fprintf(stderr, "ctr-starlight optimizer: expected on or off, got `%s`\n", arg);
        sl_config_free(&optimizer_cmd, &cfg);
        return 2;
    }
    json_auto_t *body = json_pack("{s:b}", "enable", on);
    if (on && cfg.group && *cfg.group)
        json_object_set_new(body, "group", json_string(cfg.group));
    json_t *ans = NULL;
    r = sl_daemon_call(cfg.daemon.socket, "POST", "/v1/optimizer", body, &ans, &err);
    int code = 0;
    if (r < 0) {
        code = sl_cli_fail(&err, r, "optimizer");
    } else if (on) {
        printf("optimizer on (group %s)\n", json_string_value(json_object_get(ans, "group")));
    } else {
        printf("optimizer off: %lld traces finished\n",
               (long long)json_integer_value(json_object_get(ans, "finished")));
    }
    json_decref(ans);
    sl_config_free(&optimizer_cmd, &cfg);
    return code;
}
