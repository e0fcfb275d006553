/* Snapshot state machine: kinds, parents, labels, mounts (lowerdir order, binds), the
 * Starlight lowerdir hook, errors as containerd's errdefs classes, usage, persistence across
 * reopen and cleanup of orphan directories. A temporary root; nothing is mounted. */
#include "test.h"

#include "cleanup.h"
#include "snapshotter.h"
#include "snapfs.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char root[] = "/tmp/sl-test-snap.XXXXXX";

static int setup(void **state)
{
    (void)state;
    strcpy(root, "/tmp/sl-test-snap.XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return sl_snapfs_rmtree(AT_FDCWD, root);
}

static struct sl_snap *open_snap(const struct sl_snap_hooks *hooks)
{
    struct sl_snap *s = NULL;
    sl_error_t err = NULL;
    int r = sl_snap_open(root, hooks, &s, &err);
    if (r < 0)
        fprintf(stderr, "open: %s\n", sl_error_msg(err, r));
    assert_int_equal(r, 0);
    sl_error_free(&err);
    return s;
}

static const char *opt(const struct sl_snap_mount *m, const char *prefix)
{
    for (size_t i = 0; i < m->noptions; i++)
        if (strncmp(m->options[i], prefix, strlen(prefix)) == 0)
            return m->options[i] + strlen(prefix);
    return NULL;
}

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "we");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

/* prepare + commit a chain of layers "l1" <- "l2" <- ...; returns nothing */
static void make_layer(struct sl_snap *s, const char *name, const char *parent,
                       const struct sl_snap_label *labels, size_t nlabels)
{
    _cleanup_free_ char *key = sl_xasprintf("default/1/extract-%s", name);
    struct sl_snap_mounts m = {0};
    assert_int_equal(sl_snap_prepare(s, key, parent, NULL, 0, &m, NULL), 0);
    sl_snap_mounts_clear(&m);
    assert_int_equal(sl_snap_commit(s, name, key, labels, nlabels, NULL), 0);
}

