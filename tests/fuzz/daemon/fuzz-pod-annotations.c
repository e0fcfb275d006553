/* fuzz-pod-annotations: the Pod annotations the daemon's node watcher parses
 * (daemonset/k8s/annotations.h): `starlight-c.dev/trace-duration`.
 *
 * Input: the annotation value. Invariants (abort on violation): a parsed duration lies in
 * 0..SL_NODEWATCH_TRACE_MAX_MS; UBSan checks the arithmetic (float → integer casts). */
#include "annotations.h"
#include "cleanup.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    _cleanup_free_ char *s = sl_xstrndup((const char *)data, size);
    int64_t ms = -1;
    if (sl_nodewatch_parse_duration_ms(s, &ms) >= 0 && (ms < 0 || ms > SL_NODEWATCH_TRACE_MAX_MS))
        abort();
    return 0;
}
