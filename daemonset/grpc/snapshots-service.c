/* snapshots-service.c — protobuf <-> sl_snap for the Snapshots service (snapshots-service.h). */
#include "snapshots-service.h"
#include "cleanup.h"
#include "snapshotter.h"

#include <errno.h>
#include <stdbool.h>
#include <github.com/containerd/containerd/api/services/snapshots/v1/snapshots.pb-c.h>
#include <google/protobuf/empty.pb-c.h>
#include <string.h>

#define PB(name)   Containerd__Services__Snapshots__V1__##name
#define DESC(name) containerd__services__snapshots__v1__##name##__descriptor
#define METHOD(m)  "/containerd.services.snapshots.v1.Snapshots/" m

/* Every generated map entry has this layout (base, key, value). */
typedef PB(Info__LabelsEntry) LabelEntry;

static void unpackedp(ProtobufCMessage **m)
{
    if (*m)
        protobuf_c_message_free_unpacked(*m, NULL);
}
#define _cleanup_pb_ _cleanup_(unpackedp)

static int unpack(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                  ProtobufCMessage **ret, sl_error_t *err)
{
    *ret = protobuf_c_message_unpack(d, NULL, len, buf);
    if (!*ret)
        return sl_error_make(err, EINVAL, "malformed %s message", d->name);
    return 0;
}

static int send_msg(struct sl_grpc_call *call, const ProtobufCMessage *m)
{
    size_t n = protobuf_c_message_get_packed_size(m);
    _cleanup_free_ uint8_t *buf = sl_xmalloc(n ? n : 1);
    protobuf_c_message_pack(m, buf);
    return sl_grpc_call_send(call, buf, n);
}

static int send_empty(struct sl_grpc_call *call)
{
    Google__Protobuf__Empty e = GOOGLE__PROTOBUF__EMPTY__INIT;
    return send_msg(call, &e.base);
}

/* Borrowed views of protobuf map entries (no copies: the message outlives the call). */
static struct sl_snap_label *labels_in(size_t n, void **entries)
{
    struct sl_snap_label *l = sl_xcalloc(n + 1, sizeof(*l));
    for (size_t i = 0; i < n; i++) {
        LabelEntry *e = entries[i];
        l[i].key = e->key;
        l[i].value = e->value;
    }
    return l;
}

/* Protobuf views of sl_snap results: pointers into the sl_* structs, freed by the *_free. */
struct pb_mounts {
    Containerd__Types__Mount *m;
    Containerd__Types__Mount **pm;
    size_t n;
};

static void pb_mounts_make(const struct sl_snap_mounts *in, struct pb_mounts *out)
{
    out->n = in->n;
    out->m = sl_xcalloc(in->n + 1, sizeof(*out->m));
    out->pm = sl_xcalloc(in->n + 1, sizeof(*out->pm));
    for (size_t i = 0; i < in->n; i++) {
        containerd__types__mount__init(&out->m[i]);
        out->m[i].type = in->v[i].type;
        out->m[i].source = in->v[i].source;
        out->m[i].n_options = in->v[i].noptions;
        out->m[i].options = in->v[i].options;
        out->pm[i] = &out->m[i];
    }
}

static void pb_mounts_free(struct pb_mounts *p)
{
    free(p->m);
    free(p->pm);
}

struct pb_info {
    PB(Info) info;
    Google__Protobuf__Timestamp created, updated;
    LabelEntry *e;
    LabelEntry **pe;
};

static void pb_info_make(const struct sl_snap_info *in, struct pb_info *out)
{
    containerd__services__snapshots__v1__info__init(&out->info);
    google__protobuf__timestamp__init(&out->created);
    google__protobuf__timestamp__init(&out->updated);
    out->info.name = in->name;
    out->info.parent = in->parent ? in->parent : (char *)"";
    out->info.kind = (PB(Kind))in->kind;
    out->created.seconds = in->created_ns / 1000000000;
    out->created.nanos = (int32_t)(in->created_ns % 1000000000);
    out->updated.seconds = in->updated_ns / 1000000000;
    out->updated.nanos = (int32_t)(in->updated_ns % 1000000000);
    out->info.created_at = &out->created;
    out->info.updated_at = &out->updated;
    out->e = sl_xcalloc(in->nlabels + 1, sizeof(*out->e));
    out->pe = sl_xcalloc(in->nlabels + 1, sizeof(*out->pe));
    for (size_t i = 0; i < in->nlabels; i++) {
        containerd__services__snapshots__v1__info__labels_entry__init(&out->e[i]);
        out->e[i].key = in->labels[i].key;
        out->e[i].value = in->labels[i].value;
        out->pe[i] = &out->e[i];
    }
    out->info.n_labels = in->nlabels;
    out->info.labels = out->pe;
}

