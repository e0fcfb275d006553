/* fuzz-error-bodies: the error answers of registries and of the Kubernetes API server turned
 * into messages — a registry's `{"errors": […]}` body (sl_registry_http_error) and an API
 * server's Status (sl_k8s_status_error).
 *
 * Input: the first byte selects the parser (even: registry, odd: API server), the next two
 * give the HTTP status (big-endian), the rest is the body. Invariants (abort on violation):
 * the result is a negative errno with a message; a registry message stays bounded (4 errors
 * of 200-byte fields at most) and holds no control character (C0, DEL, nor C1 as UTF-8:
 * C2 80-C2 9F). */
#include "cleanup.h"
#include "k8s-internal.h"
#include "registry.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    long status = (long)(data[1] << 8 | data[2]);
    const char *body = (const char *)data + 3;
    size_t len = size - 3;
    sl_error_t err = NULL;
    int r;
    if (data[0] % 2 == 0) {
        struct sl_http_response resp = {.status = status, .attempts = 1};
        sl_buf_init(&resp.error_body, SL_HTTP_ERROR_BODY_MAX);
        if (sl_buf_append(&resp.error_body, body, len) < 0) {
            sl_http_response_free(&resp);
            return 0;
        }
        r = sl_registry_http_error(&resp, "GET manifest", &err);
        const char *m = sl_error_msg(err, r);
        if (strlen(m) > 8192)
            abort();
        for (const unsigned char *p = (const unsigned char *)m; *p; p++)
            if (*p < 0x20 || *p == 0x7f || (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f))
                abort();
        sl_http_response_free(&resp);
    } else {
        _cleanup_free_ char *copy = malloc(len ? len : 1); /* exact size for ASan */
        memcpy(copy, body, len);
        r = sl_k8s_status_error(status, "GET", "/api/v1/nodes", copy, len, &err);
    }
    if (r >= 0 || !err || !*sl_error_msg(err, r))
        abort();
    sl_error_free(&err);
    return 0;
}
