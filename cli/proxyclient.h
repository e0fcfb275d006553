/* proxyclient.h — the CLI's calls to a starlight-proxy (docs/protocol.md). */
#ifndef SL_CLI_PROXYCLIENT_H
#define SL_CLI_PROXYCLIENT_H

#include "error.h"

#include <jansson.h>
#include <stdbool.h>

struct sl_proxy_target {
    const char *url;   /* base URL, e.g. "http://127.0.0.1:8090" */
    const char *user;  /* "user:password" for Basic auth, or NULL */
    const char *token; /* bearer token, or NULL */
};

/* POST /starlight/notify?ref=REF[&insecure=1]. On a 200 answer stores the JSON body in *ret
 * (caller frees). A non-200 answer gives an error carrying the proxy's "error" message and a
 * class from the status (400 EINVAL, 401/403 EACCES, 404 ENOENT, 422 EMEDIUMTYPE,
 * 503 EAGAIN, else EIO). Thread-safe. */
int sl_proxy_notify(const struct sl_proxy_target *p, const char *ref, bool insecure, json_t **ret,
                    sl_error_t *err);

#endif
