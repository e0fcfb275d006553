/* starlight-daemon — wiring only: configuration, logging, the store and its FUSE fs, the
 * snapshotter (whose Starlight lowerdirs come from the fs), its gRPC service, the control API
 * (pulls), signals. */
#include "cleanup.h"
#include "control.h"
#include "metrics.h"
#include "daemon-config.h"
#include "nodewatch.h"
#include "fs.h"
#include "gc.h"
#include "materialize.h"
#include "grpc-server.h"
#include "handoff.h"
#include "log.h"
#include "snapshots-service.h"
#include "pull-register.h"
#include "pull.h"
#include "remote.h"
#include "snapshotter.h"
#include "store.h"
#include "trace.h"

#include <errno.h>
#include <libgen.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

/* The proxy plugin's name in containerd's config ([proxy_plugins.starlight]). */
#define SL_DAEMON_SNAPSHOTTER_NAME "starlight"

/* Grace period for snapshotter calls in flight at shutdown. */
#define STOP_GRACE_MS 10000
/* Restart handoff: how long a successor waits for its predecessor to stop and give the FUSE
 * connection, how long the predecessor lets parked reads finish first, and how long it waits
 * for the successor's acknowledgement. */
#define HANDOFF_TAKE_MS  60000
#define HANDOFF_DRAIN_MS 10000
#define HANDOFF_ACK_MS   10000
/* The signal the handoff listener raises when a successor asks (sigwait in main). */
#define HANDOFF_SIGNAL SIGUSR2

static void handoff_requested(void *ud)
{
    kill(getpid(), HANDOFF_SIGNAL);
}

