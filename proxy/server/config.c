/* config.c — starlight-proxy's declarative option table (proxy-config.h). */
#include "proxy-config.h"
#include "cleanup.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#define O(field) offsetof(struct sl_proxy_config, field)

static const struct sl_opt proxy_opts[] = {
    {"config", SL_OPT_STR, O(config), NULL, "STARLIGHT_CONFIG", 0, "FILE",
     "YAML file with any of these options (keys are the long flag names)"},
    {"listen", SL_OPT_STR, O(listen), SL_PROXY_DEFAULT_LISTEN, "STARLIGHT_LISTEN", 'l', "ADDR:PORT",
     "Address and port to serve HTTP on (0.0.0.0:PORT for every interface)"},
    {"postgres", SL_OPT_STR, O(postgres), "dbname=starlight", "STARLIGHT_POSTGRES", 0, "CONNINFO",
     "PostgreSQL connection string (libpq conninfo or URI; PG* variables apply)"},
    {"db-connections", SL_OPT_INT, O(db_connections), "4", "STARLIGHT_DB_CONNECTIONS", 0, "N",
     "PostgreSQL connection pool size", 1, 256},
    {"registry", SL_OPT_STR, O(registry), NULL, "STARLIGHT_REGISTRY", 0, "HOST[:PORT]",
     "Default registry for short image names (default docker.io)"},
    {"registry-insecure", SL_OPT_BOOL, O(registry_insecure), "false", "STARLIGHT_REGISTRY_INSECURE",
     0, NULL, "Use plain HTTP for the default registry"},
    {"docker-config", SL_OPT_STR, O(docker_config), NULL, "STARLIGHT_DOCKER_CONFIG", 0, "FILE",
     "Registry credentials (default: $DOCKER_CONFIG/config.json, ~/.docker/config.json)"},
    {"cache-dir", SL_OPT_STR, O(cache_dir), "/var/cache/starlight-proxy", "STARLIGHT_CACHE_DIR", 0,
     "DIR", "Blob cache directory"},
    {"cache-max-bytes", SL_OPT_SIZE, O(cache_max_bytes), "10GiB", "STARLIGHT_CACHE_MAX_BYTES", 0,
     "SIZE", "Bound of the blob cache (K/M/G/KiB/MiB/GiB suffixes)"},
    {"auth-file", SL_OPT_STR, O(auth_file), NULL, "STARLIGHT_AUTH_FILE", 0, "FILE",
     "Require authentication: `user:bcrypt-hash` (htpasswd -B) and `token:VALUE` lines"},
    {"tls-cert", SL_OPT_STR, O(tls_cert), NULL, "STARLIGHT_TLS_CERT", 0, "FILE",
     "Serve HTTPS with this PEM certificate (chain) ..."},
    {"tls-key", SL_OPT_STR, O(tls_key), NULL, "STARLIGHT_TLS_KEY", 0, "FILE",
     "... and this PEM private key"},
    {"open-health", SL_OPT_BOOL, O(open_health), "true", "STARLIGHT_OPEN_HEALTH", 0, NULL,
     "Serve /health-check without authentication"},
    {"open-metrics", SL_OPT_BOOL, O(open_metrics), "false", "STARLIGHT_OPEN_METRICS", 0, NULL,
     "Serve /metrics without authentication"},
    {"workers", SL_OPT_INT, O(workers), "8", "STARLIGHT_WORKERS", 'w', "N",
     "Worker threads for database, registry and payload reads", 1, 1024},
    {"max-body", SL_OPT_SIZE, O(max_body), "16MiB", "STARLIGHT_MAX_BODY", 0, "SIZE",
     "Largest request body (trace reports, delta requests)", 1024, (int64_t)1 << 32},
    {"idle-timeout", SL_OPT_INT, O(idle_timeout), "60", "STARLIGHT_IDLE_TIMEOUT", 0, "SECONDS",
     "Close a connection whose client neither sends nor reads for this long", 1, 86400},
    {"log-format", SL_OPT_STR, O(log_format), "text", "STARLIGHT_LOG_FORMAT", 0, "text|json",
     "Log format"},
    {"log-level", SL_OPT_STR, O(log_level), "info", "STARLIGHT_LOG_LEVEL", 0, "LEVEL",
     "error, warn, info or debug"},
    {"hook-repos", SL_OPT_STRLIST, O(hook_repos), NULL, "STARLIGHT_HOOK_REPOS", 0, "GLOB,...",
     "Conversion hook: convert pushes to these repositories (`path` or `host/path` globs); "
     "none = hook off"},
    {"hook-target-suffix", SL_OPT_STR, O(hook_target_suffix), "-starlight",
     "STARLIGHT_HOOK_TARGET_SUFFIX", 0, "SUFFIX",
     "Conversion hook: TAG is converted to TAG+SUFFIX (tags ending in it are left alone)"},
    {"hook-queue", SL_OPT_INT, O(hook_queue), "16", "STARLIGHT_HOOK_QUEUE", 0, "N",
     "Conversion hook: pushes waiting at most (503 beyond)", 1, 100000},
    {"hook-insecure", SL_OPT_BOOL, O(hook_insecure), "false", "STARLIGHT_HOOK_INSECURE", 0, NULL,
     "Conversion hook: plain HTTP to the registry that sent the notification"},
    {"hook-tmp-dir", SL_OPT_STR, O(hook_tmp_dir), NULL, "STARLIGHT_HOOK_TMP_DIR", 0, "DIR",
     "Conversion hook: where layers are staged while converting (default /var/tmp)"},
    {"prune-interval", SL_OPT_STR, O(prune_interval), "0", "STARLIGHT_PRUNE_INTERVAL", 0,
     "DURATION",
     "Every DURATION (30m, 6h; at least 1s), do what POST /starlight/prune does: delete the "
     "rows of images the registry no longer has (0 = only on request)"},
    {"prune-min-age", SL_OPT_STR, O(prune_min_age), "10m", "STARLIGHT_PRUNE_MIN_AGE", 0, "DURATION",
     "Periodic prune: layers no image lists are deleted once ingested this long ago"},
};

