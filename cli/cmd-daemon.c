/* ctr-starlight status | ping | add-proxy | list-proxy | version — small calls to
 * starlight-daemon's control API. Each prints the daemon's JSON answer (pretty) or a short
 * table. */
#include "cleanup.h"
#include "cli.h"
#include "daemonclient.h"
#include "http.h"
#include "json.h"
#include "log.h"
#include "verbs.h"

#include <stdio.h>
#include <string.h>

struct dcmd_config {
    struct sl_cli_common common;
    struct sl_cli_daemon daemon;
    char *user;
    char *token;
    bool json;
};

#define DCMD_BASE_OPTS                                                                             \
    SL_CLI_COMMON_OPTS(struct dcmd_config), SL_CLI_DAEMON_OPTS(struct dcmd_config),                \
    {                                                                                              \
        "json", SL_OPT_BOOL, offsetof(struct dcmd_config, json), "false", NULL, 0, NULL,           \
            "Print the daemon's JSON answer"                                                       \
    }

static const struct sl_opt base_opts[] = {DCMD_BASE_OPTS};
static const struct sl_opt add_opts[] = {
    DCMD_BASE_OPTS,
    {"user", SL_OPT_STR, offsetof(struct dcmd_config, user), NULL, "STARLIGHT_PROXY_USER", 0,
     "USER:PASS", "Basic credentials for the proxy"},
    {"token", SL_OPT_STR, offsetof(struct dcmd_config, token), NULL, "STARLIGHT_PROXY_TOKEN", 0,
     "TOKEN", "Bearer token for the proxy"},
};

#define DCMD(var, verb, a, mn, mx, table, sum)                                                     \
    static const struct sl_cmd var = {.name = "ctr-starlight " verb,                               \
                                      .args = a,                                                   \
                                      .summary = sum,                                              \
                                      .opts = table,                                               \
                                      .nopts = SL_ELEMENTSOF(table),                               \
                                      .config_key = "config",                                      \
                                      .min_args = mn,                                              \
                                      .max_args = mx}

DCMD(status_cmd, "status", "", 0, 0, base_opts,
     "Shows the daemon's layers (complete?, bytes local of total) and the pulls in flight.");
DCMD(ping_cmd, "ping", "[PROXY]", 0, 1, base_opts,
     "Measures the round trip from the daemon to a proxy's /health-check (profile name or URL; "
     "default: `default`).");
DCMD(add_cmd, "add-proxy", "NAME URL", 2, 2, add_opts,
     "Adds (or replaces) a proxy profile in the daemon.");
DCMD(list_cmd, "list-proxy", "", 0, 0, base_opts, "Lists the daemon's proxy profiles.");
DCMD(version_cmd, "version", "", 0, 0, base_opts,
     "Prints the version of ctr-starlight and of the daemon (when reachable).");

static void print_json(const json_t *j)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    if (s)
        puts(s);
    free(s);
}

static int run(const struct sl_cmd *cmd, int argc, char **argv,
               int (*body)(struct dcmd_config *cfg, char **args, sl_error_t *err))
{
    struct dcmd_config cfg = {0};
    int argi = 0;
    int r = sl_cli_parse(cmd, &cfg, &cfg.common, argc, argv, &argi);
    if (r != 0) {
        sl_config_free(cmd, &cfg);
        return r > 0 ? 0 : 2;
    }
    _cleanup_error_ sl_error_t err = NULL;
    r = body(&cfg, argv + argi, &err);
    int code = r < 0 ? sl_cli_fail(&err, r, cmd->name + strlen("ctr-starlight ")) : 0;
    sl_config_free(cmd, &cfg);
    return code;
}

/* One call to the daemon; its answer is printed as JSON with --json, else by `show`. */
static int call(struct dcmd_config *cfg, const char *method, const char *path, const json_t *req,
                void (*show)(json_t *j, char **args), char **args, sl_error_t *err)
{
    json_t *j = NULL;
    int r = sl_daemon_call(cfg->daemon.socket, method, path, req, &j, err);
    if (r < 0)
        return r;
    if (cfg->json)
        print_json(j);
    else
        show(j, args);
    json_decref(j);
    return 0;
}