static void pb_info_free(struct pb_info *p)
{
    free(p->e);
    free(p->pe);
}

static int reply_mounts(struct sl_grpc_call *call, const ProtobufCMessageDescriptor *d,
                        const struct sl_snap_mounts *mounts)
{
    /* Prepare, View and Mounts responses share one shape: repeated Mount mounts = 1. */
    PB(MountsResponse) resp = CONTAINERD__SERVICES__SNAPSHOTS__V1__MOUNTS_RESPONSE__INIT;
    resp.base.descriptor = d;
    struct pb_mounts pm;
    pb_mounts_make(mounts, &pm);
    resp.n_mounts = pm.n;
    resp.mounts = pm.pm;
    int r = send_msg(call, &resp.base);
    pb_mounts_free(&pm);
    return r;
}

static int do_prepare_view(struct sl_grpc_call *call, const uint8_t *buf, size_t len, void *ud,
                           bool view, sl_error_t *err)
{
    /* PrepareSnapshotRequest and ViewSnapshotRequest have the same fields and numbers. */
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(view ? &DESC(view_snapshot_request) : &DESC(prepare_snapshot_request), buf, len,
                   &m, err);
    if (r < 0)
        return r;
    PB(PrepareSnapshotRequest) *req = (PB(PrepareSnapshotRequest) *)m;
    _cleanup_free_ struct sl_snap_label *labels = labels_in(req->n_labels, (void **)req->labels);
    struct sl_snap_mounts mounts = {0};
    r = (view ? sl_snap_view : sl_snap_prepare)(ud, req->key, req->parent, labels, req->n_labels,
                                                &mounts, err);
    if (r < 0)
        return r;
    r = reply_mounts(call, view ? &DESC(view_snapshot_response) : &DESC(prepare_snapshot_response),
                     &mounts);
    sl_snap_mounts_clear(&mounts);
    return r;
}

static int h_prepare(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                     sl_error_t *err)
{
    return do_prepare_view(call, buf, len, ud, false, err);
}

static int h_view(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                  sl_error_t *err)
{
    return do_prepare_view(call, buf, len, ud, true, err);
}

static int h_mounts(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                    sl_error_t *err)
{
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(&DESC(mounts_request), buf, len, &m, err);
    if (r < 0)
        return r;
    PB(MountsRequest) *req = (PB(MountsRequest) *)m;
    struct sl_snap_mounts mounts = {0};
    r = sl_snap_mounts(ud, req->key, &mounts, err);
    if (r < 0)
        return r;
    r = reply_mounts(call, &DESC(mounts_response), &mounts);
    sl_snap_mounts_clear(&mounts);
    return r;
}

static int h_commit(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                    sl_error_t *err)
{
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(&DESC(commit_snapshot_request), buf, len, &m, err);
    if (r < 0)
        return r;
    PB(CommitSnapshotRequest) *req = (PB(CommitSnapshotRequest) *)m;
    _cleanup_free_ struct sl_snap_label *labels = labels_in(req->n_labels, (void **)req->labels);
    r = sl_snap_commit(ud, req->name, req->key, labels, req->n_labels, err);
    return r < 0 ? r : send_empty(call);
}

static int h_remove(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                    sl_error_t *err)
{
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(&DESC(remove_snapshot_request), buf, len, &m, err);
    if (r < 0)
        return r;
    r = sl_snap_remove(ud, ((PB(RemoveSnapshotRequest) *)m)->key, err);
    return r < 0 ? r : send_empty(call);
}

static int reply_info(struct sl_grpc_call *call, const struct sl_snap_info *info, bool update)
{
    /* StatSnapshotResponse and UpdateSnapshotResponse: Info info = 1. */
    PB(StatSnapshotResponse)
    resp = CONTAINERD__SERVICES__SNAPSHOTS__V1__STAT_SNAPSHOT_RESPONSE__INIT;
    if (update)
        resp.base.descriptor = &DESC(update_snapshot_response);
    struct pb_info pi;
    pb_info_make(info, &pi);
    resp.info = &pi.info;
    int r = send_msg(call, &resp.base);
    pb_info_free(&pi);
    return r;
}

