/* control.h — the daemon's control API: HTTP/1.1 + JSON on a unix socket (docs/protocol.md,
 * "Daemon control API"), used by ctr-starlight and curl (`curl --unix-socket SOCK
 * http://localhost/v1/status`).
 *
 *     POST /v1/pull      {ref, platform?, namespace?, proxy?, insecure?} → JSON lines
 *                        (sl_control_pull runs the same pull for callers in the daemon)
 *     GET  /v1/status    layers (digest, complete, bytes local/total), pulls in flight
 *     GET  /v1/ping      ?proxy=NAME|URL → RTT of the proxy's /health-check
 *     GET  /v1/proxies   proxy profiles (credentials redacted)
 *     POST /v1/proxies   {name, url, user?, token?} adds or replaces a profile
 *     GET  /v1/version
 *     POST /v1/optimizer {enable, group?} starts/stops recording startup traces (trace.h)
 *     POST /v1/report    {proxy?} uploads the finished traces to the proxy's /starlight/report
 *     GET  /v1/traces    traces recorded, not yet reported
 *     POST /v1/gc        {grace?} garbage collection of the store → what was freed (gc.h)
 *     GET  /metrics      Prometheus text (when options.metrics is set; docs/operations.md)
 *
 * One accept thread; one thread per connection, at most SL_CONTROL_MAX_CONN at once (more get
 * 503). Every response closes its connection (`Connection: close`), so the pull stream ends
 * with the connection. Requests are capped (SL_CONTROL_MAX_HEAD header bytes,
 * SL_CONTROL_MAX_BODY body bytes); the socket is created mode 0660, owned by the daemon's user.
 * Profiles live in ROOT/proxies.json (mode 0600, replaced atomically); the --proxy of the
 * daemon is the profile "default" unless the file defines one.
 *
 * Errors: negative errno + sl_error_t from start (bind/listen failures). Thread-safety:
 * start/stop from one thread; handlers run concurrently over the thread-safe store and fs. */
#ifndef SL_DAEMON_CONTROL_H
#define SL_DAEMON_CONTROL_H

#include "error.h"
#include "fs.h"
#include "metrics.h"
#include "pull.h"
#include "request.h"
#include "store.h"
#include "trace.h"

#define SL_CONTROL_MAX_CONN 64
#define SL_CONTROL_MAX_HEAD (16u << 10)

struct sl_control_options {
    const char *socket_path;
    const char *root;                /* daemon root: proxies.json lives here */
    const char *default_proxy;       /* --proxy, or NULL */
    struct sl_store *store;          /* borrowed, must outlive the server */
    struct sl_fs *fs;                /* borrowed, may be NULL */
    sl_pull_register_fn on_register; /* containerd registration (NULL = none) */
    void *register_ud;
    struct sl_trace *trace;     /* borrowed, may be NULL (the trace routes answer 404) */
    struct sl_metrics *metrics; /* borrowed, may be NULL (/metrics answers 404); the server
                                 * adds its pull/store/fs families and a collector to it */
    const char *metrics_listen; /* "ADDR:PORT" (IPv4 or [IPv6]): also serve GET /metrics over
                                 * TCP there (only that route), or NULL */
    /* POST /v1/gc: runs a collection (grace_s < 0: the daemon's default) and returns its report
     * as JSON object text (malloc'd). NULL: the route answers 404. */
    int (*gc)(void *ud, int64_t grace_s, char **ret_json, sl_error_t *err);
    void *gc_ud;
};

struct sl_control;

/* Binds the socket (a stale socket file is replaced; its directory is created) and starts
 * serving. Caller stops with sl_control_stop. */
int sl_control_start(const struct sl_control_options *o, struct sl_control **ret, sl_error_t *err);
/* Stops accepting, aborts pulls in flight (they fail with -ECANCELED), waits for connection
 * threads, removes the socket file. NULL is fine. */
void sl_control_stop(struct sl_control *c);

/* One pull as POST /v1/pull runs it (proxy profile resolution, the pull listed in
 * /v1/status while it runs, metrics, logs), for callers inside the daemon (the node
 * watcher). Blocks until the pull ends; `on_event` (optional) sees every phase and may abort
 * with a negative errno. Pulls fail with -ECANCELED once the server stops; -EAGAIN when
 * SL_CONTROL's in-flight cap is reached; -ENOENT for an unknown proxy profile. */
struct sl_control_pull {
    const char *ref;
    const char *platform; /* NULL = the host's */
    const char *ns;       /* containerd namespace (NULL = "default") */
    const char *proxy;    /* profile name or URL; NULL/"" = "default" */
    bool insecure;
    const char *const *from; /* images held (hint for the delta), NULL-terminated, or NULL */
    sl_pull_event_fn on_event;
    void *event_ud;
};
int sl_control_pull(struct sl_control *c, const struct sl_control_pull *p,
                    struct sl_pull_stats *ret_stats, sl_error_t *err);
/* Resolves a proxy profile name (NULL/"" = "default") or URL into a URL and an Authorization
 * value (or NULL); both caller-owned. -ENOENT for an unknown profile. */
int sl_control_proxy(struct sl_control *c, const char *name, char **ret_url, char **ret_auth,
                     sl_error_t *err);

/* HTTP status for a negative errno (ENOENT 404, EINVAL 400, EACCES 403, EAGAIN 503, …). */
int sl_control_http_status(int r);

#endif
