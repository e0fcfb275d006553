/* The converter's compression pipeline (sl_format_options.threads): the blob must not depend on
 * the thread count, and every failure (bad input, a failing out_fd, hostile entries found while
 * batches are in flight) must stop all threads and return the right error. Meant to run under
 * ASan/UBSan and ThreadSanitizer builds as well. */
#include "test.h"

#include "fmt-test.h"
#include "format.h"
#include "toc.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK 4096

static const int thread_counts[] = {1, 2, 4, 8};

/* --- a rich input: multi-chunk files (compressible and not), many small files, and a long run
 * of directories whose headers make one header member larger than a batch (256 KiB) */

#define N_SMALL 300
#define N_DIRS  3000

static uint8_t text_data[700 * 1024];
static char small_names[N_SMALL][32], dir_names[N_DIRS][160];
static struct fmt_spec *specs;
static size_t n_specs;

static void build_specs(void)
{
    if (specs)
        return;
    for (size_t i = 0; i < sizeof(text_data); i++)
        text_data[i] = (uint8_t)("starlight chunk text "[i % 21] + (i / 5000) % 3);
    size_t cap = N_SMALL + N_DIRS + 32, n = 0;
    specs = calloc(cap, sizeof(*specs));
    specs[n++] = (struct fmt_spec){.name = "data/", .type = '5'};
    specs[n++] = (struct fmt_spec){.name = "data/random-1m", .type = '0', .len = (1u << 20) + 123};
    specs[n++] = (struct fmt_spec){
        .name = "data/text", .type = '0', .data = text_data, .len = sizeof(text_data)};
    specs[n++] = (struct fmt_spec){.name = "data/exact", .type = '0', .len = 64 * CHUNK};
    specs[n++] = (struct fmt_spec){.name = "data/one-more", .type = '0', .len = CHUNK + 1};
    specs[n++] = (struct fmt_spec){.name = "data/empty", .type = '0', .data = "", .len = 0};
    specs[n++] = (struct fmt_spec){.name = "data/link", .type = '2', .link = "text"};
    specs[n++] = (struct fmt_spec){.name = "data/hard", .type = '1', .link = "data/text"};
    specs[n++] = (struct fmt_spec){.name = "small/", .type = '5'};
    for (size_t i = 0; i < N_SMALL; i++) {
        snprintf(small_names[i], sizeof(small_names[i]), "small/f%04zu", i);
        specs[n++] = (struct fmt_spec){.name = small_names[i],
                                       .type = '0',
                                       .len = 1 + i * 37,
                                       .uid = (int64_t)(i % 3),
                                       .uname = i % 3 ? "u" : "root"};
    }
    for (size_t i = 0; i < N_DIRS; i++) {
        /* > 100 bytes: a PAX header each, ~1.5 KiB of headers per entry */
        snprintf(dir_names[i], sizeof(dir_names[i]), "dirs/%04zu/%0120zu/", i, i);
        specs[n++] = (struct fmt_spec){.name = dir_names[i], .type = '5'};
    }
    specs[n++] = (struct fmt_spec){.name = "tail/random-300k", .type = '0', .len = 300 * 1024};
    specs[n++] = (struct fmt_spec){
        .name = "tail/xattr", .type = '0', .len = 3 * CHUNK, .xattr = "user.k", .xattr_value = "v"};
    n_specs = n;
}

static int build_input(enum fmt_compress c)
{
    build_specs();
    int fd = fmt_build_tar(specs, n_specs, c);
    assert_true(fd >= 0);
    return fd;
}

static int convert(int in, int out, int threads, uint64_t chunk, struct sl_format_result *res,
                   sl_error_t *err)
{
    struct sl_format_options o = {.chunk_size = chunk, .threads = threads};
    lseek(in, 0, SEEK_SET);
    return sl_format_convert(in, out, &o, res, err);
}

