/* ctrd.c — image registration in containerd over its gRPC API (ctrd.h). */
#include "ctrd.h"
#include "grpc-client.h"

#include "github.com/containerd/containerd/api/services/content/v1/content.pb-c.h"
#include "github.com/containerd/containerd/api/services/images/v1/images.pb-c.h"
#include "github.com/containerd/containerd/api/services/leases/v1/leases.pb-c.h"
#include "github.com/containerd/containerd/api/services/snapshots/v1/snapshots.pb-c.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define SVC_CONTENT   "/containerd.services.content.v1.Content/"
#define SVC_IMAGES    "/containerd.services.images.v1.Images/"
#define SVC_LEASES    "/containerd.services.leases.v1.Leases/"
#define SVC_SNAPSHOTS "/containerd.services.snapshots.v1.Snapshots/"

struct sl_ctrd {
    struct sl_grpc_client *grpc;
    char *snapshotter;
};

/* Growable list of owned labels. */
struct labels {
    struct sl_ctrd_label *v; /* key/value owned (cast away const when freeing) */
    size_t n;
};

static void labels_add(struct labels *l, const char *key, const char *value)
{
    l->v = sl_xrealloc(l->v, (l->n + 1) * sizeof(*l->v));
    l->v[l->n].key = sl_xstrdup(key);
    l->v[l->n].value = sl_xstrdup(value);
    l->n++;
}

static void labels_clear(struct labels *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free((char *)l->v[i].key);
        free((char *)l->v[i].value);
    }
    free(l->v);
    l->v = NULL;
    l->n = 0;
}
#define _cleanup_labels_ _cleanup_(labels_clear)

/* protoc-c gives each message its own map-entry type with the same layout: this builds the
 * array for one of them. The entries point into `l` (borrowed). */
#define DEFINE_LABELS_FN(fn, Entry, INIT)                                                          \
    static Entry **fn(const struct labels *l, Entry **store)                                       \
    {                                                                                              \
        Entry *e = sl_xcalloc(l->n ? l->n : 1, sizeof(*e));                                        \
        Entry **v = sl_xcalloc(l->n ? l->n : 1, sizeof(*v));                                       \
        for (size_t i = 0; i < l->n; i++) {                                                        \
            Entry init = INIT;                                                                     \
            e[i] = init;                                                                           \
            e[i].key = (char *)l->v[i].key;                                                        \
            e[i].value = (char *)l->v[i].value;                                                    \
            v[i] = &e[i];                                                                          \
        }                                                                                          \
        *store = e;                                                                                \
        return v;                                                                                  \
    }

DEFINE_LABELS_FN(lease_labels, Containerd__Services__Leases__V1__CreateRequest__LabelsEntry,
                 CONTAINERD__SERVICES__LEASES__V1__CREATE_REQUEST__LABELS_ENTRY__INIT)
DEFINE_LABELS_FN(write_labels, Containerd__Services__Content__V1__WriteContentRequest__LabelsEntry,
                 CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_REQUEST__LABELS_ENTRY__INIT)
DEFINE_LABELS_FN(info_labels, Containerd__Services__Content__V1__Info__LabelsEntry,
                 CONTAINERD__SERVICES__CONTENT__V1__INFO__LABELS_ENTRY__INIT)
DEFINE_LABELS_FN(prepare_labels,
                 Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry,
                 CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__LABELS_ENTRY__INIT)
DEFINE_LABELS_FN(commit_labels,
                 Containerd__Services__Snapshots__V1__CommitSnapshotRequest__LabelsEntry,
                 CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__LABELS_ENTRY__INIT)
DEFINE_LABELS_FN(image_labels, Containerd__Services__Images__V1__Image__LabelsEntry,
                 CONTAINERD__SERVICES__IMAGES__V1__IMAGE__LABELS_ENTRY__INIT)

/* Packs a protobuf-c message into a new buffer. */
static uint8_t *pack(const ProtobufCMessage *m, size_t *ret_len)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = sl_xmalloc(n ? n : 1);
    protobuf_c_message_pack(m, buf);
    *ret_len = n;
    return buf;
}

