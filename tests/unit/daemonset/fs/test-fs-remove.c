/* test-fs-remove.c — removing a layer from a mounted FUSE tree (fs.h, "Removal"), through the
 * kernel: the layer's directory is gone from the mount at once while another layer stays
 * readable; a file opened before the removal still reads right (from FUSE, the page cache
 * dropped) and answers fstat; the slot is never given again; the same layer added again is
 * served again; and layers added and removed in a loop while another thread walks and reads
 * them give either ENOENT/ESTALE or the right bytes, never a crash (run it under ASan). Needs
 * root and /dev/fuse: skipped without them, failed without them under CI=true. */
#include "test.h"

#include "../../common/format/fmt-test.h"
#include "format.h"
#include "fs.h"
#include "store-gc.h"
#include "store.h"

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHUNK    4096
#define BIG_SIZE (CHUNK * 40 + 123)

static char g_root[64], g_mnt[96];
static uint8_t big[BIG_SIZE];

struct world {
    struct sl_store *store;
    struct sl_fs *fs;
    char a[SL_DIGEST_STR_LEN], b[SL_DIGEST_STR_LEN], c[SL_DIGEST_STR_LEN];
};

#define N_OPENERS 6 /* files of layer C, more than the fs's 4 workers */

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void import(struct sl_store *s, const struct fmt_spec *specs, size_t n,
                   char digest[SL_DIGEST_STR_LEN])
{
    int fd = fmt_build_blob(specs, n, CHUNK);
    assert_true(fd >= 0);
    sl_error_t err = NULL;
    int r = sl_store_import_blob(s, fd, NULL, false, digest, NULL, &err);
    if (r < 0)
        fail_msg("import: %s", sl_error_msg(err, r));
    close(fd);
}

/* Publishes a stored layer; returns sl_fs_add_layer's result. */
static int add(struct world *w, const char *digest, uint32_t slot)
{
    struct sl_store_layer rec;
    sl_error_t err = NULL;
    assert_int_equal(sl_store_layer_get(w->store, digest, &rec, &err), 0);
    struct sl_toc *toc = NULL;
    assert_int_equal(sl_store_layer_load_toc(&rec, &toc, &err), 0);
    sl_store_layer_clear(&rec);
    int r = sl_fs_add_layer(w->fs, digest, toc, slot, &err);
    sl_error_free(&err);
    return r;
}

static int64_t slot_of(struct world *w, const char *digest)
{
    struct sl_store_layer rec;
    assert_int_equal(sl_store_layer_get(w->store, digest, &rec, NULL), 0);
    sl_store_layer_clear(&rec);
    return rec.id;
}

static void path_in(const char *digest, const char *rel, char *out, size_t n)
{
    int k = snprintf(out, n, "%s/%.64s%s%s", g_mnt, digest + 7, *rel ? "/" : "", rel);
    assert_true(k > 0 && (size_t)k < n);
}

static bool listed(const char *digest)
{
    DIR *d = opendir(g_mnt);
    assert_non_null(d);
    struct dirent *de;
    bool found = false;
    while ((de = readdir(d)))
        found |= strcmp(de->d_name, digest + 7) == 0;
    closedir(d);
    return found;
}

/* Reads a whole file of the mount; true when it holds exactly `want`. */
static bool reads_as(const char *path, const void *want, size_t len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return false;
    uint8_t *buf = malloc(len + 1);
    size_t got = 0;
    ssize_t k;
    while ((k = read(fd, buf + got, len + 1 - got)) > 0)
        got += (size_t)k;
    close(fd);
    bool ok = k == 0 && got == len && memcmp(buf, want, len) == 0;
    free(buf);
    return ok;
}

static int setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/sl-test-fsrm.XXXXXX");
    assert_non_null(mkdtemp(g_root));
    chmod(g_root, 0755);
    snprintf(g_mnt, sizeof g_mnt, "%s/mnt", g_root);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(g_root, rm_cb, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    return 0;
}

/* A trace hook that holds its FUSE worker while g_hold is set (opening b.txt), so that
 * sl_fs_reclaim's wait for the workers times out. */
static atomic_bool g_hold, g_held;

static void hold_hook(void *ud, const struct sl_fs_event *ev)
{
    (void)ud;
    if (ev->type != SL_FS_EVENT_OPEN || strcmp(ev->path, "b.txt") != 0)
        return;
    atomic_store(&g_held, true);
    while (atomic_load(&g_hold))
        usleep(1000);
}

