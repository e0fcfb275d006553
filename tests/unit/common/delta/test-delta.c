/* common/delta: encode/decode round trips, determinism, and hostile headers. */
#include "test.h"

#include "cleanup.h"
#include "delta.h"
#include "gzip.h"

#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TOC_A "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define TOC_B "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"
#define DIFF0 "sha256:0000000000000000000000000000000000000000000000000000000000000000"
#define DIFF1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define L0    "sha256:2222222222222222222222222222222222222222222222222222222222222222"
#define L1    "sha256:3333333333333333333333333333333333333333333333333333333333333333"
#define C0    "sha256:4444444444444444444444444444444444444444444444444444444444444444"
#define C1    "sha256:5555555555555555555555555555555555555555555555555555555555555555"
#define K0    "sha256:6666666666666666666666666666666666666666666666666666666666666666"
#define K1    "sha256:7777777777777777777777777777777777777777777777777777777777777777"
#define HELD  "sha256:8888888888888888888888888888888888888888888888888888888888888888"
#define EMPTY "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define IMG   "sha256:9999999999999999999999999999999999999999999999999999999999999999"

/* A fixture: 2 layers (0 held, 1 not), 1 content with 2 chunks, 3 files (payload, held,
 * empty). Every pointer is malloc'd so sl_delta_header_free can free it. */
static struct sl_delta_header *fixture(void)
{
    struct sl_delta_header *h = sl_xcalloc(1, sizeof(*h));
    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
             "\"diff_ids\":[\"%s\",\"%s\"]}}",
             DIFF0, DIFF1);
    h->config = (uint8_t *)sl_xstrdup(cfg);
    h->config_len = strlen(cfg);
    sl_sha256_str(h->config, h->config_len, h->config_digest);
    char man[2048];
    snprintf(man, sizeof(man),
             "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
             "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\","
             "\"digest\":\"%s\",\"size\":%zu},\"layers\":["
             "{\"mediaType\":\"x\",\"digest\":\"%s\",\"size\":1000,\"annotations\":"
             "{\"containerd.io/snapshot/remote/starlight/toc.digest\":\"%s\"}},"
             "{\"mediaType\":\"x\",\"digest\":\"%s\",\"size\":5000}]}",
             h->config_digest, h->config_len, L0, TOC_A, L1);
    h->manifest = (uint8_t *)sl_xstrdup(man);
    h->manifest_len = strlen(man);
    sl_sha256_str(h->manifest, h->manifest_len, h->digest);
    h->reference = sl_xstrdup("127.0.0.1:5000/app:v2");
    h->repository = sl_xstrdup("127.0.0.1:5000/app");
    h->platform = sl_xstrdup("linux/amd64");
    h->media_type = sl_xstrdup("application/vnd.oci.image.manifest.v1+json");
    h->held_images = sl_xcalloc(1, sizeof(char *));
    h->held_images[0] = sl_xstrdup(IMG);
    h->n_held_images = 1;
    h->held_layers = sl_xcalloc(1, sizeof(char *));
    h->held_layers[0] = sl_xstrdup(L0);
    h->n_held_layers = 1;
    h->layers = sl_xcalloc(2, sizeof(*h->layers));
    h->n_layers = 2;
    struct sl_delta_hlayer *l0 = &h->layers[0], *l1 = &h->layers[1];
    memcpy(l0->digest, L0, SL_DIGEST_STR_LEN);
    l0->size = 1000;
    memcpy(l0->diff_id, DIFF0, SL_DIGEST_STR_LEN);
    memcpy(l0->toc_digest, TOC_A, SL_DIGEST_STR_LEN);
    l0->held = true;
    memcpy(l1->digest, L1, SL_DIGEST_STR_LEN);
    l1->size = 5000;
    memcpy(l1->diff_id, DIFF1, SL_DIGEST_STR_LEN);
    memcpy(l1->toc_digest, TOC_B, SL_DIGEST_STR_LEN);
    l1->toc_offset = 4900;
    l1->toc_tail_len = 100;
    l1->toc_tail = sl_xmalloc(100);
    for (int i = 0; i < 100; i++)
        l1->toc_tail[i] = (uint8_t)(i * 7);
    l1->files = sl_xcalloc(3, sizeof(*l1->files));
    l1->n_files = 3;
    l1->files[0] = (struct sl_delta_file){.path = sl_xstrdup("usr/bin/app"),
                                          .size = 300,
                                          .source = SL_DELTA_FILE_PAYLOAD,
                                          .content = 0};
    memcpy(l1->files[0].digest, C0, SL_DIGEST_STR_LEN);
    l1->files[1] = (struct sl_delta_file){
        .path = sl_xstrdup("etc/tab\there"), .size = 10, .source = SL_DELTA_FILE_HELD};
    memcpy(l1->files[1].digest, HELD, SL_DIGEST_STR_LEN);
    l1->files[2] =
        (struct sl_delta_file){.path = sl_xstrdup("etc/empty"), .source = SL_DELTA_FILE_EMPTY};
    memcpy(l1->files[2].digest, EMPTY, SL_DIGEST_STR_LEN);
    h->contents = sl_xcalloc(1, sizeof(*h->contents));
    h->n_contents = 1;
    struct sl_delta_content *c = &h->contents[0];
    memcpy(c->digest, C0, SL_DIGEST_STR_LEN);
    c->size = 300;
    c->layer = 1;
    c->traced = true;
    c->payload_offset = 0;
    c->payload_length = 150;
    c->chunks = sl_xcalloc(2, sizeof(*c->chunks));
    c->n_chunks = 2;
    c->chunks[0] = (struct sl_delta_chunk){.blob_offset = 100,
                                           .compressed_size = 100,
                                           .chunk_offset = 0,
                                           .size = 200,
                                           .payload_offset = 0};
    memcpy(c->chunks[0].digest, K0, SL_DIGEST_STR_LEN);
    c->chunks[1] = (struct sl_delta_chunk){.blob_offset = 250,
                                           .compressed_size = 50,
                                           .chunk_offset = 200,
                                           .size = 100,
                                           .payload_offset = 100};
    memcpy(c->chunks[1].digest, K1, SL_DIGEST_STR_LEN);
    h->payload_length = 150;
    return h;
}