static int h_stat(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                  sl_error_t *err)
{
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(&DESC(stat_snapshot_request), buf, len, &m, err);
    if (r < 0)
        return r;
    struct sl_snap_info info = {0};
    r = sl_snap_stat(ud, ((PB(StatSnapshotRequest) *)m)->key, &info, err);
    if (r < 0)
        return r;
    r = reply_info(call, &info, false);
    sl_snap_info_clear(&info);
    return r;
}

static int h_update(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                    sl_error_t *err)
{
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(&DESC(update_snapshot_request), buf, len, &m, err);
    if (r < 0)
        return r;
    PB(UpdateSnapshotRequest) *req = (PB(UpdateSnapshotRequest) *)m;
    if (!req->info)
        return sl_error_make(err, EINVAL, "update: no snapshot info");
    _cleanup_free_ struct sl_snap_label *labels =
        labels_in(req->info->n_labels, (void **)req->info->labels);
    struct sl_snap_info in = {
        .name = req->info->name,
        .labels = labels,
        .nlabels = req->info->n_labels,
    };
    size_t npaths = req->update_mask ? req->update_mask->n_paths : 0;
    const char *const *paths =
        req->update_mask ? (const char *const *)req->update_mask->paths : NULL;
    struct sl_snap_info out = {0};
    r = sl_snap_update(ud, &in, paths, npaths, &out, err);
    if (r < 0)
        return r;
    r = reply_info(call, &out, true);
    sl_snap_info_clear(&out);
    return r;
}

static int h_list(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                  sl_error_t *err)
{
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(&DESC(list_snapshots_request), buf, len, &m, err);
    if (r < 0)
        return r;
    PB(ListSnapshotsRequest) *req = (PB(ListSnapshotsRequest) *)m;
    struct sl_snap_info_list l = {0};
    r = sl_snap_list(ud, (const char *const *)req->filters, req->n_filters, &l, err);
    if (r < 0)
        return r;
    /* The listing is a snapshot taken under the lock; sending happens without it. */
    for (size_t off = 0; off < l.n && r >= 0; off += SL_SNAPSHOTS_LIST_BATCH) {
        size_t n = SL_MIN(l.n - off, (size_t)SL_SNAPSHOTS_LIST_BATCH);
        struct pb_info *pi = sl_xcalloc(n, sizeof(*pi));
        PB(Info) **pinfo = sl_xcalloc(n, sizeof(*pinfo));
        for (size_t i = 0; i < n; i++) {
            pb_info_make(&l.v[off + i], &pi[i]);
            pinfo[i] = &pi[i].info;
        }
        PB(ListSnapshotsResponse)
        resp = CONTAINERD__SERVICES__SNAPSHOTS__V1__LIST_SNAPSHOTS_RESPONSE__INIT;
        resp.n_info = n;
        resp.info = pinfo;
        r = send_msg(call, &resp.base);
        for (size_t i = 0; i < n; i++)
            pb_info_free(&pi[i]);
        free(pi);
        free(pinfo);
    }
    sl_snap_info_list_clear(&l);
    return r;
}

static int h_usage(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                   sl_error_t *err)
{
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(&DESC(usage_request), buf, len, &m, err);
    if (r < 0)
        return r;
    struct sl_snap_usage u;
    r = sl_snap_usage(ud, ((PB(UsageRequest) *)m)->key, &u, err);
    if (r < 0)
        return r;
    PB(UsageResponse) resp = CONTAINERD__SERVICES__SNAPSHOTS__V1__USAGE_RESPONSE__INIT;
    resp.size = u.size;
    resp.inodes = u.inodes;
    return send_msg(call, &resp.base);
}

static int h_cleanup(void *ud, struct sl_grpc_call *call, const uint8_t *buf, size_t len,
                     sl_error_t *err)
{
    _cleanup_pb_ ProtobufCMessage *m = NULL;
    int r = unpack(&DESC(cleanup_request), buf, len, &m, err);
    if (r < 0)
        return r;
    r = sl_snap_cleanup(ud, err);
    return r < 0 ? r : send_empty(call);
}

static const struct sl_grpc_method methods[] = {
    {METHOD("Prepare"), h_prepare}, {METHOD("View"), h_view},     {METHOD("Mounts"), h_mounts},
    {METHOD("Commit"), h_commit},   {METHOD("Remove"), h_remove}, {METHOD("Stat"), h_stat},
    {METHOD("Update"), h_update},   {METHOD("List"), h_list},     {METHOD("Usage"), h_usage},
    {METHOD("Cleanup"), h_cleanup},
};

const struct sl_grpc_method *sl_snapshots_service_methods(size_t *ret_n)
{
    *ret_n = SL_ELEMENTSOF(methods);
    return methods;
}