static void results_equal(const struct sl_format_result *a, const struct sl_format_result *b)
{
    assert_string_equal(a->blob_digest, b->blob_digest);
    assert_string_equal(a->diff_id, b->diff_id);
    assert_string_equal(a->toc_digest, b->toc_digest);
    assert_int_equal(a->blob_size, b->blob_size);
    assert_int_equal(a->tar_size, b->tar_size);
    assert_int_equal(a->input_size, b->input_size);
    assert_int_equal(a->toc_offset, b->toc_offset);
    assert_int_equal(a->toc_size, b->toc_size);
    assert_int_equal(a->entries, b->entries);
    assert_int_equal(a->regular_files, b->regular_files);
    assert_int_equal(a->chunks, b->chunks);
    assert_int_equal(a->dropped, b->dropped);
}

/* Checks the blob on its own: digests, one gzip stream, TOC, every chunk against its digest. */
static void check_blob(int fd, const uint8_t *blob, size_t len, const struct sl_format_result *r)
{
    char d[SL_DIGEST_STR_LEN];
    assert_int_equal(len, r->blob_size);
    sl_sha256_str(blob, len, d);
    assert_string_equal(d, r->blob_digest);
    size_t tar_len = 0;
    uint8_t *tar = fmt_gunzip(blob, len, &tar_len);
    assert_non_null(tar);
    assert_int_equal(tar_len, r->tar_size);
    sl_sha256_str(tar, tar_len, d);
    assert_string_equal(d, r->diff_id);
    free(tar);

    struct sl_toc *toc = NULL;
    sl_error_t err = NULL;
    int rr = sl_toc_load(sl_toc_pread_fd, &fd, len, r->toc_digest, &toc, &err);
    if (rr < 0)
        fail_msg("load: %s", sl_error_msg(err, rr));
    assert_int_equal(sl_toc_chunks(toc), r->chunks);
    uint8_t *buf = malloc(CHUNK);
    for (size_t i = 0; i < n_specs; i++) {
        if (specs[i].type != '0' || specs[i].len == 0)
            continue;
        const struct sl_toc_entry *e = sl_toc_find(toc, specs[i].name);
        assert_non_null(e);
        assert_int_equal(e->n_chunks, (specs[i].len + CHUNK - 1) / CHUNK);
        struct sl_sha256 fs;
        sl_sha256_init(&fs);
        for (size_t c = 0; c < e->n_chunks; c++) {
            const struct sl_toc_chunk *ch = &e->chunks[c];
            assert_false(ch->compressed_size_derived);
            assert_int_equal(sl_toc_read_chunk(sl_toc_pread_fd, &fd, ch, buf, &err), 0);
            sl_sha256_update(&fs, buf, ch->size);
        }
        sl_sha256_final(&fs, d);
        assert_string_equal(d, e->digest);
    }
    free(buf);
    sl_toc_free(toc);
}

/* --- same bytes whatever the thread count */

static void identical_for(enum fmt_compress comp, uint64_t chunk)
{
    int in = build_input(comp);
    uint8_t *ref = NULL;
    size_t ref_len = 0;
    struct sl_format_result ref_res;
    for (size_t k = 0; k < SL_ELEMENTSOF(thread_counts); k++) {
        int out = memfd_create("out", MFD_CLOEXEC);
        struct sl_format_result res;
        sl_error_t err = NULL;
        int r = convert(in, out, thread_counts[k], chunk, &res, &err);
        if (r < 0)
            fail_msg("threads=%d: %s", thread_counts[k], sl_error_msg(err, r));
        size_t len = 0;
        uint8_t *blob = fmt_slurp(out, &len);
        if (!ref) {
            check_blob(out, blob, len, &res);
            assert_int_equal(res.entries, n_specs);
            ref = blob;
            ref_len = len;
            ref_res = res;
        } else {
            results_equal(&res, &ref_res);
            assert_int_equal(len, ref_len);
            assert_memory_equal(blob, ref, len);
            free(blob);
        }
        close(out);
    }
    /* the default (0) is the same too */
    int out = memfd_create("out", MFD_CLOEXEC);
    struct sl_format_result res;
    sl_error_t err = NULL;
    assert_int_equal(convert(in, out, 0, chunk, &res, &err), 0);
    results_equal(&res, &ref_res);
    close(out);
    free(ref);
    close(in);
}

