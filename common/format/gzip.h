/* gzip.h — one-member gzip compression and bounded decompression of small documents (the
 * version-2 delta header, docs/protocol.md §3). zlib stays inside common/format (DESIGN.md §2). */
#ifndef SL_FORMAT_GZIP_H
#define SL_FORMAT_GZIP_H

#include "error.h"

#include <stddef.h>
#include <stdint.h>

/* Compresses p[0..n) into one gzip member (fixed header: no name, mtime 0, so equal input gives
 * equal bytes) in a new buffer (*ret, *ret_len; caller frees). */
int sl_gzip_compress(const void *p, size_t n, int level, uint8_t **ret, size_t *ret_len,
                     sl_error_t *err);

/* Inflates exactly one gzip member filling all of in[0..n) into a new buffer with a NUL after
 * the data (not counted in *ret_len). Hostile input: -EFBIG when the data inflates to more than
 * `max` bytes (stops there, no bomb), -EBADMSG on corrupt or truncated data or bytes after the
 * member. */
int sl_gzip_inflate_one(const void *in, size_t n, size_t max, uint8_t **ret, size_t *ret_len,
                        sl_error_t *err);

#endif
