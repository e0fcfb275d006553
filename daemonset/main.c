/* starlight-daemon — wiring only: configuration, logging, the snapshotter, its gRPC service,
 * signals. */
#include "cleanup.h"
#include "daemon-config.h"
#include "grpc-server.h"
#include "log.h"
#include "snapshots-service.h"
#include "snapshotter.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Grace period for snapshotter calls in flight at shutdown. */
#define STOP_GRACE_MS 10000

static int mkdir_parent(const char *path)
{
    _cleanup_free_ char *copy = sl_xstrdup(path);
    const char *dir = dirname(copy);
    /* one level is enough for /run/starlight; deeper trees are the operator's */
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int main(int argc, char **argv)
{
    struct sl_daemon_config cfg = {0};
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_daemon_config_parse(&cfg, argc, argv, &err);
    if (r != 0) {
        if (r < 0)
            fprintf(stderr, "starlight-daemon: %s\n", sl_error_msg(err, r));
        sl_daemon_config_free(&cfg);
        return r < 0 ? 2 : 0;
    }
    enum sl_log_format fmt;
    enum sl_log_level lvl;
    if (sl_log_parse_format(cfg.log_format, &fmt) < 0 ||
        sl_log_parse_level(cfg.log_level, &lvl) < 0) {
        fprintf(stderr, "starlight-daemon: --log-format must be text|json and --log-level "
                        "error|warn|info|debug\n");
        sl_daemon_config_free(&cfg);
        return 2;
    }
    sl_log_setup("starlight-daemon", fmt, lvl);

    /* Signals are taken by sigwait() in this thread only: block them before any thread
     * starts so every worker inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct sl_snap *snap = NULL;
    r = sl_snap_open(cfg.root, NULL, &snap, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "open the snapshotter");
        sl_daemon_config_free(&cfg);
        return 1;
    }
    r = mkdir_parent(cfg.snapshotter_socket);
    if (r < 0)
        log_warn("create the directory of %s: %s", cfg.snapshotter_socket, strerror(-r));
    size_t nmethods = 0;
    const struct sl_grpc_method *methods = sl_snapshots_service_methods(&nmethods);
    struct sl_grpc_server *srv = NULL;
    r = sl_grpc_server_start(cfg.snapshotter_socket, methods, nmethods, snap, (int)cfg.grpc_workers,
                             &srv, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "start the snapshotter service");
        sl_snap_close(snap);
        sl_daemon_config_free(&cfg);
        return 1;
    }
    log_info("snapshotter on %s (root %s, %d workers)", cfg.snapshotter_socket, cfg.root,
             (int)cfg.grpc_workers);

    int sig = 0;
    sigwait(&set, &sig);
    log_info("%s: stopping", strsignal(sig));
    sl_grpc_server_stop(srv, STOP_GRACE_MS);
    sl_snap_close(snap);
    log_info("stopped");
    sl_daemon_config_free(&cfg);
    return 0;
}