static void show_status(json_t *j, char **args)
{
    (void)args;
    size_t i;
    json_t *l;
    printf("%-73s %-8s %s\n", "LAYER", "STATE", "LOCAL/TOTAL MB");
    json_array_foreach(json_object_get(j, "layers"), i, l)
    {
        printf("%-73s %-8s %.1f/%.1f\n", json_string_value(json_object_get(l, "digest")),
               json_is_true(json_object_get(l, "complete")) ? "complete" : "partial",
               (double)json_integer_value(json_object_get(l, "bytesLocal")) / 1e6,
               (double)json_integer_value(json_object_get(l, "bytesTotal")) / 1e6);
    }
    json_array_foreach(json_object_get(j, "pulls"), i, l)
    {
        printf("pulling %s: %.1f/%.1f MB\n", json_string_value(json_object_get(l, "ref")),
               (double)json_integer_value(json_object_get(l, "payloadBytes")) / 1e6,
               (double)json_integer_value(json_object_get(l, "payloadTotal")) / 1e6);
    }
}

static int do_status(struct dcmd_config *cfg, char **args, sl_error_t *err)
{
    return call(cfg, "GET", "/v1/status", NULL, show_status, args, err);
}

static void show_ping(json_t *j, char **args)
{
    (void)args;
    printf("%s: HTTP %lld, RTT %.1f ms\n", json_string_value(json_object_get(j, "proxy")),
           (long long)json_integer_value(json_object_get(j, "status")),
           json_real_value(json_object_get(j, "rttMs")));
}

static int do_ping(struct dcmd_config *cfg, char **args, sl_error_t *err)
{
    _cleanup_free_ char *path = NULL;
    if (args[0]) {
        _cleanup_free_ char *e = sl_http_escape(args[0]);
        path = sl_xasprintf("/v1/ping?proxy=%s", e);
    } else {
        path = sl_xstrdup("/v1/ping");
    }
    return call(cfg, "GET", path, NULL, show_ping, args, err);
}

static void show_add(json_t *j, char **args)
{
    (void)j;
    printf("proxy %s = %s\n", args[0], args[1]);
}

static int do_add(struct dcmd_config *cfg, char **args, sl_error_t *err)
{
    json_t *req = json_pack("{s:s,s:s}", "name", args[0], "url", args[1]);
    if (cfg->user)
        json_object_set_new(req, "user", json_string(cfg->user));
    if (cfg->token)
        json_object_set_new(req, "token", json_string(cfg->token));
    int r = call(cfg, "POST", "/v1/proxies", req, show_add, args, err);
    json_decref(req);
    return r;
}

static void show_list(json_t *j, char **args)
{
    (void)args;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(j, "proxies"), i, p)
        printf("%-16s %s%s\n", json_string_value(json_object_get(p, "name")),
               json_string_value(json_object_get(p, "url")),
               json_is_true(json_object_get(p, "credentials")) ? " (credentials)" : "");
}

static int do_list(struct dcmd_config *cfg, char **args, sl_error_t *err)
{
    return call(cfg, "GET", "/v1/proxies", NULL, show_list, args, err);
}

static int do_version(struct dcmd_config *cfg, char **args, sl_error_t *err)
{
    (void)args;
    (void)err;
    printf("ctr-starlight %s\n", SL_VERSION);
    json_t *j = NULL;
    sl_error_t e = NULL;
    if (sl_daemon_call(cfg->daemon.socket, "GET", "/v1/version", NULL, &j, &e) >= 0)
        printf("starlight-daemon %s\n", json_string_value(json_object_get(j, "version")));
    else
        printf("starlight-daemon: not reachable at %s\n", cfg->daemon.socket);
    sl_error_free(&e);
    json_decref(j);
    return 0;
}

int sl_cmd_status(int argc, char **argv)
{
    return run(&status_cmd, argc, argv, do_status);
}
int sl_cmd_ping(int argc, char **argv)
{
    return run(&ping_cmd, argc, argv, do_ping);
}
int sl_cmd_add_proxy(int argc, char **argv)
{
    return run(&add_cmd, argc, argv, do_add);
}
int sl_cmd_list_proxy(int argc, char **argv)
{
    return run(&list_cmd, argc, argv, do_list);
}
int sl_cmd_version(int argc, char **argv)
{
    return run(&version_cmd, argc, argv, do_version);
}
