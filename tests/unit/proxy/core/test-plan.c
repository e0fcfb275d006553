/* proxy/core: the planner's pure logic, trace parsing and merging, delta request bodies. */
#include "test.h"

#include "cleanup.h"
#include "core.h"
#include "plan.h"
#include "trace.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

static void dig(char out[SL_DIGEST_STR_LEN], char c)
{
    memcpy(out, "sha256:", 7);
    memset(out + 7, c, 64);
    out[71] = 0;
}

/* One-chunk file of `size` bytes whose member sits at `off` (compressed size size/2 + 1). */
struct fx {
    struct sl_plan_file f[16];
    struct sl_plan_chunk c[16];
    size_t n;
};

static void add(struct fx *x, uint32_t layer, uint32_t idx, const char *path, char d, uint64_t size,
                uint64_t off, int traced_rank)
{
    struct sl_plan_file *f = &x->f[x->n];
    struct sl_plan_chunk *c = &x->c[x->n];
    *f = (struct sl_plan_file){.layer = layer, .toc_index = idx, .path = path, .size = size};
    dig(f->digest, d);
    if (size) {
        *c = (struct sl_plan_chunk){
            .blob_offset = off, .compressed_size = size / 2 + 1, .chunk_offset = 0, .size = size};
        dig(c->digest, d);
        f->chunks = c;
        f->n_chunks = 1;
    }
    if (traced_rank >= 0) {
        f->traced = true;
        f->rank = traced_rank;
    }
    x->n++;
}

static void test_plan_order(void **state)
{
    (void)state;
    struct fx x = {0};
    add(&x, 0, 1, "a", 'a', 100, 0, -1);    /* untraced, first */
    add(&x, 0, 2, "b", 'b', 100, 100, 5);   /* traced rank 5 */
    add(&x, 0, 3, "e", 'e', 0, 0, -1);      /* empty */
    add(&x, 0, 4, "h", 'h', 100, 200, 0);   /* held (even though traced) */
    add(&x, 1, 1, "c", 'c', 100, 0, 2);     /* traced rank 2 */
    add(&x, 1, 2, "b2", 'b', 100, 100, 1);  /* duplicate of b, better rank: b gets rank 1 */
    add(&x, 1, 3, "a2", 'a', 100, 200, -1); /* duplicate of a, later occurrence */
    add(&x, 1, 4, "d", 'd', 100, 300, -1);  /* untraced, second */
    char held_d[SL_DIGEST_STR_LEN];
    dig(held_d, 'h');
    char *held[] = {held_d};
    struct sl_plan_input in = {x.f, x.n, held, 1};
    struct sl_plan_result r = {0};
    assert_int_equal(sl_plan_compute(&in, &r, NULL), 0);
    assert_int_equal(r.n_contents, 4);
    const char order[] = {'b', 'c', 'a', 'd'};
    uint64_t pos = 0;
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(r.contents[i].digest[7], order[i]);
        assert_int_equal(r.contents[i].payload_offset, pos);
        assert_int_equal(r.contents[i].chunks[0].payload_offset, pos);
        pos += r.contents[i].payload_length;
    }
    assert_int_equal(r.payload_length, pos);
    assert_int_equal(r.payload_length, 4 * 51);
    assert_true(r.contents[0].traced && r.contents[1].traced);
    assert_false(r.contents[2].traced || r.contents[3].traced);
    assert_int_equal(r.contents[0].layer, 0); /* b first occurs in layer 0 */
    assert_int_equal(r.contents[2].layer, 0);
    assert_int_equal(r.source[2], SL_DELTA_FILE_EMPTY);
    assert_int_equal(r.source[3], SL_DELTA_FILE_HELD);
    assert_int_equal(r.source[0], SL_DELTA_FILE_PAYLOAD);
    assert_int_equal(r.content[0], 2);       /* a */
    assert_int_equal(r.content[1], 0);       /* b */
    assert_int_equal(r.content[5], 0);       /* b2 */
    assert_int_equal(r.content[6], 2);       /* a2 */
    assert_int_equal(r.content[7], 3);       /* d */
    assert_int_equal(r.saved_bytes, 3 * 51); /* held h, duplicates b2 and a2 */

    /* the same input in another order gives the same plan */
    struct fx y = {0};
    for (size_t i = x.n; i-- > 0;) {
        y.f[y.n] = x.f[i];
        y.c[y.n] = x.c[i];
        if (y.f[y.n].n_chunks)
            y.f[y.n].chunks = &y.c[y.n];
        y.n++;
    }
    struct sl_plan_input in2 = {y.f, y.n, held, 1};
    struct sl_plan_result r2 = {0};
    assert_int_equal(sl_plan_compute(&in2, &r2, NULL), 0);
    assert_int_equal(r2.n_contents, r.n_contents);
    for (size_t i = 0; i < r.n_contents; i++) {
        assert_string_equal(r.contents[i].digest, r2.contents[i].digest);
        assert_int_equal(r.contents[i].chunks[0].blob_offset, r2.contents[i].chunks[0].blob_offset);
    }
    sl_plan_result_free(&r2);

    /* segments: contents b (layer 0 @100) and c (layer 1 @0) are not adjacent; a (layer 0 @0)
     * then d (layer 1 @300) neither */
    uint32_t map[2] = {0, 1};
    struct sl_delta_segment *seg = NULL;
    size_t ns = 0;
    sl_plan_segments(r.contents, r.n_contents, map, 1000, &seg, &ns);
    assert_int_equal(ns, 4);
    assert_int_equal(seg[0].response_offset, 1000);
    assert_int_equal(seg[3].response_offset, 1000 + 3 * 51);
    free(seg);
    sl_plan_result_free(&r);
}

