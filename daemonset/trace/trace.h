/* trace.h — the startup-trace recorder ("optimizer") and its report to the proxy
 * (docs/protocol.md, `POST /starlight/report`, and §4 `/v1/optimizer`, `/v1/report`,
 * `/v1/traces`).
 *
 * Recording: with the optimizer on, every open/read the fs reports (sl_fs_event) is attributed
 * to a container through the caller's cgroup (/proc/PID/cgroup: containerd+runc put each
 * container in a cgroup whose path ends with its id; under Kubernetes the pod/container
 * cgroup; accesses from the root cgroup "/" are host processes and ignored). A trace is keyed
 * by cgroup path and holds the first access to each (layer, path);
 * its start is the first access seen in that cgroup (heuristic until a node watcher reports
 * the container's real start). `optimizer off` (or a new `optimizer on`) finishes the traces
 * in progress; only finished traces are reported.
 *
 * Image attribution (heuristic, at report time): every pull records its image (manifest
 * digest and layer digests by stack index); a trace belongs to the image whose layer set
 * contains every layer the trace touched; several candidates → the one with the fewest layers,
 * then the most recently pulled. A trace no image explains is dropped with the upload.
 *
 * Groups: `optimizer on --group G` puts every trace of G into one group document (several
 * images on one timeline: each container's times are shifted by its start minus the earliest
 * start of the group — joint optimisation). Without a group (the name "default") each trace
 * is a group document of its own.
 *
 * Persistence: SQLite (ROOT/trace.db, WAL). Accesses are buffered in memory by the fs hook
 * and written by a writer thread every 100 ms; the optimizer state and all traces survive a
 * daemon restart; traces are deleted only after the proxy answered 200 to the upload.
 *
 * Thread-safety: every function is thread-safe. sl_trace_fs_event runs on FUSE worker
 * threads: it reads /proc/PID/cgroup (the process may be gone later) and appends under a
 * short lock; it never blocks on SQLite. Errors: negative errno + sl_error_t. */
#ifndef SL_DAEMON_TRACE_H
#define SL_DAEMON_TRACE_H

#include "delta.h"
#include "error.h"
#include "fs.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Events buffered between two writer passes; more are dropped (and counted). */
#define SL_TRACE_MAX_PENDING (1u << 20)
/* Limits of one trace document (docs/protocol.md). */
#define SL_TRACE_DOC_MAX_GROUPS   1024
#define SL_TRACE_DOC_MAX_IMAGES   64
#define SL_TRACE_DOC_MAX_ACCESSES (1u << 20)
#define SL_TRACE_DEFAULT_GROUP    "default"

struct sl_trace;

/* Opens (creating) the trace database at `db_path`, restores the optimizer state and starts
 * the writer thread. */
int sl_trace_open(const char *db_path, struct sl_trace **ret, sl_error_t *err);
/* Flushes the buffer, stops the writer, closes the database. NULL is fine. Traces in
 * progress stay in progress (a restart continues them). */
void sl_trace_close(struct sl_trace *t);
SL_DEFINE_CLEANUP(struct sl_trace, sl_trace_close)

/* The fs hook (sl_fs_options.on_event, ud = struct sl_trace *). Quick when the optimizer is
 * off (one atomic load). */
void sl_trace_fs_event(void *ud, const struct sl_fs_event *ev);

/* Records one event for `cgroup` directly (the hook after the cgroup lookup; tests). */
void sl_trace_record(struct sl_trace *t, const char *cgroup, const char *layer_digest,
                     const char *path, int64_t ts_ns);

/* Writes buffered events to the database now. */
int sl_trace_flush(struct sl_trace *t, sl_error_t *err);

/* Turns the optimizer on (group NULL/"" = "default") or off. Either way the traces in
 * progress are finished first. Persisted. *ret_finished (optional): traces finished. */
int sl_trace_set_optimizer(struct sl_trace *t, bool enable, const char *group, int *ret_finished,
                           sl_error_t *err);
bool sl_trace_enabled(struct sl_trace *t);

/* Remembers an image: manifest digest and its layer digests by stack index (0 = bottom). */
int sl_trace_add_image(struct sl_trace *t, const char *manifest_digest, const char *const *layers,
                       size_t n_layers, sl_error_t *err);

/* A pull registration hook (sl_pull_register_fn) that records the image, then calls the hook
 * set with sl_trace_chain_register (if any). ud = struct sl_trace *. */
int sl_trace_pull_register(void *ud, const struct sl_delta_header *h, const char *ns,
                           int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud,
                           sl_error_t *err);
void sl_trace_chain_register(struct sl_trace *t,
                             int (*fn)(void *ud, const struct sl_delta_header *h, const char *ns,
                                       int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud,
                                       sl_error_t *err),
                             void *ud);

/* {"optimizer":{"enabled","group"},"dropped":N,"traces":[{"id","cgroup","group","startNs",
 * "endNs","finished","accesses","layers"}]}. Caller owns *ret. */
int sl_trace_list(struct sl_trace *t, json_t **ret, sl_error_t *err);

/* Builds the trace document v1 of every finished trace. *ret_doc: NULL when there is nothing
 * to send. *ret_ids and *ret_n_ids (caller frees): the traces it covers (including those no image
 * explains, *ret_skipped of them). -E2BIG when the document exceeds the protocol limits. */
int sl_trace_build_report(struct sl_trace *t, json_t **ret_doc, int64_t **ret_ids,
                          size_t *ret_n_ids, int *ret_skipped, sl_error_t *err);

struct sl_trace_report_result {
    int groups, images, traces, accesses, skipped; /* images: summed over the groups */
    long status;                                   /* the proxy's HTTP status (0: none) */
    json_t *reply; /* the proxy's answer body when JSON (caller decrefs) */
};

/* Uploads every finished trace to `proxy_url`/starlight/report (`auth`: Authorization value
 * or NULL) and deletes them only once the proxy answered 200. Nothing to send: 0 and no
 * request. Errors: the transport's errno (-ECONNREFUSED…), -EBADMSG when the proxy refused
 * (its status and message in the chain); the traces are kept in both cases. */
int sl_trace_report(struct sl_trace *t, const char *proxy_url, const char *auth,
                    struct sl_trace_report_result *res, sl_error_t *err);

/* Extracts the cgroup path from the text of /proc/PID/cgroup: the cgroup v2 line ("0::/…")
 * when it is not "/", else the v1 "pids", "memory" or "name=systemd" hierarchy, else the first
 * path. *ret (caller frees). -ENOENT when no path is found. */
int sl_trace_cgroup_parse(const char *text, char **ret);

#endif
