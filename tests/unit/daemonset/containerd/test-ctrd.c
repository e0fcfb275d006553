/* daemonset/containerd against a fake containerd (the project's gRPC server answering the
 * leases, snapshots, content and images methods): chain IDs, the calls and labels of a first
 * registration (lease header on every call, chain snapshots bottom first with their layer
 * label, GC labels on config and manifest, image target), idempotency (existing snapshots
 * skipped, existing content relabelled field by field, image updated), refusal of
 * non-Starlight layers and of bytes that do not match their digest, a failing call. */
#include "test.h"

#include "cleanup.h"
#include "ctrd.h"
#include "digest.h"
#include "grpc-server.h"

#include "github.com/containerd/containerd/api/services/content/v1/content.pb-c.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.pb-c.h"
#include "github.com/containerd/containerd/api/services/leases/v1/leases.pb-c.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.pb-c.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static char dir[] = "/tmp/sl-test-ctrd.XXXXXX";
static char *sock;

/* ------------------------------------------------------------------ the fake */

#define MAX_LOG 64
static struct fake {
    pthread_mutex_t lock;
    char log[MAX_LOG][512]; /* "Method ns=NS lease=L detail" */
    size_t n;
    char snapshots[16][SL_DIGEST_STR_LEN + 64]; /* committed names */
    size_t nsnap;
    char content[8][SL_DIGEST_STR_LEN];
    size_t ncontent;
    bool image;
    int fail_commit; /* errno to fail Commit with */
} F = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void logf_(struct sl_grpc_call *call, const char *method, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void logf_(struct sl_grpc_call *call, const char *method, const char *fmt, ...)
{
    _cleanup_free_ char *ns = sl_grpc_call_metadata(call, "containerd-namespace");
    _cleanup_free_ char *lease = sl_grpc_call_metadata(call, "containerd-lease");
    char detail[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&F.lock);
    if (F.n < MAX_LOG)
        snprintf(F.log[F.n++], sizeof(F.log[0]), "%s ns=%s lease=%s %s", method, ns ? ns : "-",
                 lease ? (strncmp(lease, "sl-register-", 12) == 0 ? "L" : lease) : "-", detail);
    pthread_mutex_unlock(&F.lock);
}

static bool has(char (*v)[SL_DIGEST_STR_LEN + 64], size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(v[i], s) == 0)
            return true;
    return false;
}

static int reply_empty(struct sl_grpc_call *call)
{
    return sl_grpc_call_send(call, (const uint8_t *)"", 0);
}

static int h_lease_create(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                          sl_error_t *err)
{
    (void)ud, (void)err;
    Containerd__Services__Leases__V1__CreateRequest *m =
        containerd__services__leases__v1__create_request__unpack(NULL, len, req);
    assert_non_null(m);
    assert_int_equal(strncmp(m->id, "sl-register-", 12), 0);
    assert_int_equal(m->n_labels, 1);
    logf_(call, "LeaseCreate", "%s", m->labels[0]->key);
    containerd__services__leases__v1__create_request__free_unpacked(m, NULL);
    Containerd__Services__Leases__V1__CreateResponse resp =
        CONTAINERD__SERVICES__LEASES__V1__CREATE_RESPONSE__INIT;
    uint8_t buf[16];
    size_t n = containerd__services__leases__v1__create_response__pack(&resp, buf);
    return sl_grpc_call_send(call, buf, n);
}

static int h_lease_delete(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                          sl_error_t *err)
{
    (void)ud, (void)err, (void)req, (void)len;
    logf_(call, "LeaseDelete", "%s", "");
    return reply_empty(call);
}

static int h_stat(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                  sl_error_t *err)
{
    (void)ud;
    Containerd__Services__Snapshots__V1__StatSnapshotRequest *m =
        containerd__services__snapshots__v1__stat_snapshot_request__unpack(NULL, len, req);
    assert_string_equal(m->snapshotter, "starlight");
    logf_(call, "Stat", "%s", m->key);
    pthread_mutex_lock(&F.lock);
    bool found = has(F.snapshots, F.nsnap, m->key);
    pthread_mutex_unlock(&F.lock);
    int r = found ? reply_empty(call) : sl_error_make(err, ENOENT, "snapshot %s", m->key);
    containerd__services__snapshots__v1__stat_snapshot_request__free_unpacked(m, NULL);
    return r;
}

