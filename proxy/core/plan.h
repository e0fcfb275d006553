/* plan.h — the delta planner's pure logic (no database, no network), so it is unit-tested
 * on its own: which contents the payload carries, in which order, at which offsets, and how
 * the payload maps onto coalesced blob segments.
 *
 * Input: the regular files of every target layer the worker lacks (with their trace rank),
 * and the content digests the worker already holds. Output: contents (each digest once),
 * ordered traced-first by rank (a content's rank = the minimum over its files), ties and
 * untraced contents by first occurrence (layer stack index, then TOC order); for every input
 * file its source (payload content, held, empty). Deterministic for equal input.
 *
 * Ownership: results are owned by the result struct (sl_plan_result_free). Thread-safe (no
 * shared state). */
#ifndef SL_PROXY_PLAN_H
#define SL_PROXY_PLAN_H

#include "core.h"
#include "delta.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_plan_chunk {
    uint64_t blob_offset;
    uint64_t compressed_size;
    uint64_t chunk_offset;
    uint64_t size;
    char digest[SL_DIGEST_STR_LEN];
};

struct sl_plan_file {
    uint32_t layer;     /* target stack index */
    uint32_t toc_index; /* position in the layer's TOC */
    const char *path;   /* borrowed */
    char digest[SL_DIGEST_STR_LEN];
    uint64_t size;
    bool traced;
    double rank;                        /* average trace position; meaningful when traced */
    const struct sl_plan_chunk *chunks; /* borrowed */
    size_t n_chunks;
};

struct sl_plan_input {
    const struct sl_plan_file *files; /* any order */
    size_t n_files;
    char *const *held_digests; /* sorted (strcmp), distinct */
    size_t n_held_digests;
};

struct sl_plan_result {
    struct sl_delta_content *contents; /* payload order, offsets assigned */
    size_t n_contents;
    enum sl_delta_file_source *source; /* per input file */
    uint32_t *content;                 /* per input file, valid for SL_DELTA_FILE_PAYLOAD */
    uint64_t payload_length;
    uint64_t saved_bytes; /* compressed bytes of files not sent (held or duplicate) */
};

/* Computes the plan. Returns 0, or -EINVAL when a file is inconsistent (chunks that do not
 * tile it, two files with one digest but different sizes). */
int sl_plan_compute(const struct sl_plan_input *in, struct sl_plan_result *ret, sl_error_t *err);
void sl_plan_result_free(struct sl_plan_result *r);

/* Maps the payload onto blob segments: every chunk's range, in payload order, adjacent
 * ranges of one blob merged. `layer_map[stack]` gives the index into sl_delta.layers of
 * target layer `stack`. Response offsets start at head_len. Caller frees *ret. */
void sl_plan_segments(const struct sl_delta_content *contents, size_t n_contents,
                      const uint32_t *layer_map, uint64_t head_len, struct sl_delta_segment **ret,
                      size_t *ret_n);

/* Payload reads (sl_core_read_payload). One read covers response bytes [pos, pos + len) of
 * the body (pos inside segment `first`, head_len <= pos) as far as consecutive segments of
 * one blob follow each other in ascending blob order with gaps of at most `gap_max` bytes.
 * Returns the last segment of the read; *ret_blob_off / *ret_blob_end are the blob range to
 * read (gaps included) and *ret_want the response bytes it yields (<= len, > 0). */
size_t sl_plan_read_run(const struct sl_delta_segment *segs, size_t n_segments, size_t first,
                        uint64_t pos, uint64_t len, uint64_t gap_max, uint64_t *ret_blob_off,
                        uint64_t *ret_blob_end, uint64_t *ret_want);

/* Turns the contiguous blob bytes of such a read back into response bytes: feed it every
 * piece in order; it forwards the bytes inside the segments to `sink` and drops the gaps.
 * Initialise with sl_plan_gap_filter_init; `left` reaches 0 when the read is complete. */
struct sl_plan_gap_filter {
    const struct sl_delta_segment *segs; /* the read's first segment */
    size_t k;                            /* segment being read, relative to segs */
    uint64_t pos;                        /* blob offset of the next byte fed */
    uint64_t left;                       /* segment bytes still to forward */
    sl_http_sink_fn sink;
    void *ud;
};
void sl_plan_gap_filter_init(struct sl_plan_gap_filter *g, const struct sl_delta_segment *first,
                             uint64_t blob_off, uint64_t want, sl_http_sink_fn sink, void *ud);
/* An sl_http_sink_fn (ud = the filter). -EIO when fed more than the read covers; the sink's
 * negative return or SL_HTTP_SINK_STOP are passed on. */
int sl_plan_gap_filter_write(void *ud, const void *data, size_t len);

#endif