static void encode(const struct sl_delta_header *h, uint8_t **out, size_t *len)
{
    sl_error_t err = NULL;
    int r = sl_delta_header_encode(h, out, len, &err);
    if (r < 0)
        fail_msg("encode: %s", sl_error_msg(err, r));
    sl_error_free(&err);
}

static void test_round_trip(void **state)
{
    (void)state;
    _cleanup_delta_header_ struct sl_delta_header *h = fixture();
    _cleanup_free_ uint8_t *a = NULL, *b = NULL;
    size_t al = 0, bl = 0, head_len = 0;
    encode(h, &a, &al);
    assert_memory_equal(a, SL_DELTA_MAGIC, 8);
    sl_error_t err = NULL;
    _cleanup_delta_header_ struct sl_delta_header *d = NULL;
    int r = sl_delta_head_decode(a, al, &d, &head_len, &err);
    if (r < 0)
        fail_msg("decode: %s", sl_error_msg(err, r));
    assert_int_equal(head_len, al);
    assert_string_equal(d->reference, h->reference);
    assert_string_equal(d->digest, h->digest);
    assert_int_equal(d->manifest_len, h->manifest_len);
    assert_memory_equal(d->manifest, h->manifest, h->manifest_len);
    assert_memory_equal(d->config, h->config, h->config_len);
    assert_int_equal(d->n_layers, 2);
    assert_true(d->layers[0].held);
    assert_null(d->layers[0].toc_tail);
    assert_false(d->layers[1].held);
    assert_int_equal(d->layers[1].toc_tail_len, 100);
    assert_memory_equal(d->layers[1].toc_tail, h->layers[1].toc_tail, 100);
    assert_int_equal(d->layers[1].n_files, 3);
    assert_string_equal(d->layers[1].files[1].path, "etc/tab\there");
    assert_int_equal(d->layers[1].files[0].source, SL_DELTA_FILE_PAYLOAD);
    assert_int_equal(d->layers[1].files[0].content, 0);
    assert_int_equal(d->layers[1].files[1].source, SL_DELTA_FILE_HELD);
    assert_int_equal(d->layers[1].files[2].source, SL_DELTA_FILE_EMPTY);
    assert_int_equal(d->n_contents, 1);
    assert_true(d->contents[0].traced);
    assert_int_equal(d->contents[0].chunks[1].payload_offset, 100);
    assert_int_equal(d->payload_length, 150);
    /* deterministic: the decoded header encodes to the same bytes */
    encode(d, &b, &bl);
    assert_int_equal(al, bl);
    assert_memory_equal(a, b, al);
    if (getenv("SL_DELTA_SEED")) { /* writes a seed for tests/fuzz/corpus/fuzz-delta-header */
        FILE *f = fopen(getenv("SL_DELTA_SEED"), "we");
        if (f) {
            fwrite(a, 1, al, f);
            fclose(f);
        }
    }
}