static void world_open_ex(struct world *w, bool cold)
{
    char dir[128];
    snprintf(dir, sizeof dir, "%s/store", g_root);
    struct sl_store_options so = {.no_sync = true};
    sl_error_t err = NULL;
    assert_int_equal(sl_store_open(dir, &so, &w->store, &err), 0);
    fmt_fill(big, sizeof big, 7);
    struct fmt_spec a[] = {
        {.name = "dir", .type = '5', .mode = 0755},
        {.name = "dir/big.bin", .type = '0', .mode = 0644, .data = big, .len = sizeof big},
        {.name = "dir/small.txt", .type = '0', .mode = 0644, .data = "only A\n", .len = 7},
    };
    struct fmt_spec b[] = {
        {.name = "b.txt", .type = '0', .mode = 0644, .data = "layer B\n", .len = 8},
    };
    import(w->store, a, SL_ELEMENTSOF(a), w->a);
    import(w->store, b, SL_ELEMENTSOF(b), w->b);
    if (cold) {
        /* layer C, then the store reopened: no content is in memory, so each open loads one
         * (under the store's gc lock, shared) */
        static char names[N_OPENERS][8], data[N_OPENERS][8];
        struct fmt_spec c[N_OPENERS];
        for (int i = 0; i < N_OPENERS; i++) {
            snprintf(names[i], sizeof names[i], "f%d", i);
            snprintf(data[i], sizeof data[i], "file %d", i);
            c[i] = (struct fmt_spec){
                .name = names[i], .type = '0', .mode = 0644, .data = data[i], .len = 6};
        }
        import(w->store, c, N_OPENERS, w->c);
        sl_store_free(w->store);
        assert_int_equal(sl_store_open(dir, &so, &w->store, &err), 0);
    }
    struct sl_fs_options fo = {.max_threads = 4, .on_event = hold_hook, .quiesce_timeout_ms = 300};
    assert_int_equal(sl_fs_new(w->store, &fo, &w->fs, &err), 0);
    assert_int_equal(add(w, w->a, (uint32_t)slot_of(w, w->a)), 0);
    assert_int_equal(add(w, w->b, (uint32_t)slot_of(w, w->b)), 0);
    if (cold)
        assert_int_equal(add(w, w->c, (uint32_t)slot_of(w, w->c)), 0);
    int r = sl_fs_mount(w->fs, g_mnt, &err);
    if (r < 0)
        fail_msg("mount: %s", sl_error_msg(err, r));
}

static void world_open(struct world *w)
{
    world_open_ex(w, false);
}

static void world_close(struct world *w)
{
    sl_fs_free(w->fs);
    sl_store_free(w->store);
}

