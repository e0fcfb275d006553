/* request.c — socket-free request helpers (request.h). */
#include "request.h"
#include "cleanup.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const struct sl_route_info routes[SL_ROUTE_COUNT] = {
    [SL_ROUTE_ROOT] = {"/", "root", SL_METHOD_GET | SL_METHOD_POST | SL_METHOD_HEAD,
                       "GET, POST, HEAD", false},
    [SL_ROUTE_HEALTH] = {"/health-check", "health", SL_METHOD_GET | SL_METHOD_HEAD, "GET, HEAD",
                         false},
    [SL_ROUTE_METRICS] = {"/metrics", "metrics", SL_METHOD_GET, "GET", false},
    [SL_ROUTE_NOTIFY] = {"/starlight/notify", "notify", SL_METHOD_POST, "POST", false},
    [SL_ROUTE_REPORT] = {"/starlight/report", "report", SL_METHOD_POST, "POST", true},
    [SL_ROUTE_DELTA] = {"/starlight/delta", "delta", SL_METHOD_GET | SL_METHOD_POST, "GET, POST",
                        true},
    [SL_ROUTE_HOOK] = {"/starlight/hook/registry", "hook", SL_METHOD_POST, "POST", true},
    [SL_ROUTE_PRUNE] = {"/starlight/prune", "prune", SL_METHOD_POST, "POST", true},
    [SL_ROUTE_UNKNOWN] = {NULL, "other", 0, "", false},
};

enum sl_route sl_request_route(const char *path)
{
    for (int i = 0; i < SL_ROUTE_UNKNOWN; i++)
        if (strcmp(path, routes[i].path) == 0)
            return (enum sl_route)i;
    return SL_ROUTE_UNKNOWN;
}

const struct sl_route_info *sl_request_route_info(enum sl_route r)
{
    return &routes[r < SL_ROUTE_COUNT ? r : SL_ROUTE_UNKNOWN];
}

int sl_request_args_add(struct sl_request_args *a, const char *fragment)
{
    if (a->n >= SL_REQUEST_MAX_ARGS)
        return -E2BIG;
    const char *eq = strchr(fragment, '=');
    size_t nlen = eq ? (size_t)(eq - fragment) : strlen(fragment);
    a->names = sl_xrealloc(a->names, (a->n + 1) * sizeof(*a->names));
    a->values = sl_xrealloc(a->values, (a->n + 1) * sizeof(*a->values));
    a->names[a->n] = sl_xstrndup(fragment, nlen);
    a->values[a->n] = sl_xstrdup(eq ? eq + 1 : "");
    a->n++;
    return 0;
}

int sl_request_args_one(const struct sl_request_args *a, const char *name, const char **ret,
                        sl_error_t *err)
{
    const char *found = NULL;
    for (size_t i = 0; i < a->n; i++) {
        if (strcmp(a->names[i], name) != 0)
            continue;
        if (found)
            return sl_error_make(err, EINVAL, "query parameter `%s` given more than once", name);
        found = a->values[i];
    }
    if (!found)
        return 0;
    *ret = found;
    return 1;
}

size_t sl_request_args_all(const struct sl_request_args *a, const char *name, const char ***ret)
{
    size_t n = 0;
    const char **v = sl_xcalloc(a->n + 1, sizeof(*v));
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->names[i], name) == 0)
            v[n++] = a->values[i];
    *ret = v;
    return n;
}

int sl_request_args_check(const struct sl_request_args *a, const char *const *known,
                          sl_error_t *err)
{
    for (size_t i = 0; i < a->n; i++) {
        bool ok = false;
        for (const char *const *k = known; *k && !ok; k++)
            ok = strcmp(a->names[i], *k) == 0;
        if (!ok)
            return sl_error_make(err, EINVAL, "unknown query parameter `%.64s`", a->names[i]);
    }
    return 0;
}

void sl_request_args_free(struct sl_request_args *a)
{
    for (size_t i = 0; i < a->n; i++) {
        free(a->names[i]);
        free(a->values[i]);
    }
    free(a->names);
    free(a->values);
    *a = (struct sl_request_args){0};
}

/* Decimal without sign, leading spaces or overflow; *p advances past the digits. */
static bool parse_u64(const char **p, uint64_t *ret)
{
    const char *s = *p;
    uint64_t v = 0;
    if (!isdigit((unsigned char)*s))
        return false;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *p = s;
    *ret = v;
    return true;
}

static const char *skip_ows(const char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    return s;
}

