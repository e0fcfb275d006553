/* grpc-server.h — a small gRPC server on the gRPC C core, for unix sockets.
 *
 * Threading model: `workers` threads, each with its own completion queue registered with the
 * server. A worker asks the server for one call at a time (grpc_server_request_call on its
 * queue), runs the method's handler synchronously to the end, then asks for the next call; so
 * up to `workers` calls run at once and a slow call (a directory walk) holds only its own
 * worker. Calls that arrive while every worker is busy wait in the server's queue.
 *
 * Messages are opaque bytes here (the service packs/unpacks them with protobuf-c). A handler
 * sends zero or more messages (one for a unary call, a stream for server-streaming ones) and
 * returns 0 for status OK or a negative errno, mapped by sl_grpc_status_from_errno() with the
 * error message as the status details.
 *
 * Stop: sl_grpc_server_stop() stops accepting, lets calls in flight finish (cancelling them
 * after a grace period) and joins the workers. */
#ifndef SL_DAEMON_GRPC_SERVER_H
#define SL_DAEMON_GRPC_SERVER_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

struct sl_grpc_call;
struct sl_grpc_server;

/* Called on a worker thread with the request message (NULL/0 when the client sent none).
 * Returns 0 or a negative errno (and *err). Must be thread-safe. */
typedef int (*sl_grpc_handler_fn)(void *ud, struct sl_grpc_call *call, const uint8_t *req,
                                  size_t len, sl_error_t *err);

struct sl_grpc_method {
    const char *path; /* e.g. "/containerd.services.snapshots.v1.Snapshots/Prepare" */
    sl_grpc_handler_fn fn;
};

/* Queues one response message (copied). Returns 0, or -ECONNRESET when the client went away
 * (the handler should then return). */
int sl_grpc_call_send(struct sl_grpc_call *call, const uint8_t *msg, size_t len);

/* Value of request metadata `key` (e.g. "containerd-namespace") copied into a new string, or
 * NULL. */
char *sl_grpc_call_metadata(struct sl_grpc_call *call, const char *key);

/* grpc_status_code for a negative errno: ENOENT→NOT_FOUND, EEXIST→ALREADY_EXISTS,
 * EINVAL→INVALID_ARGUMENT, ENOTEMPTY/EBUSY→FAILED_PRECONDITION, ENOSYS/EOPNOTSUPP→
 * UNIMPLEMENTED, EAGAIN→UNAVAILABLE, ECANCELED→CANCELLED, ETIMEDOUT→DEADLINE_EXCEEDED,
 * EACCES/EPERM→PERMISSION_DENIED, ENOSPC→RESOURCE_EXHAUSTED, anything else UNKNOWN.
 * And the reverse, for clients (unknown codes → -EIO). */
int sl_grpc_status_from_errno(int r);
int sl_grpc_errno_from_status(int status);

/* Binds `socket_path` (a stale socket file there is replaced; its directory is created),
 * starts `workers` threads serving `methods` (array kept by reference, must outlive the
 * server; `ud` is passed to every handler). Errors: -EADDRINUSE/-EIO with a message. */
int sl_grpc_server_start(const char *socket_path, const struct sl_grpc_method *methods,
                         size_t nmethods, void *ud, int workers, struct sl_grpc_server **ret,
                         sl_error_t *err);

/* Stops accepting calls, waits up to `grace_ms` for calls in flight, cancels the rest, joins
 * the workers and frees everything (removes the socket file). Accepts NULL. Call once, not
 * from a handler. */
void sl_grpc_server_stop(struct sl_grpc_server *srv, int grace_ms);

/* Calls served so far (for logs and tests). Thread-safe. */
uint64_t sl_grpc_server_calls(const struct sl_grpc_server *srv);

#endif