static void test_remove(void **state)
{
    (void)state;
    struct world w;
    world_open(&w);
    char p[256], q[256];
    sl_error_t err = NULL;
    path_in(w.a, "dir/big.bin", p, sizeof p);
    assert_true(reads_as(p, big, sizeof big));
    assert_true(listed(w.a));
    /* held open across the removal; its pages dropped so reads must go to the daemon */
    int fd = open(p, O_RDONLY);
    assert_true(fd >= 0);
    uint8_t buf[256];
    assert_int_equal(pread(fd, buf, 16, 0), 16);

    assert_int_equal(sl_fs_remove_layer(w.fs, w.a, &err), 0);
    sl_fs_reclaim(w.fs);
    struct stat st;
    path_in(w.a, "", q, sizeof q);
    assert_int_equal(stat(q, &st), -1); /* the cached entry was invalidated */
    assert_int_equal(errno, ENOENT);
    assert_false(listed(w.a));
    assert_int_not_equal(stat(p, &st), 0);
    char *dir = NULL;
    assert_int_equal(sl_fs_layer_dir(w.fs, w.a, &dir, NULL), -ENOENT);
    assert_int_equal(sl_fs_remove_layer(w.fs, w.a, NULL), -ENOENT);
    /* the other layer is untouched */
    path_in(w.b, "b.txt", q, sizeof q);
    assert_true(reads_as(q, "layer B\n", 8));
    assert_true(listed(w.b));

    assert_int_equal(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
    for (size_t off = 0; off < sizeof big; off += 40000) {
        size_t n = SL_MIN(sizeof buf, sizeof big - off);
        assert_int_equal(pread(fd, buf, n, (off_t)off), (ssize_t)n);
        assert_memory_equal(buf, big + off, n);
    }
    assert_int_equal(fstat(fd, &st), 0);
    assert_int_equal(st.st_size, sizeof big);
    close(fd); /* the last reference: the tree is freed now (ASan checks the rest) */

    /* its slot is retired; published again it gets another one and serves again */
    uint32_t old = (uint32_t)slot_of(&w, w.a);
    assert_int_equal(add(&w, w.a, old), -EEXIST);
    assert_int_equal(add(&w, w.a, 0), 0);
    assert_true(listed(w.a));
    assert_true(reads_as(p, big, sizeof big));
    path_in(w.a, "dir/small.txt", q, sizeof q);
    assert_true(reads_as(q, "only A\n", 7));
    world_close(&w);
}

struct walker {
    struct world *w;
    atomic_bool stop;
    unsigned good, gone, wrong;
};

static void *walk_main(void *ud)
{
    struct walker *k = ud;
    char p[256], s[256], b[256];
    path_in(k->w->a, "dir/big.bin", p, sizeof p);
    path_in(k->w->a, "dir/small.txt", s, sizeof s);
    path_in(k->w->b, "b.txt", b, sizeof b);
    while (!atomic_load(&k->stop)) {
        struct stat st;
        if (stat(p, &st) < 0) {
            k->gone++;
        } else {
            int fd = open(s, O_RDONLY);
            if (fd < 0) {
                k->gone++;
            } else {
                char buf[16] = {0};
                ssize_t n = read(fd, buf, sizeof buf);
                if (n < 0)
                    k->gone++; /* ESTALE: the inode's layer went meanwhile */
                else if (n == 7 && memcmp(buf, "only A\n", 7) == 0)
                    k->good++;
                else
                    k->wrong++;
                close(fd);
            }
        }
        if (!reads_as(b, "layer B\n", 8))
            k->wrong++;
    }
    return NULL;
}

static void test_remove_while_used(void **state)
{
    (void)state;
    struct world w;
    world_open(&w);
    struct walker k = {.w = &w};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, walk_main, &k), 0);
    sl_error_t err = NULL;
    for (int i = 0; i < 40; i++) {
        usleep(2000);
        assert_int_equal(sl_fs_remove_layer(w.fs, w.a, &err), 0);
        if (i % 2)
            sl_fs_reclaim(w.fs); /* else left to the next call or sl_fs_free */
        usleep(2000);
        assert_int_equal(add(&w, w.a, 0), 0);
    }
    atomic_store(&k.stop, true);
    pthread_join(th, NULL);
    print_message("walker: %u good, %u gone, %u wrong\n", k.good, k.gone, k.wrong);
    assert_int_equal(k.wrong, 0);
    assert_true(k.good > 0);
    world_close(&w);
}

/* Review item 2: every FUSE worker waits for the store's gc lock (opening a content) while
 * the lock's holder removes a layer and the kernel has a lookup in the root pending. The
 * removal must not wait for the kernel (which waits for a worker): it returns at once. */
struct opener {
    struct world *w;
    int i;
    bool ok;
};

static void *open_main(void *ud)
{
    struct opener *o = ud;
    char p[256], want[8];
    char rel[8];
    snprintf(rel, sizeof rel, "f%d", o->i);
    snprintf(want, sizeof want, "file %d", o->i);
    path_in(o->w->c, rel, p, sizeof p);
    o->ok = reads_as(p, want, 6);
    return NULL;
}

static void *lookup_main(void *ud)
{
    (void)ud;
    char p[256];
    struct stat st;
    snprintf(p, sizeof p, "%s/%064d", g_mnt, 1); /* not cached: asks the daemon */
    (void)stat(p, &st);
    return NULL;
}

struct remover {
    struct world *w;
    atomic_bool done;
    int r;
};

static void *remove_main(void *ud)
{
    struct remover *m = ud;
    m->r = sl_fs_remove_layer(m->w->fs, m->w->a, NULL);
    atomic_store(&m->done, true);
    return NULL;
}

