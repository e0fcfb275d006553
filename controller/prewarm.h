/* prewarm.h — update pre-warming (docs/kubernetes.md §1, §10): when a Deployment, StatefulSet or
 * DaemonSet's pod template names a new image for a container, every node that runs a Starlight
 * pod of that workload (label starlight-c.dev/provision=true, matching the workload's
 * spec.selector.matchLabels) with the old image of that container gets an entry
 * {"from": OLD, "to": NEW, "owner": "NS/Kind/NAME", "generation": N} in its annotation
 * starlight-c.dev/prewarm (merge patch); the node daemon then fetches the delta OLD → NEW
 * before the rollout replaces the pod there.
 *
 * Level-triggered: the desired entries are recomputed from the cached workloads and pods on
 * every change (and after every relist), so a restarted controller or a missed watch event
 * loses nothing; entries already on the node are not written again. At most
 * SL_PREWARM_MAX_ENTRIES entries per node (newest kept; a newer generation of an owner replaces
 * its older entries).
 *
 * Four reflectors (common/k8s): apps/v1 deployments, statefulsets, daemonsets (all namespaces)
 * and v1 pods labelled starlight-c.dev/provision=true. Callbacks and node writes run on the
 * reflector threads; node writes are serialised. Thread-safety: start/stop from one thread. */
#ifndef SL_CONTROLLER_PREWARM_H
#define SL_CONTROLLER_PREWARM_H

#include "error.h"
#include "k8s.h"
#include "metrics.h"

#define SL_PREWARM_ANNOTATION  "starlight-c.dev/prewarm"
#define SL_PREWARM_MAX_ENTRIES 32

struct sl_prewarm_options {
    struct sl_k8s_client *client; /* borrowed */
    struct sl_metrics *metrics;   /* borrowed, may be NULL */
};

struct sl_prewarm;

int sl_prewarm_start(const struct sl_prewarm_options *o, struct sl_prewarm **ret, sl_error_t *err);
void sl_prewarm_stop(struct sl_prewarm *p); /* NULL is fine */

/* The pure part, for tests: the entries (array of {node, from, to, owner, generation}) that
 * `workload` (of `kind`) implies given `pods` (an array of Pod objects). New reference. */
json_t *sl_prewarm_desired(const char *kind, const json_t *workload, const json_t *pods);

/* Merges `entry` into the JSON text of a node's annotation (NULL/garbage = empty list): drops
 * entries of the same owner with an older generation, keeps the list at
 * SL_PREWARM_MAX_ENTRIES (oldest dropped). *ret_text (caller frees) is the new annotation, or
 * NULL when the entry is already there (nothing to write). */
int sl_prewarm_merge(const char *current, const json_t *entry, char **ret_text);

#endif