/* The metadata of every call of one registration. */
struct session {
    struct sl_ctrd *c;
    const char *ns;
    char lease[64]; /* "" until created */
    struct sl_grpc_md md[2];
    size_t nmd;
};

static void session_md(struct session *s)
{
    s->md[0] = (struct sl_grpc_md){"containerd-namespace", s->ns};
    s->nmd = 1;
    if (s->lease[0])
        s->md[s->nmd++] = (struct sl_grpc_md){"containerd-lease", s->lease};
}

static int call(struct session *s, const char *method, const ProtobufCMessage *req,
                uint8_t **ret_resp, size_t *ret_len, sl_error_t *err)
{
    size_t len = 0;
    _cleanup_free_ uint8_t *buf = pack(req, &len);
    _cleanup_free_ uint8_t *resp = NULL;
    size_t rlen = 0;
    int r = sl_grpc_client_unary_md(s->c->grpc, method, s->md, s->nmd, buf, len,
                                    SL_CTRD_CALL_TIMEOUT_MS, &resp, &rlen, err);
    if (r < 0)
        return r;
    if (ret_resp) {
        *ret_resp = TAKE_PTR(resp);
        *ret_len = rlen;
    }
    return 0;
}

static void random_hex(char *out, size_t nbytes)
{
    uint8_t raw[16];
    if (nbytes > sizeof(raw))
        nbytes = sizeof(raw);
    if (getrandom(raw, nbytes, 0) != (ssize_t)nbytes) {
        /* never fails for <= 256 bytes once the pool is ready; fall back to time + pid */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
        for (size_t i = 0; i < nbytes; i++)
            raw[i] = (uint8_t)(x >> ((i % 8) * 8)) ^ (uint8_t)i;
    }
    sl_hex(raw, nbytes, out);
}

/* ------------------------------------------------------------------ public helpers */

int sl_ctrd_chain_ids(const char *const *diff_ids, size_t n, char (*ret)[SL_DIGEST_STR_LEN],
                      sl_error_t *err)
{
    for (size_t i = 0; i < n; i++) {
        if (!diff_ids[i] || !sl_digest_valid(diff_ids[i]))
            return sl_error_make(err, EINVAL, "layer %zu: bad diffID `%s`", i,
                                 diff_ids[i] ? diff_ids[i] : "(null)");
        if (i == 0) {
            snprintf(ret[0], SL_DIGEST_STR_LEN, "%s", diff_ids[0]);
            continue;
        }
        struct sl_sha256 h;
        sl_sha256_init(&h);
        sl_sha256_update(&h, ret[i - 1], strlen(ret[i - 1]));
        sl_sha256_update(&h, " ", 1);
        sl_sha256_update(&h, diff_ids[i], strlen(diff_ids[i]));
        sl_sha256_final(&h, ret[i]);
    }
    return 0;
}

int sl_ctrd_new(const char *containerd_socket, const char *snapshotter_name, struct sl_ctrd **ret,
                sl_error_t *err)
{
    if (!containerd_socket || !*containerd_socket || !snapshotter_name || !*snapshotter_name)
        return sl_error_make(err, EINVAL, "containerd socket and snapshotter name are required");
    _cleanup_free_ char *target = strncmp(containerd_socket, "unix:", 5) == 0
                                      ? sl_xstrdup(containerd_socket)
                                      : sl_xasprintf("unix:%s", containerd_socket);
    struct sl_grpc_client *g = NULL;
    int r = sl_grpc_client_new(target, &g, err);
    if (r < 0)
        return r;
    struct sl_ctrd *c = sl_xcalloc(1, sizeof(*c));
    c->grpc = g;
    c->snapshotter = sl_xstrdup(snapshotter_name);
    *ret = c;
    return 0;
}

void sl_ctrd_free(struct sl_ctrd *c)
{
    if (!c)
        return;
    sl_grpc_client_free(c->grpc);
    free(c->snapshotter);
    free(c);
}

/* ------------------------------------------------------------------ leases */

