/* fuzz-node-prewarm: the Node annotations the daemon's node watcher reads from the API server
 * (sl_nodewatch_parse_prewarm, daemonset/k8s/annotations.h): `prewarm` and `prewarmed`.
 *
 * Input: `prewarm`, then optionally a NUL byte and `prewarmed`. Invariants (abort on
 * violation): a failure carries a message and leaves nothing; at most
 * SL_NODEWATCH_MAX_PREWARM entries (kept + skipped) are considered; every kept `to` (and
 * `from`, when present) is a valid reference. */
#include "annotations.h"
#include "cleanup.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    _cleanup_free_ char *pw = sl_xstrndup((const char *)data, size);
    size_t pl = strlen(pw);
    _cleanup_free_ char *done =
        pl < size ? sl_xstrndup((const char *)data + pl + 1, size - pl - 1) : NULL;
    struct sl_nodewatch_prewarm *v = NULL;
    size_t n = 0, skipped = 0;
    sl_error_t err = NULL;
    int r = sl_nodewatch_parse_prewarm(pw, done, &v, &n, &skipped, &err);
    if (r < 0) {
        if (!err || v || n)
            abort();
        sl_error_free(&err);
        return 0;
    }
    if (n + skipped > SL_NODEWATCH_MAX_PREWARM)
        abort();
    for (size_t i = 0; i < n; i++)
        if (!sl_nodewatch_ref_valid(v[i].to) || (v[i].from && !sl_nodewatch_ref_valid(v[i].from)))
            abort();
    sl_nodewatch_prewarm_free(v, n);
    return 0;
}
