/* request.h — the parts of HTTP request handling that need no socket: route table, query
 * arguments, Range/If-Range, error class → status, JSON envelopes.
 *
 * Pure functions over plain data, so the unit test and fuzz targets can drive them without a
 * server. Thread-safe (no shared state). */
#ifndef SL_PROXY_REQUEST_H
#define SL_PROXY_REQUEST_H

#include "buf.h"
#include "error.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum sl_route {
    SL_ROUTE_ROOT,
    SL_ROUTE_HEALTH,
    SL_ROUTE_METRICS,
    SL_ROUTE_NOTIFY,
    SL_ROUTE_REPORT,
    SL_ROUTE_DELTA,
    SL_ROUTE_HOOK,    /* POST /starlight/hook/registry (hook.h) */
    SL_ROUTE_PRUNE,   /* POST /starlight/prune (core.h, sl_core_prune) */
    SL_ROUTE_UNKNOWN, /* no such path (404) */
    SL_ROUTE_COUNT,
};

enum sl_method {
    SL_METHOD_GET = 1 << 0,
    SL_METHOD_POST = 1 << 1,
    SL_METHOD_HEAD = 1 << 2,
    SL_METHOD_OTHER = 1 << 3,
};

struct sl_route_info {
    const char *path;  /* exact match */
    const char *name;  /* label in /metrics */
    unsigned methods;  /* allowed SL_METHOD_* bits */
    const char *allow; /* value of the Allow header on 405 */
    bool body;         /* accepts a request body */
};

/* The route of an exact path; SL_ROUTE_UNKNOWN when none. */
enum sl_route sl_request_route(const char *path);
const struct sl_route_info *sl_request_route_info(enum sl_route r);

/* Query arguments as name/value pairs (already percent-decoded by the HTTP parser), in
 * request order; names may repeat (`from`). Caps: SL_REQUEST_MAX_ARGS pairs. */
#define SL_REQUEST_MAX_ARGS 256
struct sl_request_args {
    char **names;
    char **values;
    size_t n;
};
/* Adds one "name=value" fragment ("name" alone means an empty value). -E2BIG past the cap. */
int sl_request_args_add(struct sl_request_args *a, const char *fragment);
/* The only value of `name`: 1 found, 0 absent, -EINVAL (with a message) when repeated. */
int sl_request_args_one(const struct sl_request_args *a, const char *name, const char **ret,
                        sl_error_t *err);
/* Every value of `name` (borrowed pointers into a; caller frees the array). */
size_t sl_request_args_all(const struct sl_request_args *a, const char *name, const char ***ret);
/* -EINVAL naming the first argument whose name is not in the NULL-terminated `known` list. */
int sl_request_args_check(const struct sl_request_args *a, const char *const *known,
                          sl_error_t *err);
void sl_request_args_free(struct sl_request_args *a);

/* A Range header against a body of `total` bytes:
 *   SL_RANGE_NONE           no header, a malformed one, or several ranges → send all (200)
 *   SL_RANGE_OK             *start..*end (exclusive) is the satisfiable range (206)
 *   SL_RANGE_UNSATISFIABLE  416 with Content-Range: bytes (star)/total
 * Accepts `bytes=N-`, `bytes=N-M` and `bytes=-N` (suffix). */
enum sl_range_result { SL_RANGE_NONE, SL_RANGE_OK, SL_RANGE_UNSATISFIABLE };
enum sl_range_result sl_request_parse_range(const char *header, uint64_t total, uint64_t *start,
                                            uint64_t *end);
/* If-Range (RFC 9110 §13.1.5): true when the Range may be honoured — no If-Range, or an
 * entity tag strongly equal to `etag`. A date or another tag means "send the whole body". */
bool sl_request_if_range_ok(const char *if_range, const char *etag);
/* Accept (RFC 9110 §12.5.1): true when one media range of the list is exactly `type`
 * (case-insensitive, parameters ignored) with a non-zero q. Wildcards do not count: the delta
 * format version 2 is answered only to workers that name it (docs/protocol.md §3). */
bool sl_request_accepts(const char *accept, const char *type);

/* Error class (positive errno) → HTTP status: the one table of the server. */
int sl_request_status_of_error(int code);
/* Reason phrase of a status ("Bad Request"); "Unknown" for others. */
const char *sl_request_reason(int status);

/* JSON envelopes of the original proxy: {"status":"OK","code":200,"message":"..."} and
 * {"status":"Bad Request","code":400,"error":"..."}. Appends to b. */
int sl_request_envelope(struct sl_buf *b, int status, const char *message);
int sl_request_error_envelope(struct sl_buf *b, int status, const char *error);

#endif