static int lease_create(struct session *s, sl_error_t *err)
{
    char hex[33];
    random_hex(hex, 16);
    char id[64];
    snprintf(id, sizeof(id), "sl-register-%s", hex);
    time_t exp = time(NULL) + SL_CTRD_LEASE_TTL_S;
    struct tm tm;
    gmtime_r(&exp, &tm);
    char when[32];
    strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    _cleanup_labels_ struct labels l = {0};
    labels_add(&l, "containerd.io/gc.expire", when);

    Containerd__Services__Leases__V1__CreateRequest req =
        CONTAINERD__SERVICES__LEASES__V1__CREATE_REQUEST__INIT;
    Containerd__Services__Leases__V1__CreateRequest__LabelsEntry *entries = NULL;
    req.id = id;
    req.n_labels = l.n;
    req.labels = lease_labels(&l, &entries);
    int r = call(s, SVC_LEASES "Create", &req.base, NULL, NULL, err);
    free(req.labels);
    free(entries);
    if (r < 0)
        return sl_error_wrap(err, r, "create lease");
    snprintf(s->lease, sizeof(s->lease), "%s", id);
    session_md(s);
    return 0;
}

static void lease_delete(struct session *s)
{
    if (!s->lease[0])
        return;
    Containerd__Services__Leases__V1__DeleteRequest req =
        CONTAINERD__SERVICES__LEASES__V1__DELETE_REQUEST__INIT;
    req.id = s->lease;
    s->nmd = 1; /* the lease header must not ride on its own Delete */
    sl_error_t e = NULL;
    if (call(s, SVC_LEASES "Delete", &req.base, NULL, NULL, &e) < 0)
        (void)0; /* it expires by itself (containerd.io/gc.expire) */
    sl_error_free(&e);
    s->lease[0] = '\0';
    session_md(s);
}

/* ------------------------------------------------------------------ snapshots */

static int snapshot_exists(struct session *s, const char *name, sl_error_t *err)
{
    Containerd__Services__Snapshots__V1__StatSnapshotRequest req =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_REQUEST__INIT;
    req.snapshotter = s->c->snapshotter;
    req.key = (char *)name;
    int r = call(s, SVC_SNAPSHOTS "Stat", &req.base, NULL, NULL, err);
    if (r == -ENOENT) {
        sl_error_free(err);
        return 0;
    }
    return r < 0 ? r : 1;
}

static void snapshot_remove(struct session *s, const char *key)
{
    Containerd__Services__Snapshots__V1__RemoveSnapshotRequest req =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__REMOVE_SNAPSHOT_REQUEST__INIT;
    req.snapshotter = s->c->snapshotter;
    req.key = (char *)key;
    sl_error_t e = NULL;
    (void)call(s, SVC_SNAPSHOTS "Remove", &req.base, NULL, NULL, &e); /* GC'd with the lease */
    sl_error_free(&e);
}

/* Creates the committed snapshot `chain` on `parent` for one Starlight layer. */
static int snapshot_commit_layer(struct session *s, const char *chain, const char *parent,
                                 const struct sl_ctrd_layer *layer, sl_error_t *err)
{
    int r = snapshot_exists(s, chain, err);
    if (r != 0)
        return r < 0 ? r : 0;
    _cleanup_labels_ struct labels l = {0};
    labels_add(&l, SL_CTRD_LABEL_LAYER, layer->digest);
    labels_add(&l, "containerd.io/snapshot.ref", chain);

    char hex[33];
    random_hex(hex, 16);
    char key[64];
    snprintf(key, sizeof(key), "sl-prepare-%s", hex);

    Containerd__Services__Snapshots__V1__PrepareSnapshotRequest prep =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__PREPARE_SNAPSHOT_REQUEST__INIT;
    Containerd__Services__Snapshots__V1__PrepareSnapshotRequest__LabelsEntry *pe = NULL;
    prep.snapshotter = s->c->snapshotter;
    prep.key = key;
    prep.parent = (char *)(parent ? parent : "");
    prep.n_labels = l.n;
    prep.labels = prepare_labels(&l, &pe);
    r = call(s, SVC_SNAPSHOTS "Prepare", &prep.base, NULL, NULL, err);
    free(prep.labels);
    free(pe);
    if (r == -EEXIST) { /* containerd.io/snapshot.ref: the target appeared meanwhile */
        sl_error_free(err);
        return 0;
    }
    if (r < 0)
        return sl_error_wrap(err, r, "prepare snapshot for %s", chain);

    Containerd__Services__Snapshots__V1__CommitSnapshotRequest com =
        CONTAINERD__SERVICES__SNAPSHOTS__V1__COMMIT_SNAPSHOT_REQUEST__INIT;
    Containerd__Services__Snapshots__V1__CommitSnapshotRequest__LabelsEntry *ce = NULL;
    com.snapshotter = s->c->snapshotter;
    com.name = (char *)chain;
    com.key = key;
    com.n_labels = l.n;
    com.labels = commit_labels(&l, &ce);
    r = call(s, SVC_SNAPSHOTS "Commit", &com.base, NULL, NULL, err);
    free(com.labels);
    free(ce);
    if (r == -EEXIST) { /* a concurrent registration committed it first */
        sl_error_free(err);
        snapshot_remove(s, key);
        return 0;
    }
    if (r < 0) {
        snapshot_remove(s, key);
        return sl_error_wrap(err, r, "commit snapshot %s", chain);
    }
    return 0;
}

