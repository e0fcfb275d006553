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

/* ------------------------------------------------------------------ metadata and streams */

/* One request metadata pair (e.g. {"containerd-namespace", "default"},
 * {"containerd-lease", "sl-…"}); strings are borrowed for the duration of the call. */
struct sl_grpc_md {
    const char *key;
    const char *value;
};

/* sl_grpc_client_unary with any number of metadata pairs (`md`, `nmd`; NULL/0 for none). */
int sl_grpc_client_unary_md(struct sl_grpc_client *c, const char *method,
                            const struct sl_grpc_md *md, size_t nmd, const uint8_t *req, size_t len,
                            int timeout_ms, uint8_t **ret_resp, size_t *ret_len, sl_error_t *err);

/* Client side of a streaming call (client-, server- or bidirectional streaming), driven
 * step by step by one thread: open, then any sequence of send/recv, then finish. Each step
 * waits for its own completion (one operation of each kind in flight, as the C core
 * requires); the whole call is bounded by `timeout_ms` from open. Not thread-safe: one
 * stream per thread; distinct streams (and unary calls) may run at once on one client. */
struct sl_grpc_stream;

/* Starts `method` with the metadata (copied). Nothing is sent on the wire until the first
 * send or finish. */
int sl_grpc_stream_open(struct sl_grpc_client *c, const char *method, const struct sl_grpc_md *md,
                        size_t nmd, int timeout_ms, struct sl_grpc_stream **ret, sl_error_t *err);
/* Sends one message (copied). -EPIPE when the server already ended the call: call
 * sl_grpc_stream_finish for its status. */
int sl_grpc_stream_send(struct sl_grpc_stream *s, const uint8_t *msg, size_t len, sl_error_t *err);
/* Receives the next message into *ret_msg (malloc'd, caller frees; possibly empty). Returns
 * 1 with a message, 0 at the end of the server's messages (then finish for the status), or
 * -EIO. */
int sl_grpc_stream_recv(struct sl_grpc_stream *s, uint8_t **ret_msg, size_t *ret_len,
                        sl_error_t *err);
/* Half-closes (when not done yet), discards the messages not received, waits for the status
 * and returns 0 for OK or the status mapped by sl_grpc_errno_from_status() with the server's
 * message. Once per stream. */
int sl_grpc_stream_finish(struct sl_grpc_stream *s, sl_error_t *err);
/* Cancels the call when it was not finished and frees everything. Accepts NULL. */
void sl_grpc_stream_free(struct sl_grpc_stream *s);

#endif
