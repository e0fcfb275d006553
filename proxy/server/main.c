/* starlight-proxy — wiring only: configuration, logging, the core, the server, signals. */
#include "cleanup.h"
#include "convert.h"
#include "core.h"
#include "log.h"
#include "proxy-config.h"
#include "server.h"

#include <malloc.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

static struct sl_server *the_server;

/* The conversion hook's converter: common/convert, staged in --hook-tmp-dir. */
static int hook_convert(void *ud, const char *src, const char *dst, bool insecure, sl_error_t *err)
{
    const struct sl_proxy_config *cfg = ud;
    const struct sl_convert_options o = {
        .insecure_source = insecure,
        .insecure_destination = insecure,
        .docker_config = cfg->docker_config,
        .tmp_dir = cfg->hook_tmp_dir,
    };
    struct sl_convert_result res = {0};
    int r = sl_convert_image_refs(src, dst, &o, &res, err);
    if (r >= 0)
        log_info("hook: converted %s -> %s@%s", src, res.reference, res.digest);
    sl_convert_result_free(&res);
    return r;
}

static void on_signal(int sig)
{
    (void)sig;
    if (the_server)
        sl_server_stop(the_server);
}

int main(int argc, char **argv)
{
    /* Two malloc arenas instead of glibc's 8 per CPU: buffers allocated on one of the ~17
     * threads and freed on another left ~35 MB of fragmented free heap at 50 streams
     * (e2e proxy-load: VmHWM 96-174 MB with the default, 63 MB with 2). */
    mallopt(M_ARENA_MAX, 2);
    struct sl_proxy_config cfg = {0};
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_proxy_config_parse(&cfg, argc, argv, &err);
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "starlight-proxy: %s\n", sl_error_msg(err, r));
        sl_proxy_config_free(&cfg);
        return r < 0 ? 2 : 0;
    }
    enum sl_log_format fmt;
    enum sl_log_level lvl;
    if (sl_log_parse_format(cfg.log_format, &fmt) < 0 ||
        sl_log_parse_level(cfg.log_level, &lvl) < 0) {
        fprintf(stderr, "starlight-proxy: --log-format must be text|json and --log-level "
                        "error|warn|info|debug\n");
        sl_proxy_config_free(&cfg);
        return 2;
    }
    sl_log_setup("starlight-proxy", fmt, lvl);

    _cleanup_free_ char *addr = NULL;
    int port = 0;
    (void)sl_parse_listen("--listen", cfg.listen, &addr, &port, NULL); /* checked while parsing */

    const struct sl_core_config core_cfg = {
        .postgres = cfg.postgres,
        .default_registry = cfg.registry,
        .default_insecure = cfg.registry_insecure,
        .docker_config = cfg.docker_config,
        .cache_dir = cfg.cache_dir,
        .cache_max_bytes = cfg.cache_max_bytes,
        .db_connections = (int)cfg.db_connections,
        .prune_interval_ms = cfg.prune_interval_ms,
        .prune_min_age_s = cfg.prune_min_age_s,
    };
    struct sl_core *core = NULL;
    r = sl_core_new(&core_cfg, &core, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "start the core");
        sl_proxy_config_free(&cfg);
        return 1;
    }
    const struct sl_server_config srv_cfg = {
        .listen_addr = addr,
        .port = port,
        .tls_cert = cfg.tls_cert,
        .tls_key = cfg.tls_key,
        .auth_file = cfg.auth_file,
        .open_health = cfg.open_health,
        .open_metrics = cfg.open_metrics,
        .workers = (int)cfg.workers,
        .max_body = (size_t)cfg.max_body,
        .idle_timeout_s = (int)cfg.idle_timeout,
        .hook =
            {
                .repos = (const char *const *)cfg.hook_repos.v,
                .n_repos = cfg.hook_repos.n,
                .suffix = cfg.hook_target_suffix,
                .queue_max = (size_t)cfg.hook_queue,
                .insecure = cfg.hook_insecure,
                .convert = hook_convert,
                .convert_ud = &cfg,
            },
    };
    struct sl_server *srv = NULL;
    r = sl_server_new(&srv_cfg, core, &srv, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "start the server");
        sl_core_free(core);
        sl_proxy_config_free(&cfg);
        return 1;
    }
    the_server = srv;
    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
    log_info("listening on %s:%d (%s, %d workers)", addr ? addr : "*", sl_server_port(srv),
             cfg.tls_cert ? "https" : "http", (int)cfg.workers);

    r = sl_server_run(srv);
    log_info("stopping");
    the_server = NULL;
    sl_server_free(srv);
    sl_core_free(core);
    sl_proxy_config_free(&cfg);
    return r < 0 ? 1 : 0;
}
