/* metrics.c — Prometheus registry (see metrics.h). Families and series are linked lists:
 * a daemon has a few dozen series, and renders are rare (a scrape every few seconds). */
#include "metrics.h"

#include "cleanup.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

enum kind { K_COUNTER, K_GAUGE, K_HISTOGRAM };

struct series {
    struct series *next;
    char *labels; /* "" for none */
    double value;
    double sum;
    uint64_t count;
    uint64_t *buckets; /* histogram: one per bound, cumulative at render */
};

struct sl_metric {
    struct sl_metric *next;
    struct sl_metrics *m;
    enum kind kind;
    char *name, *help;
    double *bounds;
    size_t nbounds;
    struct series *series;
};

struct collector {
    sl_metrics_collect_fn fn;
    void *ud;
};

struct sl_metrics {
    pthread_mutex_t lock;
    struct sl_metric *first, **last;
    struct collector coll[16];
    size_t ncoll;
};

struct sl_metrics *sl_metrics_new(void)
{
    struct sl_metrics *m = sl_xcalloc(1, sizeof(*m));
    pthread_mutexattr_t a;
    pthread_mutexattr_init(&a);
    /* collectors call sl_metric_set while render holds the lock */
    pthread_mutexattr_settype(&a, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&m->lock, &a);
    pthread_mutexattr_destroy(&a);
    m->last = &m->first;
    return m;
}

void sl_metrics_free(struct sl_metrics *m)
{
    if (!m)
        return;
    for (struct sl_metric *f = m->first, *nf; f; f = nf) {
        nf = f->next;
        for (struct series *s = f->series, *ns; s; s = ns) {
            ns = s->next;
            free(s->labels);
            free(s->buckets);
            free(s);
        }
        free(f->name);
        free(f->help);
        free(f->bounds);
        free(f);
    }
    pthread_mutex_destroy(&m->lock);
    free(m);
}

static struct sl_metric *family(struct sl_metrics *m, enum kind k, const char *name,
                                const char *help, const double *bounds, size_t n)
{
    pthread_mutex_lock(&m->lock);
    struct sl_metric *f;
    for (f = m->first; f; f = f->next)
        if (strcmp(f->name, name) == 0)
            break;
    if (!f) {
        f = sl_xcalloc(1, sizeof(*f));
        f->m = m;
        f->kind = k;
        f->name = sl_xstrdup(name);
        f->help = sl_xstrdup(help ? help : "");
        if (n) {
            f->bounds = sl_xmalloc(n * sizeof(double));
            memcpy(f->bounds, bounds, n * sizeof(double));
            f->nbounds = n;
        }
        *m->last = f;
        m->last = &f->next;
    }
    pthread_mutex_unlock(&m->lock);
    return f;
}

struct sl_metric *sl_metrics_counter(struct sl_metrics *m, const char *name, const char *help)
{
    return family(m, K_COUNTER, name, help, NULL, 0);
}

struct sl_metric *sl_metrics_gauge(struct sl_metrics *m, const char *name, const char *help)
{
    return family(m, K_GAUGE, name, help, NULL, 0);
}

struct sl_metric *sl_metrics_histogram(struct sl_metrics *m, const char *name, const char *help,
                                       const double *bounds, size_t n)
{
    return family(m, K_HISTOGRAM, name, help, bounds, n);
}

/* Caller holds the lock. */
static struct series *series(struct sl_metric *f, const char *labels)
{
    if (!labels)
        labels = "";
    struct series **p = &f->series;
    for (; *p; p = &(*p)->next)
        if (strcmp((*p)->labels, labels) == 0)
            return *p;
    struct series *s = sl_xcalloc(1, sizeof(*s));
    s->labels = sl_xstrdup(labels);
    if (f->kind == K_HISTOGRAM)
        s->buckets = sl_xcalloc(f->nbounds ? f->nbounds : 1, sizeof(uint64_t));
    *p = s;
    return s;
}

