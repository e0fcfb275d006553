/* test-store.c — the daemon's content store: chunk verification, out-of-order chunks, waiters
 * woken exactly once, concurrent writers and readers, restart with partial contents, layer
 * records. Blobs are real Starlight blobs made by the converter from libarchive tars. */
#include "test.h"

#include "../../common/format/fmt-test.h"
#include "format.h"
#include "store.h"

#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define CHUNK 4096

struct fixture {
    char root[64];
    int blob_fd;
    struct sl_toc *toc;
    const struct sl_toc_entry *big; /* "big.bin": 5.5 chunks */
    uint8_t *big_data;
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->root, sizeof fx->root, "/tmp/sl-test-store.XXXXXX");
    assert_non_null(mkdtemp(fx->root));
    strcat(fx->root, "/s");
    fx->big_data = malloc(CHUNK * 5 + CHUNK / 2);
    fmt_fill(fx->big_data, CHUNK * 5 + CHUNK / 2, 7);
    struct fmt_spec specs[] = {
        {.name = "dir", .type = '5', .mode = 0755},
        {.name = "dir/big.bin",
         .type = '0',
         .mode = 0644,
         .data = fx->big_data,
         .len = CHUNK * 5 + CHUNK / 2},
        {.name = "dir/small.txt", .type = '0', .mode = 0644, .data = "hello\n", .len = 6},
        {.name = "dir/empty", .type = '0', .mode = 0644, .data = "", .len = 0},
        {.name = "dir/link", .type = '1', .link = "dir/small.txt"},
    };
    int tar = fmt_build_tar(specs, SL_ELEMENTSOF(specs), FMT_GZIP);
    assert_true(tar >= 0);
    fx->blob_fd = memfd_create("blob", MFD_CLOEXEC);
    struct sl_format_options o = {.chunk_size = CHUNK, .threads = 1};
    struct sl_format_result res;
    sl_error_t err = NULL;
    assert_int_equal(sl_format_convert(tar, fx->blob_fd, &o, &res, &err), 0);
    close(tar);
    struct stat st;
    fstat(fx->blob_fd, &st);
    assert_int_equal(
        sl_toc_load(sl_toc_pread_fd, &fx->blob_fd, (uint64_t)st.st_size, NULL, &fx->toc, &err), 0);
    fx->big = sl_toc_find(fx->toc, "dir/big.bin");
    assert_non_null(fx->big);
    assert_int_equal(fx->big->n_chunks, 6);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    fx->root[strlen(fx->root) - 2] = 0;
    nftw(fx->root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    sl_toc_free(fx->toc);
    close(fx->blob_fd);
    free(fx->big_data);
    free(fx);
    return 0;
}

static uint8_t *member(struct fixture *fx, const struct sl_toc_chunk *c)
{
    uint8_t *b = malloc(c->compressed_size);
    assert_int_equal(sl_toc_pread_fd(&fx->blob_fd, b, c->compressed_size, c->offset, NULL), 0);
    return b;
}

static int put(struct sl_store *s, struct fixture *fx, const struct sl_toc_entry *e, size_t k)
{
    uint8_t *b = member(fx, &e->chunks[k]);
    sl_error_t err = NULL;
    int r = sl_store_put_chunk(s, e->digest, &e->chunks[k], b, e->chunks[k].compressed_size, &err);
    sl_error_free(&err);
    free(b);
    return r;
}

static struct sl_store *open_store(struct fixture *fx)
{
    struct sl_store *s = NULL;
    struct sl_store_options o = {.no_sync = true};
    sl_error_t err = NULL;
    int r = sl_store_open(fx->root, &o, &s, &err);
    if (r < 0)
        fail_msg("open store: %s", sl_error_msg(err, r));
    return s;
}

static void check_final_file(struct fixture *fx, const struct sl_toc_entry *e, const uint8_t *want)
{
    char path[256];
    snprintf(path, sizeof path, "%s/content/sha256/%.2s/%s", fx->root, e->digest + 7,
             e->digest + 7);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    size_t len = 0;
    uint8_t *got = fmt_slurp(fd, &len);
    assert_int_equal(len, e->size);
    assert_memory_equal(got, want, e->size);
    free(got);
    close(fd);
}

/* A member with one flipped byte is refused, leaves nothing readable, and the good one
 * still lands afterwards. */
