/* fake-core.c — a test double of proxy/core/core.h with canned plans and deliberately slow
 * or failing segment reads, so the server can be tested before (and without) PostgreSQL and
 * a registry. */
#include "core.h"
#include "cleanup.h"
#include "fake-core.h"

#include <errno.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

struct sl_core {
    int unused;
};

static atomic_bool healthy = true;
static atomic_int reads_in_progress;
static atomic_uint_fast64_t bytes_read;
static atomic_uint_fast64_t reads_cancelled;
static atomic_int_fast64_t plans_live;

void fake_core_set_healthy(bool ok)
{
    atomic_store(&healthy, ok);
}
int fake_core_reads_in_progress(void)
{
    return atomic_load(&reads_in_progress);
}
uint64_t fake_core_bytes_read(void)
{
    return atomic_load(&bytes_read);
}
uint64_t fake_core_reads_cancelled(void)
{
    return atomic_load(&reads_cancelled);
}
uint64_t fake_core_plans_live(void)
{
    return (uint64_t)atomic_load(&plans_live);
}

struct shape {
    const char *name;
    size_t head;
    uint64_t payload;
    size_t n_segments;
};

static const struct shape shapes[] = {
    {"small", 1000, 300 * 1024 + 17, 3}, {"medium", 2000, 4u << 20, 16},
    {"big", 4096, 64u << 20, 64},        {"slow", 4096, 64u << 20, 64},
    {"fail", 2000, 4u << 20, 16},        {"empty", 512, 0, 0},
};

static const struct shape *find_shape(const char *to)
{
    for (size_t i = 0; i < SL_ELEMENTSOF(shapes); i++)
        if (strcmp(to, shapes[i].name) == 0)
            return &shapes[i];
    return NULL;
}

uint64_t fake_core_total(const char *to)
{
    const struct shape *s = find_shape(to);
    return s ? s->head + s->payload : 0;
}

uint8_t fake_core_byte(const char *to, uint64_t pos)
{
    uint64_t x = pos * 2654435761u + (uint64_t)(unsigned char)to[0];
    return (uint8_t)(x ^ (x >> 13) ^ (pos >> 7));
}

int sl_core_new(const struct sl_core_config *cfg, struct sl_core **ret, sl_error_t *err)
{
    (void)cfg;
    (void)err;
    *ret = sl_xcalloc(1, sizeof(**ret));
    return 0;
}

void sl_core_free(struct sl_core *core)
{
    free(core);
}

int sl_core_health(struct sl_core *core, json_t **ret, sl_error_t *err)
{
    (void)core;
    bool ok = atomic_load(&healthy);
    *ret = json_pack("{s:s, s:s}", "database", ok ? "ok" : "connection refused", "registry", "ok");
    if (!ok)
        return sl_error_make(err, EAGAIN, "database: connection refused");
    return 0;
}

static int fail_for(const char *ref, sl_error_t *err)
{
    if (strcmp(ref, "missing") == 0)
        return sl_error_make(err, ENOENT, "image `%s` is not known to the proxy", ref);
    if (strcmp(ref, "busy") == 0)
        return sl_error_make(err, EAGAIN, "database: connection refused");
    if (strcmp(ref, "plain") == 0)
        return sl_error_make(err, EMEDIUMTYPE, "`%s` is not in Starlight format: convert it", ref);
    if (strcmp(ref, "bad") == 0)
        return sl_error_make(err, EINVAL, "bad reference `%s`", ref);
    return 0;
}

int sl_core_notify(struct sl_core *core, const char *ref, bool insecure, json_t **ret,
                   sl_error_t *err)
{
    (void)core;
    int r = fail_for(ref, err);
    if (r < 0)
        return r;
    *ret = json_pack("{s:s, s:i, s:s, s:{s:s, s:b}}", "status", "OK", "code", 200, "message",
                     "cached ToC", "extractor", "requested-image", ref, "insecure", insecure);
    return 0;
}

int sl_core_prune(struct sl_core *core, bool insecure, int64_t min_age_s, json_t **ret,
                  sl_error_t *err)
{
    (void)core, (void)err, (void)min_age_s;
    *ret = json_pack("{s:i,s:[],s:i,s:i,s:b}", "imagesChecked", 0, "imagesRemoved", "layersRemoved",
                     0, "unchecked", 0, "insecure", insecure);
    return 0;
}

int sl_core_report(struct sl_core *core, const char *body, size_t len, json_t **ret,
                   sl_error_t *err)
{
    (void)core;
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!j)
        return sl_error_make(err, EINVAL, "report: %s", je.text);
    json_decref(j);
    *ret = json_pack("{s:s, s:i, s:s}", "status", "OK", "code", 200, "message", "recorded");
    return 0;
}

