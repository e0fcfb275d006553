/* snapshots-service.h — containerd.services.snapshots.v1.Snapshots over sl_snap.
 *
 * Translates the protobuf messages (protoc-c) to sl_snap calls and back; List replies as a
 * stream of ListSnapshotsResponse messages of at most SL_SNAPSHOTS_LIST_BATCH infos each. Pass
 * the returned methods to sl_grpc_server_start() with the struct sl_snap * as user data. The
 * `snapshotter` field of requests is ignored (one snapshotter per socket). Thread-safe as
 * sl_snap is. */
#ifndef SL_DAEMON_SNAPSHOTS_SERVICE_H
#define SL_DAEMON_SNAPSHOTS_SERVICE_H

#include "grpc-server.h"

#define SL_SNAPSHOTS_LIST_BATCH 100

/* The ten methods; a static array. */
const struct sl_grpc_method *sl_snapshots_service_methods(size_t *ret_n);

#endif