static void test_corrupt_rejected(void **state)
{
    struct fixture *fx = *state;
    struct sl_store *s = open_store(fx);
    const struct sl_toc_entry *e = fx->big;
    assert_int_equal(sl_store_expect(s, e->digest, e->size, NULL), 0);
    uint8_t *b = member(fx, &e->chunks[0]);
    b[e->chunks[0].compressed_size / 2] ^= 0x40;
    sl_error_t err = NULL;
    int r = sl_store_put_chunk(s, e->digest, &e->chunks[0], b, e->chunks[0].compressed_size, &err);
    assert_int_equal(r, -EBADMSG);
    assert_non_null(err);
    sl_error_free(&err);
    /* valid gzip, wrong bytes: a member of another chunk under this chunk's digest */
    uint8_t *other = member(fx, &e->chunks[1]);
    r = sl_store_put_chunk(s, e->digest, &e->chunks[0], other, e->chunks[1].compressed_size, NULL);
    assert_int_equal(r, -EBADMSG);
    struct sl_store_content *c = NULL;
    assert_int_equal(sl_store_content_open(s, e->digest, e->size, &c, NULL), 0);
    assert_false(sl_store_chunks_present(c, &e->chunks[0], 1));
    uint8_t zero[16] = {0}, got[16];
    assert_int_equal(pread(sl_store_content_fd(c), got, 16, 0), 16);
    assert_memory_equal(got, zero, 16); /* nothing of the bad bytes was written */
    struct sl_store_stats st;
    sl_store_get_stats(s, &st);
    assert_int_equal(st.chunks_rejected, 2);
    assert_int_equal(put(s, fx, e, 0), 1);
    assert_true(sl_store_chunks_present(c, &e->chunks[0], 1));
    assert_false(sl_store_chunks_present(c, &e->chunks[0], 2));
    sl_store_content_unref(c);
    free(b);
    free(other);
    /* unexpected content and a chunk outside its content */
    const char *unexpected = sl_toc_find(fx->toc, "dir/small.txt")->digest;
    assert_int_equal(sl_store_put_chunk(s, unexpected, &e->chunks[0], NULL, 0, NULL), -ENOENT);
    sl_store_free(s);
}

static void test_out_of_order(void **state)
{
    struct fixture *fx = *state;
    struct sl_store *s = open_store(fx);
    const struct sl_toc_entry *e = fx->big;
    assert_int_equal(sl_store_expect(s, e->digest, e->size, NULL), 0);
    static const size_t order[] = {5, 2, 0, 4, 3, 1};
    for (size_t i = 0; i < SL_ELEMENTSOF(order); i++) {
        assert_int_equal(sl_store_content_state(s, e->digest), SL_STORE_PARTIAL);
        assert_int_equal(put(s, fx, e, order[i]), 1);
    }
    assert_int_equal(sl_store_content_state(s, e->digest), SL_STORE_COMPLETE);
    assert_int_equal(put(s, fx, e, 3), 0); /* duplicate: nothing written */
    check_final_file(fx, e, fx->big_data);
    char partial[256];
    snprintf(partial, sizeof partial, "%s/content/partial/%s", fx->root, e->digest + 7);
    assert_int_equal(access(partial, F_OK), -1);
    /* empty contents are complete at once */
    const struct sl_toc_entry *empty = sl_toc_find(fx->toc, "dir/empty");
    assert_non_null(empty);
    if (empty->has_digest) {
        assert_int_equal(sl_store_expect(s, empty->digest, 0, NULL), 0);
        assert_int_equal(sl_store_content_state(s, empty->digest), SL_STORE_COMPLETE);
    }
    /* a conflicting size for a known digest is refused */
    assert_int_equal(sl_store_expect(s, e->digest, e->size + 1, NULL), -EINVAL);
    sl_store_free(s);
}

struct counter {
    atomic_int calls;
    atomic_int last_status;
};

static void count_cb(void *ud, int status)
{
    struct counter *c = ud;
    atomic_store(&c->last_status, status);
    atomic_fetch_add(&c->calls, 1);
}