static int mkdir_parent(const char *path)
{
    _cleanup_free_ char *copy = sl_xstrdup(path);
    const char *dir = dirname(copy);
    /* one level is enough for /run/starlight; deeper trees are the operator's */
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* Scrape-time counter of the snapshotter's gRPC calls. */
static void collect_snapshotter(void *ud, struct sl_metrics *m)
{
    sl_metric_set(sl_metrics_counter(m, "starlight_snapshotter_calls_total",
                                     "gRPC calls served by the snapshotter"),
                  NULL, (double)sl_grpc_server_calls(ud));
}

/* Traces are recorded from FUSE accesses: while the optimizer is on, new mounts stay on FUSE. */
static bool optimizer_on(void *ud)
{
    return sl_trace_enabled(ud);
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
    sigaddset(&set, HANDOFF_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (mkdir(cfg.root, 0700) < 0 && errno != EEXIST) {
        log_error("create %s: %s", cfg.root, strerror(errno));
        sl_daemon_config_free(&cfg);
        return 1;
    }
    /* A daemon still running on this root gives its FUSE connection over (restart, upgrade):
     * running containers keep reading through it. */
    _cleanup_free_ char *handoff_path = cfg.handoff_socket
                                            ? sl_xstrdup(cfg.handoff_socket)
                                            : sl_xasprintf("%s/handoff.sock", cfg.root);
    struct sl_fs_handoff taken = {.fd = -1};
    if (strlen(handoff_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        log_warn("handoff socket path too long (%s): restarts will unmount the fs", handoff_path);
        *handoff_path = 0;
    }
    if (*handoff_path) {
        r = sl_handoff_take(handoff_path, HANDOFF_TAKE_MS, &taken, &err);
        if (r < 0) {
            sl_log_error_err(&err, r, "take over from the daemon on %s", handoff_path);
            sl_daemon_config_free(&cfg);
            return 1;
        }
        if (r > 0)
            log_info("took the FUSE connection over from the previous daemon (%s)", handoff_path);
    }
    _cleanup_free_ char *store_dir = sl_xasprintf("%s/store", cfg.root);
    _cleanup_free_ char *mnt_dir = sl_xasprintf("%s/mnt", cfg.root);
    struct sl_store *store = NULL;
    struct sl_fs *fs = NULL;
    /* Startup traces (optimizer): the fs reports every open to the recorder, which drops them
     * at once while the optimizer is off. */
    _cleanup_free_ char *trace_db = sl_xasprintf("%s/trace.db", cfg.root);
    _cleanup_(sl_trace_closep) struct sl_trace *trace = NULL;
    r = sl_trace_open(trace_db, &trace, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "open the trace database (no startup traces)");
        sl_error_free(&err);
        r = 0;
    }
    struct sl_fs_options fso = {
        .on_event = trace ? sl_trace_fs_event : NULL, .event_ud = trace, .trace_every_open = true};
    r = sl_store_open(store_dir, NULL, &store, &err);
    if (r >= 0)
        r = sl_fs_new(store, &fso, &fs, &err);
    if (r >= 0 && taken.fd >= 0) /* before publishing: no slot the kernel may cache is picked */
        r = sl_fs_reserve_slots(fs, &taken, &err);
    int published = 0;
    if (r >= 0) {
        /* Layers known from earlier runs mount again (their completed contents are local);
         * published before serving, with the same inode numbers as before. */
        published = sl_pull_publish_known(store, fs, &err);
        if (published < 0) {
            sl_log_error_err(&err, published, "publish the store's layers");
            sl_error_free(&err);
            published = 0;
        }
        r = taken.fd >= 0 ? sl_fs_adopt(fs, mnt_dir, &taken, &err) : sl_fs_mount(fs, mnt_dir, &err);
    }
    if (r < 0) {
        sl_log_error_err(&err, r, "open the store and mount the fs at %s", mnt_dir);
        if (taken.fd >= 0)
            close(taken.fd);
        sl_fs_free(fs);
        sl_store_free(store);
        sl_daemon_config_free(&cfg);
        return 1;
    }
    log_info("fs at %s: %d layers from the store", mnt_dir, published);

    /* Pulls register their image in containerd (connected on the first pull); an empty
     * --containerd-socket turns registration off (pulls only fill the store and the fs). */
    _cleanup_(sl_pull_registrar_freep) struct sl_pull_registrar *registrar = NULL;
    sl_pull_register_fn on_register = NULL;
    if (cfg.containerd_socket && *cfg.containerd_socket) {
        registrar = sl_pull_registrar_new(cfg.containerd_socket, SL_DAEMON_SNAPSHOTTER_NAME);
        on_register = sl_pull_registrar_hook;
        log_info("pulls register images in containerd at %s", cfg.containerd_socket);
    } else {
        log_info("no containerd socket: pulls are not registered in containerd");
    }
    void *register_ud = registrar;
    if (trace) { /* pulls tell the recorder their image's layers */
        sl_trace_chain_register(trace, on_register, register_ud);
        on_register = sl_trace_pull_register;
        register_ud = trace;
    }

    _cleanup_(sl_metrics_freep) struct sl_metrics *metrics = sl_metrics_new();
    /* The remote-snapshot path (a Prepare during containerd's unpack starts the Starlight pull
     * of the image): needs a default proxy and registration in containerd. Its waits hold
     * gRPC workers, so the server gets SL_REMOTE_MAX_WAITERS more. */
    struct sl_remote *remote = NULL;
    int grpc_workers = (int)cfg.grpc_workers;
    if (cfg.proxy && *cfg.proxy && registrar) {
        struct sl_remote_options ro = {.proxy_url = cfg.proxy,
                                       .store = store,
                                       .fs = fs,
                                       .on_register = on_register,
                                       .register_ud = register_ud,
                                       .metrics = metrics};
        remote = sl_remote_new(&ro);
        grpc_workers += SL_REMOTE_MAX_WAITERS;
        log_info("remote snapshots: Prepares with CRI or stargz labels pull through %s", cfg.proxy);
    } else {
        log_info("remote snapshots off (needs --proxy and --containerd-socket)");
    }

    /* Complete layers become plain directories for new mounts (FUSE leaves the data path). */
    _cleanup_free_ char *mat_dir = sl_xasprintf("%s/materialized", store_dir);
    struct sl_mat_options mo = {.store = store,
                                .fs = fs,
                                .dir = mat_dir,
                                .keep_fuse = trace ? optimizer_on : NULL,
                                .keep_fuse_ud = trace};
    sl_mat_parse_mode(cfg.materialize, &mo.mode);
    struct sl_mat *mat = NULL;
    r = sl_mat_new(&mo, &mat, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "materialized layers at %s (new mounts stay on FUSE)", mat_dir);
        sl_error_free(&err);
    }

    struct sl_snap *snap = NULL;
    struct sl_snap_hooks hooks = {.ud = mat ? (void *)mat : (void *)fs,
                                  .lowerdir = mat ? sl_mat_lowerdir : sl_fs_lowerdir,
                                  .remote_ud = remote,
                                  .remote_prepare = remote ? sl_remote_prepare_hook : NULL};
    r = sl_snap_open(cfg.root, &hooks, &snap, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "open the snapshotter");
        sl_remote_free(remote);
        sl_mat_free(mat);
        sl_fs_free(fs);
        sl_store_free(store);
        sl_daemon_config_free(&cfg);
        return 1;
    }
    r = mkdir_parent(cfg.snapshotter_socket);
    if (r < 0)
        log_warn("create the directory of %s: %s", cfg.snapshotter_socket, strerror(-r));
    size_t nmethods = 0;
    const struct sl_grpc_method *methods = sl_snapshots_service_methods(&nmethods);
    struct sl_grpc_server *srv = NULL;
    if (remote)
        sl_remote_attach(remote, snap);
    r = sl_grpc_server_start(cfg.snapshotter_socket, methods, nmethods, snap, grpc_workers, &srv,
                             &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "start the snapshotter service");
        sl_remote_free(remote);
        sl_mat_free(mat);
        sl_snap_close(snap);
        sl_fs_free(fs);
        sl_store_free(store);
        sl_daemon_config_free(&cfg);
        return 1;
    }
    log_info("snapshotter on %s (root %s, %d workers)", cfg.snapshotter_socket, cfg.root,
             grpc_workers);

    /* Garbage collection: on demand (POST /v1/gc), periodic and at the high-water mark; the
     * automatic runs need registration (snapshots are what reference layers). */
    struct sl_gc_options go = {.store = store,
                               .snap = snap,
                               .mat = mat,
                               .fs = fs,
                               .root = cfg.root,
                               .grace_s = cfg.gc_grace,
                               .interval_s = cfg.gc_interval,
                               .automatic = registrar != NULL,
                               .metrics = metrics};
    sl_gc_parse_high_water(cfg.gc_high_water, &go.high_water_pct, &go.high_water_bytes, NULL);
    struct sl_gc *gc = NULL;
    r = sl_gc_new(&go, &gc, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "start the garbage collector");
        sl_error_free(&err);
    }

    struct sl_control *ctl = NULL;
    struct sl_control_options co = {
        .socket_path = cfg.control_socket,
        .root = cfg.root,
        .default_proxy = cfg.proxy,
        .store = store,
        .fs = fs,
        .on_register = on_register,
        .register_ud = register_ud,
        .trace = trace,
        .metrics = metrics,
        .metrics_listen = cfg.metrics_listen,
        .gc = gc ? sl_gc_control : NULL,
        .gc_ud = gc,
    };
    sl_metrics_on_collect(metrics, collect_snapshotter, srv);
    r = sl_control_start(&co, &ctl, &err);
    if (r < 0) {
        sl_log_error_err(&err, r, "start the control API on %s", cfg.control_socket);
        sl_gc_free(gc);
        sl_grpc_server_stop(srv, STOP_GRACE_MS);
        sl_remote_free(remote);
        sl_mat_free(mat);
        sl_snap_close(snap);
        sl_fs_free(fs);
        sl_store_free(store);
        sl_daemon_config_free(&cfg);
        return 1;
    }
    log_info("control API on %s", cfg.control_socket);
    _cleanup_(sl_handoff_freep) struct sl_handoff *handoff = NULL;
    if (*handoff_path) {
        r = sl_handoff_listen(handoff_path, handoff_requested, NULL, &handoff, &err);
        if (r < 0) {
            sl_log_error_err(&err, r, "restarts will unmount the fs");
            sl_error_free(&err);
        }
    }

    /* Kubernetes node watcher: Pods bound to this node and the Node's prewarm annotation start
     * pulls through the control API; an error here is logged, the daemon serves on. */
    struct sl_nodewatch *nodewatch = NULL;
    if (cfg.node_name && *cfg.node_name) {
        struct sl_nodewatch_options nwo = {.node_name = cfg.node_name,
                                           .kubeconfig = cfg.kubeconfig,
                                           .control = ctl,
                                           .trace = trace,
                                           .metrics = metrics};
        r = sl_nodewatch_start(&nwo, &nodewatch, &err);
        if (r < 0) {
            sl_log_error_err(&err, r, "start the node watcher (no Kubernetes prefetch)");
            sl_error_free(&err);
        }
    }

    int sig = 0;
    do /* a stray HANDOFF_SIGNAL without a successor waiting changes nothing */
        sigwait(&set, &sig);
    while (sig == HANDOFF_SIGNAL && !(handoff && sl_handoff_asked(handoff)));
    bool give = sig == HANDOFF_SIGNAL;
    log_info("%s: stopping%s", strsignal(sig),
             give ? " (a successor takes the FUSE connection)" : "");
    sl_nodewatch_stop(nodewatch);
    if (give && !sl_fs_wait_unparked(fs, HANDOFF_DRAIN_MS))
        log_warn("reads still wait for chunks after %d ms: they fail", HANDOFF_DRAIN_MS);
    sl_control_stop(ctl);
    sl_gc_free(gc);
    sl_grpc_server_stop(srv, STOP_GRACE_MS);
    sl_remote_free(remote); /* pulls in flight stop at their next event */
    sl_mat_free(mat);
    sl_snap_close(snap);
    struct sl_fs_handoff out = {.fd = -1};
    _cleanup_free_ char *abandoned = NULL; /* the mount to undo when the give fails */
    if (give) {
        r = sl_fs_detach(fs, &out, &err);
        if (r < 0) {
            sl_log_error_err(&err, r, "detach the fs (it is unmounted instead)");
            sl_error_free(&err);
        } else {
            abandoned = sl_xstrdup(sl_fs_mountpoint(fs));
        }
    }
    sl_fs_free(fs); /* unmounts unless detached */
    sl_store_free(store);
    sl_trace_close(TAKE_PTR(trace));
    int rc = 0;
    if (out.fd >= 0) {
        r = sl_handoff_give(handoff, &out, HANDOFF_ACK_MS, &err);
        close(out.fd);
        if (r < 0) {
            sl_log_error_err(&err, r, "hand the FUSE connection over (the successor is gone)");
            sl_error_free(&err);
            if (abandoned)
                sl_fs_unmount_abandoned(abandoned); /* no server would ever answer it */
            rc = 1;
        } else {
            log_info("FUSE connection handed over");
        }
    }
    log_info("stopped");
    sl_daemon_config_free(&cfg);
    return rc;
}