/* ------------------------------------------------------------------ content */

/* Sets labels on existing content (only the given keys: labels added by others stay). */
static int content_update_labels(struct session *s, const char *digest, const struct labels *l,
                                 sl_error_t *err)
{
    Containerd__Services__Content__V1__Info info = CONTAINERD__SERVICES__CONTENT__V1__INFO__INIT;
    Containerd__Services__Content__V1__Info__LabelsEntry *entries = NULL;
    info.digest = (char *)digest;
    info.n_labels = l->n;
    info.labels = info_labels(l, &entries);
    char **paths = sl_xcalloc(l->n ? l->n : 1, sizeof(*paths));
    for (size_t i = 0; i < l->n; i++)
        paths[i] = sl_xasprintf("labels.%s", l->v[i].key);
    Google__Protobuf__FieldMask mask = GOOGLE__PROTOBUF__FIELD_MASK__INIT;
    mask.n_paths = l->n;
    mask.paths = paths;
    Containerd__Services__Content__V1__UpdateRequest req =
        CONTAINERD__SERVICES__CONTENT__V1__UPDATE_REQUEST__INIT;
    req.info = &info;
    req.update_mask = &mask;
    int r = call(s, SVC_CONTENT "Update", &req.base, NULL, NULL, err);
    for (size_t i = 0; i < l->n; i++)
        free(paths[i]);
    free(paths);
    free(info.labels);
    free(entries);
    return r;
}

/* Writes `data` (which must hash to `digest`) with `labels` in one committing message of the
 * Write stream; content already present gets the labels instead. */
static int content_put(struct session *s, const char *what, const char *digest, const uint8_t *data,
                       size_t len, const struct labels *l, sl_error_t *err)
{
    _cleanup_free_ char *ref = sl_xasprintf("starlight-%s", digest);
    Containerd__Services__Content__V1__WriteContentRequest req =
        CONTAINERD__SERVICES__CONTENT__V1__WRITE_CONTENT_REQUEST__INIT;
    Containerd__Services__Content__V1__WriteContentRequest__LabelsEntry *entries = NULL;
    req.action = CONTAINERD__SERVICES__CONTENT__V1__WRITE_ACTION__COMMIT;
    req.ref = ref;
    req.total = (int64_t)len;
    req.expected = (char *)digest;
    req.offset = 0;
    req.data.data = (uint8_t *)data;
    req.data.len = len;
    req.n_labels = l->n;
    req.labels = write_labels(l, &entries);
    size_t plen = 0;
    _cleanup_free_ uint8_t *buf = pack(&req.base, &plen);
    free(req.labels);
    free(entries);

    struct sl_grpc_stream *st = NULL;
    int r = sl_grpc_stream_open(s->c->grpc, SVC_CONTENT "Write", s->md, s->nmd,
                                SL_CTRD_CALL_TIMEOUT_MS, &st, err);
    if (r < 0)
        return r;
    /* The server answers the commit (twice, in containerd 1.6) and ends the call; finish
     * drains the answers and reports the status, including ALREADY_EXISTS. */
    sl_error_t send_err = NULL;
    (void)sl_grpc_stream_send(st, buf, plen, &send_err);
    sl_error_free(&send_err);
    r = sl_grpc_stream_finish(st, err);
    sl_grpc_stream_free(st);
    if (r == -EEXIST) {
        sl_error_free(err);
        r = content_update_labels(s, digest, l, err);
    }
    if (r < 0)
        return sl_error_wrap(err, r, "write %s %s", what, digest);
    return 0;
}

