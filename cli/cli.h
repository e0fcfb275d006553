/* cli.h — pieces shared by the verbs of ctr-starlight: the common options (logging,
 * registry credentials) and their setup. */
#ifndef SL_CLI_CLI_H
#define SL_CLI_CLI_H

#include "config.h"
#include "error.h"

#include <stdbool.h>

/* Layer annotations written by convert and read by inspect (docs/format.md). */
#define SL_ANN_STARLIGHT_TOC "containerd.io/snapshot/remote/starlight/toc.digest"
#define SL_ANN_STARGZ_TOC    "containerd.io/snapshot/stargz/toc.digest"
#define SL_ANN_ESTARGZ_USIZE "io.containers.estargz.uncompressed-size"

struct sl_cli_common {
    char *config;
    char *log_format;
    char *log_level;
    char *docker_config;
};

/* Option-table entries for struct sl_cli_common embedded as `common` in a verb's config. */
#define SL_CLI_COMMON_OPTS(type)                                                                   \
    {"config", SL_OPT_STR, offsetof(type, common.config),        NULL, "STARLIGHT_CONFIG",         \
     0,        "FILE",     "YAML file with any of these options"},                                 \
        {"log-format",                                                                             \
         SL_OPT_STR,                                                                               \
         offsetof(type, common.log_format),                                                        \
         "text",                                                                                   \
         "STARLIGHT_LOG_FORMAT",                                                                   \
         0,                                                                                        \
         "text|json",                                                                              \
         "Log format"},                                                                            \
        {"log-level", SL_OPT_STR, offsetof(type, common.log_level), "info", "STARLIGHT_LOG_LEVEL", \
         0,           "LEVEL",    "error, warn, info or debug"},                                   \
    {                                                                                              \
        "docker-config", SL_OPT_STR, offsetof(type, common.docker_config), NULL, NULL, 0, "FILE",  \
            "Registry credentials (default: $DOCKER_CONFIG/config.json, ~/.docker/config.json)"    \
    }

/* Where the proxy is, for verbs that talk to one. */
struct sl_cli_proxy {
    char *url;
    char *user;
    char *token;
};

#define SL_CLI_PROXY_OPTS(type)                                                                    \
    {"proxy",                                                                                      \
     SL_OPT_STR,                                                                                   \
     offsetof(type, proxy.url),                                                                    \
     NULL,                                                                                         \
     "STARLIGHT_PROXY",                                                                            \
     0,                                                                                            \
     "URL",                                                                                        \
     "starlight-proxy base URL, e.g. http://proxy:8090"},                                          \
        {"proxy-user",                                                                             \
         SL_OPT_STR,                                                                               \
         offsetof(type, proxy.user),                                                               \
         NULL,                                                                                     \
         "STARLIGHT_PROXY_USER",                                                                   \
         0,                                                                                        \
         "USER:PASS",                                                                              \
         "Basic credentials for the proxy"},                                                       \
    {                                                                                              \
        "proxy-token", SL_OPT_STR, offsetof(type, proxy.token), NULL, "STARLIGHT_PROXY_TOKEN", 0,  \
            "TOKEN", "Bearer token for the proxy"                                                  \
    }

/* Where the daemon's control socket is, and the containerd namespace, for verbs that talk to
 * starlight-daemon. */
#define SL_CLI_DEFAULT_DAEMON_SOCKET "/run/starlight/starlight-daemon.sock"

struct sl_cli_daemon {
    char *socket;
    char *ns;
};

#define SL_CLI_DAEMON_OPTS(type)                                                                   \
    {"daemon",                                                                                     \
     SL_OPT_STR,                                                                                   \
     offsetof(type, daemon.socket),                                                                \
     SL_CLI_DEFAULT_DAEMON_SOCKET,                                                                 \
     "STARLIGHT_DAEMON",                                                                           \
     0,                                                                                            \
     "SOCKET",                                                                                     \
     "Control socket of starlight-daemon"},                                                        \
    {                                                                                              \
        "namespace", SL_OPT_STR, offsetof(type, daemon.ns), "default", "CONTAINERD_NAMESPACE", 0,  \
            "NS", "containerd namespace the image is registered in"                                \
    }

/* Parses argv with the verb's table and sets up logging. Returns 0 to go on, 1 when --help or
 * --version was printed (exit 0), or a negative errno after printing the error (exit 2). */
int sl_cli_parse(const struct sl_cmd *cmd, void *cfg, struct sl_cli_common *common, int argc,
                 char **argv, int *ret_argi);

/* Prints "ctr-starlight: <context>: <chain>" as an error log line, frees *err, returns the exit
 * code for main (1). */
int sl_cli_fail(sl_error_t *err, int r, const char *context);

/* Notifies the proxy about `ref` (logs the answer). Used by `notify` and `convert --notify`. */
int sl_cli_notify(const struct sl_cli_proxy *proxy, const char *ref, bool insecure,
                  sl_error_t *err);

/* Machine architecture as an OCI platform string, e.g. "linux/amd64". */
const char *sl_cli_host_platform(void);

#endif
