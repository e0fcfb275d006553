/* hook.h — the automatic conversion hook: `POST /starlight/hook/registry`.
 *
 * Accepts the distribution registry's notification envelope
 *   {"events":[{"action":"push","target":{"mediaType":…,"repository":"app","tag":"v1",…},
 *               "request":{"host":"registry:5000",…}}]}
 * and Harbor's webhook payload
 *   {"type":"PUSH_ARTIFACT","event_data":{"repository":{"repo_full_name":"lib/app"},
 *    "resources":[{"tag":"v1","resource_url":"harbor:443/lib/app:v1"}]}}.
 * A push of a tag in a configured repository (glob list) whose tag does not already end in
 * the target suffix is queued: a worker thread converts `host/repo@digest` (the manifest the
 * event names; `host/repo:tag` when it names none) to `host/repo:tag<suffix>` and notifies the
 * core about the result, like `ctr-starlight convert --notify`. Converting by digest matters:
 * distribution sends the event before it links the tag, so the tag may not resolve yet. The queue
 * is bounded: when it is full the request is refused (-EAGAIN → 503) so the sender retries later; a
 * push already waiting in the queue is not queued twice.
 *
 * The conversion itself is a callback (sl_hook_convert_fn) so this module — and the server's
 * unit test — need not link the converter; main.c wires common/convert in.
 *
 * Thread-safety: sl_hook_submit and sl_hook_metrics may be called from any thread. */
#ifndef SL_PROXY_HOOK_H
#define SL_PROXY_HOOK_H

#include "buf.h"
#include "core.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>

/* Converts image `src` to `dst` (both "host/path:tag") and pushes it; blocking. Returns >= 0
 * or a negative errno with a message. */
typedef int (*sl_hook_convert_fn)(void *ud, const char *src, const char *dst, bool insecure,
                                  sl_error_t *err);

struct sl_hook_config {
    const char *const *repos; /* globs (fnmatch) over "path" or "host/path"; none = hook off */
    size_t n_repos;
    const char *suffix; /* appended to the pushed tag; non-empty */
    size_t queue_max;   /* pushes waiting at most (>= 1) */
    bool insecure;      /* plain HTTP to the pushing registry */
    sl_hook_convert_fn convert;
    void *convert_ud;
};

/* One push named by a payload. */
struct sl_hook_event {
    char *host;       /* registry host[:port]; NULL when the payload does not say */
    char *repository; /* path without host: "library/app" */
    char *tag;
    char *digest; /* manifest digest pushed ("sha256:…"), NULL when not given */
};

/* Parses a registry or Harbor payload (at most SL_HOOK_MAX_EVENTS pushes) into its pushes of
 * tags; other events (pulls, deletes, blob pushes, pushes by digest only) are skipped. *ret is
 * an array of *n events (free with sl_hook_events_free). -EINVAL (with a message) when the
 * body is not one of the two shapes. Pure; for the unit test and the fuzz target. */
#define SL_HOOK_MAX_EVENTS 1024
int sl_hook_parse(const char *body, size_t len, struct sl_hook_event **ret, size_t *n,
                  sl_error_t *err);
void sl_hook_events_free(struct sl_hook_event *ev, size_t n);

struct sl_hook;

/* Starts the worker thread. `core` is borrowed (notify after converting). -EINVAL when the
 * configuration is incomplete (no convert callback, empty suffix, zero queue). */
int sl_hook_new(const struct sl_hook_config *cfg, struct sl_core *core, struct sl_hook **ret,
                sl_error_t *err);
/* Parses a payload and queues its matching pushes. *ret: {"status","code","message",
 * "queued":[refs], "ignored":N}. -EINVAL malformed payload, -EAGAIN queue full (nothing of
 * this payload was queued then). */
int sl_hook_submit(struct sl_hook *h, const char *body, size_t len, json_t **ret, sl_error_t *err);
/* Appends the hook's Prometheus metrics. */
int sl_hook_metrics(struct sl_hook *h, struct sl_buf *out);
/* Stops: the running conversion finishes, queued pushes are dropped. Accepts NULL. */
void sl_hook_free(struct sl_hook *h);

#endif