/* ------------------------------------------------------------------ images */

static int image_put(struct session *s, const struct sl_ctrd_image *img, const struct labels *l,
                     sl_error_t *err)
{
    Containerd__Types__Descriptor target = CONTAINERD__TYPES__DESCRIPTOR__INIT;
    if (img->index) {
        target.media_type = (char *)img->index_media_type;
        target.digest = (char *)img->index_digest;
        target.size = (int64_t)img->index_len;
    } else {
        target.media_type = (char *)img->manifest_media_type;
        target.digest = (char *)img->manifest_digest;
        target.size = (int64_t)img->manifest_len;
    }
    Containerd__Services__Images__V1__Image image = CONTAINERD__SERVICES__IMAGES__V1__IMAGE__INIT;
    Containerd__Services__Images__V1__Image__LabelsEntry *entries = NULL;
    image.name = (char *)img->name;
    image.target = &target;
    image.n_labels = l->n;
    image.labels = image_labels(l, &entries);

    Containerd__Services__Images__V1__CreateImageRequest creq =
        CONTAINERD__SERVICES__IMAGES__V1__CREATE_IMAGE_REQUEST__INIT;
    creq.image = &image;
    int r = call(s, SVC_IMAGES "Create", &creq.base, NULL, NULL, err);
    if (r == -EEXIST) {
        sl_error_free(err);
        /* no field mask: target and labels replaced (a re-pull may move the tag) */
        Containerd__Services__Images__V1__UpdateImageRequest ureq =
            CONTAINERD__SERVICES__IMAGES__V1__UPDATE_IMAGE_REQUEST__INIT;
        ureq.image = &image;
        r = call(s, SVC_IMAGES "Update", &ureq.base, NULL, NULL, err);
    }
    free(image.labels);
    free(entries);
    if (r < 0)
        return sl_error_wrap(err, r, "image record %s", img->name);
    return 0;
}

/* ------------------------------------------------------------------ registration */

static int check_blob(const char *what, const char *digest, const uint8_t *data, size_t len,
                      sl_error_t *err)
{
    if (!digest || !sl_digest_valid(digest))
        return sl_error_make(err, EINVAL, "%s: bad digest `%s`", what, digest ? digest : "");
    if (!data || len == 0)
        return sl_error_make(err, EINVAL, "%s: no bytes", what);
    char got[SL_DIGEST_STR_LEN];
    sl_sha256_str(data, len, got);
    if (strcmp(got, digest) != 0)
        return sl_error_make(err, EINVAL, "%s: bytes hash to %s, not %s", what, got, digest);
    return 0;
}

static int validate(const struct sl_ctrd_image *img, sl_error_t *err)
{
    if (!img->name || !*img->name)
        return sl_error_make(err, EINVAL, "image name required");
    if (!img->manifest_media_type || !*img->manifest_media_type)
        return sl_error_make(err, EINVAL, "manifest media type required");
    if (img->n_layers == 0)
        return sl_error_make(err, EINVAL, "image without layers");
    int r = check_blob("manifest", img->manifest_digest, img->manifest, img->manifest_len, err);
    if (r < 0)
        return r;
    r = check_blob("config", img->config_digest, img->config, img->config_len, err);
    if (r < 0)
        return r;
    if (img->index) {
        if (!img->index_media_type || !*img->index_media_type)
            return sl_error_make(err, EINVAL, "index media type required");
        r = check_blob("index", img->index_digest, img->index, img->index_len, err);
        if (r < 0)
            return r;
    }
    for (size_t i = 0; i < img->n_layers; i++) {
        const struct sl_ctrd_layer *l = &img->layers[i];
        if (!l->digest || !sl_digest_valid(l->digest))
            return sl_error_make(err, EINVAL, "layer %zu: bad digest", i);
        if (!l->starlight)
            return sl_error_make(err, EOPNOTSUPP,
                                 "layer %zu (%s) is not a Starlight layer: registering it is "
                                 "containerd's unpack",
                                 i, l->digest);
    }
    return 0;
}