static void test_bind_and_commit(void **state)
{
    (void)state;
    struct sl_snap *s = open_snap(NULL);
    struct sl_snap_label lab = {"containerd.io/snapshot.ref", "x"};
    struct sl_snap_mounts m = {0};
    assert_int_equal(sl_snap_prepare(s, "default/1/a", "", &lab, 1, &m, NULL), 0);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.v[0].type, "bind");
    assert_int_equal(m.v[0].noptions, 2);
    assert_string_equal(m.v[0].options[0], "rw");
    assert_string_equal(m.v[0].options[1], "rbind");
    struct stat st;
    assert_int_equal(stat(m.v[0].source, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    _cleanup_free_ char *work = sl_xasprintf("%s/../work", m.v[0].source);
    assert_int_equal(stat(work, &st), 0);
    _cleanup_free_ char *file = sl_xasprintf("%s/hello", m.v[0].source);
    write_file(file, "hello world\n");
    sl_snap_mounts_clear(&m);

    struct sl_snap_usage u;
    assert_int_equal(sl_snap_usage(s, "default/1/a", &u, NULL), 0);
    assert_int_equal(u.inodes, 2);
    assert_true(u.size > 0);

    struct sl_snap_label clab = {"containerd.io/snapshot/x", "y"};
    assert_int_equal(sl_snap_commit(s, "sha256:aaa", "default/1/a", &clab, 1, NULL), 0);
    struct sl_snap_info info = {0};
    assert_int_equal(sl_snap_stat(s, "default/1/a", &info, NULL), -ENOENT);
    assert_int_equal(sl_snap_stat(s, "sha256:aaa", &info, NULL), 0);
    assert_int_equal(info.kind, SL_SNAP_KIND_COMMITTED);
    assert_null(info.parent);
    /* labels replaced on commit, not inherited */
    assert_int_equal(info.nlabels, 1);
    assert_string_equal(info.labels[0].key, "containerd.io/snapshot/x");
    assert_true(info.created_ns > 0 && info.updated_ns == info.created_ns);
    sl_snap_info_clear(&info);
    struct sl_snap_usage cu;
    assert_int_equal(sl_snap_usage(s, "sha256:aaa", &cu, NULL), 0);
    assert_int_equal(cu.size, u.size);
    assert_int_equal(cu.inodes, u.inodes);
    /* a committed snapshot has no mounts */
    assert_int_equal(sl_snap_mounts(s, "sha256:aaa", &m, NULL), -EBUSY);
    sl_snap_close(s);
}

static void test_overlay_order(void **state)
{
    (void)state;
    struct sl_snap *s = open_snap(NULL);
    make_layer(s, "l1", NULL, NULL, 0);
    make_layer(s, "l2", "l1", NULL, 0);
    make_layer(s, "l3", "l2", NULL, 0);
    struct sl_snap_info i1 = {0}, i3 = {0};
    assert_int_equal(sl_snap_stat(s, "l3", &i3, NULL), 0);
    assert_string_equal(i3.parent, "l2");
    sl_snap_info_clear(&i3);
    assert_int_equal(sl_snap_stat(s, "l1", &i1, NULL), 0);
    sl_snap_info_clear(&i1);

    struct sl_snap_mounts m = {0};
    assert_int_equal(sl_snap_prepare(s, "ctr", "l3", NULL, 0, &m, NULL), 0);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.v[0].type, "overlay");
    assert_string_equal(m.v[0].source, "overlay");
    const char *lower = opt(&m.v[0], "lowerdir=");
    assert_non_null(lower);
    /* ids 1,2,3 are l1,l2,l3: top-most (l3) first */
    _cleanup_free_ char *want =
        sl_xasprintf("%s/snapshots/3/fs:%s/snapshots/2/fs:%s/snapshots/1/fs", root, root, root);
    assert_string_equal(lower, want);
    _cleanup_free_ char *upper = sl_xasprintf("%s/snapshots/4/fs", root);
    _cleanup_free_ char *work = sl_xasprintf("%s/snapshots/4/work", root);
    assert_string_equal(opt(&m.v[0], "upperdir="), upper);
    assert_string_equal(opt(&m.v[0], "workdir="), work);
    /* lowerdir is the last option, after workdir/upperdir (as containerd) */
    assert_ptr_equal(m.v[0].options[m.v[0].noptions - 1], lower - strlen("lowerdir="));
    sl_snap_mounts_clear(&m);

    /* Mounts() gives the same again */
    assert_int_equal(sl_snap_mounts(s, "ctr", &m, NULL), 0);
    assert_string_equal(opt(&m.v[0], "lowerdir="), want);
    sl_snap_mounts_clear(&m);

    /* view on one parent: read-only bind of the parent's directory */
    assert_int_equal(sl_snap_view(s, "v1", "l1", NULL, 0, &m, NULL), 0);
    assert_string_equal(m.v[0].type, "bind");
    _cleanup_free_ char *l1 = sl_xasprintf("%s/snapshots/1/fs", root);
    assert_string_equal(m.v[0].source, l1);
    assert_string_equal(m.v[0].options[0], "ro");
    sl_snap_mounts_clear(&m);
    /* view on several: overlay without upper */
    assert_int_equal(sl_snap_view(s, "v2", "l2", NULL, 0, &m, NULL), 0);
    assert_string_equal(m.v[0].type, "overlay");
    assert_null(opt(&m.v[0], "upperdir="));
    assert_null(opt(&m.v[0], "workdir="));
    sl_snap_mounts_clear(&m);
    /* view without parent: ro bind of its own dir */
    assert_int_equal(sl_snap_view(s, "v0", NULL, NULL, 0, &m, NULL), 0);
    assert_string_equal(m.v[0].type, "bind");
    assert_string_equal(m.v[0].options[0], "ro");
    sl_snap_mounts_clear(&m);
    struct sl_snap_usage u;
    assert_int_equal(sl_snap_usage(s, "v0", &u, NULL), 0);
    assert_int_equal(u.size, 0);
    sl_snap_close(s);
}

