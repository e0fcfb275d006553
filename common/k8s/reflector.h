/* reflector.h — list+watch with a local cache, as client-go's Reflector/Informer.
 *
 *   LIST (paged) → replace the cache (DELETED synthesised for keys that vanished), rv = list rv
 *   loop: WATCH ?resourceVersion=rv&allowWatchBookmarks=true&timeoutSeconds=T (T random in
 *         [min, max], default 300–600 s)
 *     ADDED/MODIFIED/DELETED → cache + callbacks, rv = object rv; BOOKMARK → rv
 *     normal end of stream or network error → back off (jitter), WATCH again from rv (no list)
 *     HTTP 410, or an ERROR event with code 410 inside a 200 stream → back off, LIST again
 *     three streams in a row that end at once with no event → LIST again (stale-RV quirk)
 *
 * The watch stream is newline-delimited JSON whose events may be split across (or packed
 * into) chunks in any way; lines longer than SL_K8S_WATCH_LINE_MAX fail the stream.
 *
 * Callbacks run on the reflector's thread (or the caller's, for sl_k8s_reflector_run), one at
 * a time, with objects borrowed for the duration of the call (json_incref to keep one).
 * Objects are keyed by "namespace/name" (or "name" for cluster-scoped kinds).
 * Thread-safety: start/stop/stats/get may be called from any thread. */
#ifndef SL_K8S_REFLECTOR_H
#define SL_K8S_REFLECTOR_H

#include "k8s.h"

#include <stdint.h>

#define SL_K8S_WATCH_LINE_MAX (16u * 1024 * 1024)

/* ---- newline-delimited JSON splitter (exposed for tests and fuzzing) --------------------- */

struct sl_k8s_lines {
    char *buf;
    size_t len, cap, max; /* max = longest line accepted (0 = SL_K8S_WATCH_LINE_MAX) */
};
/* Feeds bytes; calls fn(ud, line, len) for each complete line (without '\n'; "\r" trimmed;
 * empty lines skipped). Returns 0, fn's negative return, or -EFBIG for an over-long line. */
int sl_k8s_lines_feed(struct sl_k8s_lines *l, const char *data, size_t len,
                      int (*fn)(void *ud, const char *line, size_t len), void *ud);
void sl_k8s_lines_free(struct sl_k8s_lines *l);

/* Parses one watch event line: *ret_type gets "ADDED"/"MODIFIED"/"DELETED"/"BOOKMARK"/"ERROR"
 * (borrowed from *ret_event, which the caller json_decref()s), *ret_obj the borrowed object.
 * -EINVAL for anything else (names the problem in err). */
int sl_k8s_watch_event_parse(const char *line, size_t len, json_t **ret_event,
                             const char **ret_type, json_t **ret_obj, sl_error_t *err);

/* ---- reflector --------------------------------------------------------------------------- */

struct sl_k8s_reflector;

struct sl_k8s_reflector_callbacks {
    void (*on_add)(void *ud, const json_t *obj);
    void (*on_update)(void *ud, const json_t *old_obj, const json_t *obj);
    void (*on_delete)(void *ud, const json_t *last_obj); /* last known state */
    void (*on_synced)(void *ud);                         /* after each (re)list is applied */
    void *userdata;
};

struct sl_k8s_reflector_options {
    const char *path;                      /* collection path, e.g. "/api/v1/pods" (sl_k8s_path) */
    const char *label_selector;            /* NULL = none */
    const char *field_selector;            /* NULL = none */
    unsigned timeout_min_s, timeout_max_s; /* watch timeoutSeconds range; 0 = 300..600 */
    unsigned backoff_ms, backoff_max_ms;   /* re-watch/relist backoff; 0 = 800 ms .. 30 s */
    const char *name;                      /* for logs; NULL = path */
    /* A restarted process that kept its resume point: start with a WATCH from this
     * resourceVersion instead of a LIST (the cache starts empty, so changes to objects it has
     * not seen arrive as on_add, deletions as on_delete with the object the server sent); a 410
     * falls back to a LIST. wait_synced() waits for a LIST. NULL = list first. */
    const char *resume_rv;
};

