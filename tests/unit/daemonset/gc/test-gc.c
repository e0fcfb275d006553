/* test-gc.c — the node's materialiser and collector over a real store (no snapshotter: layer
 * references come from the grace period): overlay conventions and link/copy decisions of a
 * materialised tree, a TOC whose paths run through its own symlink, unreferenced contents
 * removed while shared ones and ones held open stay, crash leftovers swept, trees removed; the
 * resume points of pulls naming a collected layer removed, those of kept layers kept. */
#include "test.h"

#include "../../common/format/fmt-test.h"
#include "format.h"
#include "gc.h"
#include "materialize.h"
#include "store-gc.h"
#include "store.h"

#include <fcntl.h>
#include <ftw.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#define CHUNK 4096

static char g_root[64];

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

/* A Starlight blob of the specs in a memfd. */
static int make_blob(const struct fmt_spec *specs, size_t n)
{
    int fd = fmt_build_blob(specs, n, CHUNK);
    assert_true(fd >= 0);
    return fd;
}

static void import(struct sl_store *s, int fd, char digest[SL_DIGEST_STR_LEN])
{
    sl_error_t err = NULL;
    int r = sl_store_import_blob(s, fd, NULL, false, digest, NULL, &err);
    if (r < 0)
        fail_msg("import: %s", sl_error_msg(err, r));
}

static const char shared_data[] = "shared between layers A and B\n";