static void test_errors(void **state)
{
    (void)state;
    struct sl_snap *s = open_snap(NULL);
    struct sl_snap_mounts m = {0};
    sl_error_t err = NULL;
    make_layer(s, "base", NULL, NULL, 0);
    assert_int_equal(sl_snap_prepare(s, "a", "base", NULL, 0, &m, NULL), 0);
    sl_snap_mounts_clear(&m);
    assert_int_equal(sl_snap_prepare(s, "a", "base", NULL, 0, &m, &err), -EEXIST);
    assert_non_null(strstr(sl_error_msg(err, -EEXIST), "a"));
    sl_error_free(&err);
    assert_int_equal(sl_snap_prepare(s, "b", "nope", NULL, 0, &m, NULL), -ENOENT);
    assert_int_equal(sl_snap_prepare(s, "b", "a", NULL, 0, &m, NULL), -EINVAL); /* active */
    assert_int_equal(sl_snap_prepare(s, "", NULL, NULL, 0, &m, NULL), -EINVAL);
    assert_int_equal(sl_snap_commit(s, "base", "a", NULL, 0, NULL), -EEXIST);
    assert_int_equal(sl_snap_commit(s, "x", "base", NULL, 0, NULL), -EBUSY);
    assert_int_equal(sl_snap_commit(s, "x", "missing", NULL, 0, NULL), -ENOENT);
    assert_int_equal(sl_snap_remove(s, "base", &err), -ENOTEMPTY);
    sl_error_free(&err);
    assert_int_equal(sl_snap_remove(s, "missing", NULL), -ENOENT);
    assert_int_equal(sl_snap_mounts(s, "missing", &m, NULL), -ENOENT);
    struct sl_snap_usage u;
    assert_int_equal(sl_snap_usage(s, "missing", &u, NULL), -ENOENT);
    /* an over-long label is refused */
    _cleanup_free_ char *big = sl_xmalloc(5000);
    memset(big, 'v', 4999);
    big[4999] = '\0';
    struct sl_snap_label lab = {"k", big};
    assert_int_equal(sl_snap_prepare(s, "c", NULL, &lab, 1, &m, NULL), -EINVAL);
    /* nothing half-made is left after the failures */
    struct sl_snap_info_list l = {0};
    assert_int_equal(sl_snap_list(s, NULL, 0, &l, NULL), 0);
    assert_int_equal(l.n, 2);
    sl_snap_info_list_clear(&l);
    /* removing the child then the parent works and deletes the directories */
    assert_int_equal(sl_snap_remove(s, "a", NULL), 0);
    assert_int_equal(sl_snap_remove(s, "base", NULL), 0);
    _cleanup_free_ char *d1 = sl_xasprintf("%s/snapshots/1", root);
    _cleanup_free_ char *d2 = sl_xasprintf("%s/snapshots/2", root);
    assert_int_equal(access(d1, F_OK), -1);
    assert_int_equal(access(d2, F_OK), -1);
    sl_snap_close(s);
}

