/* request.c — the control API's parsers (request.h): plain data in, owned copies out. */
#include "request.h"
#include "cleanup.h"
#include "json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ------------------------------------------------------------------ head */

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* Header `name` at the start of line [p, e): the value, trimmed, or NULL. */
static const char *header_value(const char *p, const char *e, const char *name, size_t *ret_len)
{
    size_t n = strlen(name);
    if ((size_t)(e - p) <= n || strncasecmp(p, name, n) != 0 || p[n] != ':')
        return NULL;
    p += n + 1;
    while (p < e && is_ows(*p))
        p++;
    while (e > p && is_ows(e[-1]))
        e--;
    *ret_len = (size_t)(e - p);
    return p;
}

int sl_control_parse_head(const char *data, size_t len, uint64_t max_body,
                          struct sl_control_head *ret, sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    if (memchr(data, 0, len))
        return sl_error_make(err, EINVAL, "NUL byte in the request head");
    const char *end = data + len;
    const char *eol = memmem(data, len, "\r\n", 2);
    if (!eol)
        eol = end;
    /* request line: exactly three tokens separated by single spaces */
    const char *sp1 = memchr(data, ' ', (size_t)(eol - data));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || memchr(sp2 + 1, ' ', (size_t)(eol - sp2 - 1)))
        return sl_error_make(err, EINVAL, "malformed request line");
    size_t ml = (size_t)(sp1 - data), tl = (size_t)(sp2 - sp1 - 1), vl = (size_t)(eol - sp2 - 1);
    if (ml == 0 || ml >= sizeof(ret->method))
        return sl_error_make(err, EINVAL, "malformed request line: bad method");
    for (size_t i = 0; i < ml; i++)
        if (data[i] < 'A' || data[i] > 'Z')
            return sl_error_make(err, EINVAL, "malformed request line: bad method");
    if (vl != 8 || (strncmp(sp2 + 1, "HTTP/1.0", 8) != 0 && strncmp(sp2 + 1, "HTTP/1.1", 8) != 0))
        return sl_error_make(err, EINVAL, "malformed request line: not HTTP/1.0 or HTTP/1.1");
    if (tl == 0 || sp1[1] != '/')
        return sl_error_make(err, EINVAL, "malformed request line: the target must start with /");
    if (tl > SL_CONTROL_MAX_TARGET)
        return sl_error_make(err, EINVAL, "request target over %d bytes", SL_CONTROL_MAX_TARGET);
    for (size_t i = 0; i < tl; i++) {
        unsigned char c = (unsigned char)sp1[1 + i];
        if (c < 0x21 || c == 0x7f)
            return sl_error_make(err, EINVAL, "control byte in the request target");
    }

    bool have_len = false;
    uint64_t clen = 0;
    for (const char *p = eol; p < end;) {
        p += 2; /* past "\r\n" */
        if (p >= end)
            break;
        const char *e = memmem(p, (size_t)(end - p), "\r\n", 2);
        if (!e)
            e = end;
        size_t vlen = 0;
        const char *v;
        if ((v = header_value(p, e, "Content-Length", &vlen))) {
            uint64_t x = 0;
            if (vlen == 0)
                return sl_error_make(err, EINVAL, "Content-Length: not a number");
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return sl_error_make(err, EINVAL, "Content-Length: not a number");
                if (x > max_body) /* stop before overflowing */
                    break;
                x = x * 10 + (uint64_t)(v[i] - '0');
            }
            if (x > max_body)
                return sl_error_make(err, EFBIG, "body over %" PRIu64 " bytes", max_body);
            if (have_len && x != clen)
                return sl_error_make(err, EINVAL, "Content-Length: conflicting values");
            have_len = true;
            clen = x;
        } else if (header_value(p, e, "Transfer-Encoding", &vlen)) {
            return sl_error_make(err, EINVAL, "chunked request bodies are not supported");
        }
        p = e;
    }
    memcpy(ret->method, data, ml);
    ret->method[ml] = 0;
    ret->target = sl_xstrndup(sp1 + 1, tl);
    ret->content_length = clen;
    return 0;
}

void sl_control_head_clear(struct sl_control_head *h)
{
    free(h->target);
    h->target = NULL;
}