static int h_prepare(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                     sl_error_t *err)
{
    (void)ud, (void)err;
    Containerd__Services__Snapshots__V1__PrepareSnapshotRequest *m =
        containerd__services__snapshots__v1__prepare_snapshot_request__unpack(NULL, len, req);
    char labels[300] = "";
    for (size_t i = 0; i < m->n_labels; i++)
        if (strcmp(m->labels[i]->key, SL_CTRD_LABEL_LAYER) == 0)
            snprintf(labels, sizeof(labels), "layer=%s", m->labels[i]->value);
    logf_(call, "Prepare", "parent=%s %s", m->parent, labels);
    containerd__services__snapshots__v1__prepare_snapshot_request__free_unpacked(m, NULL);
    return reply_empty(call);
}

static int h_commit(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                    sl_error_t *err)
{
    (void)ud;
    Containerd__Services__Snapshots__V1__CommitSnapshotRequest *m =
        containerd__services__snapshots__v1__commit_snapshot_request__unpack(NULL, len, req);
    char layer[100] = "", ref[100] = "";
    for (size_t i = 0; i < m->n_labels; i++) {
        if (strcmp(m->labels[i]->key, SL_CTRD_LABEL_LAYER) == 0)
            snprintf(layer, sizeof(layer), "%s", m->labels[i]->value);
        if (strcmp(m->labels[i]->key, "containerd.io/snapshot.ref") == 0)
            snprintf(ref, sizeof(ref), "%s", m->labels[i]->value);
    }
    assert_string_equal(ref, m->name);
    logf_(call, "Commit", "name=%s layer=%s", m->name, layer);
    int r = 0;
    pthread_mutex_lock(&F.lock);
    if (F.fail_commit)
        r = sl_error_make(err, F.fail_commit, "commit failed on purpose");
    else
        snprintf(F.snapshots[F.nsnap++], sizeof(F.snapshots[0]), "%s", m->name);
    pthread_mutex_unlock(&F.lock);
    containerd__services__snapshots__v1__commit_snapshot_request__free_unpacked(m, NULL);
    return r < 0 ? r : reply_empty(call);
}

static int h_remove(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                    sl_error_t *err)
{
    (void)ud, (void)err, (void)req, (void)len;
    logf_(call, "Remove", "%s", "");
    return reply_empty(call);
}

static int h_write(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                   sl_error_t *err)
{
    (void)ud;
    Containerd__Services__Content__V1__WriteContentRequest *m =
        containerd__services__content__v1__write_content_request__unpack(NULL, len, req);
    assert_non_null(m);
    assert_int_equal(m->action, CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT);
    assert_int_equal(m->total, (int64_t)m->data.len);
    char got[SL_DIGEST_STR_LEN];
    sl_sha256_str(m->data.data, m->data.len, got);
    assert_string_equal(got, m->expected);
    char labels[400] = "";
    size_t off = 0;
    for (size_t i = 0; i < m->n_labels; i++)
        off += (size_t)snprintf(labels + off, sizeof(labels) - off, " %.40s=%.12s",
                                m->labels[i]->key, m->labels[i]->value);
    logf_(call, "Write", "%.19s%s", m->expected, labels);
    pthread_mutex_lock(&F.lock);
    bool exists = false;
    for (size_t i = 0; i < F.ncontent; i++)
        exists |= strcmp(F.content[i], m->expected) == 0;
    if (!exists)
        snprintf(F.content[F.ncontent++], SL_DIGEST_STR_LEN, "%s", m->expected);
    pthread_mutex_unlock(&F.lock);
    containerd__services__content__v1__write_content_request__free_unpacked(m, NULL);
    if (exists)
        return sl_error_make(err, EEXIST, "blob exists");
    /* containerd 1.6 answers a commit twice */
    Containerd__Services__Content__V1__WriteContentResponse resp =
        CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_RESPONSE__INIT;
    uint8_t buf[64];
    size_t n = containerd__services__content__v1__write_content_response__pack(&resp, buf);
    sl_grpc_call_send(call, buf, n);
    return sl_grpc_call_send(call, buf, n);
}

