/* metrics.h — a small Prometheus metrics registry: counters, gauges and histograms with
 * labels, rendered in the text exposition format (version 0.0.4).
 *
 *     struct sl_metrics *m = sl_metrics_new();
 *     struct sl_metric *pulls = sl_metrics_counter(m, "starlight_pulls_total", "Pulls");
 *     sl_metric_add(pulls, "result=\"ok\"", 1);
 *     sl_metrics_render(m, &buf);
 *
 * Families are created at start-up and live as long as the registry; a series (one label set,
 * written as the text between the braces, NULL for none) is created on first use. Collectors
 * registered with sl_metrics_on_collect run at the start of each render, to set gauges from
 * other modules' stats. Thread-safe: one mutex per registry (collectors run under it and may
 * call the sl_metric_* functions). Generic: the proxy can use it too. */
#ifndef SL_BASE_METRICS_H
#define SL_BASE_METRICS_H

#include "buf.h"
#include "cleanup.h"

#include <stddef.h>

struct sl_metrics;
struct sl_metric;

struct sl_metrics *sl_metrics_new(void);
void sl_metrics_free(struct sl_metrics *m); /* NULL is fine */
SL_DEFINE_CLEANUP(struct sl_metrics, sl_metrics_free)

/* Families; `name` and `help` are copied. Returns the existing family for a known name. */
struct sl_metric *sl_metrics_counter(struct sl_metrics *m, const char *name, const char *help);
struct sl_metric *sl_metrics_gauge(struct sl_metrics *m, const char *name, const char *help);
/* `bounds`: n ascending upper bounds (the +Inf bucket is implicit); copied. */
struct sl_metric *sl_metrics_histogram(struct sl_metrics *m, const char *name, const char *help,
                                       const double *bounds, size_t n);

/* All accept a NULL family (no-op), so optional wiring needs no checks. */
void sl_metric_add(struct sl_metric *f, const char *labels, double v);     /* counter, gauge */
void sl_metric_set(struct sl_metric *f, const char *labels, double v);     /* gauge (or counter
                                                                              from a collector) */
void sl_metric_observe(struct sl_metric *f, const char *labels, double v); /* histogram */

typedef void (*sl_metrics_collect_fn)(void *ud, struct sl_metrics *m);
void sl_metrics_on_collect(struct sl_metrics *m, sl_metrics_collect_fn fn, void *ud);

/* Appends the exposition text to `out`. Returns 0 or -EFBIG (out's cap). */
int sl_metrics_render(struct sl_metrics *m, struct sl_buf *out);

#define SL_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif
