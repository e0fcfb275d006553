/* daemon-config.h — the option table of `starlight-daemon` (config.c).
 *
 * (Not config.h, so it cannot shadow common/base/config.h.) Precedence: defaults < YAML file
 * (--config) < STARLIGHT_* environment < flags. Not thread-safe: parse at start-up. */
#ifndef SL_DAEMON_CONFIG_H
#define SL_DAEMON_CONFIG_H

#include "config.h"

#include <stdint.h>

#define SL_DAEMON_DEFAULT_ROOT               "/var/lib/starlight"
#define SL_DAEMON_DEFAULT_SNAPSHOTTER_SOCKET "/run/starlight/starlight-snapshotter.sock"
#define SL_DAEMON_DEFAULT_CONTROL_SOCKET     "/run/starlight/starlight-daemon.sock"
#define SL_DAEMON_DEFAULT_CONTAINERD_SOCKET  "/run/containerd/containerd.sock"

struct sl_daemon_config {
    char *config;
    char *root;
    char *snapshotter_socket;
    char *control_socket;
    char *containerd_socket;
    char *proxy;
    char *metrics_listen;
    char *handoff_socket; /* NULL: ROOT/handoff.sock; "": no handoff */
    int64_t grpc_workers;
    int64_t gc_interval; /* seconds; 0 = no periodic collection */
    char *gc_high_water; /* "N%", a size, or "0" */
    int64_t gc_grace;    /* seconds */
    char *materialize;   /* link|copy|off */
    char *log_format;
    char *log_level;
    char *node_name;  /* Kubernetes node watcher (docs/kubernetes.md §3); empty = off */
    char *kubeconfig; /* empty = in-cluster */
};

extern const struct sl_cmd sl_daemon_cmd;

/* Parses argv into cfg (sl_daemon_config_free). Returns 0, 1 when --help/--version was
 * printed (exit 0), or a negative errno with *err naming the bad option. */
int sl_daemon_config_parse(struct sl_daemon_config *cfg, int argc, char **argv, sl_error_t *err);
void sl_daemon_config_free(struct sl_daemon_config *cfg);

#endif