static int setup(void **state)
{
    (void)state;
    snprintf(g_root, sizeof g_root, "/tmp/sl-test-gc.XXXXXX");
    assert_non_null(mkdtemp(g_root));
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    nftw(g_root, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

struct world {
    struct sl_store *store;
    struct sl_mat *mat;
    char a[SL_DIGEST_STR_LEN], b[SL_DIGEST_STR_LEN];
    char store_dir[128], mat_dir[160];
};

static bool g_tracing;
static bool tracing(void *ud)
{
    (void)ud;
    return g_tracing;
}

static void world_open(struct world *w, enum sl_mat_mode mode)
{
    snprintf(w->store_dir, sizeof w->store_dir, "%s/store", g_root);
    snprintf(w->mat_dir, sizeof w->mat_dir, "%s/materialized", w->store_dir);
    struct sl_store_options so = {.no_sync = true};
    sl_error_t err = NULL;
    assert_int_equal(sl_store_open(w->store_dir, &so, &w->store, &err), 0);
    struct sl_mat_options mo = {.store = w->store,
                                .dir = w->mat_dir,
                                .mode = mode,
                                .scan_interval = 3600,
                                .no_sync = true,
                                .keep_fuse = tracing};
    assert_int_equal(sl_mat_new(&mo, &w->mat, &err), 0);
}

static void world_close(struct world *w)
{
    sl_mat_free(w->mat);
    sl_store_free(w->store);
}

static void make_layers(struct world *w)
{
    static uint8_t big[CHUNK * 3 + 100];
    fmt_fill(big, sizeof big, 3);
    struct fmt_spec a[] = {
        {.name = "etc", .type = '5', .mode = 0755, .mtime = 1000},
        {.name = "etc/shared.txt",
         .type = '0',
         .mode = 0644,
         .data = shared_data,
         .len = sizeof shared_data - 1,
         .mtime = 2000},
        /* same content, other mode: cannot share the inode */
        {.name = "etc/shared-exec",
         .type = '0',
         .mode = 0755,
         .data = shared_data,
         .len = sizeof shared_data - 1,
         .mtime = 2000},
        {.name = "etc/hard", .type = '1', .link = "etc/shared.txt"},
        {.name = "etc/sym", .type = '2', .link = "../usr/x"},
        {.name = "etc/.wh.gone", .type = '0', .mode = 0644, .data = "", .len = 0},
        {.name = "opq", .type = '5', .mode = 0700, .mtime = 1000},
        {.name = "opq/.wh..wh..opq", .type = '0', .mode = 0644, .data = "", .len = 0},
        {.name = "onlyA.bin",
         .type = '0',
         .mode = 0600,
         .data = big,
         .len = sizeof big,
         .uid = 1000,
         .gid = 1000,
         .xattr = "user.k",
         .xattr_value = "v"},
        {.name = "fifo", .type = '6', .mode = 0640},
    };
    struct fmt_spec b[] = {
        {.name = "etc", .type = '5', .mode = 0755},
        {.name = "etc/shared.txt",
         .type = '0',
         .mode = 0644,
         .data = shared_data,
         .len = sizeof shared_data - 1,
         .mtime = 2000},
        {.name = "onlyB.txt", .type = '0', .mode = 0644, .data = "only in B\n", .len = 10},
    };
    int fa = make_blob(a, SL_ELEMENTSOF(a)), fb = make_blob(b, SL_ELEMENTSOF(b));
    import(w->store, fa, w->a);
    import(w->store, fb, w->b);
    close(fa);
    close(fb);
}

static void tree_path(struct world *w, const char *layer, const char *rel, char *out, size_t n)
{
    int k = snprintf(out, n, "%s/%.64s/%.100s", w->mat_dir, layer + 7, rel);
    assert_true(k > 0 && (size_t)k < n);
}

/* A world (world_open) holding layers A and B (make_layers). */
static void world_with_layers(struct world *w, enum sl_mat_mode mode)
{
    world_open(w, mode);
    make_layers(w);
}

/* Materialises a layer; fails the test with the error chain. */
static void materialize(struct world *w, const char *layer)
{
    sl_error_t err = NULL;
    int r = sl_mat_layer(w->mat, layer, &err);
    if (r < 0)
        fail_msg("materialize %s: %s", layer, sl_error_msg(err, r));
}

/* The TOC of a recorded layer (caller frees). */
static struct sl_toc *layer_toc(struct world *w, const char *layer)
{
    sl_error_t err = NULL;
    struct sl_store_layer l;
    assert_int_equal(sl_store_layer_get(w->store, layer, &l, &err), 0);
    struct sl_toc *toc = NULL;
    assert_int_equal(sl_store_layer_load_toc(&l, &toc, &err), 0);
    sl_store_layer_clear(&l);
    return toc;
}

/* A collector over the world without snapshots, with a 100 s grace. */
static struct sl_gc *gc_new(struct world *w)
{
    struct sl_gc_options go = {.store = w->store, .mat = w->mat, .grace_s = 100};
    struct sl_gc *gc = NULL;
    sl_error_t err = NULL;
    assert_int_equal(sl_gc_new(&go, &gc, &err), 0);
    return gc;
}

/* One collection (grace < 0: the configured one); fails the test with the error chain. */
static void gc_run(struct sl_gc *gc, int64_t grace, struct sl_gc_report *rep)
{
    sl_error_t err = NULL;
    int r = sl_gc_run(gc, grace, rep, &err);
    if (r < 0)
        fail_msg("gc: %s", sl_error_msg(err, r));
}

static void content_of(struct world *w, const char *layer, const char *rel, char *out, size_t n)
{
    struct sl_toc *toc = layer_toc(w, layer);
    const struct sl_toc_entry *e = sl_toc_find(toc, rel);
    assert_non_null(e);
    sl_store_content_path(w->store, e->digest, out, n);
    sl_toc_free(toc);
}

static void test_materialize_link(void **state)
{
    (void)state;
    struct world w;
    world_with_layers(&w, SL_MAT_LINK);
    sl_error_t err = NULL;
    materialize(&w, w.a);
    assert_true(sl_mat_has(w.mat, w.a));
    char p[512], q[512], c[512];
    struct stat st, st2, stc;
    /* shared.txt has a TOC hardlink (etc/hard): a copy of its own, link count exactly 2 */
    tree_path(&w, w.a, "etc/shared.txt", p, sizeof p);
    content_of(&w, w.a, "etc/shared.txt", c, sizeof c);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0644);
    assert_int_equal(st.st_mtime, 2000);
    assert_int_equal(st.st_nlink, 2);
    tree_path(&w, w.a, "etc/hard", q, sizeof q);
    assert_int_equal(stat(q, &st2), 0);
    assert_int_equal(st2.st_ino, st.st_ino);
    /* shared-exec: same content, the store's inode was unclaimed: it takes 0755 and is linked */
    tree_path(&w, w.a, "etc/shared-exec", q, sizeof q);
    assert_int_equal(stat(q, &st2), 0);
    assert_int_equal(stat(c, &stc), 0);
    assert_int_not_equal(st2.st_ino, st.st_ino);
    assert_int_equal(st2.st_ino, stc.st_ino);
    assert_int_equal(st2.st_mode & 07777, 0755);
    int fd = open(q, O_RDONLY);
    char buf[64] = {0};
    assert_int_equal(read(fd, buf, sizeof buf), (ssize_t)sizeof shared_data - 1);
    close(fd);
    assert_string_equal(buf, shared_data);
    /* owner and xattr of onlyA.bin, linked */
    tree_path(&w, w.a, "onlyA.bin", q, sizeof q);
    assert_int_equal(stat(q, &st2), 0);
    assert_int_equal(st2.st_uid, 1000);
    assert_int_equal(st2.st_size, CHUNK * 3 + 100);
    assert_true(st2.st_nlink >= 2);
    assert_int_equal(getxattr(q, "user.k", buf, sizeof buf), 1);
    /* overlay conventions */
    tree_path(&w, w.a, "etc/gone", q, sizeof q);
    assert_int_equal(lstat(q, &st2), 0);
    assert_true(S_ISCHR(st2.st_mode));
    assert_int_equal(st2.st_rdev, makedev(0, 0));
    tree_path(&w, w.a, "etc/.wh.gone", q, sizeof q);
    assert_int_not_equal(lstat(q, &st2), 0);
    tree_path(&w, w.a, "opq", q, sizeof q);
    assert_int_equal(getxattr(q, "trusted.overlay.opaque", buf, sizeof buf), 1);
    assert_int_equal(buf[0], 'y');
    assert_int_equal(stat(q, &st2), 0);
    assert_int_equal(st2.st_mode & 07777, 0700);
    tree_path(&w, w.a, "opq/.wh..wh..opq", q, sizeof q);
    assert_int_not_equal(lstat(q, &st2), 0);
    tree_path(&w, w.a, "etc/sym", q, sizeof q);
    assert_int_equal(readlink(q, buf, sizeof buf), 8);
    tree_path(&w, w.a, "fifo", q, sizeof q);
    assert_int_equal(lstat(q, &st2), 0);
    assert_true(S_ISFIFO(st2.st_mode));
    /* layer B: shared.txt wants 0644, the store's inode is claimed (0755, linked): a copy;
     * onlyB.txt is unclaimed: linked */
    materialize(&w, w.b);
    tree_path(&w, w.b, "etc/shared.txt", q, sizeof q);
    assert_int_equal(stat(q, &st2), 0);
    assert_int_not_equal(st2.st_ino, stc.st_ino);
    assert_int_equal(st2.st_mode & 07777, 0644);
    assert_int_equal(st2.st_nlink, 1);
    tree_path(&w, w.b, "onlyB.txt", q, sizeof q);
    content_of(&w, w.b, "onlyB.txt", c, sizeof c);
    assert_int_equal(stat(q, &st2), 0);
    assert_int_equal(stat(c, &stc), 0);
    assert_int_equal(st2.st_ino, stc.st_ino);
    /* the hook answers the tree */
    char *dir = NULL;
    assert_int_equal(sl_mat_lowerdir(w.mat, w.a, &dir, &err), 0);
    assert_non_null(strstr(dir, w.a + 7));
    free(dir);
    /* while traces are recorded, new mounts stay on FUSE (here: no fs, -ENOENT) */
    world_close(&w);
    g_tracing = true;
    world_open(&w, SL_MAT_LINK);
    dir = NULL;
    assert_true(sl_mat_has(w.mat, w.a)); /* adopted at start */
    assert_int_equal(sl_mat_lowerdir(w.mat, w.a, &dir, &err), -ENOENT);
    assert_null(dir);
    g_tracing = false;
    world_close(&w);
}

static void test_materialize_copy_and_escape(void **state)
{
    (void)state;
    struct world w;
    world_with_layers(&w, SL_MAT_COPY);
    materialize(&w, w.a);
    char p[512], c[512];
    struct stat st, stc;
    tree_path(&w, w.a, "etc/shared.txt", p, sizeof p);
    content_of(&w, w.a, "etc/shared.txt", c, sizeof c);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(stat(c, &stc), 0);
    assert_int_not_equal(st.st_ino, stc.st_ino);
    assert_int_equal(st.st_nlink, 2); /* itself + etc/hard, exactly as tar */
    /* a TOC whose file lies under its own symlink to a directory outside the tree */
    char outside[128];
    snprintf(outside, sizeof outside, "%s/outside", g_root);
    mkdir(outside, 0755);
    struct fmt_spec evil[] = {
        {.name = "esc", .type = '2', .link = outside},
        {.name = "esc/planted", .type = '0', .mode = 0644, .data = "x", .len = 1},
    };
    /* The layer writer refuses it ("parent `esc` is not a directory"), so no such blob can
     * be made here; the TOC reader refuses such a TOC too (tests/e2e/hostile feeds it to
     * the daemon), and the materialiser's O_NOFOLLOW walk would be the third line. */
    int tar = fmt_build_tar(evil, SL_ELEMENTSOF(evil), FMT_GZIP);
    assert_true(tar >= 0);
    int fd = memfd_create("blob", MFD_CLOEXEC);
    struct sl_format_options o = {.chunk_size = CHUNK, .threads = 1};
    struct sl_format_result res;
    sl_error_t ierr = NULL;
    int r = sl_format_convert(tar, fd, &o, &res, &ierr);
    close(tar);
    assert_true(r < 0);
    assert_non_null(strstr(sl_error_msg(ierr, r), "not a directory"));
    sl_error_free(&ierr);
    char d[SL_DIGEST_STR_LEN];
    ierr = NULL;
    r = sl_store_import_blob(w.store, fd, NULL, false, d, NULL, &ierr);
    close(fd);
    assert_true(r < 0); /* an empty/partial output is not a layer either */
    sl_error_free(&ierr);
    char planted[200];
    snprintf(planted, sizeof planted, "%s/planted", outside);
    assert_int_not_equal(access(planted, F_OK), 0);
    world_close(&w);
}

/* Runs one statement on the store's database through a second connection. */
static void db_exec(struct world *w, const char *sql)
{
    char db[200];
    snprintf(db, sizeof db, "%s/store.db", w->store_dir);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    sqlite3_busy_timeout(h, 5000);
    assert_int_equal(sqlite3_exec(h, sql, NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(h);
}

static int count_cb(void *ud, int n, char **v, char **names)
{
    (void)names;
    *(int *)ud = n > 0 && v[0] ? atoi(v[0]) : -1;
    return 0;
}

/* The integer a one-value query answers. */
static int db_count(struct world *w, const char *sql)
{
    char db[200];
    snprintf(db, sizeof db, "%s/store.db", w->store_dir);
    sqlite3 *h = NULL;
    assert_int_equal(sqlite3_open(db, &h), SQLITE_OK);
    int n = -1;
    assert_int_equal(sqlite3_exec(h, sql, count_cb, &n, NULL), SQLITE_OK);
    sqlite3_close(h);
    return n;
}

static void set_recorded(struct world *w, const char *layer, int64_t t)
{
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE layer SET created = %lld WHERE digest = '%s'", (long long)t,
             layer);
    db_exec(w, sql);
}

static void test_collect(void **state)
{
    (void)state;
    struct world w;
    world_with_layers(&w, SL_MAT_LINK);
    sl_error_t err = NULL;
    materialize(&w, w.a);
    materialize(&w, w.b);
    char only_a[512], shared[512], only_b[512];
    content_of(&w, w.a, "onlyA.bin", only_a, sizeof only_a);
    content_of(&w, w.a, "etc/shared.txt", shared, sizeof shared);
    content_of(&w, w.b, "onlyB.txt", only_b, sizeof only_b);
    /* A is old, B recorded now: with a grace of 100 s only A goes */
    set_recorded(&w, w.a, 1000);
    /* a stray file left by a crash (no record names it) */
    char stray_dir[200], stray[300];
    snprintf(stray_dir, sizeof stray_dir, "%s/content/sha256/ee", w.store_dir);
    mkdir(stray_dir, 0700);
    snprintf(stray, sizeof stray, "%s/ee%062d", stray_dir, 0);
    int fd = open(stray, O_WRONLY | O_CREAT, 0600);
    assert_int_equal(write(fd, "junk", 4), 4);
    close(fd);
    /* a reader holds onlyA.bin open */
    struct sl_toc *toc = layer_toc(&w, w.a);
    const struct sl_toc_entry *e = sl_toc_find(toc, "onlyA.bin");
    char only_a_digest[SL_DIGEST_STR_LEN];
    snprintf(only_a_digest, sizeof only_a_digest, "%s", e->digest);
    struct sl_store_content *h = NULL;
    assert_int_equal(sl_store_content_open(w.store, e->digest, e->size, &h, &err), 0);

    struct sl_gc *gc = gc_new(&w);
    struct sl_gc_report rep;
    gc_run(gc, -1, &rep);
    assert_int_equal(rep.n_removed, 1);
    assert_string_equal(rep.removed[0], w.a);
    assert_int_equal(rep.layers_kept, 1);
    assert_int_equal(rep.contents_busy, 1); /* onlyA.bin: held */
    assert_int_equal(rep.files_swept, 1);
    assert_true(access(only_a, F_OK) == 0);
    assert_true(access(shared, F_OK) == 0); /* B still uses it */
    assert_true(access(only_b, F_OK) == 0);
    assert_true(access(stray, F_OK) != 0);
    char p[512];
    tree_path(&w, w.a, "", p, sizeof p);
    assert_true(access(p, F_OK) != 0);
    assert_false(sl_mat_has(w.mat, w.a));
    struct sl_store_layer l;
    assert_int_equal(sl_store_layer_get(w.store, w.a, &l, NULL), -ENOENT);
    sl_gc_report_clear(&rep);

    /* released: the next run removes it and counts its blocks */
    sl_store_content_unref(h);
    gc_run(gc, -1, &rep);
    assert_int_equal(rep.n_removed, 0);
    assert_int_equal(rep.contents_removed, 1);
    assert_true(rep.bytes_freed >= CHUNK * 3);
    assert_true(access(only_a, F_OK) != 0);
    assert_int_equal(sl_store_content_state(w.store, e->digest), SL_STORE_ABSENT);
    sl_gc_report_clear(&rep);

    /* B pinned (an in-flight pull's layer): even grace 0 keeps it */
    sl_store_layer_pin(w.store, w.b);
    sl_store_layer_pin(w.store, w.b);
    sl_store_layer_unpin(w.store, w.b); /* counted: still pinned once */
    assert_true(sl_store_layer_pinned(w.store, w.b));
    gc_run(gc, 0, &rep);
    assert_int_equal(rep.n_removed, 0);
    assert_int_equal(rep.layers_kept, 1);
    assert_true(access(only_b, F_OK) == 0);
    assert_int_equal(sl_store_layer_get(w.store, w.b, &l, NULL), 0);
    sl_store_layer_clear(&l);
    sl_gc_report_clear(&rep);
    sl_store_layer_unpin(w.store, w.b);
    assert_false(sl_store_layer_pinned(w.store, w.b));

    /* grace 0 takes B too; everything goes, B's tree included */
    gc_run(gc, 0, &rep);
    assert_int_equal(rep.n_removed, 1);
    assert_true(access(shared, F_OK) != 0);
    assert_true(access(only_b, F_OK) != 0);
    sl_gc_report_clear(&rep);

    /* JSON for the control API */
    char *json = NULL;
    assert_int_equal(sl_gc_control(gc, 0, &json, &err), 0);
    assert_non_null(strstr(json, "\"layersRemoved\":[]"));
    free(json);
    sl_gc_free(gc);
    sl_toc_free(toc);

    /* the same layer imported again after collection is whole again */
    world_close(&w);
    world_with_layers(&w, SL_MAT_LINK);
    assert_int_equal(sl_store_content_state(w.store, only_a_digest), SL_STORE_COMPLETE);
    world_close(&w);
}

/* A resume point of a pull whose answer listed `layers` (NULL-terminated). */
static void put_resume(struct world *w, const char *key, const char **layers)
{
    size_t n = 0;
    while (layers && layers[n])
        n++;
    struct sl_store_resume rp = {.url = (char *)"http://proxy/starlight/delta",
                                 .etag = (char *)"\"e1\"",
                                 .head_len = 4096,
                                 .payload_off = 8192,
                                 .layers = (char **)layers,
                                 .n_layers = n};
    sl_error_t err = NULL;
    assert_int_equal(sl_store_resume_put(w->store, key, &rp, &err), 0);
}

static bool has_resume(struct world *w, const char *key)
{
    struct sl_store_resume rp;
    int r = sl_store_resume_get(w->store, key, &rp, NULL);
    sl_store_resume_clear(&rp);
    assert_true(r == 0 || r == -ENOENT);
    return r == 0;
}

static void test_collect_resume_points(void **state)
{
    (void)state;
    struct world w;
    world_with_layers(&w, SL_MAT_LINK);
    const char *only_a[] = {w.a, NULL}, *only_b[] = {w.b, NULL}, *both[] = {w.b, w.a, NULL};
    put_resume(&w, "p imgA", only_a);
    put_resume(&w, "p imgB", only_b);
    put_resume(&w, "p imgAB", both);
    put_resume(&w, "p legacy", NULL); /* written before points named their layers */
    struct sl_store_resume rp;
    sl_error_t err = NULL;
    assert_int_equal(sl_store_resume_get(w.store, "p imgAB", &rp, &err), 0);
    assert_int_equal(rp.n_layers, 2);
    sl_store_resume_clear(&rp);
    /* an upsert replaces the layer list */
    put_resume(&w, "p imgB", only_a);
    put_resume(&w, "p imgB", only_b);
    assert_int_equal(sl_store_resume_get(w.store, "p imgB", &rp, &err), 0);
    assert_int_equal(rp.n_layers, 1);
    assert_string_equal(rp.layers[0], w.b);
    sl_store_resume_clear(&rp);

    /* A is collected: the points naming it go, B's and the recent legacy one stay */
    set_recorded(&w, w.a, 1000);
    struct sl_gc *gc = gc_new(&w);
    struct sl_gc_report rep;
    gc_run(gc, -1, &rep);
    assert_int_equal(rep.n_removed, 1);
    assert_int_equal(rep.resume_removed, 2);
    sl_gc_report_clear(&rep);
    assert_false(has_resume(&w, "p imgA"));
    assert_false(has_resume(&w, "p imgAB"));
    assert_true(has_resume(&w, "p imgB"));
    assert_true(has_resume(&w, "p legacy"));
    assert_int_equal(db_count(&w, "SELECT count(*) FROM pull_resume_layer"), 1); /* B's only */

    /* a run that collects nothing keeps every point; an old legacy point goes by age */
    gc_run(gc, -1, &rep);
    assert_int_equal(rep.resume_removed, 0);
    sl_gc_report_clear(&rep);
    db_exec(&w, "UPDATE pull_resume SET updated = 1000");
    gc_run(gc, -1, &rep);
    assert_int_equal(rep.resume_removed, 1);
    sl_gc_report_clear(&rep);
    assert_false(has_resume(&w, "p legacy"));
    assert_true(has_resume(&w, "p imgB")); /* B is still recorded: age alone never drops it */

    /* B goes too: so does its point */
    char *json = NULL;
    assert_int_equal(sl_gc_control(gc, 0, &json, &err), 0);
    assert_non_null(strstr(json, "\"resumePointsRemoved\":1"));
    free(json);
    assert_false(has_resume(&w, "p imgB"));
    sl_gc_free(gc);
    world_close(&w);
}

static void test_high_water_parse(void **state)
{
    (void)state;
    int64_t pct;
    uint64_t bytes;
    assert_int_equal(sl_gc_parse_high_water("90%", &pct, &bytes, NULL), 0);
    assert_int_equal(pct, 90);
    assert_int_equal(sl_gc_parse_high_water("2GiB", &pct, &bytes, NULL), 0);
    assert_int_equal(bytes, 2ull << 30);
    assert_int_equal(sl_gc_parse_high_water("0", &pct, &bytes, NULL), 0);
    assert_true(pct == 0 && bytes == 0);
    assert_int_equal(sl_gc_parse_high_water("100%", &pct, &bytes, NULL), -EINVAL);
    assert_int_equal(sl_gc_parse_high_water("lots", &pct, &bytes, NULL), -EINVAL);
    enum sl_mat_mode m;
    assert_int_equal(sl_mat_parse_mode("copy", &m), 0);
    assert_int_equal(m, SL_MAT_COPY);
    assert_int_equal(sl_mat_parse_mode("hard", &m), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_materialize_link, setup, teardown),
        cmocka_unit_test_setup_teardown(test_materialize_copy_and_escape, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_collect_resume_points, setup, teardown),
        cmocka_unit_test(test_high_water_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