static void test_update_list(void **state)
{
    (void)state;
    struct sl_snap *s = open_snap(NULL);
    struct sl_snap_label labs[] = {{"a", "1"}, {"b", "2"}};
    make_layer(s, "l1", NULL, labs, 2);
    make_layer(s, "l2", "l1", NULL, 0);
    struct sl_snap_mounts m = {0};
    assert_int_equal(sl_snap_prepare(s, "default/5/ctr", "l2", NULL, 0, &m, NULL), 0);
    sl_snap_mounts_clear(&m);

    struct sl_snap_label nl[] = {{"b", "22"}, {"c", "3"}};
    struct sl_snap_info in = {.name = "l1", .labels = nl, .nlabels = 2};
    struct sl_snap_info out = {0};
    const char *paths[] = {"labels.b", "labels.a"}; /* a absent from `in`: deleted */
    assert_int_equal(sl_snap_update(s, &in, paths, 2, &out, NULL), 0);
    assert_int_equal(out.nlabels, 1);
    assert_string_equal(out.labels[0].key, "b");
    assert_string_equal(out.labels[0].value, "22");
    assert_true(out.updated_ns >= out.created_ns);
    sl_snap_info_clear(&out);
    assert_int_equal(sl_snap_update(s, &in, NULL, 0, &out, NULL), 0); /* replace all */
    assert_int_equal(out.nlabels, 2);
    sl_snap_info_clear(&out);
    const char *bad[] = {"parent"};
    assert_int_equal(sl_snap_update(s, &in, bad, 1, &out, NULL), -EINVAL);
    in.name = "nope";
    assert_int_equal(sl_snap_update(s, &in, NULL, 0, &out, NULL), -ENOENT);

    struct sl_snap_info_list l = {0};
    assert_int_equal(sl_snap_list(s, NULL, 0, &l, NULL), 0);
    assert_int_equal(l.n, 3);
    assert_string_equal(l.v[0].name, "default/5/ctr"); /* sorted by name */
    sl_snap_info_list_clear(&l);
    const char *f1[] = {"kind==active"};
    assert_int_equal(sl_snap_list(s, f1, 1, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].name, "default/5/ctr");
    sl_snap_info_list_clear(&l);
    const char *f2[] = {"labels.c==3", "parent==l1"}; /* or */
    assert_int_equal(sl_snap_list(s, f2, 2, &l, NULL), 0);
    assert_int_equal(l.n, 2);
    sl_snap_info_list_clear(&l);
    const char *f3[] = {"kind==committed,labels.\"c\""}; /* and, quoted key, presence */
    assert_int_equal(sl_snap_list(s, f3, 1, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.v[0].name, "l1");
    sl_snap_info_list_clear(&l);
    const char *f4[] = {"name~=^default/[0-9]+/"};
    assert_int_equal(sl_snap_list(s, f4, 1, &l, NULL), 0);
    assert_int_equal(l.n, 1);
    sl_snap_info_list_clear(&l);
    const char *f5[] = {"bogus==1"};
    assert_int_equal(sl_snap_list(s, f5, 1, &l, NULL), -EINVAL);
    sl_snap_close(s);
}

/* ---- the Starlight hook ---- */

struct hook_state {
    int calls;
    int result;
};

static int hook_lowerdir(void *ud, const char *digest, char **ret, sl_error_t *err)
{
    struct hook_state *h = ud;
    h->calls++;
    if (h->result < 0)
        return sl_error_make(err, -h->result, "layer %s not served", digest);
    *ret = sl_xasprintf("/fuse/layers/%s", digest);
    return 0;
}

static void test_starlight_hook(void **state)
{
    (void)state;
    struct hook_state h = {0, 0};
    struct sl_snap_hooks hooks = {.ud = &h, .lowerdir = hook_lowerdir};
    struct sl_snap *s = open_snap(&hooks);
    struct sl_snap_label sl1 = {SL_SNAP_LABEL_STARLIGHT_LAYER, "sha256:l1"};
    make_layer(s, "l1", NULL, &sl1, 1);
    make_layer(s, "l2", "l1", NULL, 0); /* an ordinary layer on top */
    struct sl_snap_mounts m = {0};
    assert_int_equal(sl_snap_prepare(s, "c", "l2", NULL, 0, &m, NULL), 0);
    _cleanup_free_ char *want = sl_xasprintf("%s/snapshots/2/fs:/fuse/layers/sha256:l1", root);
    assert_string_equal(opt(&m.v[0], "lowerdir="), want);
    assert_int_equal(h.calls, 2); /* l2's own prepare had l1 below it too */
    sl_snap_mounts_clear(&m);
    /* single Starlight parent of a view: ro bind of the FUSE directory */
    assert_int_equal(sl_snap_view(s, "v", "l1", NULL, 0, &m, NULL), 0);
    assert_string_equal(m.v[0].source, "/fuse/layers/sha256:l1");
    sl_snap_mounts_clear(&m);
    /* -ENOENT (not served): the call fails, never mounts the layer's empty own directory */
    h.result = -ENOENT;
    sl_error_t err = NULL;
    assert_int_equal(sl_snap_mounts(s, "c", &m, &err), -EIO);
    assert_non_null(strstr(sl_error_msg(err, -EIO), "not served on this node"));
    assert_int_equal(m.n, 0);
    sl_error_free(&err);
    assert_int_equal(sl_snap_view(s, "v2", "l1", NULL, 0, &m, NULL), -EIO);
    /* ... except the Prepare of a Starlight layer's own snapshot (the registration's) */
    struct sl_snap_label sl3 = {SL_SNAP_LABEL_STARLIGHT_LAYER, "sha256:l3"};
    assert_int_equal(sl_snap_prepare(s, "l3-prep", "l1", &sl3, 1, &m, NULL), 0);
    sl_snap_mounts_clear(&m);
    _cleanup_free_ char *plain = sl_xasprintf("%s/snapshots/2/fs:%s/snapshots/1/fs", root, root);
    /* another error fails the call */
    h.result = -EIO;
    assert_int_equal(sl_snap_mounts(s, "c", &m, &err), -EIO);
    assert_non_null(strstr(sl_error_msg(err, -EIO), "sha256:l1"));
    sl_error_free(&err);
    sl_snap_close(s);

    /* without a hook the label changes nothing */
    s = open_snap(NULL);
    assert_int_equal(sl_snap_mounts(s, "c", &m, NULL), 0);
    assert_string_equal(opt(&m.v[0], "lowerdir="), plain);
    sl_snap_mounts_clear(&m);
    sl_snap_close(s);
}

static void test_reopen_cleanup_usage(void **state)
{
    (void)state;
    struct sl_snap *s = open_snap(NULL);
    make_layer(s, "l1", NULL, NULL, 0);
    struct sl_snap_mounts m = {0};
    assert_int_equal(sl_snap_prepare(s, "act", "l1", NULL, 0, &m, NULL), 0);
    sl_snap_mounts_clear(&m);
    /* hardlinks count once */
    _cleanup_free_ char *f = sl_xasprintf("%s/snapshots/2/fs/f", root);
    _cleanup_free_ char *g = sl_xasprintf("%s/snapshots/2/fs/g", root);
    write_file(f, "0123456789");
    assert_int_equal(link(f, g), 0);
    struct sl_snap_usage u;
    assert_int_equal(sl_snap_usage(s, "act", &u, NULL), 0);
    assert_int_equal(u.inodes, 2);
    sl_snap_close(s);

    /* orphans of a crash: a directory with no row and a half-made temp dir */
    _cleanup_free_ char *o1 = sl_xasprintf("%s/snapshots/99", root);
    _cleanup_free_ char *o2 = sl_xasprintf("%s/snapshots/new-abcdef", root);
    _cleanup_free_ char *o3 = sl_xasprintf("%s/snapshots/new-abcdef/fs", root);
    assert_int_equal(mkdir(o1, 0700), 0);
    assert_int_equal(mkdir(o2, 0700), 0);
    assert_int_equal(mkdir(o3, 0700), 0);
    s = open_snap(NULL);
    assert_int_equal(access(o1, F_OK), -1);
    assert_int_equal(access(o2, F_OK), -1);
    struct sl_snap_info info = {0};
    assert_int_equal(sl_snap_stat(s, "act", &info, NULL), 0);
    assert_int_equal(info.kind, SL_SNAP_KIND_ACTIVE);
    assert_string_equal(info.parent, "l1");
    sl_snap_info_clear(&info);
    assert_int_equal(access(f, F_OK), 0);
    /* ids are never reused: a new snapshot after removals gets a fresh one */
    assert_int_equal(sl_snap_remove(s, "act", NULL), 0);
    assert_int_equal(sl_snap_prepare(s, "act2", "l1", NULL, 0, &m, NULL), 0);
    _cleanup_free_ char *upper = sl_xasprintf("%s/snapshots/3/fs", root);
    assert_string_equal(opt(&m.v[0], "upperdir="), upper);
    sl_snap_mounts_clear(&m);
    mkdir(o1, 0700);
    assert_int_equal(sl_snap_cleanup(s, NULL), 0);
    assert_int_equal(access(o1, F_OK), -1);
    assert_int_equal(access(upper, F_OK), 0);
    sl_snap_close(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bind_and_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlay_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_starlight_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_cleanup_usage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