static int h_update(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                    sl_error_t *err)
{
    (void)ud, (void)err;
    Containerd__Services__Content__V1__UpdateRequest *m =
        containerd__services__content__v1__update_request__unpack(NULL, len, req);
    assert_non_null(m->update_mask);
    assert_int_equal(m->update_mask->n_paths, m->info->n_labels);
    for (size_t i = 0; i < m->update_mask->n_paths; i++)
        assert_int_equal(strncmp(m->update_mask->paths[i], "labels.", 7), 0);
    logf_(call, "ContentUpdate", "%.19s paths=%zu", m->info->digest, m->update_mask->n_paths);
    containerd__services__content__v1__update_request__free_unpacked(m, NULL);
    return reply_empty(call);
}

static int h_image(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                   sl_error_t *err, bool create)
{
    (void)ud;
    Containerd__Services__Images__V1__Image *img = NULL;
    Containerd__Services__Images__V1__CreateImageRequest *c = NULL;
    Containerd__Services__Images__V1__UpdateImageRequest *u = NULL;
    if (create)
        img = (c = containerd__services__images__v1__create_image_request__unpack(NULL, len, req))
                  ->image;
    else
        img = (u = containerd__services__images__v1__update_image_request__unpack(NULL, len, req))
                  ->image;
    logf_(call, create ? "ImageCreate" : "ImageUpdate", "%s -> %.19s %s", img->name,
          img->target->digest, img->target->media_type);
    int r = 0;
    pthread_mutex_lock(&F.lock);
    if (create && F.image)
        r = sl_error_make(err, EEXIST, "image exists");
    F.image = true;
    pthread_mutex_unlock(&F.lock);
    if (c)
        containerd__services__images__v1__create_image_request__free_unpacked(c, NULL);
    if (u)
        containerd__services__images__v1__update_image_request__free_unpacked(u, NULL);
    return r < 0 ? r : reply_empty(call);
}
static int h_image_create(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                          sl_error_t *err)
{
    return h_image(ud, call, req, len, err, true);
}
static int h_image_update(void *ud, struct sl_grpc_call *call, const uint8_t *req, size_t len,
                          sl_error_t *err)
{
    return h_image(ud, call, req, len, err, false);
}

static const struct sl_grpc_method methods[] = {
    {"/containerd.services.leases.v1.Leases/Create", h_lease_create},
    {"/containerd.services.leases.v1.Leases/Delete", h_lease_delete},
    {"/containerd.services.snapshots.v1.Snapshots/Stat", h_stat},
    {"/containerd.services.snapshots.v1.Snapshots/Prepare", h_prepare},
    {"/containerd.services.snapshots.v1.Snapshots/Commit", h_commit},
    {"/containerd.services.snapshots.v1.Snapshots/Remove", h_remove},
    {"/containerd.services.content.v1.Content/Write", h_write},
    {"/containerd.services.content.v1.Content/Update", h_update},
    {"/containerd.services.images.v1.Images/Create", h_image_create},
    {"/containerd.services.images.v1.Images/Update", h_image_update},
};

/* ------------------------------------------------------------------ the image */

static const char *D0 = "sha256:0000000000000000000000000000000000000000000000000000000000000001";
static const char *D1 = "sha256:0000000000000000000000000000000000000000000000000000000000000002";
static const char *L0 = "sha256:aaaa000000000000000000000000000000000000000000000000000000000001";
static const char *L1 = "sha256:aaaa000000000000000000000000000000000000000000000000000000000002";
static const char MAN[] = "{\"manifest\":1}", CFG[] = "{\"config\":1}";
static char man_digest[SL_DIGEST_STR_LEN], cfg_digest[SL_DIGEST_STR_LEN];
static struct sl_ctrd_layer layers[2];
static struct sl_ctrd_image image;