/* Decodes the JSON of a mutated fixture and expects failure with `want`. */
static void expect_json_fails(json_t *j, int want, const char *what)
{
    char *s = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    sl_error_t err = NULL;
    struct sl_delta_header *d = NULL;
    int r = sl_delta_header_decode(s, strlen(s), &d, &err);
    if (r >= 0)
        fail_msg("%s: decoded a hostile header", what);
    if (r != want)
        fail_msg("%s: got %d (%s), want %d", what, r, sl_error_msg(err, r), want);
    sl_error_free(&err);
    free(s);
}

static json_t *fixture_json(void)
{
    _cleanup_delta_header_ struct sl_delta_header *h = fixture();
    _cleanup_free_ uint8_t *a = NULL;
    size_t al = 0;
    encode(h, &a, &al);
    json_error_t je;
    json_t *j =
        json_loadb((const char *)a + SL_DELTA_PRELUDE_SIZE, al - SL_DELTA_PRELUDE_SIZE, 0, &je);
    assert_non_null(j);
    return j;
}

#define MUTATE(want, what, stmt)                                                                   \
    do {                                                                                           \
        json_t *j = fixture_json();                                                                \
        json_t *layer1 = json_array_get(json_object_get(j, "layers"), 1);                          \
        json_t *c0 = json_array_get(json_object_get(j, "contents"), 0);                            \
        json_t *f0 = json_array_get(json_object_get(layer1, "files"), 0);                          \
        json_t *f1 = json_array_get(json_object_get(layer1, "files"), 1);                          \
        json_t *ch0 = json_array_get(json_object_get(c0, "chunks"), 0);                            \
        (void)layer1, (void)c0, (void)f0, (void)f1, (void)ch0;                                     \
        stmt;                                                                                      \
        expect_json_fails(j, want, what);                                                          \
        json_decref(j);                                                                            \
    } while (0)