static void test_plan_coalesce(void **state)
{
    (void)state;
    struct fx x = {0};
    add(&x, 0, 1, "a", 'a', 100, 0, -1);
    add(&x, 0, 2, "b", 'b', 100, 51, -1); /* right after a's member */
    add(&x, 0, 3, "c", 'c', 100, 200, -1);
    struct sl_plan_input in = {x.f, x.n, NULL, 0};
    struct sl_plan_result r = {0};
    assert_int_equal(sl_plan_compute(&in, &r, NULL), 0);
    uint32_t map[1] = {0};
    struct sl_delta_segment *seg = NULL;
    size_t ns = 0;
    sl_plan_segments(r.contents, r.n_contents, map, 32, &seg, &ns);
    assert_int_equal(ns, 2);
    assert_int_equal(seg[0].blob_offset, 0);
    assert_int_equal(seg[0].length, 102);
    assert_int_equal(seg[1].blob_offset, 200);
    assert_int_equal(seg[1].response_offset, 32 + 102);
    free(seg);
    sl_plan_result_free(&r);
}

/* Payload reads: runs of close segments of one blob, gap bytes dropped. */
static uint8_t blob_byte(uint32_t layer, uint64_t off)
{
    return (uint8_t)(off * 7 + layer * 13);
}

struct collect {
    uint8_t buf[64];
    size_t n;
};

static int collect_sink(void *ud, const void *data, size_t len)
{
    struct collect *c = ud;
    assert_true(c->n + len <= sizeof(c->buf));
    memcpy(c->buf + c->n, data, len);
    c->n += len;
    return 0;
}