enum sl_range_result sl_request_parse_range(const char *header, uint64_t total, uint64_t *start,
                                            uint64_t *end)
{
    if (!header)
        return SL_RANGE_NONE;
    const char *p = skip_ows(header);
    if (strncasecmp(p, "bytes", 5) != 0)
        return SL_RANGE_NONE;
    p = skip_ows(p + 5);
    if (*p++ != '=')
        return SL_RANGE_NONE;
    p = skip_ows(p);
    uint64_t first = 0, last = 0;
    bool has_first = false, has_last = false;
    if (*p != '-') {
        if (!parse_u64(&p, &first))
            return SL_RANGE_NONE;
        has_first = true;
    }
    if (*p++ != '-')
        return SL_RANGE_NONE;
    if (isdigit((unsigned char)*p)) {
        if (!parse_u64(&p, &last))
            return SL_RANGE_NONE;
        has_last = true;
    }
    p = skip_ows(p);
    if (*p != '\0') /* several ranges (",") or junk: ignore the header, as RFC 9110 allows */
        return SL_RANGE_NONE;
    if (!has_first && !has_last)
        return SL_RANGE_NONE;
    if (!has_first) { /* suffix: the last N bytes */
        if (last == 0 || total == 0)
            return SL_RANGE_UNSATISFIABLE;
        *start = last >= total ? 0 : total - last;
        *end = total;
        return SL_RANGE_OK;
    }
    if (has_last && last < first)
        return SL_RANGE_NONE; /* invalid syntax per RFC: ignore */
    if (first >= total)
        return SL_RANGE_UNSATISFIABLE;
    *start = first;
    *end = has_last && last < total - 1 ? last + 1 : total;
    return SL_RANGE_OK;
}

bool sl_request_if_range_ok(const char *if_range, const char *etag)
{
    if (!if_range)
        return true;
    const char *p = skip_ows(if_range);
    size_t n = strlen(p);
    while (n > 0 && (p[n - 1] == ' ' || p[n - 1] == '\t'))
        n--;
    /* A weak tag (W/"...") never matches strongly; a date never matches (no Last-Modified). */
    return etag && n == strlen(etag) && p[0] == '"' && memcmp(p, etag, n) == 0;
}

bool sl_request_accepts(const char *accept, const char *type)
{
    size_t tl = strlen(type);
    for (const char *p = accept; p && *p;) {
        p = skip_ows(p);
        size_t n = strcspn(p, ",;");
        size_t m = n;
        while (m > 0 && (p[m - 1] == ' ' || p[m - 1] == '\t'))
            m--;
        bool match = m == tl && strncasecmp(p, type, tl) == 0;
        p += n;
        /* parameters: only q=0 (q=0.0, q=0.000) refuses */
        bool refused = false;
        while (*p == ';') {
            p = skip_ows(p + 1);
            size_t pl = strcspn(p, ",;");
            if ((p[0] == 'q' || p[0] == 'Q') && p[1] == '=') {
                const char *v = p + 2;
                refused = v[0] == '0';
                for (const char *c = v + 1; refused && c < p + pl; c++)
                    refused = *c == '.' || *c == '0' || *c == ' ' || *c == '\t';
            }
            p += pl;
        }
        if (match && !refused)
            return true;
        if (*p == ',')
            p++;
    }
    return false;
}

static const struct {
    int code;
    int status;
} error_statuses[] = {
    {EINVAL, 400}, {EBADMSG, 400}, {EACCES, 403},      {EPERM, 403},  {ENOENT, 404},
    {EFBIG, 413},  {E2BIG, 413},   {EMEDIUMTYPE, 422}, {EAGAIN, 503}, {ECANCELED, 503},
};

int sl_request_status_of_error(int code)
{
    if (code < 0)
        code = -code;
    for (size_t i = 0; i < SL_ELEMENTSOF(error_statuses); i++)
        if (error_statuses[i].code == code)
            return error_statuses[i].status;
    return 500;
}

const char *sl_request_reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 206:
        return "Partial Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 416:
        return "Range Not Satisfiable";
    case 422:
        return "Unprocessable Entity";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    default:
        return "Unknown";
    }
}

int sl_request_envelope(struct sl_buf *b, int status, const char *message)
{
    int r = sl_buf_printf(b, "{\"status\":");
    if (r >= 0)
        r = sl_buf_json_string(b, sl_request_reason(status));
    if (r >= 0)
        r = sl_buf_printf(b, ",\"code\":%d,\"message\":", status);
    if (r >= 0)
        r = sl_buf_json_string(b, message);
    if (r >= 0)
        r = sl_buf_puts(b, "}\n");
    return r;
}

int sl_request_error_envelope(struct sl_buf *b, int status, const char *error)
{
    int r = sl_buf_printf(b, "{\"status\":");
    if (r >= 0)
        r = sl_buf_json_string(b, sl_request_reason(status));
    if (r >= 0)
        r = sl_buf_printf(b, ",\"code\":%d,\"error\":", status);
    if (r >= 0)
        r = sl_buf_json_string(b, error);
    if (r >= 0)
        r = sl_buf_puts(b, "}\n");
    return r;
}
