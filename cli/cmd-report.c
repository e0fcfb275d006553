/* ctr-starlight report [--proxy NAME|URL] | traces — uploads the daemon's finished startup
 * traces to the proxy's /starlight/report (POST /v1/report; the daemon keeps them when the
 * upload fails), and lists the traces not yet reported (GET /v1/traces). */
#include "cleanup.h"
#include "cli.h"
#include "daemonclient.h"
#include "json.h"
#include "verbs.h"

#include <stdio.h>
#include <string.h>

struct report_config {
    struct sl_cli_common common;
    struct sl_cli_daemon daemon;
    char *proxy;
    bool json;
};

static const struct sl_opt report_opts[] = {
    SL_CLI_COMMON_OPTS(struct report_config),
    SL_CLI_DAEMON_OPTS(struct report_config),
    {"proxy", SL_OPT_STR, offsetof(struct report_config, proxy), NULL, NULL, 0, "NAME|URL",
     "Proxy profile or URL (default: the daemon's profile `default`)"},
    {"json", SL_OPT_BOOL, offsetof(struct report_config, json), "false", NULL, 0, NULL,
     "Print the daemon's JSON answer"},
};

static const struct sl_cmd report_cmd = {
    .name = "ctr-starlight report",
    .args = "",
    .summary = "Uploads the finished startup traces to the proxy (one document; the traces of a "
               "group rank on one timeline). They are deleted only once the proxy took them.",
    .opts = report_opts,
    .nopts = SL_ELEMENTSOF(report_opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 0};

static const struct sl_cmd traces_cmd = {
    .name = "ctr-starlight traces",
    .args = "",
    .summary = "Lists the startup traces the daemon holds (not yet reported).",
    .opts = report_opts,
    .nopts = SL_ELEMENTSOF(report_opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 0};

static void print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s)
        puts(s);
    free(s);
}

static long long ival(const json_t *o, const char *k)
{
    return (long long)json_integer_value(json_object_get(o, k));
}

int sl_cmd_report(int argc, char **argv)
{
    struct report_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(&report_cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(&report_cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    json_auto_t *body = json_object();
    if (cfg.proxy && *cfg.proxy)
        json_object_set_new(body, "proxy", json_string(cfg.proxy));
    json_t *ans = NULL;
    r = sl_daemon_call(cfg.daemon.socket, "POST", "/v1/report", body, &ans, &err);
    int code = 0;
    if (r < 0)
        code = sl_cli_fail(&err, r, "report (the daemon keeps the traces)");
    else if (cfg.json)
        print_json(ans);
    else
        printf("reported %lld traces of %lld images in %lld groups (%lld accesses) to %s; %lld "
               "dropped (no pulled image holds their layers)\n",
               ival(ans, "traces"), ival(ans, "images"), ival(ans, "groups"), ival(ans, "accesses"),
               json_string_value(json_object_get(ans, "proxy")), ival(ans, "dropped"));
    json_decref(ans);
    sl_config_free(&report_cmd, &cfg);
    return code;
}

int sl_cmd_traces(int argc, char **argv)
{
    struct report_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(&traces_cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(&traces_cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    json_t *ans = NULL;
    r = sl_daemon_call(cfg.daemon.socket, "GET", "/v1/traces", NULL, &ans, &err);
    int code = 0;
    if (r < 0) {
        code = sl_cli_fail(&err, r, "traces");
    } else if (cfg.json) {
        print_json(ans);
    } else {
        json_t *o = json_object_get(ans, "optimizer");
        printf("optimizer %s%s%s\n", json_is_true(json_object_get(o, "enabled")) ? "on" : "off",
               json_is_true(json_object_get(o, "enabled")) ? ", group " : "",
               json_string_value(json_object_get(o, "group")));
        printf("%-6s %-10s %-16s %-9s %s\n", "ID", "STATE", "GROUP", "ACCESSES", "CGROUP");
        size_t i;
        json_t *t;
        json_array_foreach(json_object_get(ans, "traces"), i, t)
        {
            printf("%-6lld %-10s %-16s %-9lld %s\n", ival(t, "id"),
                   json_is_true(json_object_get(t, "finished")) ? "finished" : "recording",
                   json_string_value(json_object_get(t, "group")), ival(t, "accesses"),
                   json_string_value(json_object_get(t, "cgroup")));
        }
    }
    json_decref(ans);
    sl_config_free(&traces_cmd, &cfg);
    return code;
}
