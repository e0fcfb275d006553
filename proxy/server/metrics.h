/* metrics.h — the server's Prometheus counters.
 *
 * Plain atomics: any thread may count, /metrics renders a snapshot. The core's own counters
 * (database, registry, cache) are appended by the /metrics handler via sl_core_metrics(). */
#ifndef SL_PROXY_METRICS_H
#define SL_PROXY_METRICS_H

#include "buf.h"
#include "request.h"

#include <stdatomic.h>
#include <stdint.h>

#define SL_METRICS_N_STATUS 15 /* tracked statuses + "other" */

struct sl_metrics {
    atomic_uint_fast64_t requests[SL_ROUTE_COUNT][SL_METRICS_N_STATUS];
    atomic_uint_fast64_t delta_planned_bytes; /* Content-Length of delta responses */
    atomic_uint_fast64_t delta_payload_bytes; /* payload part of the plans */
    atomic_uint_fast64_t delta_saved_bytes;   /* not sent thanks to dedup */
    atomic_uint_fast64_t delta_sent_bytes;    /* body bytes written to clients */
    atomic_uint_fast64_t streams_started;
    atomic_uint_fast64_t streams_completed;
    atomic_uint_fast64_t streams_aborted; /* client went away */
    atomic_uint_fast64_t streams_failed;  /* payload read failed after the headers */
    atomic_int_fast64_t streams_in_flight;
    atomic_uint_fast64_t auth_failures;
    atomic_int_fast64_t connections;
};

void sl_metrics_request(struct sl_metrics *m, enum sl_route route, int status);
/* Renders the server's metrics (Prometheus text format 0.0.4) with the pool's gauges. */
int sl_metrics_render(struct sl_metrics *m, size_t workers, size_t workers_busy, size_t jobs_queued,
                      struct sl_buf *out);

#endif