int sl_ctrd_register_image(struct sl_ctrd *c, const char *ns, const struct sl_ctrd_image *img,
                           sl_error_t *err)
{
    if (!ns || !*ns)
        return sl_error_make(err, EINVAL, "namespace required");
    int r = validate(img, err);
    if (r < 0)
        return sl_error_wrap(err, r, "register %s", img->name ? img->name : "(unnamed)");

    const char **diffs = sl_xcalloc(img->n_layers, sizeof(*diffs));
    for (size_t i = 0; i < img->n_layers; i++)
        diffs[i] = img->layers[i].diff_id;
    char(*chain)[SL_DIGEST_STR_LEN] = sl_xcalloc(img->n_layers, sizeof(*chain));
    r = sl_ctrd_chain_ids(diffs, img->n_layers, chain, err);
    free(diffs);

    struct session s = {.c = c, .ns = ns};
    session_md(&s);
    if (r >= 0)
        r = lease_create(&s, err);

    /* 1. the committed chain: containerd's "unpacked" test is Stat(chainID_top) */
    for (size_t i = 0; r >= 0 && i < img->n_layers; i++)
        r = snapshot_commit_layer(&s, chain[i], i ? chain[i - 1] : NULL, &img->layers[i], err);

    /* 2. config, keeping the chain alive for the garbage collector */
    if (r >= 0) {
        _cleanup_labels_ struct labels l = {0};
        _cleanup_free_ char *key = sl_xasprintf("containerd.io/gc.ref.snapshot.%s", c->snapshotter);
        labels_add(&l, key, chain[img->n_layers - 1]);
        labels_add(&l, SL_CTRD_LABEL_PULLER, "starlight");
        r = content_put(&s, "config", img->config_digest, img->config, img->config_len, &l, err);
    }
    /* 3. manifest -> config and layers; index -> manifest */
    if (r >= 0) {
        _cleanup_labels_ struct labels l = {0};
        labels_add(&l, "containerd.io/gc.ref.content.config", img->config_digest);
        for (size_t i = 0; i < img->n_layers; i++) {
            char key[64];
            snprintf(key, sizeof(key), "containerd.io/gc.ref.content.l.%zu", i);
            labels_add(&l, key, img->layers[i].digest);
        }
        labels_add(&l, SL_CTRD_LABEL_PULLER, "starlight");
        r = content_put(&s, "manifest", img->manifest_digest, img->manifest, img->manifest_len, &l,
                        err);
    }
    if (r >= 0 && img->index) {
        _cleanup_labels_ struct labels l = {0};
        labels_add(&l, "containerd.io/gc.ref.content.m.0", img->manifest_digest);
        labels_add(&l, SL_CTRD_LABEL_PULLER, "starlight");
        r = content_put(&s, "index", img->index_digest, img->index, img->index_len, &l, err);
    }
    /* 4. the image record roots everything */
    if (r >= 0 && img->before_image)
        r = img->before_image(img->before_image_ud, err);
    if (r >= 0) {
        _cleanup_labels_ struct labels l = {0};
        labels_add(&l, SL_CTRD_LABEL_PULLER, "starlight");
        for (size_t i = 0; i < img->n_labels; i++)
            labels_add(&l, img->labels[i].key, img->labels[i].value);
        r = image_put(&s, img, &l, err);
    }
    lease_delete(&s);
    free(chain);
    if (r < 0)
        return sl_error_wrap(err, r, "register %s in namespace %s", img->name, ns);
    return 0;
}
