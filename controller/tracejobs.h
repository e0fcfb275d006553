/* tracejobs.h — trace Job follow-up (docs/kubernetes.md §1, §10). A Job whose pod template is
 * annotated starlight-c.dev/trace: "true" is a trace Job: its Pod runs the image to trace on a
 * node whose daemon records the startup accesses and reports them to the proxy, announcing the
 * outcome with an Event on the Pod (reason StarlightTraceReported, message "reported T traces
 * (M of this pod's containers), A accesses, G groups to URL", or StarlightTraceFailed).
 *
 * When the Job finishes (condition Complete or Failed), the controller writes the outcome on
 * the Job as the annotation starlight-c.dev/trace-result =
 * {"phase": "Reported"|"Failed", "images": [...], "accesses": N, "message": "..."} (merge
 * patch) and records an Event on the Job (StarlightTraceReported / StarlightTraceFailed): the
 * node's Event on the Job's Pod decides. A finished Job whose Pods have no trace Event yet is
 * looked at again every 2 s, up to the grace period, then marked Failed. Jobs that already carry
 * the annotation are left alone (idempotent across restarts and leader changes).
 *
 * One reflector on batch/v1 jobs (all namespaces) and one ticker thread. Thread-safety:
 * start/stop from one thread. */
#ifndef SL_CONTROLLER_TRACEJOBS_H
#define SL_CONTROLLER_TRACEJOBS_H

#include "error.h"
#include "k8s.h"
#include "metrics.h"

#include <stdint.h>

#define SL_TRACE_ANNOTATION        "starlight-c.dev/trace"
#define SL_TRACE_RESULT_ANNOTATION "starlight-c.dev/trace-result"

struct sl_tracejobs_options {
    struct sl_k8s_client *client; /* borrowed */
    struct sl_metrics *metrics;   /* borrowed, may be NULL */
    int64_t grace_ms;             /* wait for the node's report after completion; 0 = 120 s */
};

struct sl_tracejobs;

int sl_tracejobs_start(const struct sl_tracejobs_options *o, struct sl_tracejobs **ret,
                       sl_error_t *err);
void sl_tracejobs_stop(struct sl_tracejobs *t); /* NULL is fine */

/* The pure part, for tests: is `job` a finished trace Job without a result? Returns 0 (no),
 * 1 (Complete) or 2 (Failed; *ret_message borrowed from the condition). */
int sl_tracejobs_finished(const json_t *job, const char **ret_message);

/* Reads the trace outcome out of the Events of the Job's Pods (`events`: array of core/v1
 * Events, `pod_uids`: array of strings). Returns 1 Reported (*ret_accesses set), 2 Failed
 * (*ret_message borrowed), 0 none yet. */
int sl_tracejobs_outcome(const json_t *events, const json_t *pod_uids, long *ret_accesses,
                         const char **ret_message);

#endif
