/* fuzz-http-headers: response and request headers parsed by common/http (Content-Range of
 * registry and proxy answers, Range of requests, Retry-After of 429/503 answers).
 *
 * Input: 8 bytes of resource size (big-endian), then the header value. Invariants (abort on
 * violation): a parsed Content-Range has first <= last and last < total when the total is
 * known; a satisfiable Range lies inside the resource; Retry-After is never negative. */
#include "http.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 8)
        return 0;
    uint64_t u = 0;
    for (int i = 0; i < 8; i++)
        u = u << 8 | data[i];
    int64_t rsize = (int64_t)(u >> 1);
    char *v = malloc(size - 8 + 1);
    if (!v)
        abort();
    memcpy(v, data + 8, size - 8);
    v[size - 8] = '\0';

    int64_t first = 0, last = 0, total = 0;
    if (sl_http_parse_content_range(v, &first, &last, &total) == 0 &&
        (first < 0 || first > last || (total >= 0 && last >= total)))
        abort();
    if (sl_http_parse_range(v, rsize, &first, &last) == 0 &&
        (first < 0 || first > last || last >= rsize))
        abort();
    int64_t ms = 0;
    if (sl_http_parse_retry_after(v, &ms) == 0 && ms < 0)
        abort();
    free(v);
    return 0;
}
