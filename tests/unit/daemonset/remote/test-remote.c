/* The remote-snapshot path: labels -> target (CRI and stargz names, the daemon's own
 * registration ignored), the snapshotter's remote_prepare hook (-EEXIST becomes the Prepare's
 * answer and nothing is created; calls without snapshot.ref never reach it), containerd's
 * `parent==""` walk, and the fallback when the proxy is unreachable (Prepare goes on normally,
 * starlight_fallbacks_total counts the image once). Temporary roots; nothing is mounted. */
#include "test.h"

#include "buf.h"
#include "cleanup.h"
#include "metrics.h"
#include "remote.h"
#include "snapfs.h"
#include "snapshotter.h"
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static char root[] = "/tmp/sl-test-remote.XXXXXX";

static int setup(void **state)
{
    (void)state;
    strcpy(root, "/tmp/sl-test-remote.XXXXXX");
    return mkdtemp(root) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return sl_snapfs_rmtree(AT_FDCWD, root);
}

#define CHAIN "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define LAYER "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static void test_parse(void **state)
{
    (void)state;
    struct sl_remote_target t;
    const struct sl_snap_label cri[] = {
        {"containerd.io/snapshot.ref", CHAIN},
        {SL_REMOTE_LABEL_CRI_REF, "reg.example/app:1"},
        {SL_REMOTE_LABEL_CRI_LAYER, LAYER},
        {"containerd.io/snapshot/cri.image-layers", LAYER},
    };
    assert_int_equal(sl_remote_parse("k8s.io/12/extract-1 " CHAIN, cri, 4, &t), 1);
    assert_string_equal(t.ns, "k8s.io");
    assert_string_equal(t.chain, CHAIN);
    assert_string_equal(t.ref, "reg.example/app:1");
    assert_string_equal(t.layer, LAYER);

    const struct sl_snap_label sgz[] = {
        {SL_REMOTE_LABEL_STARGZ_REF, "127.0.0.1:5000/busybox:sl"},
        {SL_REMOTE_LABEL_STARGZ_LAYER, LAYER},
        {"containerd.io/snapshot/remote/stargz.layers", LAYER},
        {"containerd.io/snapshot.ref", CHAIN},
    };
    assert_int_equal(sl_remote_parse("default/3/extract-9", sgz, 4, &t), 1);
    assert_string_equal(t.ns, "default");
    assert_string_equal(t.ref, "127.0.0.1:5000/busybox:sl");
    assert_string_equal(t.layer, LAYER);

    /* not candidates: no image reference, no snapshot.ref, no namespace, our registration */
    assert_int_equal(sl_remote_parse("default/3/x", cri, 1, &t), 0);
    assert_int_equal(sl_remote_parse("default/3/x", cri + 1, 3, &t), 0);
    assert_int_equal(sl_remote_parse("nonamespace", cri, 4, &t), 0);
    assert_int_equal(sl_remote_parse("/3/x", cri, 4, &t), 0);
    const struct sl_snap_label own[] = {
        {"containerd.io/snapshot.ref", CHAIN},
        {SL_SNAP_LABEL_STARLIGHT_LAYER, LAYER},
        {SL_REMOTE_LABEL_CRI_REF, "reg.example/app:1"},
    };
    assert_int_equal(sl_remote_parse("default/3/x", own, 3, &t), 0);
}

/* A fake remote side: commits the target itself (as the pull's registration would) and
 * answers -EEXIST. */
struct fake {
    struct sl_snap *s;
    int calls;
};

static int fake_hook(void *ud, const char *key, const char *parent,
                     const struct sl_snap_label *labels, size_t nlabels, sl_error_t *err)
{
    (void)key;
    (void)parent;
    struct fake *f = ud;
    f->calls++;
    const char *chain = NULL;
    for (size_t i = 0; i < nlabels; i++)
        if (strcmp(labels[i].key, SL_SNAP_LABEL_REF) == 0)
            chain = labels[i].value;
    if (!chain || strcmp(chain, CHAIN) != 0)
        return 0;
    struct sl_snap_mounts m = {0};
    const struct sl_snap_label l[] = {{SL_SNAP_LABEL_REF, CHAIN}};
    assert_int_equal(sl_snap_prepare(f->s, "default/1/reg", NULL, NULL, 0, &m, NULL), 0);
    sl_snap_mounts_clear(&m);
    assert_int_equal(sl_snap_commit(f->s, "default/2/" CHAIN, "default/1/reg", l, 1, NULL), 0);
    return -EEXIST;
}