/* ------------------------------------------------------------------ query */

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int sl_control_query(const char *target, const char *key, char **ret, sl_error_t *err)
{
    *ret = NULL;
    const char *q = strchr(target, '?');
    size_t kl = strlen(key);
    _cleanup_free_ char *found = NULL;
    for (const char *p = q ? q + 1 : NULL; p && *p;) {
        const char *amp = strchr(p, '&');
        size_t n = amp ? (size_t)(amp - p) : strlen(p);
        if (n >= kl && strncmp(p, key, kl) == 0 && (n == kl || p[kl] == '=')) {
            if (found)
                return sl_error_make(err, EINVAL, "query: `%s` given more than once", key);
            char *out = sl_xmalloc(n + 1);
            size_t o = 0;
            for (size_t i = kl + 1; i < n; i++) {
                if (p[i] == '%') {
                    int hi = i + 2 < n ? hexval(p[i + 1]) : -1;
                    int lo = hi >= 0 ? hexval(p[i + 2]) : -1;
                    if (lo < 0 || (hi == 0 && lo == 0)) {
                        free(out);
                        return sl_error_make(err, EINVAL, "query: `%s`: bad %%-escape", key);
                    }
                    out[o++] = (char)(hi << 4 | lo);
                    i += 2;
                } else {
                    out[o++] = p[i] == '+' ? ' ' : p[i];
                }
            }
            out[o] = 0;
            found = out;
        }
        p = amp ? amp + 1 : NULL;
    }
    if (!found)
        return 0;
    *ret = TAKE_PTR(found);
    return 1;
}

/* ------------------------------------------------------------------ bodies */

static char *dup_or_null(const char *s)
{
    return s ? sl_xstrdup(s) : NULL;
}

/* A JSON object body; `optional`: an empty body is fine (*ret NULL). */
static int parse_object(const char *body, size_t len, bool optional, json_t **ret, sl_error_t *err)
{
    *ret = NULL;
    if (optional && len == 0)
        return 0;
    json_t *in = NULL;
    int r = sl_json_parse(body ? body : "", len, SL_CONTROL_MAX_BODY, "request", &in, err);
    if (r < 0)
        return r;
    if (!json_is_object(in)) {
        json_decref(in);
        return sl_error_make(err, EINVAL, "request: not an object");
    }
    *ret = in;
    return 0;
}

/* Rejects keys of `in` not in `keys` (NULL-terminated). */
static int only_keys(json_t *in, const char *const *keys, const char *path, sl_error_t *err)
{
    const char *key;
    json_t *v;
    json_object_foreach(in, key, v)
    {
        bool ok = false;
        for (size_t i = 0; keys[i] && !ok; i++)
            ok = strcmp(keys[i], key) == 0;
        if (!ok)
            return sl_error_make(err, EINVAL, "%s: unknown key `%s`", path, key);
    }
    return 0;
}

/* An optional string field of at most SL_CONTROL_MAX_FIELD bytes. */
static int opt_field(json_t *in, const char *key, const char *path, const char **ret,
                     sl_error_t *err)
{
    int r = sl_json_opt_str(in, key, path, ret, err);
    if (r > 0 && strlen(*ret) > SL_CONTROL_MAX_FIELD)
        return sl_error_make(err, EINVAL, "%s.%s: over %d bytes", path, key, SL_CONTROL_MAX_FIELD);
    return r;
}

int sl_control_parse_pull(const char *body, size_t len, struct sl_control_pull_req *ret,
                          sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    json_auto_t *in = NULL;
    const char *ref = NULL, *platform = NULL, *ns = NULL, *proxy = NULL;
    int r = parse_object(body, len, false, &in, err);
    if (r >= 0)
        r = sl_json_get_str(in, "ref", "", &ref, err);
    if (r >= 0 && !*ref)
        r = sl_error_make(err, EINVAL, ".ref: empty");
    if (r >= 0 && strlen(ref) > SL_CONTROL_MAX_FIELD)
        r = sl_error_make(err, EINVAL, ".ref: over %d bytes", SL_CONTROL_MAX_FIELD);
    if (r >= 0)
        r = opt_field(in, "platform", "", &platform, err);
    if (r >= 0)
        r = opt_field(in, "namespace", "", &ns, err);
    if (r >= 0)
        r = opt_field(in, "proxy", "", &proxy, err);
    json_t *ins = r >= 0 ? json_object_get(in, "insecure") : NULL;
    if (ins && !json_is_boolean(ins))
        r = sl_error_make(err, EINVAL, ".insecure: not a boolean");
    if (r < 0)
        return r;
    ret->ref = sl_xstrdup(ref);
    ret->platform = dup_or_null(platform);
    ret->ns = dup_or_null(ns);
    ret->proxy = dup_or_null(proxy);
    ret->insecure = json_is_true(ins);
    return 0;
}

