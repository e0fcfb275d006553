/* fuzz-proxy-request: what starlight-proxy parses from clients before any core call — query
 * strings (proxy/server/request.h), Range/If-Range headers, delta POST bodies
 * (sl_delta_request_parse_json, proxy/core/core.h) and conversion hook payloads (hook.h).
 *
 * Input: the first byte selects the parser, the rest is its input:
 *   0  a query string; '&'-separated fragments go through sl_request_args_add, then the
 *      lookups the handlers make
 *   1  8 bytes of body length (big-endian), then "RANGE\nIF-RANGE" (If-Range optional)
 *   2  a delta POST body
 *   3  a hook payload (distribution envelope or Harbor webhook)
 * Invariants (abort on violation): a satisfiable Range lies inside the body and is not
 * empty; every value found by name is one of the stored pairs; a parsed delta request has a
 * target and platform; parsed hook events have a repository and a tag. */
#include "cleanup.h"
#include "core.h"
#include "hook.h"
#include "request.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_query(const char *s)
{
    struct sl_request_args a = {0};
    _cleanup_free_ char *copy = sl_xstrdup(s);
    char *save = NULL;
    for (char *f = strtok_r(copy, "&", &save); f; f = strtok_r(NULL, "&", &save))
        if (sl_request_args_add(&a, f) < 0)
            break;
    if (a.n > SL_REQUEST_MAX_ARGS)
        abort();
    static const char *const known[] = {"to", "platform", "from", "layer", "insecure", NULL};
    sl_error_t err = NULL;
    (void)sl_request_args_check(&a, known, &err);
    sl_error_free(&err);
    for (const char *const *k = known; *k; k++) {
        const char *v = NULL;
        int r = sl_request_args_one(&a, *k, &v, &err);
        sl_error_free(&err);
        if (r == 1 && !v)
            abort();
        const char **all = NULL;
        size_t n = sl_request_args_all(&a, *k, &all);
        if (n > a.n || (r == 1 && n != 1) || (r == 0 && n != 0))
            abort();
        free(all);
    }
    (void)sl_request_route(s);
    sl_request_args_free(&a);
}

static void fuzz_range(const uint8_t *data, size_t size)
{
    if (size < 8)
        return;
    uint64_t total = 0;
    for (int i = 0; i < 8; i++)
        total = total << 8 | data[i];
    _cleanup_free_ char *s = sl_xstrndup((const char *)data + 8, size - 8);
    char *if_range = strchr(s, '\n');
    if (if_range)
        *if_range++ = '\0';
    uint64_t start = 0, end = 0;
    if (sl_request_parse_range(s, total, &start, &end) == SL_RANGE_OK &&
        (start >= end || end > total))
        abort();
    (void)sl_request_if_range_ok(if_range, "\"sha256:0123\"");
    (void)sl_request_if_range_ok(if_range, NULL);
}

static void fuzz_delta_body(const char *body, size_t len)
{
    struct sl_delta_request req = {0};
    json_t *j = NULL;
    sl_error_t err = NULL;
    if (sl_delta_request_parse_json(body, len, &req, &j, &err) >= 0 && (!req.to || !req.platform))
        abort();
    json_decref(j);
    sl_error_free(&err);
}

static void fuzz_hook(const char *body, size_t len)
{
    struct sl_hook_event *ev = NULL;
    size_t n = 0;
    sl_error_t err = NULL;
    if (sl_hook_parse(body, len, &ev, &n, &err) >= 0) {
        if (n > SL_HOOK_MAX_EVENTS)
            abort();
        for (size_t i = 0; i < n; i++)
            if (!ev[i].repository || !*ev[i].repository || !ev[i].tag || !*ev[i].tag)
                abort();
    }
    sl_hook_events_free(ev, n);
    sl_error_free(&err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *rest = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 4) {
    case 0: {
        _cleanup_free_ char *s = sl_xstrndup(rest, n);
        fuzz_query(s);
        break;
    }
    case 1:
        fuzz_range(data + 1, n);
        break;
    case 2:
        fuzz_delta_body(rest, n);
        break;
    case 3:
        fuzz_hook(rest, n);
        break;
    }
    return 0;
}