static void make_image(void)
{
    sl_sha256_str(MAN, strlen(MAN), man_digest);
    sl_sha256_str(CFG, strlen(CFG), cfg_digest);
    layers[0] =
        (struct sl_ctrd_layer){L0, 100, "application/vnd.oci.image.layer.v1.tar+gzip", D0, true};
    layers[1] =
        (struct sl_ctrd_layer){L1, 200, "application/vnd.oci.image.layer.v1.tar+gzip", D1, true};
    image = (struct sl_ctrd_image){
        .name = "example.com/sl/img:1",
        .manifest = (const uint8_t *)MAN,
        .manifest_len = strlen(MAN),
        .manifest_media_type = "application/vnd.oci.image.manifest.v1+json",
        .manifest_digest = man_digest,
        .config = (const uint8_t *)CFG,
        .config_len = strlen(CFG),
        .config_digest = cfg_digest,
        .layers = layers,
        .n_layers = 2,
    };
}

static void test_chain_ids(void **state)
{
    (void)state;
    const char *d[] = {D0, D1};
    char out[2][SL_DIGEST_STR_LEN];
    assert_int_equal(sl_ctrd_chain_ids(d, 2, out, NULL), 0);
    assert_string_equal(out[0], D0);
    char want[SL_DIGEST_STR_LEN];
    _cleanup_free_ char *s = sl_xasprintf("%s %s", D0, D1);
    sl_sha256_str(s, strlen(s), want);
    assert_string_equal(out[1], want);
    const char *bad[] = {D0, "sha256:nothex"};
    sl_error_t err = NULL;
    assert_int_equal(sl_ctrd_chain_ids(bad, 2, out, &err), -EINVAL);
    sl_error_free(&err);
}

static void dump(void)
{
    for (size_t i = 0; i < F.n; i++)
        fprintf(stderr, "  %zu: %s\n", i, F.log[i]);
}

static bool logged(size_t i, const char *prefix)
{
    if (i >= F.n || strncmp(F.log[i], prefix, strlen(prefix)) != 0) {
        fprintf(stderr, "log[%zu] does not start with `%s`\n", i, prefix);
        dump();
        return false;
    }
    return true;
}

