/* ctr-starlight gc [--grace SECONDS] [--json] — asks starlight-daemon to collect the layers and
 * contents nothing references any more (POST /v1/gc; docs/operations.md "Garbage collection")
 * and prints what was freed. */
#include "cleanup.h"
#include "cli.h"
#include "daemonclient.h"
#include "json.h"
#include "verbs.h"

#include <stdio.h>
#include <string.h>

struct gc_config {
    struct sl_cli_common common;
    struct sl_cli_daemon daemon;
    int64_t grace;
    bool json;
};

static const struct sl_opt gc_opts[] = {
    SL_CLI_COMMON_OPTS(struct gc_config),
    SL_CLI_DAEMON_OPTS(struct gc_config),
    {"grace", SL_OPT_INT, offsetof(struct gc_config, grace), "-1", NULL, 0, "SECONDS",
     "Keep layers recorded less than this long ago (default: the daemon's --gc-grace)", -1,
     INT64_C(315360000)},
    {"json", SL_OPT_BOOL, offsetof(struct gc_config, json), "false", NULL, 0, NULL,
     "Print the daemon's report as JSON"},
};

static const struct sl_cmd gc_cmd = {
    .name = "ctr-starlight gc",
    .args = "",
    .summary = "Removes the layers no snapshot or mount references (and older than the grace "
               "period) and every content only they used, then prints what was freed. Contents "
               "shared with remaining layers, and anything a running container uses, are kept.",
    .opts = gc_opts,
    .nopts = SL_ELEMENTSOF(gc_opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 0};

int sl_cmd_gc(int argc, char **argv)
{
    struct gc_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(&gc_cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(&gc_cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    json_auto_t *body = json_object();
    if (cfg.grace >= 0)
        json_object_set_new(body, "grace", json_integer(cfg.grace));
    json_t *ans = NULL;
    r = sl_daemon_call(cfg.daemon.socket, "POST", "/v1/gc", body, &ans, &err);
    int code = 0;
    if (r < 0) {
        code = sl_cli_fail(&err, r, "gc");
    } else if (cfg.json) {
        _cleanup_free_ char *s = json_dumps(ans, JSON_COMPACT);
        printf("%s\n", s ? s : "{}");
    } else {
        json_t *removed = json_object_get(ans, "layersRemoved");
        double freed = (double)json_integer_value(json_object_get(ans, "bytesFreed"));
        printf("gc: %zu layers removed, %lld kept; %lld contents removed (%lld in use); %.1f MiB "
               "freed in %.2f s\n",
               json_array_size(removed),
               (long long)json_integer_value(json_object_get(ans, "layersKept")),
               (long long)json_integer_value(json_object_get(ans, "contentsRemoved")),
               (long long)json_integer_value(json_object_get(ans, "contentsBusy")),
               freed / (1024.0 * 1024.0), json_real_value(json_object_get(ans, "seconds")));
        size_t i;
        json_t *d;
        json_array_foreach(removed, i, d) printf("  removed %s\n", json_string_value(d));
    }
    json_decref(ans);
    sl_config_free(&gc_cmd, &cfg);
    return code;
}
