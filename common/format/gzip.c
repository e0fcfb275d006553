/* gzip.c — one-member gzip for small documents (gzip.h). */
#include "gzip.h"
#include "cleanup.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

int sl_gzip_compress(const void *p, size_t n, int level, uint8_t **ret, size_t *ret_len,
                     sl_error_t *err)
{
    if (n > UINT32_MAX / 2)
        return sl_error_make(err, EFBIG, "gzip: %zu bytes to compress", n);
    z_stream zs = {0};
    if (deflateInit2(&zs, level, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return sl_error_make(err, ENOMEM, "gzip: deflateInit failed");
    size_t cap = deflateBound(&zs, (uLong)n);
    _cleanup_free_ uint8_t *out = sl_xmalloc(cap);
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    int z = deflate(&zs, Z_FINISH); /* deflateBound: one call finishes */
    size_t len = zs.total_out;
    deflateEnd(&zs);
    if (z != Z_STREAM_END)
        return sl_error_make(err, EIO, "gzip: deflate failed (%d)", z);
    *ret = TAKE_PTR(out);
    *ret_len = len;
    return 0;
}

int sl_gzip_inflate_one(const void *in, size_t n, size_t max, uint8_t **ret, size_t *ret_len,
                        sl_error_t *err)
{
    if (n > UINT32_MAX)
        return sl_error_make(err, EFBIG, "gzip: %zu compressed bytes", n);
    z_stream zs = {0};
    if (inflateInit2(&zs, 16 + 15) != Z_OK) /* gzip wrapper only */
        return sl_error_make(err, ENOMEM, "gzip: inflateInit failed");
    size_t cap = SL_MIN(max, SL_MAX(n * 8, (size_t)65536)), len = 0;
    _cleanup_free_ uint8_t *out = sl_xmalloc(cap + 1);
    zs.next_in = (Bytef *)in;
    zs.avail_in = (uInt)n;
    int r = 0;
    for (;;) {
        if (len == cap) {
            if (cap == max) {
                /* one more byte of output would exceed the cap: probe with a 1-byte window */
                uint8_t probe;
                zs.next_out = &probe;
                zs.avail_out = 1;
                int z = inflate(&zs, Z_NO_FLUSH);
                if (z == Z_STREAM_END && zs.avail_out == 1)
                    goto end;
                if (zs.avail_out == 0) {
                    r = sl_error_make(err, EFBIG, "gzip: inflates to more than %zu bytes", max);
                    break;
                }
                r = sl_error_make(err, EBADMSG, "gzip: corrupt or truncated data");
                break;
            }
            cap = SL_MIN(max, cap * 2);
            out = sl_xrealloc(out, cap + 1);
        }
        zs.next_out = out + len;
        zs.avail_out = (uInt)SL_MIN(cap - len, (size_t)1 << 30);
        size_t before = zs.avail_out;
        int z = inflate(&zs, Z_NO_FLUSH);
        len += before - zs.avail_out;
        if (z == Z_STREAM_END)
            goto end;
        if (z == Z_BUF_ERROR && zs.avail_in == 0) {
            r = sl_error_make(err, EBADMSG, "gzip: truncated data");
            break;
        }
        if (z != Z_OK && z != Z_BUF_ERROR) {
            r = sl_error_make(err, EBADMSG, "gzip: corrupt data: %s", zs.msg ? zs.msg : "?");
            break;
        }
    }
    inflateEnd(&zs);
    return r;
end:
    if (zs.avail_in != 0) {
        size_t extra = zs.avail_in;
        inflateEnd(&zs);
        return sl_error_make(err, EBADMSG, "gzip: %zu bytes after the member", extra);
    }
    inflateEnd(&zs);
    out[len] = '\0';
    *ret = TAKE_PTR(out);
    *ret_len = len;
    return 0;
}
