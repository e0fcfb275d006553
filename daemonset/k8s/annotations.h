/* annotations.h — the Node annotations the node watcher reads (nodewatch.h), parsed without
 * watcher state: the controller's `starlight-c.dev/prewarm` list and the daemon's own
 * `starlight-c.dev/prewarmed` list (docs/kubernetes.md). Values come from the API server:
 * hostile. Fuzzed by fuzz-node-prewarm. Thread-safe (no shared state). */
#ifndef SL_DAEMON_K8S_ANNOTATIONS_H
#define SL_DAEMON_K8S_ANNOTATIONS_H

#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_NODEWATCH_MAX_REF          512 /* bytes of an image reference */
#define SL_NODEWATCH_MAX_PREWARM      32  /* entries of the prewarm annotation considered */
#define SL_NODEWATCH_PREWARM_JSON_MAX (256u * 1024) /* bytes of either annotation */

/* An image reference as the watcher accepts it: 1 to SL_NODEWATCH_MAX_REF printable ASCII
 * bytes without spaces (the pull itself parses it). */
bool sl_nodewatch_ref_valid(const char *s);

/* One update to prewarm: pull `to`, naming `from` (the image it replaces, NULL when absent or
 * not a valid reference) as the delta's hint. */
struct sl_nodewatch_prewarm {
    char *to, *from;
};

/* Parses the `prewarm` annotation (a JSON list of {"to", "from"?}) and drops the entries whose
 * `to` the `prewarmed` annotation (a JSON list of references; NULL, malformed or not a list
 * counts as empty) already holds. Only the first SL_NODEWATCH_MAX_PREWARM entries are
 * considered; an entry without a valid `to` is skipped and counted in *ret_skipped. -EINVAL
 * (-EFBIG over the cap) naming the annotation when `prewarm` is not a JSON list. On success
 * *ret (caller frees with sl_nodewatch_prewarm_free) holds *ret_n entries. */
int sl_nodewatch_parse_prewarm(const char *prewarm, const char *prewarmed,
                               struct sl_nodewatch_prewarm **ret, size_t *ret_n,
                               size_t *ret_skipped, sl_error_t *err);
void sl_nodewatch_prewarm_free(struct sl_nodewatch_prewarm *v, size_t n);

/* A Pod's `starlight-c.dev/trace-duration`: a Go-style duration ("30s", "1m30s", "1.5h",
 * "250ms"; units ms, s, m, h) of at most SL_NODEWATCH_TRACE_MAX_MS. *ret in milliseconds;
 * -EINVAL when malformed or too long. */
#define SL_NODEWATCH_TRACE_MAX_MS 3600000
int sl_nodewatch_parse_duration_ms(const char *s, int64_t *ret);

#endif
