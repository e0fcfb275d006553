/* nodewatch.h — the daemon's Kubernetes node watcher (docs/kubernetes.md §5).
 *
 * Two reflectors (common/k8s):
 *   pods  ?fieldSelector=spec.nodeName=NODE&labelSelector=starlight-c.dev/provision=true
 *         A Pod seen bound to this node (for the first time, by uid) starts the delta pull of
 *         each image of its app containers and initContainers (except `starlight-init`) into
 *         containerd namespace `k8s.io`, through the control API's pull (sl_control_pull: the
 *         same path as POST /v1/pull), at most one pull per image in flight; the proxy is the
 *         Pod's `starlight-c.dev/proxy` annotation or the default profile. Events on the Pod:
 *         StarlightPrefetching, StarlightPrefetched, StarlightPrefetchFailed.
 *         A Pod annotated `starlight-c.dev/trace: "true"` opens a trace window: the optimizer is
 *         turned on (group `starlight-c.dev/trace-group`), and `trace-duration` after the Pod is
 *         seen running (or bound, if it never reports running) — or when it ends — the window
 *         closes: optimizer off, finished traces reported to the proxy, an Event
 *         StarlightTraceReported/StarlightTraceFailed on the Pod. Overlapping windows share one
 *         optimizer session (the first group wins). The Pod's own traces are those whose cgroup
 *         path holds its uid (kubelet: ".../pod<uid>/<container>" or "…pod<uid_with_underscores>
 *         .slice"); containers of other Pods starting in the same window are traced too.
 *   node  ?fieldSelector=metadata.name=NODE
 *         `starlight-c.dev/prewarm` (JSON [{"from","to","owner","generation"}]) → each `to` not
 *         yet listed in `starlight-c.dev/prewarmed` is pulled (with `from` as a held-image
 *         hint), then added to `starlight-c.dev/prewarmed` with a merge patch.
 *
 * Metrics: starlight_k8s_watch_events_total{resource}, starlight_k8s_relists_total{resource},
 * starlight_k8s_pulls_total{reason="pod|prewarm",result="ok|error"},
 * starlight_k8s_traces_total{result}.
 * Thread-safety: start/stop from one thread; callbacks run on the reflector threads, pulls on
 * a small worker pool. Errors: negative errno + sl_error_t from start (configuration). */
#ifndef SL_DAEMON_NODEWATCH_H
#define SL_DAEMON_NODEWATCH_H

#include "annotations.h"
#include "control.h"
#include "error.h"
#include "metrics.h"
#include "trace.h"

#define SL_NODEWATCH_NAMESPACE      "k8s.io"
#define SL_NODEWATCH_WORKERS        4
#define SL_NODEWATCH_MAX_POD_IMAGES 64 /* images of one Pod considered */

struct sl_nodewatch_options {
    const char *node_name;      /* required */
    const char *kubeconfig;     /* NULL/"" = in-cluster, else $KUBECONFIG / ~/.kube/config */
    struct sl_control *control; /* borrowed: runs the pulls */
    struct sl_trace *trace;     /* borrowed, may be NULL (trace annotations are ignored) */
    struct sl_metrics *metrics; /* borrowed, may be NULL */
    const char *ctrd_namespace; /* NULL = "k8s.io" */
};

struct sl_nodewatch;

int sl_nodewatch_start(const struct sl_nodewatch_options *o, struct sl_nodewatch **ret,
                       sl_error_t *err);
/* Stops the reflectors, cancels queued pulls and aborts running ones, closes an open trace
 * window without reporting (its traces stay for a later report). NULL is fine. */
void sl_nodewatch_stop(struct sl_nodewatch *w);

#endif