void sl_control_pull_req_clear(struct sl_control_pull_req *p)
{
    free(p->ref);
    free(p->platform);
    free(p->ns);
    free(p->proxy);
    memset(p, 0, sizeof(*p));
}

/* One profile object at JSON path `path` ("" for a request body). */
static int profile_from_json(json_t *in, const char *path, struct sl_control_profile *ret,
                             sl_error_t *err)
{
    const char *name = NULL, *url = NULL, *user = NULL, *token = NULL;
    int r = sl_json_get_str(in, "name", path, &name, err);
    if (r >= 0)
        r = sl_json_get_str(in, "url", path, &url, err);
    if (r >= 0)
        r = opt_field(in, "user", path, &user, err);
    if (r >= 0)
        r = opt_field(in, "token", path, &token, err);
    if (r >= 0 &&
        (!*name || strlen(name) > SL_CONTROL_MAX_NAME || strchr(name, '/') || strstr(name, "://")))
        r = sl_error_make(err, EINVAL, "%s.name: 1 to %d characters, no `/`", path,
                          SL_CONTROL_MAX_NAME);
    if (r >= 0 && strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0)
        r = sl_error_make(err, EINVAL, "%s.url: must start with http:// or https://", path);
    if (r >= 0 && strlen(url) > SL_CONTROL_MAX_FIELD)
        r = sl_error_make(err, EINVAL, "%s.url: over %d bytes", path, SL_CONTROL_MAX_FIELD);
    if (r < 0)
        return r;
    ret->name = sl_xstrdup(name);
    ret->url = sl_xstrdup(url);
    ret->user = dup_or_null(user);
    ret->token = dup_or_null(token);
    return 0;
}

int sl_control_parse_profile(const char *body, size_t len, struct sl_control_profile *ret,
                             sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    json_auto_t *in = NULL;
    int r = parse_object(body, len, false, &in, err);
    if (r >= 0)
        r = profile_from_json(in, "", ret, err);
    return r;
}

void sl_control_profile_clear(struct sl_control_profile *p)
{
    free(p->name);
    free(p->url);
    free(p->user);
    free(p->token);
    memset(p, 0, sizeof(*p));
}

int sl_control_parse_optimizer(const char *body, size_t len, struct sl_control_optimizer_req *ret,
                               sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    static const char *const keys[] = {"enable", "group", NULL};
    json_auto_t *in = NULL;
    const char *group = NULL;
    int r = parse_object(body, len, false, &in, err);
    if (r >= 0)
        r = only_keys(in, keys, "request", err);
    json_t *en = r >= 0 ? json_object_get(in, "enable") : NULL;
    if (r >= 0 && !json_is_boolean(en))
        r = sl_error_make(err, EINVAL, "request: `enable` must be a boolean");
    if (r >= 0)
        r = opt_field(in, "group", "", &group, err);
    if (r < 0)
        return r;
    ret->enable = json_is_true(en);
    ret->group = dup_or_null(group);
    return 0;
}

void sl_control_optimizer_req_clear(struct sl_control_optimizer_req *o)
{
    free(o->group);
    memset(o, 0, sizeof(*o));
}

int sl_control_parse_report(const char *body, size_t len, char **ret_proxy, sl_error_t *err)
{
    *ret_proxy = NULL;
    static const char *const keys[] = {"proxy", NULL};
    json_auto_t *in = NULL;
    const char *proxy = NULL;
    int r = parse_object(body, len, true, &in, err);
    if (r < 0 || !in)
        return r;
    r = only_keys(in, keys, "request", err);
    if (r >= 0)
        r = opt_field(in, "proxy", "", &proxy, err);
    if (r < 0)
        return r;
    *ret_proxy = dup_or_null(proxy);
    return 0;
}

