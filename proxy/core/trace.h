/* trace.h — the trace document of POST /starlight/report (docs/protocol.md §3): parsing,
 * validation and the merge of a group onto one timeline. Pure logic, no database.
 *
 *   {"version":1,"groups":[{"name":"web","images":["sha256:…",…],
 *     "accesses":[{"image":0,"layer":1,"path":"usr/bin/redis-server","timeNs":1200000},…]}]}
 *
 * A group holds the images traced together (their containers started at the same time) and
 * their accesses with the time since the group's start. sl_trace_rank() sorts a group's
 * accesses by time (stable: equal times keep document order), keeps the first access per
 * (image, layer, path) and numbers them: rank = position on the merged timeline.
 *
 * Ownership: a parsed document owns everything (sl_trace_doc_free). Thread-safe. */
#ifndef SL_PROXY_TRACE_H
#define SL_PROXY_TRACE_H

#include "cleanup.h"
#include "digest.h"
#include "error.h"

#include <stddef.h>
#include <stdint.h>

#define SL_TRACE_MAX_BODY     (64u << 20)
#define SL_TRACE_VERSION      1
#define SL_TRACE_MAX_GROUPS   1024
#define SL_TRACE_MAX_IMAGES   64 /* per group */
#define SL_TRACE_MAX_ACCESSES (1u << 20)
#define SL_TRACE_MAX_LAYERS   4096

struct sl_trace_access {
    uint32_t image; /* index into the group's images */
    uint32_t layer; /* stack index (0 = bottom) */
    char *path;     /* normalised like TOC names */
    uint64_t time_ns;
};

struct sl_trace_group {
    char *name;
    char (*images)[SL_DIGEST_STR_LEN];
    size_t n_images;
    struct sl_trace_access *accesses;
    size_t n_accesses;
};

struct sl_trace_doc {
    struct sl_trace_group *groups;
    size_t n_groups;
    size_t n_accesses; /* over all groups */
};

/* Parses and validates a document. -EINVAL (message names the JSON path), -EFBIG (limits). */
int sl_trace_parse(const char *body, size_t len, struct sl_trace_doc **ret, sl_error_t *err);
void sl_trace_doc_free(struct sl_trace_doc *d);
SL_DEFINE_CLEANUP(struct sl_trace_doc, sl_trace_doc_free)
#define _cleanup_trace_doc_ _cleanup_(sl_trace_doc_freep)

/* One ranked access (borrowing the path from the document). */
struct sl_trace_ranked {
    uint32_t image;
    uint32_t layer;
    const char *path;
    uint64_t rank;
};

/* Merges a group onto one timeline (see above). *ret is caller-freed. */
void sl_trace_rank(const struct sl_trace_group *g, struct sl_trace_ranked **ret, size_t *ret_n);

#endif