static void test_plan_read_runs(void **state)
{
    (void)state;
    /* response offsets from 1000; gaps 10 (read through), 75 (> gap_max 50: a new read), a
     * layer change, a step back in the same blob */
    const struct sl_delta_segment segs[] = {
        {0, 100, 10, 1000}, {0, 120, 5, 1010}, {0, 200, 7, 1015}, {1, 0, 4, 1022}, {0, 50, 3, 1026},
    };
    const size_t n = SL_ELEMENTSOF(segs);
    uint8_t expect[29];
    for (size_t i = 0; i < n; i++)
        for (uint64_t k = 0; k < segs[i].length; k++)
            expect[segs[i].response_offset - 1000 + k] =
                blob_byte(segs[i].layer, segs[i].blob_offset + k);

    uint64_t off, end, want;
    assert_int_equal(sl_plan_read_run(segs, n, 0, 1000, 29, 50, &off, &end, &want), 1);
    assert_int_equal(off, 100);
    assert_int_equal(end, 125);
    assert_int_equal(want, 15);
    assert_int_equal(sl_plan_read_run(segs, n, 0, 1003, 9, 50, &off, &end, &want), 1);
    assert_int_equal(off, 103); /* from the middle of the first, into the second */
    assert_int_equal(end, 122);
    assert_int_equal(want, 9);
    assert_int_equal(sl_plan_read_run(segs, n, 0, 1000, 29, 100, &off, &end, &want), 2);
    assert_int_equal(end, 207);

    /* every start and length, pieces of 1..5 bytes: the response bytes, nothing else */
    for (uint64_t pos = 1000; pos < 1029; pos++) {
        for (uint64_t len = 1; pos + len <= 1029; len++) {
            struct collect c = {.n = 0};
            uint64_t p = pos, left = len;
            size_t i = 0;
            while (i + 1 < n && segs[i + 1].response_offset <= p)
                i++;
            while (left > 0) {
                size_t j = sl_plan_read_run(segs, n, i, p, left, 50, &off, &end, &want);
                assert_true(want > 0 && want <= left);
                struct sl_plan_gap_filter g;
                sl_plan_gap_filter_init(&g, segs + i, off, want, collect_sink, &c);
                uint8_t piece[8];
                for (uint64_t b = off, step = 1; b < end; b += step, step = step % 5 + 1) {
                    size_t m = (size_t)SL_MIN(step, end - b);
                    for (size_t k = 0; k < m; k++)
                        piece[k] = blob_byte(segs[i].layer, b + k);
                    assert_int_equal(sl_plan_gap_filter_write(&g, piece, m), 0);
                }
                assert_int_equal(g.left, 0);
                uint8_t extra = 0;
                assert_int_equal(sl_plan_gap_filter_write(&g, &extra, 1), -EIO);
                p += want;
                left -= want;
                i = j + 1;
            }
            assert_int_equal(c.n, len);
            assert_memory_equal(c.buf, expect + (pos - 1000), len);
        }
    }
}

static void test_plan_rejects(void **state)
{
    (void)state;
    struct fx x = {0};
    add(&x, 0, 1, "a", 'a', 100, 0, -1);
    x.c[0].size = 99; /* chunks do not tile */
    struct sl_plan_input in = {x.f, x.n, NULL, 0};
    struct sl_plan_result r = {0};
    assert_int_equal(sl_plan_compute(&in, &r, NULL), -EINVAL);
    struct fx y = {0};
    add(&y, 0, 1, "a", 'a', 100, 0, -1);
    add(&y, 0, 2, "b", 'a', 102, 100, -1); /* one digest, two sizes */
    struct sl_plan_input in2 = {y.f, y.n, NULL, 0};
    assert_int_equal(sl_plan_compute(&in2, &r, NULL), -EINVAL);
    /* nothing to send */
    struct sl_plan_input none = {NULL, 0, NULL, 0};
    assert_int_equal(sl_plan_compute(&none, &r, NULL), 0);
    assert_int_equal(r.n_contents, 0);
    assert_int_equal(r.payload_length, 0);
    sl_plan_result_free(&r);
}

#define IMG_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define IMG_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