static void test_remove_under_gc_lock(void **state)
{
    (void)state;
    struct world w;
    world_open_ex(&w, true);
    char p[256];
    path_in(w.c, "", p, sizeof p);
    struct stat st;
    assert_int_equal(stat(p, &st), 0); /* C's directory looked up before the lock */
    assert_true(listed(w.a));
    sl_store_gc_lock(w.store, true); /* as the collector holds it around removals */
    struct opener op[N_OPENERS];
    pthread_t th[N_OPENERS], look, rm;
    for (int i = 0; i < N_OPENERS; i++) {
        op[i] = (struct opener){.w = &w, .i = i};
        assert_int_equal(pthread_create(&th[i], NULL, open_main, &op[i]), 0);
    }
    usleep(300 * 1000); /* the workers are now waiting for the gc lock */
    assert_int_equal(pthread_create(&look, NULL, lookup_main, NULL), 0);
    usleep(200 * 1000); /* the kernel holds the root for that lookup */
    struct remover m = {.w = &w};
    assert_int_equal(pthread_create(&rm, NULL, remove_main, &m), 0);
    int waited = 0;
    while (!atomic_load(&m.done) && waited < 5000) {
        usleep(10 * 1000);
        waited += 10;
    }
    bool removed_in_time = atomic_load(&m.done);
    sl_store_gc_unlock(w.store); /* unblocks everything, also when the removal hung */
    pthread_join(rm, NULL);
    pthread_join(look, NULL);
    for (int i = 0; i < N_OPENERS; i++)
        pthread_join(th[i], NULL);
    if (!removed_in_time)
        fail_msg("sl_fs_remove_layer blocked under the gc lock (FUSE workers busy)");
    assert_int_equal(m.r, 0);
    for (int i = 0; i < N_OPENERS; i++)
        assert_true(op[i].ok);
    sl_fs_reclaim(w.fs); /* outside the lock: drops the kernel's entry, frees the tree */
    assert_false(listed(w.a));
    assert_true(listed(w.b));
    world_close(&w);
}

static void *open_b_main(void *ud)
{
    struct world *w = ud;
    char p[256];
    path_in(w->b, "b.txt", p, sizeof p);
    return (void *)(intptr_t)reads_as(p, "layer B\n", 8);
}

/* Review item 11: a reclaim whose wait for the workers times out keeps the removed layers for
 * the next one (nothing leaked: ASan's leak check), and the next one frees them. */
static void test_reclaim_timeout_retries(void **state)
{
    (void)state;
    struct world w;
    world_open(&w);
    atomic_store(&g_hold, true);
    atomic_store(&g_held, false);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, open_b_main, &w), 0);
    for (int i = 0; i < 5000 && !atomic_load(&g_held); i++)
        usleep(1000);
    assert_true(atomic_load(&g_held)); /* a worker is busy in the hook */
    assert_int_equal(sl_fs_remove_layer(w.fs, w.a, NULL), 0);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sl_fs_reclaim(w.fs); /* times out: the layer stays queued */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int64_t ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms >= 250);
    assert_false(listed(w.a)); /* the kernel's entry was dropped all the same */
    atomic_store(&g_hold, false);
    void *ok = NULL;
    pthread_join(th, &ok);
    assert_true(ok != NULL);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    sl_fs_reclaim(w.fs); /* now frees it */
    clock_gettime(CLOCK_MONOTONIC, &t1);
    ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    assert_true(ms < 250);
    assert_int_equal(add(&w, w.a, 0), 0); /* served again, in a new slot */
    assert_true(listed(w.a));
    world_close(&w);
}

static struct sl_toc *toc_of(struct world *w, const char *digest)
{
    struct sl_store_layer rec;
    assert_int_equal(sl_store_layer_get(w->store, digest, &rec, NULL), 0);
    struct sl_toc *toc = NULL;
    assert_int_equal(sl_store_layer_load_toc(&rec, &toc, NULL), 0);
    sl_store_layer_clear(&rec);
    return toc;
}

/* Review item 10: a successor given the predecessor's slot maps never gives a retired slot,
 * gives a slot the predecessor served only to a request for that slot, and says so clearly
 * when no slot is left. */