static void test_hostile_json(void **state)
{
    (void)state;
    MUTATE(-EINVAL, "unknown key", json_object_set_new(j, "extra", json_true()));
    MUTATE(-EINVAL, "missing key", json_object_del(j, "payloadLength"));
    MUTATE(-EPROTONOSUPPORT, "version 2", json_object_set_new(j, "version", json_integer(2)));
    MUTATE(-EINVAL, "payloadLength", json_object_set_new(j, "payloadLength", json_integer(151)));
    MUTATE(-EINVAL, "negative size", json_object_set_new(c0, "size", json_integer(-1)));
    MUTATE(-EINVAL, "string size", json_object_set_new(c0, "size", json_string("300")));
    MUTATE(-EINVAL, "content index", json_object_set_new(c0, "index", json_integer(1)));
    MUTATE(-EINVAL, "content in held layer", json_object_set_new(c0, "layer", json_integer(0)));
    MUTATE(-EINVAL, "content layer out of range",
           json_object_set_new(c0, "layer", json_integer(9)));
    MUTATE(-EINVAL, "payload offset gap",
           json_object_set_new(ch0, "payloadOffset", json_integer(1)));
    MUTATE(-EINVAL, "chunks do not tile", json_object_set_new(ch0, "chunkOffset", json_integer(1)));
    MUTATE(-EINVAL, "chunk past the TOC",
           json_object_set_new(ch0, "blobOffset", json_integer(4850)));
    MUTATE(-EINVAL, "bad chunk digest",
           json_object_set_new(ch0, "chunkDigest", json_string("sha256:xyz")));
    MUTATE(-EINVAL, "held file with content 0 (zero is not absent)",
           json_object_set_new(f1, "content", json_integer(0)));
    MUTATE(-EINVAL, "payload file without content",
           json_object_set_new(f0, "content", json_null()));
    MUTATE(-EINVAL, "unknown source", json_object_set_new(f0, "source", json_string("cache")));
    MUTATE(-EINVAL, "content unused", json_object_set_new(f0, "source", json_string("held"));
           json_object_set_new(f0, "content", json_null()));
    MUTATE(-EINVAL, "file digest differs from its content",
           json_object_set_new(f0, "digest", json_string(C1)));
    MUTATE(-EINVAL, "duplicate path", json_object_set_new(f1, "path", json_string("usr/bin/app")));
    MUTATE(-EINVAL, "held flag disagrees", json_object_set_new(layer1, "held", json_true()));
    MUTATE(-EINVAL, "toc tail length",
           json_object_set_new(layer1, "tocOffset", json_integer(4000)));
    MUTATE(-EINVAL, "bad base64", json_object_set_new(layer1, "tocTail", json_string("@@@@")));
    MUTATE(-EBADMSG, "manifest bytes",
           json_object_set_new(json_object_get(j, "target"), "manifest", json_string("e30=")));
    MUTATE(-EINVAL, "layer digest differs from the manifest",
           json_object_set_new(layer1, "digest", json_string(C1));
           json_array_set_new(json_object_get(json_object_get(j, "held"), "layers"), 0,
                              json_string(L0)));
    MUTATE(-EINVAL, "diffID differs from the config",
           json_object_set_new(layer1, "diffID", json_string(DIFF0)));
    MUTATE(-EINVAL, "TOC digest differs from the annotation",
           json_object_set_new(json_array_get(json_object_get(j, "layers"), 0), "tocDigest",
                               json_string(TOC_B)));
    MUTATE(-EINVAL, "held list unsorted",
           json_array_append_new(json_object_get(json_object_get(j, "held"), "images"),
                                 json_string(C0)));
    MUTATE(-EINVAL, "target not an object", json_object_set_new(j, "target", json_array()));
}

static void test_prelude(void **state)
{
    (void)state;
    _cleanup_delta_header_ struct sl_delta_header *h = fixture();
    _cleanup_free_ uint8_t *a = NULL;
    size_t al = 0, hl = 0;
    encode(h, &a, &al);
    struct sl_delta_header *d = NULL;
    uint64_t x, y;
    assert_int_equal(sl_delta_prelude_parse(a, 31, &x, &y, NULL), -EINVAL);
    a[0] ^= 1;
    assert_int_equal(sl_delta_head_decode(a, al, &d, &hl, NULL), -EINVAL);
    a[0] ^= 1;
    a[11] = 3; /* version 3 */
    assert_int_equal(sl_delta_head_decode(a, al, &d, &hl, NULL), -EPROTONOSUPPORT);
    a[11] = 2; /* version 2: the header must be gzip, this one is plain JSON */
    assert_int_equal(sl_delta_head_decode(a, al, &d, &hl, NULL), -EBADMSG);
    assert_int_equal(sl_delta_prelude_parse(a, al, &x, &y, NULL), -EPROTONOSUPPORT);
    a[11] = 1;
    a[15] = 1; /* reserved */
    assert_int_equal(sl_delta_head_decode(a, al, &d, &hl, NULL), -EINVAL);
    a[15] = 0;
    a[16] = 0xff; /* header length far over the cap */
    assert_int_equal(sl_delta_head_decode(a, al, &d, &hl, NULL), -EFBIG);
    a[16] = 0;
    a[31] ^= 1; /* payload length differs from the header's */
    assert_int_equal(sl_delta_head_decode(a, al, &d, &hl, NULL), -EINVAL);
    a[31] ^= 1;
    assert_int_equal(sl_delta_head_decode(a, al - 1, &d, &hl, NULL), -EINVAL); /* truncated */
    assert_int_equal(sl_delta_head_decode(a, al, &d, &hl, NULL), 0);
    sl_delta_header_free(d);
}

