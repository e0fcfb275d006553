/* sl-blobcache-bench: reads one blob through the blob cache and reports throughput.
 *
 *   sl-blobcache-bench HOST REPO DIGEST SIZE CACHE_DIR [READERS]
 *
 * Three phases on one fresh cache: cold (every byte fetched from the registry), warm (every
 * byte from disk), and READERS concurrent warm readers (default 8). Prints one line per phase:
 * "phase seconds MB/s". Used by bench/blobcache.sh. Tuning experiments: SL_BENCH_RUN,
 * SL_BENCH_WINDOW, SL_BENCH_FETCHERS override the cache defaults (blobcache.h). */
#include "blobcache.h"
#include "cleanup.h"
#include "registry.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct ctx {
    struct sl_blobcache *c;
    struct sl_registry *reg;
    const char *repo, *digest;
    uint64_t size;
    int r;
};

static int count_sink(void *ud, const void *p, size_t n)
{
    (void)p;
    *(uint64_t *)ud += n;
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *read_all(void *arg)
{
    struct ctx *x = arg;
    uint64_t got = 0;
    sl_error_t err = NULL;
    x->r = sl_blobcache_read(x->c, x->reg, x->repo, x->digest, x->size, 0, x->size, count_sink,
                             &got, &err);
    if (x->r < 0)
        fprintf(stderr, "read: %s\n", sl_error_msg(err, x->r));
    else if (got != x->size)
        x->r = -EIO;
    sl_error_free(&err);
    return NULL;
}

static int phase(const char *name, struct ctx *x, int readers)
{
    pthread_t t[64];
    struct ctx xs[64];
    double t0 = now_s();
    for (int i = 0; i < readers; i++) {
        xs[i] = *x;
        pthread_create(&t[i], NULL, read_all, &xs[i]);
    }
    int r = 0;
    for (int i = 0; i < readers; i++) {
        pthread_join(t[i], NULL);
        if (xs[i].r < 0)
            r = xs[i].r;
    }
    double dt = now_s() - t0;
    printf("%s %.3f %.1f\n", name, dt, (double)x->size * readers / dt / 1e6);
    return r;
}

int main(int argc, char **argv)
{
    if (argc < 6) {
        fprintf(stderr, "usage: %s HOST REPO DIGEST SIZE CACHE_DIR [READERS]\n", argv[0]);
        return 2;
    }
    int readers = argc > 6 ? atoi(argv[6]) : 8;
    if (readers < 1 || readers > 64)
        readers = 8;
    struct sl_registry_options o = {.insecure = true};
    _cleanup_registry_ struct sl_registry *reg = NULL;
    _cleanup_error_ sl_error_t err = NULL;
    uint64_t size = strtoull(argv[4], NULL, 10);
    int r = sl_registry_new(argv[1], &o, &reg, &err);
    if (r < 0) {
        fprintf(stderr, "%s\n", sl_error_msg(err, r));
        return 1;
    }
    struct sl_blobcache *c = NULL;
    struct sl_blobcache_options co = {0};
    if (getenv("SL_BENCH_RUN"))
        co.max_run = (uint32_t)atoi(getenv("SL_BENCH_RUN"));
    if (getenv("SL_BENCH_WINDOW"))
        co.window = (uint32_t)atoi(getenv("SL_BENCH_WINDOW"));
    if (getenv("SL_BENCH_FETCHERS"))
        co.fetchers = (uint32_t)atoi(getenv("SL_BENCH_FETCHERS"));
    r = sl_blobcache_new_opts(argv[5], size * 2, &co, &c, &err);
    if (r < 0) {
        fprintf(stderr, "%s\n", sl_error_msg(err, r));
        return 1;
    }
    struct ctx x = {.c = c, .reg = reg, .repo = argv[2], .digest = argv[3], .size = size};
    r = phase("cold", &x, 1);
    if (r >= 0)
        r = phase("warm", &x, 1);
    if (r >= 0) {
        char name[32];
        snprintf(name, sizeof(name), "warm-x%d", readers);
        r = phase(name, &x, readers);
    }
    struct sl_blobcache_stats st;
    sl_blobcache_get_stats(c, &st);
    printf("stats fetches=%" PRIu64 " bytes_fetched=%" PRIu64 " hits=%" PRIu64 " misses=%" PRIu64
           " fetch_seconds=%.3f\n",
           st.fetches, st.bytes_fetched, st.hits, st.misses, st.fetch_seconds);
    sl_blobcache_free(c);
    return r < 0 ? 1 : 0;
}
