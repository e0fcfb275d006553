/* handoff.h — passing the FUSE connection from a running starlight-daemon to its successor, so
 * that a restart or an upgrade does not break running containers (fs.h: sl_fs_detach,
 * sl_fs_adopt).
 *
 * A unix socket (by default ROOT/handoff.sock, mode 0600) on which the running daemon listens.
 * The successor, started while the predecessor runs, connects and asks (`SLHOTAKE1\n`); the
 * predecessor stops (control API, snapshotter, pulls), detaches its fs without unmounting, and
 * answers with one message: a fixed header ("SLHOGIVE", version 2, handle generation, length
 * of the FUSE_INIT copy, length of each slot map), the FUSE_INIT bytes, the retired and used
 * slot maps (fs.h, struct sl_fs_handoff; trimmed after their last set byte), and the
 * /dev/fuse descriptor (SCM_RIGHTS). A version 1 message (no maps) is still accepted. The
 * successor acknowledges with `K`; only then does the predecessor close its copy and exit.
 * Both sides check that the peer runs as root or as their own user (SO_PEERCRED), and every
 * length received.
 *
 * Thread-safety: one sl_handoff is used by the thread that created it and its own accept
 * thread. Errors: negative errno + sl_error_t. */
#ifndef SL_DAEMON_HANDOFF_H
#define SL_DAEMON_HANDOFF_H

#include "cleanup.h"
#include "error.h"
#include "fs.h"

#include <stdbool.h>

struct sl_handoff;

/* Called on the accept thread once a successor asked to take over; must be quick (e.g. raise
 * a signal the main thread waits for). Later requests are refused. */
typedef void (*sl_handoff_request_fn)(void *ud);

/* Listens on `path` (a stale socket file there is replaced). */
int sl_handoff_listen(const char *path, sl_handoff_request_fn on_request, void *ud,
                      struct sl_handoff **ret, sl_error_t *err);
/* Sends `h` (its descriptor is duplicated by the kernel; the caller still closes h->fd) to the
 * successor that asked, then waits up to timeout_ms for its acknowledgement. */
int sl_handoff_give(struct sl_handoff *ho, const struct sl_fs_handoff *h, int timeout_ms,
                    sl_error_t *err);
/* True once a successor has asked (and sl_handoff_give can send to it). */
bool sl_handoff_asked(struct sl_handoff *ho);
/* Stops listening and closes a pending successor's connection. NULL is fine. */
void sl_handoff_free(struct sl_handoff *ho);
SL_DEFINE_CLEANUP(struct sl_handoff, sl_handoff_free)

/* As a successor: asks the daemon listening on `path` for its FUSE connection and waits up to
 * timeout_ms for it. Returns 1 with *ret filled (caller owns ret->fd), 0 when nobody listens
 * there (no socket, or a stale one), a negative errno otherwise. */
int sl_handoff_take(const char *path, int timeout_ms, struct sl_fs_handoff *ret, sl_error_t *err);

#endif
