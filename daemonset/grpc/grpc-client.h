/* grpc-client.h — minimal unary gRPC client on the C core (for containerd's content, images
 * and leases services).
 *
 * One channel per client; calls may be made from any number of threads at once (each call
 * uses its own completion queue). Messages are opaque bytes (protobuf-c packs them). */
#ifndef SL_DAEMON_GRPC_CLIENT_H
#define SL_DAEMON_GRPC_CLIENT_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

struct sl_grpc_client;

/* `target` is a gRPC target such as "unix:/run/containerd/containerd.sock". The connection is
 * made lazily by the first call. */
int sl_grpc_client_new(const char *target, struct sl_grpc_client **ret, sl_error_t *err);
void sl_grpc_client_free(struct sl_grpc_client *c);

/* Calls `method` ("/pkg.Service/Method") with the request bytes and waits up to `timeout_ms`.
 * `ns` (or NULL) is sent as the `containerd-namespace` metadata. On success *ret_resp holds
 * the response (malloc'd, possibly empty). Errors: the status mapped by
 * sl_grpc_errno_from_status() (NOT_FOUND → -ENOENT, ALREADY_EXISTS → -EEXIST ...) with the
 * server's message. */
int sl_grpc_client_unary(struct sl_grpc_client *c, const char *method, const char *ns,
                         const uint8_t *req, size_t len, int timeout_ms, uint8_t **ret_resp,
                         size_t *ret_len, sl_error_t *err);

#endif
