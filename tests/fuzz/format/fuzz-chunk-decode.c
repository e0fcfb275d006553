/* fuzz-chunk-decode: one chunk's gzip member as a daemon receives it in a delta payload or
 * reads it from a layer blob (sl_toc_chunk_decode): truncated members, concatenated garbage,
 * members inflating to more or less than the TOC says, wrong digests.
 *
 * Input: 2 bytes of chunk size (big-endian, so at most 64 KiB), then the compressed bytes;
 * chunkDigest is the digest of no bytes. Invariants (abort on violation): a failure carries an
 * error; only an empty chunk can succeed. */
#include "digest.h"
#include "toc.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct sl_toc_chunk c = {0};
    c.size = (uint64_t)data[0] << 8 | data[1];
    c.compressed_size = size - 2;
    /* sha256 of nothing: right for empty chunks, wrong for the rest */
    memcpy(c.digest, "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
           sizeof(c.digest));
    c.digest[SL_DIGEST_STR_LEN - 1] = '\0';
    uint8_t *out = malloc(c.size ? c.size : 1);
    if (!out)
        abort();
    sl_error_t err = NULL;
    int r = sl_toc_chunk_decode(data + 2, size - 2, &c, out, &err);
    if (r < 0 && !err)
        abort();
    sl_error_free(&err);
    if (r == 0 && c.size != 0)
        abort(); /* the digest of nothing cannot match a non-empty chunk */
    free(out);
    return 0;
}
