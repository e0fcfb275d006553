/* proxy-config.h — the option table of `starlight-proxy` (config.c).
 *
 * (Named proxy-config.h, not config.h, so it cannot shadow common/base/config.h.)
 * Precedence: defaults < YAML file (--config) < STARLIGHT_* environment < flags. */
#ifndef SL_PROXY_CONFIG_H
#define SL_PROXY_CONFIG_H

#include "config.h"

#include <stdbool.h>
#include <stdint.h>

#define SL_PROXY_DEFAULT_LISTEN "127.0.0.1:8090"

struct sl_proxy_config {
    char *config;
    char *listen;
    char *postgres;
    int64_t db_connections;
    char *registry;
    bool registry_insecure;
    char *docker_config;
    char *cache_dir;
    uint64_t cache_max_bytes;
    char *auth_file;
    char *tls_cert;
    char *tls_key;
    bool open_health;
    bool open_metrics;
    int64_t workers;
    uint64_t max_body;
    int64_t idle_timeout;
    char *log_format;
    char *log_level;
    struct sl_strlist hook_repos;
    char *hook_target_suffix;
    int64_t hook_queue;
    bool hook_insecure;
    char *hook_tmp_dir;
    char *prune_interval; /* duration; parsed into prune_interval_ms */
    char *prune_min_age;  /* duration; parsed into prune_min_age_s */
    int64_t prune_interval_ms, prune_min_age_s;
};

extern const struct sl_cmd sl_proxy_cmd;

/* Parses argv into cfg (sl_config_parse semantics: 0 go on, 1 help/version printed, < 0
 * error with message), then checks cross-field rules (cert and key together). */
int sl_proxy_config_parse(struct sl_proxy_config *cfg, int argc, char **argv, sl_error_t *err);
void sl_proxy_config_free(struct sl_proxy_config *cfg);

#endif
