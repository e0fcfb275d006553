/* fuzz-reference: image reference parsing; a parsed reference must print and re-parse to
 * the same normalised string. */
#include "reference.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4200)
        return 0;
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = 0;
    struct sl_image_ref ref;
    sl_error_t err = NULL;
    if (sl_image_ref_parse(s, &ref, &err) == 0) {
        char *out = sl_image_ref_str(&ref);
        struct sl_image_ref again;
        if (sl_image_ref_parse(out, &again, NULL) != 0)
            abort();
        char *out2 = sl_image_ref_str(&again);
        if (strcmp(out, out2) != 0)
            abort();
        free(out2);
        free(out);
        sl_image_ref_free(&again);
        sl_image_ref_free(&ref);
    }
    sl_error_free(&err);
    free(s);
    return 0;
}