void sl_metric_add(struct sl_metric *f, const char *labels, double v)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->m->lock);
    series(f, labels)->value += v;
    pthread_mutex_unlock(&f->m->lock);
}

void sl_metric_set(struct sl_metric *f, const char *labels, double v)
{
    if (!f)
        return;
    pthread_mutex_lock(&f->m->lock);
    series(f, labels)->value = v;
    pthread_mutex_unlock(&f->m->lock);
}

void sl_metric_observe(struct sl_metric *f, const char *labels, double v)
{
    if (!f || f->kind != K_HISTOGRAM)
        return;
    pthread_mutex_lock(&f->m->lock);
    struct series *s = series(f, labels);
    for (size_t i = 0; i < f->nbounds; i++)
        if (v <= f->bounds[i]) {
            s->buckets[i]++;
            break;
        }
    s->sum += v;
    s->count++;
    pthread_mutex_unlock(&f->m->lock);
}

void sl_metrics_on_collect(struct sl_metrics *m, sl_metrics_collect_fn fn, void *ud)
{
    pthread_mutex_lock(&m->lock);
    if (m->ncoll < SL_ELEMENTSOF(m->coll))
        m->coll[m->ncoll++] = (struct collector){fn, ud};
    pthread_mutex_unlock(&m->lock);
}

static void fmt_value(char *b, size_t n, double v)
{
    if (isinf(v))
        snprintf(b, n, "%s", v > 0 ? "+Inf" : "-Inf");
    else if (isnan(v))
        snprintf(b, n, "NaN");
    else if (v == floor(v) && fabs(v) < 1e15)
        snprintf(b, n, "%.0f", v);
    else /* shortest text that reads back as the same double */
        for (int prec = 15; prec <= 17; prec++) {
            snprintf(b, n, "%.*g", prec, v);
            if (strtod(b, NULL) == v)
                break;
        }
}

/* name{labels[,extra]} value */
static int sample(struct sl_buf *out, const char *name, const char *suffix, const char *labels,
                  const char *extra, double v)
{
    char val[64];
    fmt_value(val, sizeof(val), v);
    bool any = *labels || extra;
    return sl_buf_printf(out, "%s%s%s%s%s%s%s %s\n", name, suffix, any ? "{" : "", labels,
                         *labels && extra ? "," : "", extra ? extra : "", any ? "}" : "", val);
}

int sl_metrics_render(struct sl_metrics *m, struct sl_buf *out)
{
    static const char *const types[] = {"counter", "gauge", "histogram"};
    int r = 0;
    pthread_mutex_lock(&m->lock);
    for (size_t i = 0; i < m->ncoll; i++)
        m->coll[i].fn(m->coll[i].ud, m);
    for (struct sl_metric *f = m->first; f && r >= 0; f = f->next) {
        r = sl_buf_printf(out, "# HELP %s %s\n# TYPE %s %s\n", f->name, f->help, f->name,
                          types[f->kind]);
        for (struct series *s = f->series; s && r >= 0; s = s->next) {
            if (f->kind != K_HISTOGRAM) {
                r = sample(out, f->name, "", s->labels, NULL, s->value);
                continue;
            }
            uint64_t cum = 0;
            for (size_t b = 0; b < f->nbounds && r >= 0; b++) {
                char le[80], val[64];
                cum += s->buckets[b];
                fmt_value(val, sizeof(val), f->bounds[b]);
                snprintf(le, sizeof(le), "le=\"%s\"", val);
                r = sample(out, f->name, "_bucket", s->labels, le, (double)cum);
            }
            if (r >= 0)
                r = sample(out, f->name, "_bucket", s->labels, "le=\"+Inf\"", (double)s->count);
            if (r >= 0)
                r = sample(out, f->name, "_sum", s->labels, NULL, s->sum);
            if (r >= 0)
                r = sample(out, f->name, "_count", s->labels, NULL, (double)s->count);
        }
    }
    pthread_mutex_unlock(&m->lock);
    return r < 0 ? r : 0;
}