static void test_trace_merge(void **state)
{
    (void)state;
    const char *doc =
        "{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"" IMG_A "\",\"" IMG_B "\"],"
        "\"accesses\":["
        "{\"image\":0,\"layer\":1,\"path\":\"/usr/bin/app\",\"timeNs\":300},"
        "{\"image\":1,\"layer\":0,\"path\":\"etc/conf\",\"timeNs\":100},"
        "{\"image\":0,\"layer\":1,\"path\":\"usr/bin/app\",\"timeNs\":50},"
        "{\"image\":0,\"layer\":0,\"path\":\"./lib/x.so\",\"timeNs\":100},"
        "{\"image\":1,\"layer\":0,\"path\":\"etc/conf\",\"timeNs\":400}]}]}";
    sl_error_t err = NULL;
    _cleanup_trace_doc_ struct sl_trace_doc *d = NULL;
    int r = sl_trace_parse(doc, strlen(doc), &d, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    assert_int_equal(d->n_groups, 1);
    assert_int_equal(d->n_accesses, 5);
    struct sl_trace_ranked *rk = NULL;
    size_t n = 0;
    sl_trace_rank(&d->groups[0], &rk, &n);
    assert_int_equal(n, 3);
    /* app at 50 (its first access), then conf (100, earlier in the document than x.so), x.so */
    assert_string_equal(rk[0].path, "usr/bin/app");
    assert_int_equal(rk[0].image, 0);
    assert_string_equal(rk[1].path, "etc/conf");
    assert_int_equal(rk[1].image, 1);
    assert_string_equal(rk[2].path, "lib/x.so");
    assert_int_equal(rk[2].rank, 2);
    free(rk);
}

static void trace_fails(const char *doc, const char *what)
{
    struct sl_trace_doc *d = NULL;
    int r = sl_trace_parse(doc, strlen(doc), &d, NULL);
    if (r >= 0)
        fail_msg("%s: accepted", what);
    assert_null(d);
}

static void test_trace_hostile(void **state)
{
    (void)state;
    trace_fails("[]", "not an object");
    trace_fails("{\"version\":2,\"groups\":[]}", "version");
    trace_fails("{\"version\":1,\"groups\":[],\"x\":1}", "unknown key");
    trace_fails("{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[],\"accesses\":[]}]}",
                "no images");
    trace_fails("{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"sha256:x\"],"
                "\"accesses\":[]}]}",
                "bad digest");
    trace_fails("{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"" IMG_A "\",\"" IMG_A
                "\"],\"accesses\":[]}]}",
                "image twice");
    trace_fails("{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"" IMG_A "\"],"
                "\"accesses\":[{\"image\":1,\"layer\":0,\"path\":\"a\",\"timeNs\":1}]}]}",
                "image index out of range");
    trace_fails("{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"" IMG_A "\"],"
                "\"accesses\":[{\"image\":0,\"layer\":0,\"path\":\"../a\",\"timeNs\":1}]}]}",
                "path escapes");
    trace_fails("{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"" IMG_A "\"],"
                "\"accesses\":[{\"image\":0,\"layer\":0,\"path\":\"/\",\"timeNs\":1}]}]}",
                "root path");
    trace_fails("{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"" IMG_A "\"],"
                "\"accesses\":[{\"image\":0,\"layer\":0,\"path\":\"a\",\"timeNs\":-1}]}]}",
                "negative time");
    trace_fails("{\"version\":1,\"groups\":[{\"name\":\"g\",\"images\":[\"" IMG_A "\"],"
                "\"accesses\":[{\"image\":0,\"layer\":0,\"path\":\"a\"}]}]}",
                "missing time");
}

static void test_request_json(void **state)
{
    (void)state;
    const char *body = "{\"to\":\"r/app:v2\",\"platform\":\"linux/amd64\",\"from\":[\"r/app:v1\","
                       "\"r/base:1\"],\"layers\":[\"" IMG_A "\"],\"contents\":[\"" IMG_A "\"]}";
    struct sl_delta_request req = {0};
    json_t *j = NULL;
    assert_int_equal(sl_delta_request_parse_json(body, strlen(body), &req, &j, NULL), 0);
    assert_string_equal(req.to, "r/app:v2");
    assert_string_equal(req.platform, "linux/amd64");
    assert_int_equal(req.n_from, 2);
    assert_string_equal(req.from[1], "r/base:1");
    assert_int_equal(req.n_held_layers, 1);
    assert_string_equal(req.held_layers[0], IMG_A);
    assert_int_equal(req.n_held_contents, 1); /* verified contents of incomplete layers */
    assert_string_equal(req.held_contents[0], IMG_A);
    assert_false(req.insecure);
    json_decref(j);
    const char *bad[] = {
        "{\"to\":\"a\"}",                                           /* no platform */
        "{\"to\":\"a\",\"platform\":\"linux/amd64\",\"x\":1}",      /* unknown key */
        "{\"to\":\"a\",\"platform\":\"linux/amd64\",\"from\":[1]}", /* not a string */
        "{\"to\":\"a\",\"platform\":\"linux/amd64\",\"insecure\":1}",
        "{\"to\":\"a\",\"platform\":\"linux/amd64\",\"contents\":\"x\"}", /* not an array */
        "[1]",
        "{",
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(bad); i++) {
        j = NULL;
        if (sl_delta_request_parse_json(bad[i], strlen(bad[i]), &req, &j, NULL) != -EINVAL)
            fail_msg("accepted %s", bad[i]);
        assert_null(j);
    }
}

/* The image config notify reads from the registry: diff_ids and the platform. */
static void test_image_config(void **state)
{
    (void)state;
    static const char d1[] =
        "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    char ok[512];
    snprintf(ok, sizeof(ok),
             "{\"os\":\"linux\",\"architecture\":\"arm64\",\"variant\":\"v8\","
             "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"%s\",\"%s\"]}}",
             d1, d1);
    struct sl_core_image_config c;
    sl_error_t err = NULL;
    assert_int_equal(sl_core_parse_image_config(ok, strlen(ok), 2, true, &c, &err), 0);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.diff_ids[1], d1);
    assert_string_equal(c.platform, "linux/arm64");
    sl_core_image_config_clear(&c);
    assert_int_equal(sl_core_parse_image_config(ok, strlen(ok), 2, false, &c, &err), 0);
    assert_null(c.platform);
    sl_core_image_config_clear(&c);
    sl_core_image_config_clear(&c);
    static const struct {
        const char *doc;
        size_t n;
        const char *msg;
    } bad[] = {
        {"{", 0, "invalid JSON"},
        {"{}", 0, "config.rootfs: missing"},
        {"{\"rootfs\":{\"diff_ids\":{}}}", 0, "diff_ids"},
        {"{\"rootfs\":{\"diff_ids\":[]}}", 1, "0 diff_ids for 1 layers"},
        {"{\"rootfs\":{\"diff_ids\":[\"sha256:12\"]}}", 1, "diff_ids[0]: not a sha256"},
        {"{\"rootfs\":{\"diff_ids\":[]}}", 0, "config.os: missing"},
        {"{\"os\":\"linux\",\"architecture\":\"\",\"rootfs\":{\"diff_ids\":[]}}", 0, ""},
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(bad); i++) {
        int r =
            sl_core_parse_image_config(bad[i].doc, strlen(bad[i].doc), bad[i].n, true, &c, &err);
        if (r >= 0 || !strstr(sl_error_msg(err, r), bad[i].msg))
            fail_msg("`%s`: %d %s", bad[i].doc, r, sl_error_msg(err, r));
        assert_null(c.diff_ids);
        sl_error_free(&err);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plan_order),     cmocka_unit_test(test_plan_coalesce),
        cmocka_unit_test(test_plan_read_runs), cmocka_unit_test(test_plan_rejects),
        cmocka_unit_test(test_trace_merge),    cmocka_unit_test(test_trace_hostile),
        cmocka_unit_test(test_request_json),   cmocka_unit_test(test_image_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