static void test_hook(void **state)
{
    (void)state;
    struct fake f = {0};
    struct sl_snap_hooks hooks = {.remote_ud = &f, .remote_prepare = fake_hook};
    sl_error_t err = NULL;
    assert_int_equal(sl_snap_open(root, &hooks, &f.s, &err), 0);
    struct sl_snap_mounts m = {0};
    /* no snapshot.ref: the hook is not called */
    assert_int_equal(sl_snap_prepare(f.s, "default/3/plain", NULL, NULL, 0, &m, &err), 0);
    sl_snap_mounts_clear(&m);
    assert_int_equal(f.calls, 0);
    /* a target the hook serves: ALREADY_EXISTS, the key is not created */
    const struct sl_snap_label l[] = {{SL_SNAP_LABEL_REF, CHAIN}};
    assert_int_equal(sl_snap_prepare(f.s, "default/4/extract", NULL, l, 1, &m, &err), -EEXIST);
    assert_non_null(err);
    sl_error_free(&err);
    assert_int_equal(f.calls, 1);
    struct sl_snap_info info = {0};
    assert_int_equal(sl_snap_stat(f.s, "default/4/extract", &info, NULL), -ENOENT);
    /* what containerd walks for next: the committed target on parent "" */
    const char *flt[] = {"labels.\"containerd.io/snapshot.ref\"==" CHAIN ",parent==\"\""};
    struct sl_snap_info_list list = {0};
    assert_int_equal(sl_snap_list(f.s, flt, 1, &list, NULL), 0);
    assert_int_equal(list.n, 1);
    assert_string_equal(list.v[0].name, "default/2/" CHAIN);
    sl_snap_info_list_clear(&list);
    /* another target: a normal prepare */
    const struct sl_snap_label o[] = {{SL_SNAP_LABEL_REF, "sha256:other"}};
    assert_int_equal(sl_snap_prepare(f.s, "default/5/extract", NULL, o, 1, &m, &err), 0);
    sl_snap_mounts_clear(&m);
    assert_int_equal(f.calls, 2);
    sl_snap_close(f.s);
}

static int no_register(void *ud, const struct sl_delta_header *h, const char *ns,
                       int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud, sl_error_t *err)
{
    (void)gate;
    (void)gate_ud;
    (void)ud;
    (void)h;
    (void)ns;
    return sl_error_make(err, EIO, "not reached");
}

static double fallbacks(struct sl_metrics *m)
{
    _cleanup_buf_ struct sl_buf b;
    sl_buf_init(&b, 1 << 20);
    assert_int_equal(sl_metrics_render(m, &b), 0);
    const char *p = strstr(b.data, "\nstarlight_fallbacks_total ");
    assert_non_null(p);
    return strtod(p + strlen("\nstarlight_fallbacks_total "), NULL);
}

static void test_unreachable(void **state)
{
    (void)state;
    _cleanup_free_ char *sdir = sl_xasprintf("%s/store", root);
    _cleanup_free_ char *snapdir = sl_xasprintf("%s/snap", root);
    assert_int_equal(mkdir(snapdir, 0700), 0);
    sl_error_t err = NULL;
    struct sl_store *store = NULL;
    assert_int_equal(sl_store_open(sdir, NULL, &store, &err), 0);
    struct sl_metrics *mx = sl_metrics_new();
    /* port 1 on loopback: connection refused at once */
    struct sl_remote_options o = {.proxy_url = "http://127.0.0.1:1",
                                  .store = store,
                                  .on_register = no_register,
                                  .metrics = mx,
                                  .wait_s = 20};
    struct sl_remote *r = sl_remote_new(&o);
    struct sl_snap_hooks hooks = {.remote_ud = r, .remote_prepare = sl_remote_prepare_hook};
    struct sl_snap *s = NULL;
    assert_int_equal(sl_snap_open(snapdir, &hooks, &s, &err), 0);
    sl_remote_attach(r, s);
    assert_true(fallbacks(mx) == 0);
    const struct sl_snap_label l[] = {
        {SL_SNAP_LABEL_REF, CHAIN},
        {SL_REMOTE_LABEL_STARGZ_REF, "127.0.0.1:5000/busybox:sl"},
        {SL_REMOTE_LABEL_STARGZ_LAYER, LAYER},
    };
    struct sl_snap_mounts m = {0};
    assert_int_equal(sl_snap_prepare(s, "default/1/extract-a", NULL, l, 3, &m, &err), 0);
    sl_snap_mounts_clear(&m);
    assert_true(fallbacks(mx) == 1);
    /* the image's next layer falls back at once, not counted again */
    const struct sl_snap_label l2[] = {
        {SL_SNAP_LABEL_REF, "sha256:next"},
        {SL_REMOTE_LABEL_STARGZ_REF, "127.0.0.1:5000/busybox:sl"},
    };
    assert_int_equal(sl_snap_prepare(s, "default/2/extract-b", NULL, l2, 2, &m, &err), 0);
    sl_snap_mounts_clear(&m);
    assert_true(fallbacks(mx) == 1);
    sl_snap_close(s);
    sl_remote_free(r);
    sl_metrics_free(mx);
    sl_store_free(store);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test_setup_teardown(test_hook, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
