/* fuzz-watch-events: a watch stream fed in chunks (the first byte picks the chunk size)
 * through the splitter, the event parser and the reflector's cache. */
#include "reflector.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static size_t seen;

static void cb_add(void *ud, const json_t *o)
{
    (void)ud;
    if (!json_is_object(o))
        abort();
    seen++;
}

static void cb_upd(void *ud, const json_t *a, const json_t *b)
{
    (void)ud;
    if (!json_is_object(a) || !json_is_object(b))
        abort();
    seen++;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t chunk = (size_t)data[0] % 64 + 1;
    data++, size--;
    struct sl_k8s_reflector *r = NULL;
    struct sl_k8s_reflector_options o = {.path = "/api/v1/pods"};
    struct sl_k8s_reflector_callbacks cb = {
        .on_add = cb_add, .on_update = cb_upd, .on_delete = cb_add};
    if (sl_k8s_reflector_new(NULL, &o, &cb, &r, NULL) < 0)
        abort();
    for (size_t off = 0; off < size; off += chunk) {
        size_t k = off + chunk > size ? size - off : chunk;
        sl_error_t err = NULL;
        int x = sl_k8s_reflector_feed(r, (const char *)data + off, k, &err);
        if (x < 0 && !err)
            abort();
        sl_error_free(&err);
        if (x != 0)
            sl_k8s_reflector_reset_stream(r);
    }
    sl_k8s_reflector_free(r);
    return 0;
}