static void test_encode_refuses_bad_struct(void **state)
{
    (void)state;
    _cleanup_delta_header_ struct sl_delta_header *h = fixture();
    uint8_t *out = NULL;
    size_t len = 0;
    h->contents[0].payload_length = 149;
    assert_int_equal(sl_delta_header_encode(h, &out, &len, NULL), -EINVAL);
    h->contents[0].payload_length = 150;
    h->manifest[0] = ' ';
    assert_int_equal(sl_delta_header_encode(h, &out, &len, NULL), -EBADMSG);
    assert_null(out);
}

/* Every hostile-* seed of the fuzz corpus (heads that lie about sizes, overlapping or
 * out-of-range chunks, prelude/header disagreements) is refused with a message. */
static void test_hostile_corpus(void **state)
{
    (void)state;
    DIR *d = opendir(SL_DELTA_CORPUS);
    assert_non_null(d);
    int seen = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (strncmp(de->d_name, "hostile-", 8) != 0)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", SL_DELTA_CORPUS, de->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t *buf = malloc(1 << 20);
        size_t n = fread(buf, 1, 1 << 20, f);
        fclose(f);
        struct sl_delta_header *h = NULL;
        size_t hl = 0;
        sl_error_t err = NULL;
        int r = sl_delta_head_decode(buf, n, &h, &hl, &err);
        if (r >= 0)
            fail_msg("%s: accepted", de->d_name);
        const char *msg = sl_error_msg(err, r);
        assert_true(msg && *msg);
        print_message("  %s: %s\n", de->d_name, msg);
        sl_error_free(&err);
        free(buf);
        seen++;
    }
    closedir(d);
    assert_true(seen >= 10);
}

/* Head of version `v` with header bytes `hdr` (prelude payload length from the fixture). */
static uint8_t *make_head(uint32_t v, const void *hdr, size_t n, size_t *ret_len)
{
    uint8_t *a = sl_xcalloc(1, SL_DELTA_PRELUDE_SIZE + n);
    memcpy(a, SL_DELTA_MAGIC, 8);
    a[11] = (uint8_t)v;
    for (int i = 0; i < 8; i++) {
        a[16 + i] = (uint8_t)((uint64_t)n >> (56 - 8 * i));
        a[24 + i] = (uint8_t)((uint64_t)150 >> (56 - 8 * i));
    }
    memcpy(a + SL_DELTA_PRELUDE_SIZE, hdr, n);
    *ret_len = SL_DELTA_PRELUDE_SIZE + n;
    return a;
}

static json_t *parse(const void *p, size_t n)
{
    json_t *j = json_loadb(p, n, 0, NULL);
    assert_non_null(j);
    return j;
}

/* Version 2: prelude says 2, the header inflates to the version-1 JSON with "version": 2 and
 * without layers[].files; it decodes to the same plan (contents, layers, TOC tails) without
 * files, and encodes again to the same bytes. */
