/* daemonclient.h — calls to starlight-daemon's control API (docs/protocol.md §4, "Daemon
 * control API") over its unix socket, through common/http. Used by ctr-starlight and
 * starlight-init. */
#ifndef SL_DAEMONCLIENT_H
#define SL_DAEMONCLIENT_H

#include "error.h"
#include "http.h"

#include <jansson.h>

/* One request (`body` JSON or NULL) whose whole JSON answer lands in *ret (caller frees). A
 * non-2xx answer is an error carrying the daemon's "error" message with its class (404
 * ENOENT, 400 EINVAL, 403 EACCES, 503 EAGAIN, else EIO); no socket is -ECONNREFUSED/-ENOENT
 * with a hint. Thread-safe. */
int sl_daemon_call(const char *socket, const char *method, const char *path, const json_t *body,
                   json_t **ret, sl_error_t *err);

/* Streams an answer of JSON lines: `on_line` gets each parsed line (borrowed) and returns 0 or
 * a negative errno to stop. Error answers as above. */
int sl_daemon_stream(const char *socket, const char *method, const char *path, const json_t *body,
                     int (*on_line)(void *ud, json_t *line), void *ud, sl_error_t *err);
/* The same with a limit on the whole exchange: after `timeout_s` seconds (0 = none) the
 * connection is dropped and -ETIMEDOUT returned (the daemon's pull goes on). */
int sl_daemon_stream_timeout(const char *socket, const char *method, const char *path,
                             const json_t *body, unsigned timeout_s,
                             int (*on_line)(void *ud, json_t *line), void *ud, sl_error_t *err);

#endif