struct sl_k8s_reflector_stats {
    uint64_t lists;       /* LIST calls that succeeded */
    uint64_t relists_410; /* lists caused by a 410 (HTTP or ERROR event) */
    uint64_t watches;     /* WATCH requests answered 200 */
    uint64_t events;      /* ADDED/MODIFIED/DELETED events applied */
    uint64_t bookmarks;
    uint64_t errors;              /* failed requests / broken streams */
    uint64_t synthesized_deletes; /* DELETED made up by a relist diff */
};

/* Copies `opts` (path and selectors). The client must outlive the reflector. */
int sl_k8s_reflector_new(struct sl_k8s_client *c, const struct sl_k8s_reflector_options *opts,
                         const struct sl_k8s_reflector_callbacks *cbs,
                         struct sl_k8s_reflector **ret, sl_error_t *err);
/* Stops (if running) and frees. */
void sl_k8s_reflector_free(struct sl_k8s_reflector *r);

/* Runs list+watch on a new thread until sl_k8s_reflector_stop(). */
int sl_k8s_reflector_start(struct sl_k8s_reflector *r, sl_error_t *err);
/* Runs list+watch on the calling thread until sl_k8s_reflector_stop() is called (from a
 * callback or another thread). Returns 0. */
int sl_k8s_reflector_run(struct sl_k8s_reflector *r);
/* Asks the loop to end (an open watch is cancelled within about a second) and joins the
 * thread started by sl_k8s_reflector_start. Safe to call twice, or from a callback (then it
 * only asks). */
void sl_k8s_reflector_stop(struct sl_k8s_reflector *r);

/* Waits up to timeout_ms for the first list to be applied; true when it has been. */
bool sl_k8s_reflector_wait_synced(struct sl_k8s_reflector *r, int timeout_ms);
/* The resume point (last list/event/bookmark resourceVersion); caller frees; NULL if none. */
char *sl_k8s_reflector_resource_version(struct sl_k8s_reflector *r);
/* A new reference to the cached object `key` ("ns/name" or "name"), or NULL. */
json_t *sl_k8s_reflector_get(struct sl_k8s_reflector *r, const char *key);
/* Number of cached objects. */
size_t sl_k8s_reflector_size(struct sl_k8s_reflector *r);
void sl_k8s_reflector_stats(struct sl_k8s_reflector *r, struct sl_k8s_reflector_stats *ret);

/* ---- state machine steps (what run() does; exposed for caller-driven loops and tests) ---- */

enum sl_k8s_watch_result {
    SL_K8S_WATCH_CONTINUE = 0, /* keep reading */
    SL_K8S_WATCH_RELIST = 1,   /* an ERROR 410 arrived: list again */
};

/* Applies a list answer (a List object with .items and .metadata.resourceVersion): replaces
 * the cache, calling on_add/on_update (changed resourceVersion)/on_delete (vanished keys), then
 * on_synced. -EINVAL for a malformed list. */
int sl_k8s_reflector_apply_list(struct sl_k8s_reflector *r, const json_t *list, sl_error_t *err);
/* Applies one parsed watch event. Returns SL_K8S_WATCH_CONTINUE, SL_K8S_WATCH_RELIST (ERROR
 * with code 410) or a negative errno (-EINVAL malformed, -EIO other ERROR events). */
int sl_k8s_reflector_apply_event(struct sl_k8s_reflector *r, const char *type, const json_t *obj,
                                 sl_error_t *err);
/* Feeds raw watch stream bytes (split into lines, parsed, applied). Same returns. */
int sl_k8s_reflector_feed(struct sl_k8s_reflector *r, const char *data, size_t len,
                          sl_error_t *err);
/* Resets the line splitter (a new stream starts). */
void sl_k8s_reflector_reset_stream(struct sl_k8s_reflector *r);

#endif