static void test_waiters_once(void **state)
{
    struct fixture *fx = *state;
    struct sl_store *s = open_store(fx);
    const struct sl_toc_entry *e = fx->big;
    struct sl_store_content *c = NULL;
    assert_int_equal(sl_store_content_open(s, e->digest, e->size, &c, NULL), 0);
    struct counter a = {0}, b = {0}, d = {0}, x = {0};
    struct sl_store_waiter wa, wb, wd, wx;
    assert_int_equal(sl_store_wait(c, &e->chunks[1], 2, &wa, count_cb, &a), 0); /* 1 and 2 */
    assert_int_equal(sl_store_wait(c, &e->chunks[1], 1, &wb, count_cb, &b), 0);
    assert_int_equal(sl_store_wait(c, &e->chunks[4], 1, &wd, count_cb, &d), 0);
    assert_int_equal(sl_store_wait(c, &e->chunks[0], 1, &wx, count_cb, &x), 0);
    assert_true(sl_store_wait_cancel(c, &wx));
    assert_false(sl_store_wait_cancel(c, &wx));
    assert_int_equal(put(s, fx, e, 0), 1);
    assert_int_equal(put(s, fx, e, 1), 1);
    assert_int_equal(atomic_load(&a.calls), 0);
    assert_int_equal(atomic_load(&b.calls), 1);
    assert_int_equal(put(s, fx, e, 1), 0);
    assert_int_equal(put(s, fx, e, 2), 1);
    assert_int_equal(atomic_load(&a.calls), 1);
    assert_int_equal(atomic_load(&b.calls), 1);
    assert_int_equal(atomic_load(&x.calls), 0);
    assert_false(sl_store_wait_cancel(c, &wa));
    /* present now: no registration */
    struct counter p = {0};
    struct sl_store_waiter wp;
    assert_int_equal(sl_store_wait(c, &e->chunks[0], 3, &wp, count_cb, &p), 1);
    for (size_t k = 3; k < e->n_chunks; k++)
        assert_int_equal(put(s, fx, e, k), 1);
    assert_int_equal(atomic_load(&d.calls), 1);
    assert_int_equal(atomic_load(&d.last_status), 0);
    assert_int_equal(atomic_load(&p.calls), 0);
    assert_true(sl_store_content_complete(c));
    /* a waiter left at close is called with -ESHUTDOWN */
    const struct sl_toc_entry *sm = sl_toc_find(fx->toc, "dir/small.txt");
    struct sl_store_content *c2 = NULL;
    assert_int_equal(sl_store_content_open(s, sm->digest, sm->size, &c2, NULL), 0);
    struct counter z = {0};
    struct sl_store_waiter wz;
    assert_int_equal(sl_store_wait(c2, &sm->chunks[0], 1, &wz, count_cb, &z), 0);
    sl_store_content_unref(c2);
    sl_store_content_unref(c);
    sl_store_free(s);
    assert_int_equal(atomic_load(&z.calls), 1);
    assert_int_equal(atomic_load(&z.last_status), -ESHUTDOWN);
}

struct conc {
    struct fixture *fx;
    struct sl_store *s;
    int seed;
};

static void *writer(void *ud)
{
    struct conc *cc = ud;
    const struct sl_toc_entry *e = cc->fx->big;
    for (size_t i = 0; i < e->n_chunks; i++) {
        size_t k = (i * 5 + (size_t)cc->seed) % e->n_chunks;
        int r = put(cc->s, cc->fx, e, k);
        assert_true(r == 0 || r == 1);
    }
    return NULL;
}

static void *reader(void *ud)
{
    struct conc *cc = ud;
    const struct sl_toc_entry *e = cc->fx->big;
    struct sl_store_content *c = NULL;
    assert_int_equal(sl_store_content_open(cc->s, e->digest, e->size, &c, NULL), 0);
    struct counter cnt[8] = {0};
    struct sl_store_waiter w[8];
    int registered = 0;
    for (size_t k = 0; k < e->n_chunks; k++) {
        int r = sl_store_wait(c, &e->chunks[k], 1, &w[k], count_cb, &cnt[k]);
        assert_true(r == 0 || r == 1);
        if (r == 1)
            atomic_store(&cnt[k].calls, 1);
        registered += r == 0;
    }
    for (int spin = 0; spin < 10000; spin++) {
        int done = 0;
        for (size_t k = 0; k < e->n_chunks; k++)
            done += atomic_load(&cnt[k].calls);
        if (done == (int)e->n_chunks)
            break;
        usleep(1000);
    }
    for (size_t k = 0; k < e->n_chunks; k++) {
        assert_int_equal(atomic_load(&cnt[k].calls), 1);
        uint8_t buf[CHUNK];
        size_t n = e->chunks[k].size;
        assert_int_equal(pread(sl_store_content_fd(c), buf, n, (off_t)e->chunks[k].chunk_offset),
                         (ssize_t)n);
        assert_memory_equal(buf, cc->fx->big_data + e->chunks[k].chunk_offset, n);
    }
    usleep(20000); /* a late duplicate wake-up would show here */
    for (size_t k = 0; k < e->n_chunks; k++)
        assert_int_equal(atomic_load(&cnt[k].calls), 1);
    sl_store_content_unref(c);
    return NULL;
}