static void test_register(void **state)
{
    (void)state;
    struct sl_grpc_server *srv = NULL;
    sl_error_t err = NULL;
    assert_int_equal(
        sl_grpc_server_start(sock, methods, SL_ELEMENTSOF(methods), NULL, 4, &srv, &err), 0);
    _cleanup_ctrd_ struct sl_ctrd *c = NULL;
    assert_int_equal(sl_ctrd_new(sock, "starlight", &c, &err), 0);
    make_image();
    const char *d[] = {D0, D1};
    char chain[2][SL_DIGEST_STR_LEN];
    sl_ctrd_chain_ids(d, 2, chain, NULL);

    /* first registration */
    int r = sl_ctrd_register_image(c, "k8s.io", &image, &err);
    if (r < 0)
        fprintf(stderr, "%s\n", sl_error_msg(err, r));
    assert_int_equal(r, 0);
    char want[512];
    size_t i = 0;
    assert_true(logged(i++, "LeaseCreate ns=k8s.io lease=- containerd.io/gc.expire"));
    snprintf(want, sizeof(want), "Stat ns=k8s.io lease=L %s", chain[0]);
    assert_true(logged(i++, want));
    snprintf(want, sizeof(want), "Prepare ns=k8s.io lease=L parent= layer=%s", L0);
    assert_true(logged(i++, want));
    snprintf(want, sizeof(want), "Commit ns=k8s.io lease=L name=%s layer=%s", chain[0], L0);
    assert_true(logged(i++, want));
    snprintf(want, sizeof(want), "Stat ns=k8s.io lease=L %s", chain[1]);
    assert_true(logged(i++, want));
    snprintf(want, sizeof(want), "Prepare ns=k8s.io lease=L parent=%s layer=%s", chain[0], L1);
    assert_true(logged(i++, want));
    snprintf(want, sizeof(want), "Commit ns=k8s.io lease=L name=%s layer=%s", chain[1], L1);
    assert_true(logged(i++, want));
    snprintf(want, sizeof(want),
             "Write ns=k8s.io lease=L %.19s containerd.io/gc.ref.snapshot.starlight=%.12s",
             cfg_digest, chain[1]);
    assert_true(logged(i++, want));
    snprintf(want, sizeof(want),
             "Write ns=k8s.io lease=L %.19s containerd.io/gc.ref.content.config=%.12s "
             "containerd.io/gc.ref.content.l.0=%.12s containerd.io/gc.ref.content.l.1=%.12s",
             man_digest, cfg_digest, L0, L1);
    assert_true(logged(i++, want));
    snprintf(want, sizeof(want), "ImageCreate ns=k8s.io lease=L example.com/sl/img:1 -> %.19s",
             man_digest);
    assert_true(logged(i++, want));
    assert_true(logged(i++, "LeaseDelete ns=k8s.io lease=-"));
    assert_int_equal(F.n, i);

    /* again: snapshots exist, content relabelled, image updated */
    F.n = 0;
    r = sl_ctrd_register_image(c, "k8s.io", &image, &err);
    assert_int_equal(r, 0);
    i = 0;
    assert_true(logged(i++, "LeaseCreate"));
    assert_true(logged(i++, "Stat"));
    assert_true(logged(i++, "Stat"));
    assert_true(logged(i++, "Write"));
    snprintf(want, sizeof(want), "ContentUpdate ns=k8s.io lease=L %.19s paths=2", cfg_digest);
    assert_true(logged(i++, want));
    assert_true(logged(i++, "Write"));
    snprintf(want, sizeof(want), "ContentUpdate ns=k8s.io lease=L %.19s paths=4", man_digest);
    assert_true(logged(i++, want));
    assert_true(logged(i++, "ImageCreate"));
    assert_true(logged(i++, "ImageUpdate"));
    assert_true(logged(i++, "LeaseDelete"));
    assert_int_equal(F.n, i);

    /* a non-Starlight layer: refused before any call */
    F.n = 0;
    layers[1].starlight = false;
    assert_int_equal(sl_ctrd_register_image(c, "default", &image, &err), -EOPNOTSUPP);
    sl_error_free(&err);
    assert_int_equal(F.n, 0);
    layers[1].starlight = true;

    /* bytes that do not match their digest */
    image.config_digest = man_digest;
    assert_int_equal(sl_ctrd_register_image(c, "default", &image, &err), -EINVAL);
    assert_non_null(strstr(sl_error_msg(err, -EINVAL), "config"));
    sl_error_free(&err);
    image.config_digest = cfg_digest;
    assert_int_equal(F.n, 0);

    /* a failing Commit: the error names the snapshot, the prepared key is removed, the
     * lease is deleted */
    F.nsnap = 0;
    F.fail_commit = EIO;
    r = sl_ctrd_register_image(c, "default", &image, &err);
    assert_int_equal(r, -EIO);
    assert_non_null(strstr(sl_error_msg(err, r), chain[0]));
    sl_error_free(&err);
    assert_true(logged(F.n - 2, "Remove ns=default lease=L"));
    assert_true(logged(F.n - 1, "LeaseDelete"));
    F.fail_commit = 0;

    sl_ctrd_free(TAKE_PTR(c));
    sl_grpc_server_stop(srv, 2000);
}

int main(void)
{
    if (!mkdtemp(dir))
        return 1;
    sock = sl_xasprintf("%s/c.sock", dir);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain_ids),
        cmocka_unit_test(test_register),
    };
    int r = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(sock);
    rmdir(dir);
    free(sock);
    return r;
}
