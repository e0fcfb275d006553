/* test-blobcache: the blob cache against a real docker-registry on 127.0.0.1, reached through
 * count-proxy.py, which counts blob GETs (and the ranges they ask for) and injects faults.
 * Run directly, it re-executes itself through run-live.sh, which starts both servers and
 * passes their addresses in SL_TEST_REG / SL_TEST_PROXY. Small blocks (64 KiB) keep the
 * blob small while still spanning many blocks and runs. */
#include "test.h"

#include "blobcache.h"
#include "cleanup.h"
#include "digest.h"
#include "registry.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <fcntl.h>

#define BS        (64 * 1024)
#define BLOB_SIZE (3 * 1024 * 1024 + 12345) /* 49 blocks, the last one short */
#define NBLOCKS   ((BLOB_SIZE + BS - 1) / BS)
#define REPO      "cache/test"

static char *blob;
static char digest[SL_DIGEST_STR_LEN];
static int dir_seq;

static const char *env(const char *name)
{
    const char *v = getenv(name);
    if (!v)
        fail_msg("%s not set", name);
    return v;
}

static struct sl_registry *reg_open(const char *env_name, int retries)
{
    struct sl_registry_options o = {.insecure = true, .backoff_ms = 20, .retries = retries};
    struct sl_registry *reg = NULL;
    sl_error_t err = NULL;
    int r = sl_registry_new(env(env_name), &o, &reg, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    return reg;
}

/* GET /_ctl/<what> on the counting proxy; returns the body (caller frees). */
static char *ctl(const char *what)
{
    _cleanup_free_ char *cmd =
        sl_xasprintf("curl -sf http://%s/_ctl/%s", env("SL_TEST_PROXY"), what);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char *out = sl_xcalloc(1, 1 << 20);
    size_t n = fread(out, 1, (1 << 20) - 1, p);
    out[n] = 0;
    assert_int_equal(pclose(p), 0);
    return out;
}

static long blob_gets(void)
{
    _cleanup_free_ char *s = ctl("stats");
    const char *p = strstr(s, "\"blob_gets\": ");
    assert_non_null(p);
    return strtol(p + strlen("\"blob_gets\": "), NULL, 10);
}

/* Fills times[] with how often each block was asked for by Range since the last reset. */
static void block_fetch_counts(int times[NBLOCKS])
{
    memset(times, 0, sizeof(int) * NBLOCKS);
    _cleanup_free_ char *s = ctl("stats");
    const char *p = strstr(s, "\"ranges\": [");
    assert_non_null(p);
    p += strlen("\"ranges\": [");
    while (*p == '"') {
        char *e;
        unsigned long long a = strtoull(p + 1, &e, 10);
        assert_int_equal(*e, '-');
        unsigned long long b = strtoull(e + 1, &e, 10);
        assert_true(a % BS == 0); /* requests are block-aligned */
        for (unsigned long long i = a / BS; i <= b / BS; i++)
            times[i]++;
        p = strchr(e, '"') + 1;
        if (*p == ',')
            p += 2;
    }
}

static void set_mode(const char *mode, int delay_ms)
{
    _cleanup_free_ char *m = sl_xasprintf("mode/%s", mode);
    _cleanup_free_ char *d = sl_xasprintf("delay/%d", delay_ms);
    free(ctl(m));
    free(ctl(d));
    free(ctl("reset"));
}

static struct sl_blobcache *cache_open(uint64_t max, uint32_t window, uint32_t max_run)
{
    _cleanup_free_ char *dir = sl_xasprintf("%s/cache%d", env("SL_TEST_TMP"), dir_seq++);
    struct sl_blobcache_options o = {.block_size = BS, .window = window, .max_run = max_run};
    struct sl_blobcache *c = NULL;
    sl_error_t err = NULL;
    int r = sl_blobcache_new_opts(dir, max, &o, &c, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    return c;
}

/* Bytes allocated on disk by the *.blob files of the newest cache directory. */
static uint64_t disk_usage(void)
{
    _cleanup_free_ char *dir = sl_xasprintf("%s/cache%d", env("SL_TEST_TMP"), dir_seq - 1);
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *de;
    uint64_t disk = 0;
    while ((de = readdir(d))) {
        struct stat sb;
        _cleanup_free_ char *p = sl_xasprintf("%s/%s", dir, de->d_name);
        if (strstr(de->d_name, ".blob") && stat(p, &sb) == 0)
            disk += (uint64_t)sb.st_blocks * 512;
    }
    closedir(d);
    return disk;
}

struct out {
    char *p;
    size_t n, cap;
    unsigned delay_us; /* per sink call: a slow client */
    size_t fail_after; /* return -EPIPE once this many bytes arrived (0 = never) */
};

static int out_sink(void *ud, const void *p, size_t n)
{
    struct out *o = ud;
    if (o->n + n > o->cap)
        return -EFBIG;
    memcpy(o->p + o->n, p, n);
    o->n += n;
    if (o->delay_us)
        usleep(o->delay_us);
    if (o->fail_after && o->n >= o->fail_after)
        return -EPIPE;
    return 0;
}

/* Reads [off, off+len) and checks the bytes; returns the read's result. */
static int read_check(struct sl_blobcache *c, struct sl_registry *reg, uint64_t off, uint64_t len,
                      unsigned delay_us, sl_error_t *err)
{
    struct out o = {.p = sl_xmalloc(len ? len : 1), .cap = len, .delay_us = delay_us};
    int r = sl_blobcache_read(c, reg, REPO, digest, BLOB_SIZE, off, len, out_sink, &o, err);
    if (r == 0) {
        assert_int_equal(o.n, len);
        assert_memory_equal(o.p, blob + off, len);
    }
    free(o.p);
    return r;
}

#define READ_OK(c, reg, off, len)                                                                  \
    do {                                                                                           \
        sl_error_t e_ = NULL;                                                                      \
        int r_ = read_check(c, reg, off, len, 0, &e_);                                             \
        if (r_ < 0)                                                                                \
            fail_msg("read %llu+%llu: %s", (unsigned long long)(off), (unsigned long long)(len),   \
                     sl_error_msg(e_, r_));                                                        \
    } while (0)

static int setup(void **state)
{
    (void)state;
    blob = sl_xmalloc(BLOB_SIZE);
    uint32_t seed = 12345;
    for (size_t i = 0; i < BLOB_SIZE; i++) {
        seed = seed * 1103515245u + 12345u;
        blob[i] = (char)(seed >> 16);
    }
    sl_sha256_str(blob, BLOB_SIZE, digest);
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_REG", 0);
    struct sl_blob_source src = {.fd = -1, .data = blob, .size = BLOB_SIZE};
    sl_error_t err = NULL;
    int r = sl_registry_push_blob(reg, REPO, digest, &src, NULL, &err);
    if (r < 0)
        fail_msg("push: %s", sl_error_msg(err, r));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(blob);
    return 0;
}

/* Arbitrary ranges against the blob bytes; a warm cache asks the registry for nothing. */
static void test_ranges(void **state)
{
    (void)state;
    set_mode("normal", 0);
    struct sl_blobcache *c = cache_open(64 << 20, 0, 0);
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_PROXY", 0);

    READ_OK(c, reg, 0, 1);                    /* first byte */
    READ_OK(c, reg, BLOB_SIZE - 1, 1);        /* last byte */
    READ_OK(c, reg, BS - 1, 2);               /* across a block boundary */
    READ_OK(c, reg, BS, BS);                  /* exactly one block */
    READ_OK(c, reg, 5 * BS - 7, 3 * BS + 14); /* several blocks, ragged ends */
    READ_OK(c, reg, (NBLOCKS - 1) * BS, BLOB_SIZE - (NBLOCKS - 1) * BS); /* short last block */
    uint32_t seed = 777;
    for (int i = 0; i < 200; i++) {
        seed = seed * 1103515245u + 12345u;
        uint64_t off = (seed >> 4) % BLOB_SIZE;
        seed = seed * 1103515245u + 12345u;
        uint64_t len =
            1 + (seed >> 4) % (i % 4 == 0 ? BLOB_SIZE - off : SL_MIN(3 * BS, BLOB_SIZE - off));
        READ_OK(c, reg, off, len);
    }
    READ_OK(c, reg, 0, BLOB_SIZE); /* whole blob */

    /* Every block was asked for exactly once, in block-aligned Range requests. */
    int times[NBLOCKS];
    block_fetch_counts(times);
    for (int i = 0; i < NBLOCKS; i++)
        assert_int_equal(times[i], 1);
    struct sl_blobcache_stats st;
    sl_blobcache_get_stats(c, &st);
    assert_int_equal(st.fetches, blob_gets());
    assert_int_equal(st.bytes_fetched, BLOB_SIZE);
    assert_int_equal(st.size_bytes, BLOB_SIZE);
    assert_int_equal(st.fetch_errors, 0);
    assert_int_equal(st.evictions, 0);

    /* Warm: served from disk only. */
    free(ctl("reset"));
    READ_OK(c, reg, 0, BLOB_SIZE);
    assert_int_equal(blob_gets(), 0);
    sl_blobcache_get_stats(c, &st);
    assert_true(st.hits >= NBLOCKS);

    /* Past the end, and empty reads. */
    sl_error_t err = NULL;
    char dummy;
    struct out o = {.p = &dummy, .cap = 1};
    assert_int_equal(
        sl_blobcache_read(c, reg, REPO, digest, BLOB_SIZE, BLOB_SIZE, 1, out_sink, &o, &err),
        -ERANGE);
    assert_non_null(strstr(sl_error_msg(err, -ERANGE), digest));
    sl_error_free(&err);
    assert_int_equal(
        sl_blobcache_read(c, reg, REPO, digest, BLOB_SIZE, BLOB_SIZE - 1, 2, out_sink, &o, &err),
        -ERANGE);
    sl_error_free(&err);
    assert_int_equal(
        sl_blobcache_read(c, reg, REPO, digest, BLOB_SIZE, UINT64_MAX, 2, out_sink, &o, &err),
        -ERANGE);
    sl_error_free(&err);
    assert_int_equal(
        sl_blobcache_read(c, reg, REPO, digest, BLOB_SIZE, BLOB_SIZE, 0, out_sink, &o, &err), 0);
    assert_int_equal(o.n, 0);
    /* A different size for a blob in use is a caller bug. */
    assert_int_equal(
        sl_blobcache_read(c, reg, REPO, digest, BLOB_SIZE + 1, 0, 1, out_sink, &o, &err), -EINVAL);
    sl_error_free(&err);
    assert_int_equal(
        sl_blobcache_read(c, reg, REPO, "sha256:xyz", BLOB_SIZE, 0, 1, out_sink, &o, &err),
        -EINVAL);
    sl_error_free(&err);

    /* The directory is locked against a second user. */
    struct sl_blobcache *c2 = NULL;
    _cleanup_free_ char *dir = sl_xasprintf("%s/cache%d", env("SL_TEST_TMP"), dir_seq - 1);
    assert_int_equal(sl_blobcache_new(dir, 64 << 20, &c2, &err), -EBUSY);
    sl_error_free(&err);
    sl_blobcache_free(c);
    /* ... and reusable, empty, once freed. */
    assert_int_equal(sl_blobcache_new(dir, 64 << 20, &c2, &err), 0);
    sl_blobcache_get_stats(c2, &st);
    assert_int_equal(st.size_bytes, 0);
    sl_blobcache_free(c2);
}

struct worker {
    struct sl_blobcache *c;
    struct sl_registry *reg;
    pthread_barrier_t *start;
    uint64_t off, len;
    unsigned delay_us;
    int rounds;
    int r;
    char msg[512];
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    pthread_barrier_wait(w->start);
    for (int i = 0; i < (w->rounds ? w->rounds : 1); i++) {
        sl_error_t err = NULL;
        w->r = read_check(w->c, w->reg, w->off, w->len, w->delay_us, &err);
        if (w->r < 0) {
            snprintf(w->msg, sizeof(w->msg), "%s", sl_error_msg(err, w->r));
            sl_error_free(&err);
            break;
        }
    }
    return NULL;
}

static void run_workers(struct worker *w, int n)
{
    pthread_barrier_t b;
    pthread_barrier_init(&b, NULL, (unsigned)n);
    pthread_t t[64];
    for (int i = 0; i < n; i++) {
        w[i].start = &b;
        assert_int_equal(pthread_create(&t[i], NULL, worker_main, &w[i]), 0);
    }
    for (int i = 0; i < n; i++)
        pthread_join(t[i], NULL);
    pthread_barrier_destroy(&b);
}

/* 16 threads read overlapping ranges of one cold blob at once: one fetch per block. */
static void test_concurrent(void **state)
{
    (void)state;
    set_mode("normal", 50); /* slow answers widen the window for duplicate fetches */
    struct sl_blobcache *c = cache_open(64 << 20, 8, 4);
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_PROXY", 0);
    struct worker w[16];
    for (int i = 0; i < 16; i++) {
        uint64_t off = (uint64_t)i * (BLOB_SIZE / 40);
        w[i] = (struct worker){.c = c, .reg = reg, .off = off, .len = BLOB_SIZE - off - i * 1000};
    }
    run_workers(w, 16);
    for (int i = 0; i < 16; i++)
        if (w[i].r < 0)
            fail_msg("worker %d: %s", i, w[i].msg);
    int times[NBLOCKS];
    block_fetch_counts(times);
    for (int i = 0; i < NBLOCKS; i++)
        if (times[i] != 1)
            fail_msg("block %d fetched %d times", i, times[i]);
    struct sl_blobcache_stats st;
    sl_blobcache_get_stats(c, &st);
    assert_int_equal(st.fetches, blob_gets());
    assert_int_equal(st.bytes_fetched, BLOB_SIZE);

    /* A reader whose client goes away mid-read: its queued fetches are cancelled, and the
     * blocks it left behind are fetched by the next reader. */
    sl_blobcache_free(c);
    c = cache_open(64 << 20, 16, 2);
    free(ctl("reset"));
    struct out o = {.p = sl_xmalloc(BLOB_SIZE), .cap = BLOB_SIZE, .fail_after = 1};
    sl_error_t err = NULL;
    assert_int_equal(
        sl_blobcache_read(c, reg, REPO, digest, BLOB_SIZE, 0, BLOB_SIZE, out_sink, &o, &err),
        -EPIPE);
    free(o.p);
    assert_true(blob_gets() < NBLOCKS / 2);
    set_mode("normal", 0);
    READ_OK(c, reg, 0, BLOB_SIZE);
    sl_blobcache_free(c);
}

/* A cache far smaller than the data read: it stays bounded, and reads of pinned blocks by
 * slow clients never see their blocks evicted. */
static void test_eviction(void **state)
{
    (void)state;
    set_mode("normal", 0);
    const uint64_t max = 8 * BS;
    const uint32_t window = 4;
    struct sl_blobcache *c = cache_open(max, window, 2);
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_PROXY", 0);
    struct worker w[4];
    for (int i = 0; i < 4; i++)
        w[i] = (struct worker){.c = c,
                               .reg = reg,
                               .off = (uint64_t)i * 3 * BS + 17,
                               .len = BLOB_SIZE - (uint64_t)i * 3 * BS - 17,
                               .delay_us = i == 0 ? 2000 : 0, /* one slow client */
                               .rounds = 3};
    run_workers(w, 4);
    for (int i = 0; i < 4; i++)
        if (w[i].r < 0)
            fail_msg("worker %d: %s", i, w[i].msg);
    struct sl_blobcache_stats st;
    sl_blobcache_get_stats(c, &st);
    assert_true(st.size_bytes <= max);
    assert_true(st.evictions > 0);
    assert_true(st.bytes_fetched > BLOB_SIZE); /* re-fetched what was evicted */

    /* The disk agrees with the accounting (holes punched). */
    assert_true(disk_usage() <= max + 4096);
    sl_blobcache_free(c);
}

/* Prefetch: fetches in the background, returns at once; a later read of those blocks is all
 * hits and asks the registry for nothing; a cache freed while prefetches run is clean. */
static void test_prefetch(void **state)
{
    (void)state;
    set_mode("normal", 0);
    struct sl_blobcache *c = cache_open(64 * BS, 8, 4);
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_PROXY", 0);
    sl_error_t err = NULL;
    const uint64_t off = 2 * BS + 5, len = 6 * BS - 10; /* blocks 2..7 */
    assert_int_equal(sl_blobcache_prefetch(c, reg, REPO, digest, BLOB_SIZE, BLOB_SIZE - 1, 2, &err),
                     -ERANGE);
    sl_error_free(&err);
    int r = sl_blobcache_prefetch(c, reg, REPO, digest, BLOB_SIZE, off, len, &err);
    if (r < 0)
        fail_msg("prefetch: %s", sl_error_msg(err, r));
    struct sl_blobcache_stats st;
    for (int i = 0; i < 500; i++) {
        sl_blobcache_get_stats(c, &st);
        if (st.bytes_fetched >= 6 * BS)
            break;
        usleep(10000);
    }
    assert_int_equal(st.bytes_fetched, 6 * BS);
    free(ctl("reset"));
    READ_OK(c, reg, off, len);
    int times[NBLOCKS];
    block_fetch_counts(times);
    for (int i = 0; i < NBLOCKS; i++)
        assert_int_equal(times[i], 0);
    sl_blobcache_get_stats(c, &st);
    assert_int_equal(st.hits, 6);
    assert_int_equal(st.misses, 0);

    /* freed with slow prefetches queued and running: they finish or end, nothing leaks */
    set_mode("normal", 50);
    r = sl_blobcache_prefetch(c, reg, REPO, digest, BLOB_SIZE, 20 * BS, 8 * BS, &err);
    if (r < 0)
        fail_msg("prefetch: %s", sl_error_msg(err, r));
    sl_blobcache_free(c);
    set_mode("normal", 0);
}

/* Faults: every waiter of a failed fetch gets its error; nothing partial is cached. */
static void test_faults(void **state)
{
    (void)state;
    struct sl_blobcache *c = cache_open(64 << 20, 0, 0);
    _cleanup_registry_ struct sl_registry *reg = reg_open("SL_TEST_PROXY", -1);

    /* HTTP 500 answered after 300 ms: all 8 readers wait on the one fetch and fail with it. */
    set_mode("fail", 300);
    struct worker w[8];
    for (int i = 0; i < 8; i++)
        w[i] = (struct worker){
            .c = c, .reg = reg, .off = (uint64_t)i * 100, .len = 2 * BS - (uint64_t)i * 100};
    run_workers(w, 8);
    for (int i = 0; i < 8; i++) {
        assert_int_equal(w[i].r, -EIO);
        assert_non_null(strstr(w[i].msg, digest));
        assert_non_null(strstr(w[i].msg, "HTTP 500"));
    }
    assert_int_equal(blob_gets(), 1);
    struct sl_blobcache_stats st;
    sl_blobcache_get_stats(c, &st);
    assert_int_equal(st.size_bytes, 0);
    assert_int_equal(st.fetch_errors, 1);

    /* Connection lost in the middle of a block: the block stays absent and its partial
     * bytes leave the disk (the blob file stays, holding block 10). */
    set_mode("normal", 0);
    READ_OK(c, reg, 10 * BS, 1);
    set_mode("cut", 100);
    for (int i = 0; i < 4; i++)
        w[i] = (struct worker){.c = c, .reg = reg, .off = 3 * BS + (uint64_t)i, .len = BS / 2};
    run_workers(w, 4);
    for (int i = 0; i < 4; i++) {
        assert_true(w[i].r < 0);
        assert_non_null(strstr(w[i].msg, digest));
    }
    sl_blobcache_get_stats(c, &st);
    assert_int_equal(st.size_bytes, BS);
    assert_true(disk_usage() <= BS + 4096);

    /* A short 206: not cached either. */
    set_mode("short", 0);
    sl_error_t err = NULL;
    int r = read_check(c, reg, 7 * BS, BS, 0, &err);
    assert_true(r < 0);
    assert_non_null(strstr(sl_error_msg(err, r), digest));
    sl_error_free(&err);
    sl_blobcache_get_stats(c, &st);
    assert_int_equal(st.size_bytes, BS);

    /* The registry recovers: the same ranges are fetched again and correct. */
    set_mode("normal", 0);
    READ_OK(c, reg, 0, 2 * BS);
    READ_OK(c, reg, 3 * BS, BS);
    READ_OK(c, reg, 7 * BS, BS);
    sl_blobcache_get_stats(c, &st);
    assert_int_equal(st.size_bytes, 5 * BS);

    /* An unknown blob: the registry's 404 with the digest. */
    char missing[SL_DIGEST_STR_LEN];
    sl_sha256_str("nope", 4, missing);
    struct out o = {.p = sl_xmalloc(16), .cap = 16};
    r = sl_blobcache_read(c, reg, REPO, missing, 100, 0, 16, out_sink, &o, &err);
    free(o.p);
    assert_int_equal(r, -ENOENT);
    assert_non_null(strstr(sl_error_msg(err, r), missing));
    sl_error_free(&err);
    sl_blobcache_free(c);
}

int main(int argc, char **argv)
{
    (void)argc;
    if (!getenv("SL_TEST_PROXY")) {
        /* Started by ctest: let the wrapper start the servers and run us again. */
        char script[4096];
        snprintf(script, sizeof(script), "%s/unit/proxy/cache/run-live.sh", sl_test_data_dir());
        execl("/bin/bash", "bash", script, argv[0], (char *)NULL);
        perror(script);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ranges),   cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_eviction), cmocka_unit_test(test_prefetch),
        cmocka_unit_test(test_faults),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