static void test_concurrent(void **state)
{
    struct fixture *fx = *state;
    for (int round = 0; round < 20; round++) {
        struct sl_store *s = open_store(fx);
        assert_int_equal(sl_store_expect(s, fx->big->digest, fx->big->size, NULL), 0);
        pthread_t t[8];
        struct conc cc[8];
        for (int i = 0; i < 8; i++) {
            cc[i] = (struct conc){.fx = fx, .s = s, .seed = i + round};
            pthread_create(&t[i], NULL, i % 2 ? writer : reader, &cc[i]);
        }
        for (int i = 0; i < 8; i++)
            pthread_join(t[i], NULL);
        assert_int_equal(sl_store_content_state(s, fx->big->digest), SL_STORE_COMPLETE);
        struct sl_store_stats st;
        sl_store_get_stats(s, &st);
        assert_int_equal(st.contents_completed, 1);
        sl_store_free(s);
        check_final_file(fx, fx->big, fx->big_data);
        /* next round starts empty */
        char p[256];
        snprintf(p, sizeof p, "%s", fx->root);
        nftw(p, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    }
}

/* Partial contents survive a restart; a chunk whose bytes were lost or damaged on disk is
 * dropped at load and fetched again. */
static void test_restart_partial(void **state)
{
    struct fixture *fx = *state;
    const struct sl_toc_entry *e = fx->big;
    struct sl_store *s = open_store(fx);
    assert_int_equal(sl_store_expect(s, e->digest, e->size, NULL), 0);
    assert_int_equal(put(s, fx, e, 0), 1);
    assert_int_equal(put(s, fx, e, 2), 1);
    assert_int_equal(put(s, fx, e, 3), 1);
    sl_store_free(s); /* as if the daemon stopped here */

    char partial[256];
    snprintf(partial, sizeof partial, "%s/content/partial/%s", fx->root, e->digest + 7);
    int fd = open(partial, O_WRONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    assert_int_equal(pwrite(fd, "XXXX", 4, (off_t)e->chunks[2].chunk_offset + 10), 4);
    close(fd);

    s = open_store(fx);
    struct sl_store_content *c = NULL;
    assert_int_equal(sl_store_content_open(s, e->digest, e->size, &c, NULL), 0);
    assert_true(sl_store_chunks_present(c, &e->chunks[0], 1));
    assert_false(sl_store_chunks_present(c, &e->chunks[2], 1)); /* damaged: dropped */
    assert_true(sl_store_chunks_present(c, &e->chunks[3], 1));
    assert_int_equal(put(s, fx, e, 0), 0);
    for (size_t k = 1; k < e->n_chunks; k++)
        if (k != 3)
            assert_int_equal(put(s, fx, e, k), 1);
    assert_true(sl_store_content_complete(c));
    sl_store_content_unref(c);
    sl_store_free(s);
    check_final_file(fx, e, fx->big_data);

    /* crash between rename and commit: the record says incomplete, the file is in place */
    char db[256];
    snprintf(db, sizeof db, "%s/store.db", fx->root);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    assert_int_equal(sqlite3_exec(h, "UPDATE content SET complete = 0", NULL, NULL, NULL),
                     SQLITE_OK);
    sqlite3_close(h);
    s = open_store(fx);
    assert_int_equal(sl_store_content_state(s, e->digest), SL_STORE_COMPLETE);
    sl_store_free(s);
}

static void test_layer_round_trip(void **state)
{
    struct fixture *fx = *state;
    struct sl_store *s = open_store(fx);
    char digest[SL_DIGEST_STR_LEN];
    struct sl_toc *toc = NULL;
    sl_error_t err = NULL;
    int r = sl_store_import_blob(s, fx->blob_fd, NULL, true, digest, &toc, &err);
    if (r < 0)
        fail_msg("import: %s", sl_error_msg(err, r));
    struct sl_store_layer l;
    assert_int_equal(sl_store_layer_get(s, digest, &l, NULL), 0);
    assert_true(l.id > 0);
    assert_int_equal(l.state, SL_STORE_LAYER_INCOMPLETE);
    assert_string_equal(l.toc_digest, sl_toc_digest(fx->toc));
    sl_store_layer_clear(&l);
    sl_toc_free(toc);
    /* unknown layer */
    assert_int_equal(sl_store_layer_get(s,
                                        "sha256:0000000000000000000000000000000000000000000000"
                                        "000000000000000000",
                                        &l, NULL),
                     -ENOENT);
    sl_store_free(s);

    /* after a restart: the record rebuilds the same tree; a full import completes it */
    s = open_store(fx);
    assert_int_equal(sl_store_layer_get(s, digest, &l, NULL), 0);
    assert_int_equal(sl_store_layer_load_toc(&l, &toc, &err), 0);
    assert_string_equal(sl_toc_digest(toc), sl_toc_digest(fx->toc));
    assert_int_equal(sl_toc_count(toc), sl_toc_count(fx->toc));
    assert_non_null(sl_toc_find(toc, "dir/big.bin"));
    /* a tampered tail is refused */
    l.tail[l.tail_len / 3] ^= 1;
    struct sl_toc *bad = NULL;
    assert_true(sl_store_layer_load_toc(&l, &bad, NULL) < 0);
    sl_store_layer_clear(&l);
    char **list = NULL;
    size_t n = 0;
    assert_int_equal(sl_store_layer_list(s, &list, &n, NULL), 0);
    assert_int_equal(n, 1);
    assert_string_equal(list[0], digest);
    free(list[0]);
    free(list);
    assert_int_equal(sl_store_import_blob(s, fx->blob_fd, digest, false, NULL, NULL, NULL), 0);
    assert_int_equal(sl_store_layer_get(s, digest, &l, NULL), 0);
    assert_int_equal(l.state, SL_STORE_LAYER_COMPLETE);
    sl_store_layer_clear(&l);
    sl_toc_free(toc);
    sl_store_free(s);
}

/* Recording a layer expects all its contents in the same transaction: contents only in the
 * database (after a restart) are loaded with their verified chunks, new ones start empty, empty
 * ones are complete; a size conflict (in memory or in the database) records nothing at all. */
static void test_layer_put_batch(void **state)
{
    struct fixture *fx = *state;
    const struct sl_toc_entry *small = sl_toc_find(fx->toc, "dir/small.txt");
    const struct sl_toc_entry *empty = sl_toc_find(fx->toc, "dir/empty");
    assert_non_null(small);
    assert_non_null(empty);
    sl_error_t err = NULL;
    struct sl_store *s = open_store(fx);
    assert_int_equal(sl_store_expect(s, fx->big->digest, fx->big->size, NULL), 0);
    assert_int_equal(put(s, fx, fx->big, 2), 1);
    sl_store_free(s);

    s = open_store(fx); /* big.bin: a row and one chunk row, nothing in memory */
    char digest[SL_DIGEST_STR_LEN];
    int r = sl_store_import_blob(s, fx->blob_fd, NULL, true, digest, NULL, &err);
    if (r < 0)
        fail_msg("import: %s", sl_error_msg(err, r));
    assert_int_equal(sl_store_content_state(s, fx->big->digest), SL_STORE_PARTIAL);
    assert_int_equal(sl_store_content_state(s, small->digest), SL_STORE_PARTIAL);
    assert_int_equal(sl_store_content_state(s, empty->digest), SL_STORE_COMPLETE);
    struct sl_store_content *c = NULL;
    assert_int_equal(sl_store_content_open(s, fx->big->digest, fx->big->size, &c, NULL), 0);
    assert_true(sl_store_chunks_present(c, &fx->big->chunks[2], 1));
    assert_false(sl_store_chunks_present(c, &fx->big->chunks[0], 1));
    sl_store_content_unref(c);
    for (size_t k = 0; k < fx->big->n_chunks; k++)
        assert_int_equal(put(s, fx, fx->big, k), k == 2 ? 0 : 1);
    assert_int_equal(put(s, fx, small, 0), 1);
    check_final_file(fx, fx->big, fx->big_data);
    enum sl_store_layer_state ls;
    assert_int_equal(sl_store_layer_refresh(s, digest, fx->toc, &ls, NULL), 0);
    assert_int_equal(ls, SL_STORE_LAYER_COMPLETE);
    sl_store_free(s);

    /* a size conflict: with the content in memory, then only in the database */
    char root2[96];
    snprintf(root2, sizeof root2, "%s2", fx->root);
    struct sl_store_options o = {.no_sync = true};
    for (int pass = 0; pass < 2; pass++) {
        assert_int_equal(sl_store_open(root2, &o, &s, NULL), 0);
        if (pass == 0)
            assert_int_equal(sl_store_expect(s, small->digest, small->size + 1, NULL), 0);
        r = sl_store_import_blob(s, fx->blob_fd, digest, true, NULL, NULL, &err);
        assert_int_equal(r, -EINVAL);
        assert_non_null(strstr(sl_error_msg(err, r), small->digest));
        sl_error_free(&err);
        struct sl_store_layer l;
        assert_int_equal(sl_store_layer_get(s, digest, &l, NULL), -ENOENT);
        assert_int_equal(sl_store_content_state(s, fx->big->digest), SL_STORE_ABSENT);
        sl_store_free(s);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_corrupt_rejected, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waiters_once, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart_partial, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layer_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_layer_put_batch, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