static void test_v2_round_trip(void **state)
{
    (void)state;
    _cleanup_delta_header_ struct sl_delta_header *h = fixture();
    _cleanup_free_ uint8_t *a1 = NULL, *a2 = NULL, *b = NULL, *json2 = NULL;
    size_t l1 = 0, l2 = 0, bl = 0, jl = 0, hl = 0;
    encode(h, &a1, &l1);
    h->version = SL_DELTA_VERSION_2;
    encode(h, &a2, &l2);
    assert_memory_equal(a2, SL_DELTA_MAGIC, 8);
    assert_int_equal(a2[11], 2);
    sl_error_t err = NULL;
    assert_int_equal(sl_gzip_inflate_one(a2 + 32, l2 - 32, SL_DELTA_MAX_HEADER, &json2, &jl, &err),
                     0);
    json_auto_t *j1 = parse(a1 + 32, l1 - 32), *j2 = parse(json2, jl);
    json_object_set_new(j1, "version", json_integer(2));
    json_t *layers = json_object_get(j1, "layers");
    for (size_t i = 0; i < json_array_size(layers); i++)
        json_object_del(json_array_get(layers, i), "files");
    assert_true(json_equal(j1, j2));

    _cleanup_delta_header_ struct sl_delta_header *d1 = NULL, *d2 = NULL;
    assert_int_equal(sl_delta_head_decode(a1, l1, &d1, &hl, &err), 0);
    assert_int_equal(d1->version, 1);
    int r = sl_delta_head_decode(a2, l2, &d2, &hl, &err);
    if (r < 0)
        fail_msg("decode v2: %s", sl_error_msg(err, r));
    assert_int_equal(hl, l2);
    assert_int_equal(d2->version, 2);
    assert_int_equal(d2->layers[1].n_files, 0);
    assert_int_equal(d1->layers[1].n_files, 3);
    /* the same plan: both re-encode as version 1 after the files are restored */
    assert_string_equal(d2->digest, d1->digest);
    assert_int_equal(d2->n_contents, d1->n_contents);
    assert_memory_equal(d2->contents[0].chunks, d1->contents[0].chunks,
                        sizeof(struct sl_delta_chunk) * d1->contents[0].n_chunks);
    assert_memory_equal(d2->layers[1].toc_tail, d1->layers[1].toc_tail, 100);
    assert_int_equal(d2->payload_length, d1->payload_length);
    encode(d2, &b, &bl); /* a decoded version-2 header encodes again as version 2 */
    assert_int_equal(bl, l2);
    assert_memory_equal(b, a2, l2);
    /* a version-2 header without files cannot be written as version 1 */
    d2->version = 1;
    uint8_t *out = NULL;
    size_t ol = 0;
    assert_int_equal(sl_delta_header_encode(d2, &out, &ol, NULL), -EINVAL);
    sl_error_free(&err);
    if (getenv("SL_DELTA_SEED2")) { /* writes the v2 seed of the fuzz corpus */
        FILE *f = fopen(getenv("SL_DELTA_SEED2"), "we");
        if (f) {
            fwrite(a2, 1, l2, f);
            fclose(f);
        }
    }
}

static void expect_head_fails(const uint8_t *a, size_t n, int want, const char *what)
{
    struct sl_delta_header *d = NULL;
    size_t hl = 0;
    sl_error_t err = NULL;
    int r = sl_delta_head_decode(a, n, &d, &hl, &err);
    if (r != want)
        fail_msg("%s: got %d (%s), want %d", what, r, r < 0 ? sl_error_msg(err, r) : "ok", want);
    print_message("  %s: %s\n", what, sl_error_msg(err, r));
    sl_error_free(&err);
    assert_null(d);
}

/* Hostile version-2 heads: not gzip, bytes after the member, truncated member, a member that
 * inflates past the cap, versions that disagree between prelude and JSON, files in version 2. */
