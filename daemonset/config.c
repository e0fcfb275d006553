/* config.c — starlight-daemon's declarative option table (daemon-config.h). */
#include "daemon-config.h"
#include "cleanup.h"
#include "gc.h"
#include "materialize.h"

#include <errno.h>
#include <stddef.h>
#include <string.h>

#define O(field) offsetof(struct sl_daemon_config, field)

static const struct sl_opt daemon_opts[] = {
    {"config", SL_OPT_STR, O(config), NULL, "STARLIGHT_CONFIG", 0, "FILE",
     "YAML file with any of these options (keys are the long flag names)"},
    {"root", SL_OPT_STR, O(root), SL_DAEMON_DEFAULT_ROOT, "STARLIGHT_ROOT", 0, "DIR",
     "State directory: snapshot metadata (metadata.db), snapshot directories, layer store"},
    {"snapshotter-socket", SL_OPT_STR, O(snapshotter_socket), SL_DAEMON_DEFAULT_SNAPSHOTTER_SOCKET,
     "STARLIGHT_SNAPSHOTTER_SOCKET", 0, "PATH",
     "Unix socket of the containerd snapshotter (containerd's proxy_plugins address)"},
    {"control-socket", SL_OPT_STR, O(control_socket), SL_DAEMON_DEFAULT_CONTROL_SOCKET,
     "STARLIGHT_CONTROL_SOCKET", 0, "PATH", "Unix socket of the control API (ctr-starlight)"},
    {"containerd-socket", SL_OPT_STR, O(containerd_socket), SL_DAEMON_DEFAULT_CONTAINERD_SOCKET,
     "STARLIGHT_CONTAINERD_SOCKET", 0, "PATH",
     "containerd's gRPC socket (images, content and leases are registered there)"},
    {"proxy", SL_OPT_STR, O(proxy), NULL, "STARLIGHT_PROXY", 0, "URL",
     "Default Starlight proxy, e.g. http://proxy.example.com:8090"},
    {"metrics-listen", SL_OPT_STR, O(metrics_listen), NULL, "STARLIGHT_METRICS_LISTEN", 0,
     "ADDR:PORT",
     "Also serve Prometheus GET /metrics over TCP there (always on the control socket)"},
    {"handoff-socket", SL_OPT_STR, O(handoff_socket), NULL, "STARLIGHT_HANDOFF_SOCKET", 0, "PATH",
     "Unix socket to pass the FUSE connection to a successor on restart (default "
     "ROOT/handoff.sock; empty: off)"},
    {"grpc-workers", SL_OPT_INT, O(grpc_workers), "8", "STARLIGHT_GRPC_WORKERS", 0, "N",
     "Snapshotter calls served at once", 1, 256},
    {"gc-interval", SL_OPT_INT, O(gc_interval), "3600", "STARLIGHT_GC_INTERVAL", 0, "SECONDS",
     "Collect unreferenced layers and contents this often (0: only on demand and high water)", 0,
     INT64_C(315360000)},
    {"gc-high-water", SL_OPT_STR, O(gc_high_water), "90%", "STARLIGHT_GC_HIGH_WATER", 0, "N%|SIZE",
     "Collect when the filesystem of --root is used beyond N% or SIZE bytes (checked every "
     "30 s; 0: off)"},
    {"gc-grace", SL_OPT_INT, O(gc_grace), "600", "STARLIGHT_GC_GRACE", 0, "SECONDS",
     "Layers recorded less than this long ago are never collected (a pull in progress)", 0,
     INT64_C(315360000)},
    {"materialize", SL_OPT_STR, O(materialize), "link", "STARLIGHT_MATERIALIZE", 0, "link|copy|off",
     "Complete layers become plain directories for new mounts: hardlinks to the store where "
     "the metadata allows (link), full copies (copy), or stay on FUSE (off)"},
    {"log-format", SL_OPT_STR, O(log_format), "text", "STARLIGHT_LOG_FORMAT", 0, "text|json",
     "Log format"},
    {"log-level", SL_OPT_STR, O(log_level), "info", "STARLIGHT_LOG_LEVEL", 0, "LEVEL",
     "error, warn, info or debug"},
    {"node-name", SL_OPT_STR, O(node_name), NULL, "NODE_NAME", 0, "NAME",
     "Kubernetes node of this daemon: watch Pods bound to it and its Node (empty: off)"},
    {"kubeconfig", SL_OPT_STR, O(kubeconfig), NULL, "STARLIGHT_KUBECONFIG", 0, "FILE",
     "kubeconfig for the node watcher (empty: in-cluster when KUBERNETES_SERVICE_HOST is set)"},
};

const struct sl_cmd sl_daemon_cmd = {
    .name = "starlight-daemon",
    .args = "",
    .summary = "Starlight worker daemon: a containerd proxy snapshotter (overlayfs semantics; "
               "Starlight layers\nmount as lowerdirs served by FUSE) and the node side of "
               "Starlight pulls.",
    .opts = daemon_opts,
    .nopts = SL_ELEMENTSOF(daemon_opts),
    .config_key = "config",
    .min_args = 0,
    .max_args = 0,
    .epilog = "containerd configuration (config.toml, version 2):\n"
              "  [proxy_plugins.starlight]\n"
              "    type = \"snapshot\"\n"
              "    address = \"" SL_DAEMON_DEFAULT_SNAPSHOTTER_SOCKET "\"\n",
};

int sl_daemon_config_parse(struct sl_daemon_config *cfg, int argc, char **argv, sl_error_t *err)
{
    int argi = 0;
    int r = sl_config_parse(&sl_daemon_cmd, cfg, argc, argv, &argi, err);
    if (r != 0)
        return r;
    if (!cfg->root || !*cfg->root)
        return sl_error_make(err, EINVAL, "--root must not be empty");
    if (!cfg->snapshotter_socket || cfg->snapshotter_socket[0] != '/')
        return sl_error_make(err, EINVAL, "--snapshotter-socket must be an absolute path");
    enum sl_mat_mode mode;
    if (sl_mat_parse_mode(cfg->materialize, &mode) < 0)
        return sl_error_make(err, EINVAL, "--materialize must be link, copy or off, not `%s`",
                             cfg->materialize);
    int64_t pct;
    uint64_t bytes;
    return sl_gc_parse_high_water(cfg->gc_high_water, &pct, &bytes, err);
}

void sl_daemon_config_free(struct sl_daemon_config *cfg)
{
    sl_config_free(&sl_daemon_cmd, cfg);
}
