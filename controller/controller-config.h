/* controller-config.h — the option table of `starlight-controller` (config.c), per
 * docs/kubernetes.md §3. Precedence: defaults < YAML file (--config) < STARLIGHT_* environment
 * < flags. */
#ifndef SL_CONTROLLER_CONFIG_H
#define SL_CONTROLLER_CONFIG_H

#include "config.h"
#include "error.h"

#include <stdbool.h>
#include <stdint.h>

struct sl_controller_config {
    char *config;
    char *kubeconfig;
    char *webhook_listen;
    char *tls_cert;
    char *tls_key;
    char *init_image;
    char *proxy;
    char *proxy_token;
    char *proxy_timeout;
    char *platform;
    bool registry_insecure;
    struct sl_strlist opt_in_namespaces;
    char *lease_namespace;
    char *lease_name;
    bool leader_elect;
    bool no_leader_elect;
    char *lease_duration;
    char *renew_deadline;
    char *retry_period;
    char *identity;
    bool prewarm;
    bool trace_jobs;
    char *trace_grace;
    char *metrics_listen;
    int64_t workers;
    char *log_format;
    char *log_level;
    /* derived */
    int64_t proxy_timeout_ms, lease_duration_ms, renew_deadline_ms, retry_period_ms, trace_grace_ms;
};

extern const struct sl_cmd sl_controller_cmd;

/* Parses argv (sl_config_parse semantics: 0 go on, 1 help printed, < 0 error with message)
 * and checks cross-field rules (TLS files, durations, addresses). */
int sl_controller_config_parse(struct sl_controller_config *cfg, int argc, char **argv,
                               sl_error_t *err);
void sl_controller_config_free(struct sl_controller_config *cfg);

#endif
