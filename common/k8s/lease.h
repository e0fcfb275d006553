/* lease.h — leader election with a coordination.k8s.io/v1 Lease, as client-go does it.
 *
 * Every retry period (with jitter) the elector runs tryAcquireOrRenew:
 *   GET the Lease; 404 → POST one naming us (409 on that POST = another replica won).
 *   Held by someone else and still valid → wait. Valid means: our local clock at the moment we
 *   last saw the record change + leaseDurationSeconds is in the future (clock-skew tolerant;
 *   the remote renewTime is never compared with our clock).
 *   Otherwise PUT the record we read (its resourceVersion kept) with holder = us,
 *   leaseTransitions + 1 when the holder changes, acquireTime = renewTime = now; a 409 is a
 *   lost race. As leader the same PUT renews renewTime (acquireTime and transitions kept).
 *   No successful renewal within the renew deadline → stop leading (on_stopped_leading).
 * On a clean stop a leader releases: holder "" and leaseDurationSeconds 1, so a standby takes
 * over at once. Not fencing: what the leader does must be idempotent.
 *
 * Callbacks run on the elector's thread. Thread-safety: is_leader/stop from any thread. */
#ifndef SL_K8S_LEASE_H
#define SL_K8S_LEASE_H

#include "k8s.h"

struct sl_k8s_lease;

struct sl_k8s_lease_options {
    const char *ns;             /* Lease namespace (NULL = the client's namespace) */
    const char *name;           /* Lease name */
    const char *identity;       /* holderIdentity (pod name + random suffix is usual) */
    unsigned lease_duration_ms; /* 0 = 15000 (sent as whole seconds, at least 1) */
    unsigned renew_deadline_ms; /* 0 = 10000; must be < lease duration */
    unsigned retry_period_ms;   /* 0 = 2000 */
    bool no_release;            /* keep the Lease on stop (default: release it) */
    void (*on_started_leading)(void *ud);
    void (*on_stopped_leading)(void *ud);
    void (*on_new_leader)(void *ud, const char *identity); /* holder seen changing ("" = none) */
    void *userdata;
};

/* Copies the options. The client must outlive the elector. -EINVAL for bad timings. */
int sl_k8s_lease_new(struct sl_k8s_client *c, const struct sl_k8s_lease_options *opts,
                     struct sl_k8s_lease **ret, sl_error_t *err);
/* Runs the election loop on a new thread. */
int sl_k8s_lease_start(struct sl_k8s_lease *l, sl_error_t *err);
/* Ends the loop (releasing the Lease when leading, unless no_release), calls
 * on_stopped_leading if it was leading, joins the thread. Safe to call twice. */
void sl_k8s_lease_stop(struct sl_k8s_lease *l);
/* Stops and frees. */
void sl_k8s_lease_free(struct sl_k8s_lease *l);
bool sl_k8s_lease_is_leader(struct sl_k8s_lease *l);
/* Current holder as last observed (caller frees; "" = none; NULL = never read). */
char *sl_k8s_lease_holder(struct sl_k8s_lease *l);

/* One tryAcquireOrRenew step (what the loop does each retry period); *ret_leader says whether
 * we hold the Lease afterwards. Negative errno for request failures (-ESTALE/-EEXIST = a lost
 * race). Not to be mixed with a running loop. */
int sl_k8s_lease_try(struct sl_k8s_lease *l, bool *ret_leader, sl_error_t *err);
/* Gives the Lease up if we hold it (holder "", duration 1 s). */
int sl_k8s_lease_release(struct sl_k8s_lease *l, sl_error_t *err);

#endif
