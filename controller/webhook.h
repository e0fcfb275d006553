/* webhook.h — starlight-controller's HTTP side (libwebsockets + OpenSSL; lws only here):
 *
 *   HTTPS --webhook-listen   POST /mutate            AdmissionReview v1 → review with JSONPatch
 *                            POST /mutate-namespace  the same, the namespace counts as opted in
 *                                                    (registered with a namespaceSelector)
 *                            GET  /healthz, /readyz  readiness over the webhook's own port
 *   HTTP  --metrics-listen   GET  /metrics, /healthz, /readyz
 *
 * One event-loop thread (the caller of sl_webhook_run) owns every lws object; admission
 * decisions (which may ask the proxy, blocking) run on a small pool of worker threads that
 * hand the answer back through a ready list and lws_cancel_service(). A malformed review gets
 * HTTP 400 with {"error": "..."} and a log line; bodies over SL_REVIEW_MAX get 413. The
 * certificate files are checked every 5 s; when they change (a rotated Secret) the new pair is
 * loaded for new connections.
 *
 * Thread-safety: sl_webhook_stop may be called from any thread or a signal handler. */
#ifndef SL_CONTROLLER_WEBHOOK_H
#define SL_CONTROLLER_WEBHOOK_H

#include "error.h"
#include "metrics.h"
#include "mutate.h"

#include <stdbool.h>

struct sl_webhook_config {
    const char *listen_addr; /* NULL = every interface */
    int port;                /* 0 = the kernel picks */
    const char *tls_cert, *tls_key;
    const char *metrics_addr; /* NULL = every interface */
    int metrics_port;         /* < 0 = no metrics listener */
    int workers;
    struct sl_mutate_options mutate; /* borrowed; namespace_opted_in is set per path */
    struct sl_metrics *metrics;      /* borrowed */
    /* Optional: is the namespace opted in by its label? 1/0, negative = cannot tell (API
     * unavailable). Called on a worker thread. */
    int (*namespace_opted_in)(void *ud, const char *ns);
    void *namespace_ud;
    /* Optional: extra readiness text for /readyz (e.g. "leader" / "standby"). */
    const char *(*status)(void *ud);
    void *status_ud;
};

struct sl_webhook;

/* Binds both listeners (TLS files are loaded here: a bad file fails now) and starts the
 * workers. -EIO/-EADDRINUSE with a message. */
int sl_webhook_new(const struct sl_webhook_config *cfg, struct sl_webhook **ret, sl_error_t *err);
int sl_webhook_port(struct sl_webhook *w);         /* the HTTPS port bound */
int sl_webhook_metrics_port(struct sl_webhook *w); /* the metrics port bound, or -1 */
/* Runs the loop on the calling thread until sl_webhook_stop. Returns 0 or -EIO. */
int sl_webhook_run(struct sl_webhook *w);
void sl_webhook_stop(struct sl_webhook *w);
void sl_webhook_free(struct sl_webhook *w); /* NULL is fine */

#endif