const struct sl_cmd sl_proxy_cmd = {
    .name = "starlight-proxy",
    .args = "",
    .summary = "Starlight proxy: keeps the tables of contents of Starlight images in PostgreSQL "
               "and streams\nworkers the delta between what they hold and the image they want "
               "(docs/protocol.md).\nHTTP API: /, /health-check, /metrics, POST /starlight/notify, "
               "POST /starlight/report,\nGET|POST /starlight/delta, POST /starlight/hook/registry.",
    .opts = proxy_opts,
    .nopts = SL_ELEMENTSOF(proxy_opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 0,
    .epilog = "Example:\n  starlight-proxy --listen 0.0.0.0:8090 \\\n"
              "      --postgres 'host=db user=starlight dbname=starlight' \\\n"
              "      --registry registry.example.com --auth-file /etc/starlight/htpasswd",
};

int sl_proxy_config_parse(struct sl_proxy_config *cfg, int argc, char **argv, sl_error_t *err)
{
    int argi = 0;
    int r = sl_config_parse(&sl_proxy_cmd, cfg, argc, argv, &argi, err);
    if (r != 0)
        return r;
    if (!!cfg->tls_cert != !!cfg->tls_key)
        return sl_error_make(err, EINVAL, "--tls-cert and --tls-key go together");
    if (cfg->hook_repos.n > 0 && (!cfg->hook_target_suffix || !*cfg->hook_target_suffix))
        return sl_error_make(err, EINVAL, "--hook-target-suffix must not be empty");
    if (sl_parse_duration_ms(cfg->prune_interval, &cfg->prune_interval_ms) < 0 ||
        (cfg->prune_interval_ms > 0 && cfg->prune_interval_ms < 1000))
        return sl_error_make(err, EINVAL,
                             "--prune-interval `%s`: expected 0 or a duration of at least 1s "
                             "(30m, 6h)",
                             cfg->prune_interval);
    int64_t age_ms = 0;
    if (sl_parse_duration_ms(cfg->prune_min_age, &age_ms) < 0)
        return sl_error_make(err, EINVAL, "--prune-min-age `%s`: expected a duration (10m, 1h)",
                             cfg->prune_min_age);
    cfg->prune_min_age_s = age_ms / 1000;
    _cleanup_free_ char *addr = NULL;
    int port;
    return sl_parse_listen("--listen", cfg->listen, &addr, &port, err);
}

void sl_proxy_config_free(struct sl_proxy_config *cfg)
{
    sl_config_free(&sl_proxy_cmd, cfg);
}