int sl_delta_request_parse_json(const char *body, size_t len, struct sl_delta_request *ret,
                                json_t **ret_json, sl_error_t *err)
{
    json_error_t je;
    json_t *j = json_loadb(body, len, 0, &je);
    if (!j)
        return sl_error_make(err, EINVAL, "delta request: %s", je.text);
    const char *to = json_string_value(json_object_get(j, "to"));
    const char *platform = json_string_value(json_object_get(j, "platform"));
    if (!to || !platform) {
        json_decref(j);
        return sl_error_make(err, EINVAL, "delta request: `to` and `platform` are required");
    }
    *ret = (struct sl_delta_request){.to = to, .platform = platform};
    *ret_json = j;
    return 0;
}

int sl_core_delta_plan(struct sl_core *core, const struct sl_delta_request *req,
                       struct sl_delta **ret, sl_error_t *err)
{
    (void)core;
    int r = fail_for(req->to, err);
    if (r < 0)
        return r;
    const struct shape *s = find_shape(req->to);
    if (!s)
        return sl_error_make(err, ENOENT, "image `%s` is not known to the proxy", req->to);
    struct sl_delta *d = sl_xcalloc(1, sizeof(*d));
    snprintf(d->etag, sizeof(d->etag), "\"fake-%s-%zu\"", req->to, req->n_from);
    d->head_len = s->head;
    d->head = sl_xmalloc(s->head);
    for (size_t i = 0; i < s->head; i++)
        d->head[i] = fake_core_byte(req->to, i);
    d->n_layers = 1;
    d->layers = sl_xcalloc(1, sizeof(*d->layers));
    snprintf(d->layers[0].digest, sizeof(d->layers[0].digest), "sha256:%064d", 0);
    d->n_segments = s->n_segments;
    d->segments = sl_xcalloc(s->n_segments ? s->n_segments : 1, sizeof(*d->segments));
    uint64_t pos = s->head, left = s->payload;
    for (size_t i = 0; i < s->n_segments; i++) {
        uint64_t n = i + 1 == s->n_segments ? left : s->payload / s->n_segments + (i % 3);
        d->segments[i] = (struct sl_delta_segment){0, pos * 3, n, pos};
        pos += n;
        left -= n;
    }
    d->total_len = s->head + s->payload;
    d->payload_bytes = s->payload;
    d->saved_bytes = 12345;
    d->priv = sl_xstrdup(req->to);
    atomic_fetch_add(&plans_live, 1);
    *ret = d;
    return 0;
}

void sl_delta_free(struct sl_delta *d)
{
    if (!d)
        return;
    atomic_fetch_sub(&plans_live, 1);
    free(d->head);
    free(d->segments);
    free(d->layers);
    free(d->priv);
    free(d);
}

int sl_core_read_segment(struct sl_core *core, const struct sl_delta *d, size_t seg, uint64_t off,
                         uint64_t len, sl_http_sink_fn sink, void *ud, sl_error_t *err)
{
    (void)core;
    const char *to = d->priv;
    const struct sl_delta_segment *g = &d->segments[seg];
    if (off + len > g->length)
        return sl_error_make(err, EINVAL, "read past segment %zu", seg);
    bool slow = strcmp(to, "slow") == 0, fail = strcmp(to, "fail") == 0;
    atomic_fetch_add(&reads_in_progress, 1);
    uint8_t buf[16384];
    int r = 0;
    uint64_t pos = g->response_offset + off, end = pos + len;
    while (pos < end) {
        size_t n = (size_t)SL_MIN((uint64_t)sizeof(buf), end - pos);
        if (fail && pos >= (1u << 20)) {
            r = sl_error_make(err, EIO, "registry: HTTP 500 reading blob");
            break;
        }
        for (size_t i = 0; i < n; i++)
            buf[i] = fake_core_byte(to, pos + i);
        if (slow)
            usleep(2000);
        r = sink(ud, buf, n);
        if (r < 0) {
            if (r == -ECANCELED)
                atomic_fetch_add(&reads_cancelled, 1);
            sl_error_make(err, -r, "sink refused");
            break;
        }
        atomic_fetch_add(&bytes_read, n);
        pos += n;
    }
    atomic_fetch_sub(&reads_in_progress, 1);
    return r < 0 ? r : 0;
}

int sl_core_read_payload(struct sl_core *core, const struct sl_delta *d, uint64_t pos, uint64_t len,
                         sl_http_sink_fn sink, void *ud, sl_error_t *err)
{
    if (pos < d->head_len || pos + len > d->total_len)
        return sl_error_make(err, EINVAL, "read payload outside the body");
    for (size_t i = 0; i < d->n_segments && len > 0; i++) {
        const struct sl_delta_segment *g = &d->segments[i];
        if (pos >= g->response_offset + g->length)
            continue;
        uint64_t off = pos - g->response_offset;
        uint64_t n = SL_MIN(len, g->length - off);
        int r = sl_core_read_segment(core, d, i, off, n, sink, ud, err);
        if (r < 0)
            return r;
        pos += n;
        len -= n;
    }
    return 0;
}

void sl_core_metrics(struct sl_core *core, char **out)
{
    (void)core;
    *out = sl_xstrdup("# HELP starlight_fake_core_up Fake core.\n# TYPE starlight_fake_core_up "
                      "gauge\nstarlight_fake_core_up 1\n");
}
