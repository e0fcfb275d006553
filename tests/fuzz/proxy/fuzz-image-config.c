/* fuzz-image-config: the image config starlight-proxy reads from the registry on every notify
 * (sl_core_parse_image_config, proxy/core/core.h): rootfs.diff_ids and the platform.
 *
 * Input: the first byte gives the manifest's layer count (low 6 bits) and whether the
 * platform is wanted (bit 6); the rest is the config. Invariants (abort on violation): a
 * failure carries a message and leaves nothing; a parsed config has exactly that many diff_ids,
 * each a valid sha256 digest, and a platform "os/arch[/variant]" exactly when wanted. */
#include "core.h"
#include "digest.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t n_layers = data[0] & 63;
    bool want_platform = data[0] & 64;
    size_t n = size - 1;
    char *doc = malloc(n ? n : 1); /* exact size: ASan sees any over-read */
    if (!doc)
        abort();
    memcpy(doc, data + 1, n);
    struct sl_core_image_config c;
    sl_error_t err = NULL;
    int r = sl_core_parse_image_config(doc, n, n_layers, want_platform, &c, &err);
    free(doc);
    if (r < 0) {
        if (!err || c.diff_ids || c.platform || c.n)
            abort();
        sl_error_free(&err);
        return 0;
    }
    if (c.n != n_layers || (want_platform != (c.platform != NULL)))
        abort();
    for (size_t i = 0; i < c.n; i++)
        if (!sl_digest_valid(c.diff_ids[i]))
            abort();
    if (c.platform && (!strchr(c.platform, '/') || c.platform[0] == '/'))
        abort();
    sl_core_image_config_clear(&c);
    return 0;
}
