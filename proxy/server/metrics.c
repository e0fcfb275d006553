/* metrics.c — Prometheus text for the server's counters (metrics.h). */
#include "metrics.h"
#include "cleanup.h"

#include <inttypes.h>

static const int statuses[SL_METRICS_N_STATUS - 1] = {200, 206, 400, 401, 403, 404, 405,
                                                      411, 413, 416, 422, 500, 501, 503};

void sl_metrics_request(struct sl_metrics *m, enum sl_route route, int status)
{
    size_t i = 0;
    while (i < SL_ELEMENTSOF(statuses) && statuses[i] != status)
        i++;
    atomic_fetch_add(&m->requests[route < SL_ROUTE_COUNT ? route : SL_ROUTE_UNKNOWN][i], 1);
}

static int counter(struct sl_buf *out, const char *name, const char *help, const char *type,
                   uint64_t v)
{
    return sl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n%s %" PRIu64 "\n", name, help, name,
                         type, name, v);
}

int sl_metrics_render(struct sl_metrics *m, size_t workers, size_t workers_busy, size_t jobs_queued,
                      struct sl_buf *out)
{
    int r = sl_buf_puts(out, "# HELP starlight_proxy_http_requests_total HTTP requests by "
                             "route and status.\n"
                             "# TYPE starlight_proxy_http_requests_total counter\n");
    for (int route = 0; route < SL_ROUTE_COUNT && r >= 0; route++)
        for (size_t i = 0; i < SL_METRICS_N_STATUS && r >= 0; i++) {
            uint64_t v = atomic_load(&m->requests[route][i]);
            if (v == 0)
                continue;
            char code[8];
            if (i < SL_ELEMENTSOF(statuses))
                snprintf(code, sizeof(code), "%d", statuses[i]);
            else
                snprintf(code, sizeof(code), "other");
            r = sl_buf_printf(out,
                              "starlight_proxy_http_requests_total{route=\"%s\",code=\"%s\"} "
                              "%" PRIu64 "\n",
                              sl_request_route_info((enum sl_route)route)->name, code, v);
        }
    struct {
        const char *name, *help, *type;
        uint64_t v;
    } rows[] = {
        {"starlight_proxy_delta_planned_bytes_total",
         "Bytes of delta responses planned (Content-Length).", "counter",
         atomic_load(&m->delta_planned_bytes)},
        {"starlight_proxy_delta_payload_bytes_total", "Payload bytes (gzip members) planned.",
         "counter", atomic_load(&m->delta_payload_bytes)},
        {"starlight_proxy_delta_saved_bytes_total",
         "Compressed bytes not sent because the worker held the content.", "counter",
         atomic_load(&m->delta_saved_bytes)},
        {"starlight_proxy_delta_sent_bytes_total", "Delta body bytes written to clients.",
         "counter", atomic_load(&m->delta_sent_bytes)},
        {"starlight_proxy_delta_streams_started_total", "Delta streams started.", "counter",
         atomic_load(&m->streams_started)},
        {"starlight_proxy_delta_streams_completed_total", "Delta streams sent completely.",
         "counter", atomic_load(&m->streams_completed)},
        {"starlight_proxy_delta_streams_aborted_total",
         "Delta streams whose client disconnected first.", "counter",
         atomic_load(&m->streams_aborted)},
        {"starlight_proxy_delta_streams_failed_total",
         "Delta streams cut because a payload read failed.", "counter",
         atomic_load(&m->streams_failed)},
        {"starlight_proxy_delta_streams_in_flight", "Delta streams being sent now.", "gauge",
         (uint64_t)atomic_load(&m->streams_in_flight)},
        {"starlight_proxy_auth_failures_total", "Requests refused by authentication.", "counter",
         atomic_load(&m->auth_failures)},
        {"starlight_proxy_http_connections", "Open HTTP connections.", "gauge",
         (uint64_t)atomic_load(&m->connections)},
        {"starlight_proxy_workers", "Worker threads.", "gauge", workers},
        {"starlight_proxy_workers_busy", "Worker threads running a job.", "gauge", workers_busy},
        {"starlight_proxy_jobs_queued", "Jobs waiting for a worker.", "gauge", jobs_queued},
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(rows) && r >= 0; i++)
        r = counter(out, rows[i].name, rows[i].help, rows[i].type, rows[i].v);
    return r;
}