static void test_handoff_slots(void **state)
{
    (void)state;
    struct world w;
    world_open(&w);
    static struct sl_fs_handoff h;
    memset(&h, 0, sizeof h);
    h.used[0] = 1u << 1;    /* slot 1: served by the predecessor */
    h.retired[0] = 1u << 3; /* slot 3: removed by the predecessor */
    struct sl_fs *f2 = NULL;
    sl_error_t err = NULL;
    assert_int_equal(sl_fs_new(w.store, NULL, &f2, &err), 0);
    assert_int_equal(sl_fs_reserve_slots(f2, &h, &err), 0);
    assert_int_equal(sl_fs_add_layer(f2, w.b, toc_of(&w, w.b), 3, &err), -EEXIST);
    sl_error_free(&err);
    assert_int_equal(sl_fs_add_layer(f2, w.b, toc_of(&w, w.b), 0, &err), 0); /* -> 2 */
    assert_int_equal(sl_fs_add_layer(f2, w.a, toc_of(&w, w.a), 0, &err), 0); /* -> 4 */
    char mnt2[128];
    snprintf(mnt2, sizeof mnt2, "%s/mnt2", g_root);
    assert_int_equal(sl_fs_mount(f2, mnt2, &err), 0);
    char p[256];
    struct stat st;
    snprintf(p, sizeof p, "%s/%.64s", mnt2, w.b + 7);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_ino >> 32, 2);
    snprintf(p, sizeof p, "%s/%.64s", mnt2, w.a + 7);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_ino >> 32, 4);
    /* this one's maps for its own successor: retired 3 (inherited) and 4 (removed here),
     * served 2, reserved 1 */
    assert_int_equal(sl_fs_remove_layer(f2, w.a, &err), 0);
    sl_fs_reclaim(f2);
    static struct sl_fs_handoff out;
    assert_int_equal(sl_fs_detach(f2, &out, &err), 0);
    assert_true(out.fd >= 0);
    close(out.fd);
    assert_int_equal(out.retired[0], (1u << 3) | (1u << 4));
    assert_int_equal(out.used[0], (1u << 1) | (1u << 2));
    for (size_t i = 1; i < sizeof out.retired; i++)
        assert_true(out.retired[i] == 0 && out.used[i] == 0);
    sl_fs_free(f2);
    sl_fs_unmount_abandoned(mnt2);

    /* a layer published where the predecessor retired the slot: refused */
    assert_int_equal(sl_fs_new(w.store, NULL, &f2, &err), 0);
    assert_int_equal(sl_fs_add_layer(f2, w.b, toc_of(&w, w.b), 3, &err), 0);
    assert_int_equal(sl_fs_reserve_slots(f2, &h, &err), -EEXIST);
    sl_error_free(&err);
    sl_fs_free(f2);

    /* the slot reserved for layer A (1) is given to a request for it */
    assert_int_equal(sl_fs_new(w.store, NULL, &f2, &err), 0);
    assert_int_equal(sl_fs_reserve_slots(f2, &h, &err), 0);
    assert_int_equal(sl_fs_add_layer(f2, w.a, toc_of(&w, w.a), 1, &err), 0);
    sl_fs_free(f2);

    /* every slot retired but one: the next layer gets a clear error */
    memset(h.retired, 0xff, sizeof h.retired);
    h.retired[0] = (uint8_t) ~(1u << 5);
    memset(h.used, 0, sizeof h.used);
    assert_int_equal(sl_fs_new(w.store, NULL, &f2, &err), 0);
    assert_int_equal(sl_fs_reserve_slots(f2, &h, &err), 0);
    assert_int_equal(sl_fs_add_layer(f2, w.a, toc_of(&w, w.a), 0, &err), 0); /* slot 5 */
    int r = sl_fs_add_layer(f2, w.b, toc_of(&w, w.b), 0, &err);
    assert_int_equal(r, -ENOSPC);
    assert_non_null(strstr(sl_error_msg(err, r), "no free layer slot"));
    sl_error_free(&err);
    sl_fs_free(f2);
    world_close(&w);
}

int main(void)
{
    if (geteuid() != 0 || access("/dev/fuse", R_OK | W_OK) != 0) {
        fprintf(stderr, "test-fs-remove: needs root and /dev/fuse\n");
        return getenv("CI") && strcmp(getenv("CI"), "true") == 0 ? 1 : SL_TEST_SKIP;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_remove, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_while_used, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_under_gc_lock, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reclaim_timeout_retries, setup, teardown),
        cmocka_unit_test_setup_teardown(test_handoff_slots, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