static void test_identical_across_threads(void **state)
{
    identical_for(FMT_GZIP, CHUNK);
    identical_for(FMT_NONE, CHUNK);
}

static void test_identical_big_chunks(void **state)
{
    /* chunks larger than the minimum batch: one chunk per batch */
    int in = build_input(FMT_GZIP);
    struct sl_format_result r1, r4;
    sl_error_t err = NULL;
    int o1 = memfd_create("o1", MFD_CLOEXEC), o4 = memfd_create("o4", MFD_CLOEXEC);
    assert_int_equal(convert(in, o1, 1, 512 << 10, &r1, &err), 0);
    assert_int_equal(convert(in, o4, 4, 512 << 10, &r4, &err), 0);
    results_equal(&r1, &r4);
    size_t l1, l4;
    uint8_t *b1 = fmt_slurp(o1, &l1), *b4 = fmt_slurp(o4, &l4);
    assert_int_equal(l1, l4);
    assert_memory_equal(b1, b4, l1);
    free(b1);
    free(b4);
    close(o1);
    close(o4);
    close(in);
}

/* --- a pipe as out_fd, drained slowly by another thread: backpressure */

struct drain {
    int fd;
    size_t len;
    char digest[SL_DIGEST_STR_LEN];
};

static void *drain_main(void *p)
{
    struct drain *d = p;
    struct sl_sha256 s;
    sl_sha256_init(&s);
    uint8_t buf[4096];
    ssize_t n;
    size_t reads = 0;
    while ((n = read(d->fd, buf, sizeof(buf))) > 0) {
        sl_sha256_update(&s, buf, (size_t)n);
        d->len += (size_t)n;
        if (++reads % 64 == 0)
            usleep(1000);
    }
    sl_sha256_final(&s, d->digest);
    return NULL;
}

static void test_slow_pipe(void **state)
{
    int in = build_input(FMT_GZIP);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    struct drain d = {.fd = p[0]};
    pthread_t t;
    pthread_create(&t, NULL, drain_main, &d);
    struct sl_format_result res;
    sl_error_t err = NULL;
    int r = convert(in, p[1], 4, CHUNK, &res, &err);
    close(p[1]);
    pthread_join(t, NULL);
    close(p[0]);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    assert_int_equal(d.len, res.blob_size);
    assert_string_equal(d.digest, res.blob_digest);
    close(in);
}

/* --- failures with threads > 1 */

static void expect_fail(int in, int out, int threads, int code, const char *needle)
{
    struct sl_format_result res;
    sl_error_t err = NULL;
    int r = convert(in, out, threads, CHUNK, &res, &err);
    if (r >= 0)
        fail_msg("threads=%d: no error (%s)", threads, needle);
    assert_int_equal(r, -code);
    if (!strstr(sl_error_msg(err, r), needle))
        fail_msg("threads=%d: error `%s` lacks `%s`", threads, sl_error_msg(err, r), needle);
    sl_error_free(&err);
}

static void test_truncated_input(void **state)
{
    int full = build_input(FMT_GZIP);
    size_t len = 0;
    uint8_t *gz = fmt_slurp(full, &len);
    close(full);
    int tfull = build_input(FMT_NONE);
    size_t tlen = 0;
    uint8_t *tar = fmt_slurp(tfull, &tlen);
    close(tfull);
    for (size_t k = 0; k < SL_ELEMENTSOF(thread_counts); k++) {
        int t = thread_counts[k];
        int out = memfd_create("out", MFD_CLOEXEC);
        int in = fmt_memfd(gz, len * 3 / 4);
        expect_fail(in, out, t, EBADMSG, "truncated gzip");
        close(in);
        /* cut inside the first big file's data, after many members are in flight */
        in = fmt_memfd(tar, 900 * 1024);
        expect_fail(in, out, t, EINVAL, "data/random-1m");
        close(in);
        /* corrupt gzip near the end: all threads busy when it is found */
        uint8_t *bad = malloc(len);
        memcpy(bad, gz, len);
        bad[len - 100] ^= 0x55;
        in = fmt_memfd(bad, len);
        expect_fail(in, out, t, EBADMSG, "gzip");
        close(in);
        free(bad);
        close(out);
    }
    free(gz);
    free(tar);
}

