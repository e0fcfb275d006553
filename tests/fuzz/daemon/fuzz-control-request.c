/* fuzz-control-request: what the daemon's control API (daemonset/control/request.h) parses
 * from its clients — the request head, query arguments and each JSON body kind.
 *
 * Input: the first byte selects the parser, the rest is its input:
 *   0  a request head (request line and header lines)
 *   1  a request target; its `proxy` and `x` query arguments are looked up
 *   2  a POST /v1/pull body       3  a POST /v1/proxies body
 *   4  a POST /v1/optimizer body  5  a POST /v1/report body   6  a POST /v1/gc body
 * Invariants (abort on violation): every failure carries a message; a parsed head has an
 * upper-case method, a target starting with `/` and without control bytes, and a length
 * within the cap; a found query value holds no NUL; a parsed pull has a non-empty ref; a
 * parsed profile has a name without `/` and an http(s) URL; a parsed grace is -1 or >= 0. */
#include "cleanup.h"
#include "request.h"

#include <stdlib.h>
#include <string.h>

#define MAX_BODY 4096u

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_failed(int r, sl_error_t *err)
{
    if (r < 0 && (!*err || !*sl_error_msg(*err, r)))
        abort();
    sl_error_free(err);
}

static void fuzz_head(const char *s, size_t n)
{
    struct sl_control_head h;
    sl_error_t err = NULL;
    int r = sl_control_parse_head(s, n, MAX_BODY, &h, &err);
    if (r >= 0) {
        if (!h.method[0] || h.target[0] != '/' || h.content_length > MAX_BODY ||
            strlen(h.target) > SL_CONTROL_MAX_TARGET)
            abort();
        for (const char *m = h.method; *m; m++)
            if (*m < 'A' || *m > 'Z')
                abort();
        for (const unsigned char *t = (const unsigned char *)h.target; *t; t++)
            if (*t < 0x21 || *t == 0x7f)
                abort();
    }
    check_failed(r, &err);
    sl_control_head_clear(&h);
}

static void fuzz_query(const char *target)
{
    static const char *const keys[] = {"proxy", "x", ""};
    for (size_t i = 0; i < SL_ELEMENTSOF(keys); i++) {
        char *v = NULL;
        sl_error_t err = NULL;
        int r = sl_control_query(target, keys[i], &v, &err);
        if ((r == 1) != (v != NULL) || (v && strlen(v) > strlen(target)))
            abort();
        check_failed(r, &err);
        free(v);
    }
}

static void fuzz_body(int kind, const char *s, size_t n)
{
    sl_error_t err = NULL;
    int r = 0;
    switch (kind) {
    case 2: {
        struct sl_control_pull_req p;
        r = sl_control_parse_pull(s, n, &p, &err);
        if (r >= 0 && (!p.ref || !*p.ref))
            abort();
        sl_control_pull_req_clear(&p);
        break;
    }
    case 3: {
        struct sl_control_profile p;
        r = sl_control_parse_profile(s, n, &p, &err);
        if (r >= 0 && (!*p.name || strchr(p.name, '/') || strncmp(p.url, "http", 4) != 0))
            abort();
        if (r >= 0) { /* a valid profile round-trips through the file format */
            struct sl_control_profiles ps = {0}, back = {0};
            if (sl_control_profiles_put(&ps, &p, NULL) < 0)
                abort();
            json_t *j = sl_control_profiles_json(&ps);
            char *text = json_dumps(j, 0);
            if (sl_control_parse_profiles(text, strlen(text), &back, NULL) < 0 || back.n != 1 ||
                strcmp(back.v[0].url, p.url) != 0)
                abort();
            free(text);
            json_decref(j);
            sl_control_profiles_clear(&ps);
            sl_control_profiles_clear(&back);
        }
        sl_control_profile_clear(&p);
        break;
    }
    case 4: {
        struct sl_control_optimizer_req o;
        r = sl_control_parse_optimizer(s, n, &o, &err);
        sl_control_optimizer_req_clear(&o);
        break;
    }
    case 5: {
        char *proxy = NULL;
        r = sl_control_parse_report(s, n, &proxy, &err);
        if (r < 0 && proxy)
            abort();
        free(proxy);
        break;
    }
    case 6: {
        int64_t grace = 0;
        r = sl_control_parse_gc(s, n, &grace, &err);
        if (r >= 0 && grace < -1)
            abort();
        break;
    }
    }
    check_failed(r, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    /* the parsers take lengths; an exact-size copy lets ASan see any over-read */
    size_t n = size - 1;
    char *rest = sl_xmalloc(n ? n : 1);
    memcpy(rest, data + 1, n);
    int kind = data[0] % 7;
    if (kind == 0) {
        fuzz_head(rest, n);
    } else if (kind == 1) {
        _cleanup_free_ char *s = sl_xstrndup(rest, n);
        fuzz_query(s);
    } else {
        fuzz_body(kind, rest, n);
    }
    free(rest);
    return 0;
}
