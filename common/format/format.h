/* format.h — the Starlight/eStargz layer writer (converter core).
 *
 * sl_format_convert() reads a source layer blob (gzip, zstd or uncompressed tar, detected by
 * libarchive) from `in_fd` and writes the Starlight blob to `out_fd` in one sequential pass:
 * every regular file's data starts a new gzip member and is cut into chunks of
 * `chunk_size` bytes, each its own member; headers of other entries share members; the TOC
 * (`stargz.index.json`) is a tar entry in the last member, followed by the tar end blocks and
 * the 51-byte eStargz footer. docs/format.md describes the bytes.
 *
 * Neither fd needs to be seekable (pipes work). Both stay open and owned by the caller; on
 * failure out_fd holds a partial blob the caller must discard. Hostile input (names escaping
 * the root, names or link targets over 4096 bytes or not UTF-8, hardlinks to entries not seen
 * earlier, unsupported entry types, truncated or corrupt compressed data) fails with -EINVAL
 * (-EBADMSG for corrupt compression) and an error naming the entry. Write errors return the
 * write(2) errno.
 *
 * One conversion compresses on several threads (`threads`): the calling thread decodes the
 * input and encodes the tar, workers compress the members, one more thread writes them in
 * order. The output does not depend on the thread count (each member is compressed on its
 * own). Memory is bounded: about (threads + 3) x 2 x max(chunk_size, 256 KiB), plus the TOC.
 * All threads are joined before sl_format_convert returns, on success and on failure.
 *
 * Thread-safety: no global state; conversions may run in parallel in different threads. */
#ifndef SL_FORMAT_FORMAT_H
#define SL_FORMAT_FORMAT_H

#include "digest.h"
#include "error.h"

#include <stdint.h>

#define SL_FORMAT_DEFAULT_CHUNK_SIZE (4u << 20)
#define SL_FORMAT_MIN_CHUNK_SIZE     512u
#define SL_FORMAT_MAX_CHUNK_SIZE     (64u << 20) /* keep below SL_TOC_MAX_CHUNK */
/* libdeflate level; chosen by measurement (docs/format.md). */
#define SL_FORMAT_DEFAULT_LEVEL 6

/* Called after each read from in_fd with the total bytes consumed so far, from the converting
 * thread. */
typedef void (*sl_format_progress_fn)(uint64_t in_bytes, void *ud);

struct sl_format_options {
    uint64_t chunk_size;            /* 0 selects SL_FORMAT_DEFAULT_CHUNK_SIZE */
    int level;                      /* 1..12 (libdeflate); 0 selects SL_FORMAT_DEFAULT_LEVEL */
    sl_format_progress_fn progress; /* may be NULL */
    void *progress_ud;
    int threads; /* compression threads, 0..64: 0 = online CPUs capped at 4; 1 = compress on the
                  * calling thread only (no threads started) */
};

struct sl_format_result {
    char blob_digest[SL_DIGEST_STR_LEN]; /* sha256 of everything written to out_fd */
    char diff_id[SL_DIGEST_STR_LEN];     /* sha256 of the uncompressed tar stream */
    char toc_digest[SL_DIGEST_STR_LEN];  /* sha256 of the TOC JSON bytes */
    uint64_t blob_size;                  /* bytes written to out_fd, footer included */
    uint64_t tar_size;                   /* uncompressed tar bytes (TOC entry included) */
    uint64_t input_size;                 /* bytes read from in_fd */
    uint64_t toc_offset;                 /* blob offset of the TOC member */
    uint64_t toc_size;                   /* TOC JSON bytes */
    uint64_t entries;                    /* tar entries copied (stargz.index.json excluded) */
    uint64_t regular_files;
    uint64_t chunks;  /* data chunks (= gzip members holding file data) */
    uint64_t dropped; /* input entries named stargz.index.json that were dropped */
};

/* Converts one layer. `opts` may be NULL (defaults). On success fills *ret and returns 0. */
int sl_format_convert(int in_fd, int out_fd, const struct sl_format_options *opts,
                      struct sl_format_result *ret, sl_error_t *err);

#endif
