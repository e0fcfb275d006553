/* fuzz-kubeconfig: kubeconfig YAML parsing and context resolution. */
#include "k8s.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sl_k8s_config c = {0};
    sl_error_t err = NULL;
    int r = sl_k8s_config_parse_kubeconfig((const char *)data, size, "/d", "fuzz", NULL, &c, &err);
    if (r == 0) {
        if (!c.server || !c.namespace || !c.source)
            abort();
        if (strncmp(c.server, "http", 4) != 0)
            abort();
    } else if (!err) {
        abort();
    }
    sl_error_free(&err);
    sl_k8s_config_free(&c);
    return 0;
}
