/* fuzz-manifest: manifest/index parsing with and without a Content-Type. The first byte
 * picks the Content-Type so the fuzzer explores media type detection too. */
#include "manifest.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const types[] = {
    NULL,
    SL_MT_DOCKER_MANIFEST,
    SL_MT_DOCKER_LIST,
    SL_MT_OCI_MANIFEST,
    SL_MT_OCI_INDEX,
    "application/json",
    "application/vnd.example+json; charset=utf-8",
    "",
};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *ct = types[data[0] % (sizeof(types) / sizeof(types[0]))];
    struct sl_manifest *m = NULL;
    sl_error_t err = NULL;
    if (sl_manifest_parse(data + 1, size - 1, ct, &m, &err) == 0) {
        if (!m->media_type || (m->n_layers && !m->layers))
            abort();
        for (size_t i = 0; i < m->n_layers; i++)
            if (!sl_digest_valid(m->layers[i].digest) || m->layers[i].size < 0)
                abort();
        if (sl_manifest_kind_is_index(m->kind)) {
            struct sl_platform p = {
                .os = (char *)"linux", .architecture = (char *)"arm64", .variant = (char *)"v8"};
            (void)sl_manifest_find_platform(m, &p);
        }
        sl_manifest_free(m);
    } else if (!err) {
        abort(); /* every failure carries a message */
    }
    sl_error_free(&err);
    return 0;
}