int sl_control_parse_gc(const char *body, size_t len, int64_t *ret_grace_s, sl_error_t *err)
{
    *ret_grace_s = -1;
    static const char *const keys[] = {"grace", NULL};
    json_auto_t *in = NULL;
    int r = parse_object(body, len, true, &in, err);
    if (r < 0 || !in)
        return r;
    r = only_keys(in, keys, "request", err);
    if (r < 0)
        return r;
    json_t *g = json_object_get(in, "grace");
    if (g && (!json_is_integer(g) || json_integer_value(g) < 0))
        return sl_error_make(err, EINVAL, "request: `grace` must be a number of seconds >= 0");
    if (g)
        *ret_grace_s = (int64_t)json_integer_value(g);
    return 0;
}

/* ------------------------------------------------------------------ proxies.json */

int sl_control_parse_profiles(const char *data, size_t len, struct sl_control_profiles *ret,
                              sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    json_auto_t *doc = NULL;
    json_t *arr = NULL;
    int r = sl_json_parse(data, len, SL_CONTROL_MAX_PROFILES_FILE, "proxies.json", &doc, err);
    if (r < 0)
        return r; /* the message names the file already */
    r = sl_json_get_arr(doc, "proxies", "", &arr, err);
    if (r >= 0 && json_array_size(arr) > SL_CONTROL_MAX_PROFILES)
        r = sl_error_make(err, EFBIG, ".proxies: more than %d profiles", SL_CONTROL_MAX_PROFILES);
    if (r < 0)
        return sl_error_wrap(err, r, "proxies.json");
    struct sl_control_profiles out = {.v = sl_xcalloc(json_array_size(arr) + 1, sizeof(*out.v))};
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        char path[48];
        snprintf(path, sizeof(path), ".proxies[%zu]", i);
        r = profile_from_json(v, path, &out.v[out.n], err);
        if (r >= 0 && sl_control_profiles_find(&out, out.v[out.n].name) >= 0) {
            r = sl_error_make(err, EINVAL, "%s.name: `%s` is defined twice", path,
                              out.v[out.n].name);
            sl_control_profile_clear(&out.v[out.n]);
        }
        if (r < 0) {
            sl_control_profiles_clear(&out);
            return sl_error_wrap(err, r, "proxies.json");
        }
        out.n++;
    }
    *ret = out;
    return 0;
}

ssize_t sl_control_profiles_find(const struct sl_control_profiles *p, const char *name)
{
    for (size_t i = 0; i < p->n; i++)
        if (strcmp(p->v[i].name, name) == 0)
            return (ssize_t)i;
    return -1;
}

int sl_control_profiles_put(struct sl_control_profiles *p, const struct sl_control_profile *e,
                            sl_error_t *err)
{
    ssize_t at = sl_control_profiles_find(p, e->name);
    if ((at < 0 ? p->n + 1 : p->n) > SL_CONTROL_MAX_PROFILES)
        return sl_error_make(err, EFBIG, "at most %d proxy profiles", SL_CONTROL_MAX_PROFILES);
    struct sl_control_profile copy = {
        .name = sl_xstrdup(e->name),
        .url = sl_xstrdup(e->url),
        .user = dup_or_null(e->user),
        .token = dup_or_null(e->token),
    };
    if (at >= 0) {
        sl_control_profile_clear(&p->v[at]);
        p->v[at] = copy;
        return 0;
    }
    p->v = sl_xrealloc(p->v, (p->n + 1) * sizeof(*p->v));
    p->v[p->n++] = copy;
    return 0;
}

json_t *sl_control_profiles_json(const struct sl_control_profiles *p)
{
    json_t *arr = json_array();
    for (size_t i = 0; i < p->n; i++) {
        json_t *o = json_pack("{s:s,s:s}", "name", p->v[i].name, "url", p->v[i].url);
        if (p->v[i].user)
            json_object_set_new(o, "user", json_string(p->v[i].user));
        if (p->v[i].token)
            json_object_set_new(o, "token", json_string(p->v[i].token));
        json_array_append_new(arr, o);
    }
    return json_pack("{s:o}", "proxies", arr);
}

void sl_control_profiles_clear(struct sl_control_profiles *p)
{
    for (size_t i = 0; i < p->n; i++)
        sl_control_profile_clear(&p->v[i]);
    free(p->v);
    p->v = NULL;
    p->n = 0;
}
