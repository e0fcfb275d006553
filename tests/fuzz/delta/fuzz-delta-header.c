/* fuzz-delta-header: the delta head (prelude + header JSON) and bare header JSON.
 *
 * Input: the whole head given to sl_delta_head_decode (version 1 or 2 by its prelude), and the
 * bytes after the first 32 given to sl_delta_header_decode (version-1 JSON) and to
 * sl_delta_header_decode_v as a version-2 header (gzip). A header that decodes must encode again,
 * and the encoding must decode to the same bytes (round trip; abort on violation). */
#include "delta.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void round_trip(const struct sl_delta_header *h)
{
    uint8_t *a = NULL, *b = NULL;
    size_t al = 0, bl = 0, hl = 0;
    sl_error_t err = NULL;
    if (sl_delta_header_encode(h, &a, &al, &err) < 0)
        abort();
    struct sl_delta_header *d = NULL;
    if (sl_delta_head_decode(a, al, &d, &hl, &err) < 0 || hl != al)
        abort();
    if (sl_delta_header_encode(d, &b, &bl, &err) < 0 || al != bl || memcmp(a, b, al) != 0)
        abort();
    sl_delta_header_free(d);
    free(a);
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    sl_error_t err = NULL;
    struct sl_delta_header *h = NULL;
    size_t hl = 0;
    if (sl_delta_head_decode(data, size, &h, &hl, &err) == 0) {
        round_trip(h);
        sl_delta_header_free(h);
        h = NULL;
    }
    sl_error_free(&err);
    if (size > SL_DELTA_PRELUDE_SIZE &&
        sl_delta_header_decode((const char *)data + SL_DELTA_PRELUDE_SIZE,
                               size - SL_DELTA_PRELUDE_SIZE, &h, &err) == 0) {
        round_trip(h);
        sl_delta_header_free(h);
        h = NULL;
    }
    sl_error_free(&err);
    if (size > SL_DELTA_PRELUDE_SIZE &&
        sl_delta_header_decode_v(data + SL_DELTA_PRELUDE_SIZE, size - SL_DELTA_PRELUDE_SIZE,
                                 SL_DELTA_VERSION_2, &h, &err) == 0) {
        round_trip(h);
        sl_delta_header_free(h);
    }
    sl_error_free(&err);
    return 0;
}