static void test_failing_output(void **state)
{
    int in = build_input(FMT_GZIP);
    int full = open("/dev/full", O_WRONLY | O_CLOEXEC);
    if (full < 0)
        skip();
    for (size_t k = 0; k < SL_ELEMENTSOF(thread_counts); k++)
        expect_fail(in, full, thread_counts[k], ENOSPC, "writing the blob");
    close(full);

    /* a pipe whose reader is gone */
    void (*old)(int) = signal(SIGPIPE, SIG_IGN);
    for (size_t k = 0; k < SL_ELEMENTSOF(thread_counts); k++) {
        int p[2];
        assert_int_equal(pipe2(p, O_CLOEXEC), 0);
        close(p[0]);
        expect_fail(in, p[1], thread_counts[k], EPIPE, "writing the blob");
        close(p[1]);
    }
    signal(SIGPIPE, old);
    close(in);
}

static void test_hostile_late_entry(void **state)
{
    /* a bad entry after ~2 MiB of members: the reader fails while batches are in flight */
    build_specs();
    struct fmt_spec s[] = {
        {.name = "a", .type = '0', .len = 1u << 20},
        {.name = "b", .type = '0', .len = 1u << 20},
        {.name = "../escape", .type = '0', .data = "x", .len = 1},
        {.name = "c", .type = '0', .len = 1u << 20},
    };
    int in = fmt_build_tar(s, SL_ELEMENTSOF(s), FMT_GZIP);
    int out = memfd_create("out", MFD_CLOEXEC);
    for (size_t k = 0; k < SL_ELEMENTSOF(thread_counts); k++)
        expect_fail(in, out, thread_counts[k], EINVAL, "`../escape`: path escapes");
    close(out);
    close(in);
}

static void test_bad_thread_count(void **state)
{
    int in = build_input(FMT_NONE);
    int out = memfd_create("out", MFD_CLOEXEC);
    expect_fail(in, out, -1, EINVAL, "thread count");
    expect_fail(in, out, 65, EINVAL, "thread count");
    close(out);
    close(in);
}

/* --- several multi-threaded conversions at once */

struct conv_arg {
    int in, threads, r;
    struct sl_format_result res;
};

static void *conv_main(void *p)
{
    struct conv_arg *a = p;
    sl_error_t err = NULL;
    int out = memfd_create("out", MFD_CLOEXEC);
    struct sl_format_options o = {.chunk_size = CHUNK, .threads = a->threads};
    a->r = sl_format_convert(a->in, out, &o, &a->res, &err);
    sl_error_free(&err);
    close(out);
    return NULL;
}

static void test_concurrent_conversions(void **state)
{
    int src = build_input(FMT_GZIP);
    size_t len = 0;
    uint8_t *gz = fmt_slurp(src, &len);
    close(src);
    struct conv_arg args[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (struct conv_arg){.in = fmt_memfd(gz, len), .threads = 2 + i};
        pthread_create(&t[i], NULL, conv_main, &args[i]);
    }
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].r, 0);
        results_equal(&args[i].res, &args[0].res);
        close(args[i].in);
    }
    free(gz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_identical_across_threads),
        cmocka_unit_test(test_identical_big_chunks),
        cmocka_unit_test(test_slow_pipe),
        cmocka_unit_test(test_truncated_input),
        cmocka_unit_test(test_failing_output),
        cmocka_unit_test(test_hostile_late_entry),
        cmocka_unit_test(test_bad_thread_count),
        cmocka_unit_test(test_concurrent_conversions),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    free(specs);
    return r;
}
