/* manager.h — the controllers' side of starlight-controller: the Kubernetes API client, leader
 * election with a Lease (common/k8s lease.h) and, while leading (or always with
 * leader_elect = false), the controllers: update pre-warming (prewarm.h) and trace Job
 * follow-up (tracejobs.h). Losing the Lease stops them; regaining it starts them again (their
 * first list re-derives everything: level-triggered). Also answers the webhook's question
 * whether a namespace is labelled starlight-c.dev/provision=enabled (cached 30 s).
 * Thread-safety: start/stop from one thread; status and namespace_opted_in from any. */
#ifndef SL_CONTROLLER_MANAGER_H
#define SL_CONTROLLER_MANAGER_H

#include "error.h"
#include "metrics.h"

#include <stdbool.h>
#include <stdint.h>

struct sl_manager_options {
    const char *kubeconfig; /* NULL/"" = in-cluster, else the file (common/k8s rules) */
    bool leader_elect;
    const char *lease_namespace; /* NULL = the client's namespace */
    const char *lease_name;
    const char *identity; /* NULL = the host name; a random suffix is added */
    int64_t lease_duration_ms, renew_deadline_ms, retry_period_ms;
    bool prewarm, trace_jobs;
    int64_t trace_grace_ms; /* 0 = 120 s */
    struct sl_metrics *metrics;
};

struct sl_manager;

int sl_manager_start(const struct sl_manager_options *o, struct sl_manager **ret, sl_error_t *err);
void sl_manager_stop(struct sl_manager *m); /* releases the Lease; NULL is fine */
/* "leader", "standby" or "single" (no election), for /readyz. */
const char *sl_manager_status(void *m);
/* 1 when namespace `ns` carries the label starlight-c.dev/provision=enabled, 0 when not,
 * negative errno when the API cannot tell. */
int sl_manager_namespace_opted_in(void *m, const char *ns);

#endif