static void test_v2_hostile(void **state)
{
    (void)state;
    _cleanup_delta_header_ struct sl_delta_header *h = fixture();
    _cleanup_free_ uint8_t *a1 = NULL, *a2 = NULL, *json2 = NULL;
    size_t l1 = 0, l2 = 0, jl = 0, n = 0;
    encode(h, &a1, &l1);
    h->version = SL_DELTA_VERSION_2;
    encode(h, &a2, &l2);
    assert_int_equal(sl_gzip_inflate_one(a2 + 32, l2 - 32, SL_DELTA_MAX_HEADER, &json2, &jl, NULL),
                     0);
    uint8_t *t;

    /* trailing garbage after the one member (also a second gzip member) */
    _cleanup_free_ uint8_t *g = sl_xmalloc(2 * (l2 - 32));
    memcpy(g, a2 + 32, l2 - 32);
    g[l2 - 32] = 'x';
    t = make_head(2, g, l2 - 32 + 1, &n);
    expect_head_fails(t, n, -EBADMSG, "v2 trailing byte");
    free(t);
    memcpy(g + (l2 - 32), a2 + 32, l2 - 32);
    t = make_head(2, g, 2 * (l2 - 32), &n);
    expect_head_fails(t, n, -EBADMSG, "v2 two members");
    free(t);
    /* truncated and corrupt members */
    t = make_head(2, a2 + 32, l2 - 32 - 5, &n);
    expect_head_fails(t, n, -EBADMSG, "v2 truncated member");
    free(t);
    memcpy(g, a2 + 32, l2 - 32);
    g[20] ^= 0x55;
    g[21] ^= 0xaa;
    t = make_head(2, g, l2 - 32, &n);
    expect_head_fails(t, n, -EBADMSG, "v2 corrupt deflate data");
    free(t);
    memcpy(g, a2 + 32, l2 - 32);
    g[l2 - 32 - 6] ^= 1; /* CRC-32 */
    t = make_head(2, g, l2 - 32, &n);
    expect_head_fails(t, n, -EBADMSG, "v2 bad CRC");
    free(t);

    /* prelude 2 with the JSON of version 1 (plain and gzip'd), prelude 1 with version-2 JSON */
    t = make_head(2, a1 + 32, l1 - 32, &n);
    expect_head_fails(t, n, -EBADMSG, "v2 prelude, plain JSON");
    free(t);
    _cleanup_free_ uint8_t *gz1 = NULL;
    size_t gl1 = 0;
    assert_int_equal(sl_gzip_compress(a1 + 32, l1 - 32, 6, &gz1, &gl1, NULL), 0);
    t = make_head(2, gz1, gl1, &n);
    expect_head_fails(t, n, -EPROTONOSUPPORT, "v2 prelude, version-1 JSON");
    free(t);
    t = make_head(1, json2, jl, &n);
    expect_head_fails(t, n, -EPROTONOSUPPORT, "v1 prelude, version-2 JSON");
    free(t);
    /* version-2 JSON with files (keys of version 1) */
    json_auto_t *j = parse(a1 + 32, l1 - 32);
    json_object_set_new(j, "version", json_integer(2));
    _cleanup_free_ char *js = json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
    _cleanup_free_ uint8_t *gzf = NULL;
    size_t gfl = 0;
    assert_int_equal(sl_gzip_compress(js, strlen(js), 6, &gzf, &gfl, NULL), 0);
    t = make_head(2, gzf, gfl, &n);
    expect_head_fails(t, n, -EINVAL, "v2 with files");
    free(t);

    /* decompression bomb: the inflater stops at the cap (checked with a small cap here; the
     * decoder passes SL_DELTA_MAX_HEADER, the version-1 header cap) */
    size_t big = 1 << 20;
    _cleanup_free_ uint8_t *zeros = sl_xcalloc(1, big), *bomb = NULL, *out = NULL;
    size_t bl = 0, ol = 0;
    assert_int_equal(sl_gzip_compress(zeros, big, 9, &bomb, &bl, NULL), 0);
    assert_true(bl < 4096);
    assert_int_equal(sl_gzip_inflate_one(bomb, bl, big - 1, &out, &ol, NULL), -EFBIG);
    assert_null(out);
    assert_int_equal(sl_gzip_inflate_one(bomb, bl, big, &out, &ol, NULL), 0);
    assert_int_equal(ol, big);
    t = make_head(2, bomb, bl, &n); /* inflates fine but is not JSON */
    expect_head_fails(t, n, -EINVAL, "v2 megabyte of zeros");
    free(t);
    /* a header whose compressed length claims more than the cap */
    assert_int_equal(sl_delta_header_decode_v(bomb, (size_t)SL_DELTA_MAX_HEADER + 1, 2, &h, NULL),
                     -EFBIG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),     cmocka_unit_test(test_hostile_json),
        cmocka_unit_test(test_prelude),        cmocka_unit_test(test_encode_refuses_bad_struct),
        cmocka_unit_test(test_hostile_corpus), cmocka_unit_test(test_v2_round_trip),
        cmocka_unit_test(test_v2_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
