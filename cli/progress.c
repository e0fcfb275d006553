#include "progress.h"
#include "cleanup.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct sl_progress {
    _Atomic uint64_t counters[SL_PROGRESS_N_COUNTERS];
    _Atomic(const char *) phase;
    char what[32];
    bool draw;
    atomic_bool stop;
    pthread_t ticker;
    bool ticker_started;
    struct timespec start;
};

static double elapsed(const struct sl_progress *p)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - p->start.tv_sec) + (double)(now.tv_nsec - p->start.tv_nsec) / 1e9;
}

static void draw_line(struct sl_progress *p, bool final)
{
    uint64_t c[SL_PROGRESS_N_COUNTERS];
    for (int i = 0; i < SL_PROGRESS_N_COUNTERS; i++)
        c[i] = atomic_load(&p->counters[i]);
    const char *phase = atomic_load(&p->phase);
    fprintf(stderr,
            "\r\033[K%s: %s %llu/%llu layers, downloaded %.1f/%.1f MB, converted %.1f MB, "
            "pushed %.1f MB, %.1fs%s",
            p->what, phase ? phase : "", (unsigned long long)c[SL_PROGRESS_LAYERS_DONE],
            (unsigned long long)c[SL_PROGRESS_LAYERS_TOTAL], c[SL_PROGRESS_DOWNLOADED] / 1e6,
            c[SL_PROGRESS_DOWNLOAD_TOTAL] / 1e6, c[SL_PROGRESS_CONVERTED] / 1e6,
            c[SL_PROGRESS_PUSHED] / 1e6, elapsed(p), final ? "\n" : "");
    fflush(stderr);
}

static void *ticker_main(void *arg)
{
    struct sl_progress *p = arg;
    struct timespec ts = {0, 250 * 1000 * 1000};
    while (!atomic_load(&p->stop)) {
        draw_line(p, false);
        nanosleep(&ts, NULL);
    }
    return NULL;
}

struct sl_progress *sl_progress_new(bool draw, const char *what)
{
    struct sl_progress *p = sl_xcalloc(1, sizeof(*p));
    for (int i = 0; i < SL_PROGRESS_N_COUNTERS; i++)
        atomic_init(&p->counters[i], 0);
    atomic_init(&p->stop, false);
    snprintf(p->what, sizeof(p->what), "%s", what);
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    p->draw = draw;
    if (draw && pthread_create(&p->ticker, NULL, ticker_main, p) == 0)
        p->ticker_started = true;
    return p;
}

void sl_progress_add(struct sl_progress *p, enum sl_progress_counter c, uint64_t n)
{
    if (p)
        atomic_fetch_add(&p->counters[c], n);
}

uint64_t sl_progress_get(struct sl_progress *p, enum sl_progress_counter c)
{
    return p ? atomic_load(&p->counters[c]) : 0;
}

void sl_progress_phase(struct sl_progress *p, const char *phase)
{
    if (p)
        atomic_store(&p->phase, phase);
}

static void stop_ticker(struct sl_progress *p)
{
    if (!p->ticker_started)
        return;
    atomic_store(&p->stop, true);
    pthread_join(p->ticker, NULL);
    p->ticker_started = false;
}

void sl_progress_done(struct sl_progress *p)
{
    if (!p || !p->draw)
        return;
    stop_ticker(p);
    atomic_store(&p->phase, "done");
    draw_line(p, true);
    p->draw = false;
}

void sl_progress_free(struct sl_progress *p)
{
    if (!p)
        return;
    stop_ticker(p);
    if (p->draw)
        fputc('\n', stderr);
    free(p);
}
