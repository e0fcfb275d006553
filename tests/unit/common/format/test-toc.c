/* TOC reader: footer forms, JSON validation (hostile TOCs), initFields post-processing, and
 * eStargz blobs laid out as other tools write them (no compressedSize, headers after chunks). */
#include "test.h"

#include "fmt-test.h"
#include "format.h"
#include "toc.h"

#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <zlib.h>

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static struct sl_toc *parse_ok(const char *json)
{
    struct sl_toc *toc = NULL;
    sl_error_t err = NULL;
    int r = sl_toc_parse_json(json, strlen(json), 100000, &toc, &err);
    if (r < 0)
        fail_msg("parse: %s", sl_error_msg(err, r));
    return toc;
}

static void parse_bad(const char *json, int code, const char *needle)
{
    struct sl_toc *toc = NULL;
    sl_error_t err = NULL;
    int r = sl_toc_parse_json(json, strlen(json), 100000, &toc, &err);
    if (r >= 0)
        fail_msg("accepted: %s", json);
    assert_int_equal(r, -code);
    if (!strstr(err->msg, needle))
        fail_msg("error `%s` lacks `%s`", err->msg, needle);
    assert_null(toc);
    sl_error_free(&err);
}

static void test_footer(void **state)
{
    uint8_t f[SL_TOC_FOOTER_SIZE];
    sl_toc_make_footer(0x1234abcd, f);
    uint64_t off = 0;
    size_t fs = 0;
    sl_error_t err = NULL;
    assert_int_equal(sl_toc_parse_footer(f, sizeof(f), &off, &fs, &err), 0);
    assert_int_equal(off, 0x1234abcd);
    assert_int_equal(fs, 51);
    /* the footer is an empty gzip member */
    size_t gl = 99;
    uint8_t *g = fmt_gunzip(f, sizeof(f), &gl);
    assert_non_null(g);
    assert_int_equal(gl, 0);
    free(g);

    /* legacy 47-byte stargz footer: extra = 16 hex + STARGZ without a subfield header */
    uint8_t l[47] = {0x1f, 0x8b, 8, 4, 0, 0, 0, 0, 0, 0xff, 22, 0};
    memcpy(l + 12, "00000000000000FFSTARGZ", 22);
    memcpy(l + 34, "\x01\x00\x00\xff\xff\0\0\0\0\0\0\0\0", 13);
    assert_int_equal(sl_toc_parse_footer(l, sizeof(l), &off, &fs, &err), 0);
    assert_int_equal(off, 255);
    assert_int_equal(fs, 47);

    uint8_t bad[51];
    memcpy(bad, f, 51);
    bad[20] = 'x';
    assert_int_equal(sl_toc_parse_footer(bad, 51, &off, &fs, &err), -EINVAL);
    sl_error_free(&err);
    memcpy(bad, f, 51);
    bad[0] = 0;
    assert_int_equal(sl_toc_parse_footer(bad, 51, &off, &fs, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "footer"));
    sl_error_free(&err);
    assert_int_equal(sl_toc_parse_footer(f, 10, &off, &fs, &err), -EINVAL);
    sl_error_free(&err);
    /* an offset that does not fit int64 */
    sl_toc_make_footer(0, bad);
    memcpy(bad + 16, "ffffffffffffffff", 16);
    assert_int_equal(sl_toc_parse_footer(bad, 51, &off, &fs, &err), -EINVAL);
    sl_error_free(&err);
}

static void test_normalize(void **state)
{
    char out[64];
    struct {
        const char *in, *out;
    } ok[] = {{"", ""},        {"/", ""},        {"./", ""},
              {"a", "a"},      {"/a/b/", "a/b"}, {"./a//b/./c", "a/b/c"},
              {"a/../b", "b"}, {"a/b/..", "a"}};
    for (size_t i = 0; i < SL_ELEMENTSOF(ok); i++) {
        assert_int_equal(sl_toc_path_normalize(ok[i].in, out), 0);
        assert_string_equal(out, ok[i].out);
    }
    assert_int_equal(sl_toc_path_normalize("..", out), -EINVAL);
    assert_int_equal(sl_toc_path_normalize("/../a", out), -EINVAL);
    assert_int_equal(sl_toc_path_normalize("a/../../b", out), -EINVAL);
}

static void test_init_fields(void **state)
{
    struct sl_toc *toc = parse_ok(
        "{\"version\":1,\"entries\":["
        "{\"name\":\"./\",\"type\":\"dir\",\"mode\":448},"
        "{\"name\":\"usr/bin/\",\"type\":\"dir\",\"mode\":493,\"uid\":5,\"userName\":\"bob\","
        "\"modtime\":\"2023-11-14T22:13:20Z\"},"
        "{\"name\":\"usr/bin/tool\",\"type\":\"reg\",\"size\":25,\"uid\":5,\"offset\":100,"
        "\"chunkSize\":10,\"chunkDigest\":\"" D1 "\",\"digest\":\"" D2 "\",\"compressedSize\":50,"
        "\"modtime\":\"2023-11-14T23:13:20+01:00\",\"mode\":33261},"
        "{\"type\":\"chunk\",\"offset\":150,\"chunkOffset\":10,\"chunkSize\":10,"
        "\"chunkDigest\":\"" D1 "\",\"compressedSize\":40},"
        "{\"name\":\"usr/bin/tool\",\"type\":\"chunk\",\"offset\":190,\"chunkOffset\":20,"
        "\"chunkDigest\":\"" D1 "\"},"
        "{\"name\":\"usr/bin/alias\",\"type\":\"hardlink\",\"linkName\":\"./usr/bin/tool\"},"
        "{\"name\":\"usr/bin/alias2\",\"type\":\"hardlink\",\"linkName\":\"usr/bin/alias\"},"
        "{\"name\":\"usr/lib/x\",\"type\":\"symlink\",\"linkName\":\"/abs/ok\"},"
        "{\"name\":\"dev/c\",\"type\":\"char\",\"devMajor\":1,\"devMinor\":5},"
        "{\"name\":\"x\",\"type\":\"reg\",\"xattrs\":{\"user.a\":\"YmFyAQ==\",\"user.b\":\"\"}},"
        "{\"name\":\"big\",\"type\":\"reg\",\"size\":7,\"offset\":300,\"chunkDigest\":\"" D1 "\","
        "\"NumLink\":9,\"unknownKey\":[1,2]}"
        "]}");
    assert_non_null(toc);
    const struct sl_toc_entry *root = sl_toc_root(toc);
    assert_int_equal(root->mode, 0700);
    assert_false(root->synthesized);
    assert_int_equal(root->num_link, 2 + 2); /* usr, dev */
    const struct sl_toc_entry *usr = sl_toc_find(toc, "usr");
    assert_true(usr->synthesized);
    assert_int_equal(usr->mode, 0755);
    assert_int_equal(usr->num_link, 4);
    const struct sl_toc_entry *bin = sl_toc_find(toc, "usr/bin");
    assert_int_equal(bin->mtime, 1700000000);
    assert_string_equal(bin->user_name, "bob");
    const struct sl_toc_entry *tool = sl_toc_find(toc, "usr/bin/tool");
    assert_int_equal(tool->mode, 0755);
    assert_int_equal(tool->mtime, 1700000000);
    assert_string_equal(tool->user_name, "bob"); /* back-filled */
    assert_int_equal(tool->n_chunks, 3);
    assert_int_equal(tool->chunks[0].offset, 100);
    assert_int_equal(tool->chunks[0].compressed_size, 50);
    assert_int_equal(tool->chunks[1].chunk_offset, 10);
    assert_int_equal(tool->chunks[2].size, 5);              /* chunkSize 0: to the end */
    assert_int_equal(tool->chunks[2].compressed_size, 110); /* derived: next member at 300 */
    assert_true(tool->chunks[2].compressed_size_derived);
    assert_false(tool->chunks[1].compressed_size_derived);
    assert_int_equal(tool->num_link, 3);
    assert_string_equal(tool->digest, D2);
    const struct sl_toc_entry *a2 = sl_toc_find(toc, "usr/bin/alias2");
    assert_ptr_equal(a2->link, tool);
    assert_string_equal(a2->link_name, "usr/bin/tool");
    assert_string_equal(sl_toc_find(toc, "usr/lib/x")->link_name, "/abs/ok");
    assert_int_equal(sl_toc_find(toc, "dev/c")->dev_minor, 5);
    const struct sl_toc_entry *x = sl_toc_find(toc, "x");
    assert_int_equal(x->n_xattrs, 2);
    assert_int_equal(x->xattrs[0].len, 4);
    assert_memory_equal(x->xattrs[0].value, "bar\001", 4);
    assert_false(x->has_digest);
    const struct sl_toc_entry *big = sl_toc_find(toc, "big");
    assert_int_equal(big->chunks[0].size, 7);
    assert_int_equal(big->chunks[0].compressed_size, 100000 - 300);
    assert_int_equal(big->num_link, 1);
    assert_int_equal(bin->n_children, 3);
    assert_string_equal(bin->children[0]->base, "alias");
    assert_string_equal(bin->children[2]->base, "tool");
    assert_int_equal(sl_toc_regular_files(toc), 3);
    assert_int_equal(sl_toc_chunks(toc), 4);
    /* TOC order: root first, synthesized parents before their children */
    assert_ptr_equal(sl_toc_entry_at(toc, 0), root);
    assert_ptr_equal(sl_toc_entry_at(toc, 1), usr);
    assert_ptr_equal(sl_toc_entry_at(toc, 2), bin);
    assert_null(sl_toc_entry_at(toc, sl_toc_count(toc)));
    sl_toc_free(toc);
}

static void test_duplicates(void **state)
{
    struct sl_toc *toc = parse_ok("{\"version\":1,\"entries\":["
                                  "{\"name\":\"d/\",\"type\":\"dir\",\"mode\":448},"
                                  "{\"name\":\"d/x\",\"type\":\"reg\"},"
                                  "{\"name\":\"d\",\"type\":\"dir\",\"mode\":493},"
                                  "{\"name\":\"f\",\"type\":\"reg\",\"size\":1,\"offset\":10,"
                                  "\"chunkDigest\":\"" D1 "\"},"
                                  "{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"f\"},"
                                  "{\"name\":\"f\",\"type\":\"symlink\",\"linkName\":\"x\"}"
                                  "]}");
    const struct sl_toc_entry *d = sl_toc_find(toc, "d");
    assert_int_equal(d->mode, 0755);
    assert_int_equal(d->n_children, 1);
    const struct sl_toc_entry *f = sl_toc_find(toc, "f");
    assert_int_equal(f->type, SL_TOC_SYMLINK); /* later wins */
    const struct sl_toc_entry *h = sl_toc_find(toc, "h");
    assert_int_equal(h->link->type, SL_TOC_REG); /* the file as it was when linked */
    assert_int_equal(h->link->num_link, 2);
    size_t n = 0;
    for (size_t i = 0; i < sl_toc_count(toc); i++)
        n += strcmp(sl_toc_entry_at(toc, i)->name, "f") == 0;
    assert_int_equal(n, 1);
    assert_int_equal(sl_toc_root(toc)->n_children, 3);
    sl_toc_free(toc);
    parse_bad("{\"version\":1,\"entries\":[{\"name\":\"d/x\",\"type\":\"reg\"},"
              "{\"name\":\"d\",\"type\":\"reg\"}]}",
              EINVAL, "replaces a non-empty directory");
    parse_bad("{\"version\":1,\"entries\":[{\"name\":\"f\",\"type\":\"reg\"},"
              "{\"name\":\"f/x\",\"type\":\"reg\"}]}",
              EINVAL, "parent `f` is not a directory");
    parse_bad("{\"version\":1,\"entries\":[{\"name\":\"/\",\"type\":\"reg\"}]}", EINVAL,
              "root must be a directory");
}

#define E(x) "{\"version\":1,\"entries\":[" x "]}"
#define REG(name, size, off, extra)                                                                \
    "{\"name\":\"" name "\",\"type\":\"reg\",\"size\":" #size ",\"offset\":" #off                  \
    ",\"chunkDigest\":\"" D1 "\"" extra "}"

static void test_hostile_toc(void **state)
{
    parse_bad("[]", EINVAL, "expected an object");
    parse_bad("{\"version\":2,\"entries\":[]}", EINVAL, "unsupported version 2");
    parse_bad("{\"entries\":[]}", EINVAL, "version");
    parse_bad("{\"version\":1}", EINVAL, "entries");
    parse_bad("{\"version\":1,\"entries\":{}}", EINVAL, "entries");
    parse_bad(E("1"), EINVAL, ".entries[0]: expected an object");
    parse_bad(E("{\"type\":\"reg\"}"), EINVAL, ".entries[0].name: missing");
    parse_bad(E("{\"name\":\"a\"}"), EINVAL, ".entries[0].type");
    parse_bad(E("{\"name\":\"a\",\"type\":\"socket\"}"), EINVAL, "unknown type `socket`");
    parse_bad(E("{\"name\":5,\"type\":\"reg\"}"), EINVAL, ".entries[0].name: expected a string");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":\"5\"}"), EINVAL, ".entries[0].size");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":-1}"), EINVAL, "out of range");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"mode\":1.5}"), EINVAL, ".entries[0].mode");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"uid\":4294967296}"), EINVAL, "uid");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"modtime\":\"yesterday\"}"), EINVAL,
              "not an RFC 3339 time");
    parse_bad(E("{\"name\":\"a\\u0000b\",\"type\":\"reg\"}"), EINVAL, "NUL");
    parse_bad(E("{\"name\":\"../a\",\"type\":\"reg\"}"), EINVAL, "escapes the root");
    parse_bad(E("{\"name\":\"stargz.index.json\",\"type\":\"reg\"}"), EINVAL, "reserved");
    parse_bad(E("{\"name\":\"a\",\"type\":\"symlink\"}"), EINVAL, "without a target");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\"},"
                "{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"/a\"}"),
              EINVAL, "is absolute");
    parse_bad(E("{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"nope\"}"), EINVAL,
              "not earlier");
    parse_bad(E("{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"h\"}"), EINVAL,
              "not earlier");
    parse_bad(E("{\"name\":\"d\",\"type\":\"dir\"},"
                "{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"d\"}"),
              EINVAL, "to directory");
    /* the fs serves hardlinks to regular files only: the TOC refuses the others */
    parse_bad(E("{\"name\":\"s\",\"type\":\"symlink\",\"linkName\":\"x\"},"
                "{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"s\"}"),
              EINVAL, "not a regular file");
    parse_bad(E("{\"name\":\"c\",\"type\":\"char\",\"devMajor\":1,\"devMinor\":3},"
                "{\"name\":\"h\",\"type\":\"hardlink\",\"linkName\":\"c\"}"),
              EINVAL, "not a regular file");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"digest\":\"sha256:abc\"}"), EINVAL,
              "not a sha256 digest");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"size\":5,\"offset\":10}"), EINVAL,
              "chunkDigest: missing");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"xattrs\":{\"user.a\":\"!!!!\"}}"), EINVAL,
              "invalid base64");
    parse_bad(E("{\"name\":\"a\",\"type\":\"reg\",\"xattrs\":[]}"), EINVAL, "xattrs");
    parse_bad(E("{\"type\":\"chunk\",\"offset\":5,\"chunkDigest\":\"" D1 "\"}"), EINVAL,
              "chunk without a preceding regular file");
    parse_bad(E(REG("a", 10, 10,
                    ",\"chunkSize\":5") ",{\"name\":\"b\",\"type\":\"chunk\","
                                        "\"offset\":50,\"chunkOffset\":5,\"chunkDigest\":\"" D1
                                        "\"}"),
              EINVAL, "chunk of `b` follows file `a`");
    /* offsets outside the blob / overlapping / tiling */
    parse_bad(E(REG("a", 10, 100000, "")), EINVAL, "not before the TOC");
    parse_bad(E(REG("a", 10, 99990, ",\"compressedSize\":20")), EINVAL, "overlaps");
    parse_bad(E(REG("a", 10, 100, ",\"compressedSize\":200") "," REG("b", 10, 200, "")), EINVAL,
              "overlaps");
    parse_bad(E(REG("a", 10, 100, "") "," REG("b", 10, 100, "")), EINVAL, "share");
    parse_bad(E(REG("a", 10, 100, ",\"compressedSize\":5")), EINVAL, "too small");
    parse_bad(E(REG("a", 10, 100, ",\"chunkOffset\":3")), EINVAL, "must start at 0");
    parse_bad(E(REG("a", 10, 100, ",\"chunkSize\":4")), EINVAL, "cover 4 of 10");
    parse_bad(E(REG("a", 10, 100, ",\"chunkSize\":11")), EINVAL, "does not fit");
    parse_bad(E(REG("a", 10, 100, ",\"chunkSize\":4") ",{\"type\":\"chunk\",\"offset\":200,"
                                                      "\"chunkOffset\":5,\"chunkDigest\":\"" D1
                                                      "\"}"),
              EINVAL, "starts at 5, expected 4");
    parse_bad(E(REG("a", 10, 100,
                    ",\"chunkSize\":6") ",{\"type\":\"chunk\",\"offset\":200,"
                                        "\"chunkOffset\":6,\"chunkSize\":6,\"chunkDigest\":\"" D1
                                        "\"}"),
              EINVAL, "does not fit");
    parse_bad(E(REG("a", 10, 100, ",\"innerOffset\":3")), EINVAL, "innerOffset");
    parse_bad(E(REG("a", 1125899906842625, 100, "")), EINVAL, "out of range");
}

static void test_limits(void **state)
{
    size_t n = SL_TOC_MAX_JSON + 1;
    char *big = malloc(n);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    struct sl_toc *toc = NULL;
    sl_error_t err = NULL;
    assert_int_equal(sl_toc_parse_json(big, n, 1000, &toc, &err), -EFBIG);
    sl_error_free(&err);
    free(big);
}

/* ---------------------------------------------------------------- blobs */

static size_t gz(const void *p, size_t n, uint8_t *out, size_t cap)
{
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
    zs.next_in = (uint8_t *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    size_t len = cap - zs.avail_out;
    deflateEnd(&zs);
    return len;
}

static void ustar(uint8_t *h, const char *name, char type, size_t size)
{
    memset(h, 0, 512);
    snprintf((char *)h, 100, "%s", name);
    snprintf((char *)h + 100, 8, "%07o", 0644);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011zo", size);
    snprintf((char *)h + 136, 12, "%011o", 0);
    h[156] = (uint8_t)type;
    memcpy(h + 257, "ustar\00000", 8);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum);
}

struct blob {
    uint8_t *p;
    size_t len, cap;
};

static void put(struct blob *b, const void *p, size_t n)
{
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static size_t put_member(struct blob *b, const void *p, size_t n)
{
    size_t off = b->len;
    b->len += gz(p, n, b->p + b->len, b->cap - b->len);
    return off;
}

/* A blob as ctr-remote / stargz-snapshotter lays it out: the last chunk's member continues
 * with the tar padding and the following headers; no compressedSize in the TOC. */
static void build_estargz(struct blob *b, uint8_t *fdata, char *toc_digest)
{
    b->cap = 1 << 20;
    b->p = calloc(1, b->cap);
    uint8_t tar[8192] = {0};
    fmt_fill(fdata, 3000, 42);
    char d1[SL_DIGEST_STR_LEN], d2[SL_DIGEST_STR_LEN], df[SL_DIGEST_STR_LEN], dc[SL_DIGEST_STR_LEN];
    sl_sha256_str(fdata, 2000, d1);
    sl_sha256_str(fdata + 2000, 1000, d2);
    sl_sha256_str(fdata, 3000, df);
    sl_sha256_str("0123456789", 10, dc);

    ustar(tar, "a/", '5', 0);
    ustar(tar + 512, "a/f", '0', 3000);
    put_member(b, tar, 1024);
    size_t off1 = put_member(b, fdata, 2000);
    memset(tar, 0, sizeof(tar));
    memcpy(tar, fdata + 2000, 1000);
    ustar(tar + 1024, "b", '0', 0);
    ustar(tar + 1536, "c", '0', 10);
    size_t off2 = put_member(b, tar, 2048);
    memset(tar, 0, sizeof(tar));
    memcpy(tar, "0123456789", 10);
    size_t off3 = put_member(b, tar, 512);

    char json[4096];
    int jl = snprintf(
        json, sizeof(json),
        "{\n\t\"version\": 1,\n\t\"entries\": [\n"
        "{\"name\":\"a/\",\"type\":\"dir\",\"mode\":493},\n"
        "{\"name\":\"a/f\",\"type\":\"reg\",\"size\":3000,\"offset\":%zu,\"chunkSize\":2000,"
        "\"chunkDigest\":\"%s\",\"digest\":\"%s\"},\n"
        "{\"name\":\"a/f\",\"type\":\"chunk\",\"offset\":%zu,\"chunkOffset\":2000,"
        "\"chunkDigest\":\"%s\"},\n"
        "{\"name\":\"b\",\"type\":\"reg\",\"digest\":\"%s\"},\n"
        "{\"name\":\"c\",\"type\":\"reg\",\"size\":10,\"offset\":%zu,\"chunkDigest\":\"%s\","
        "\"digest\":\"%s\"}\n]\n}",
        off1, d1, df, off2, d2,
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", off3, dc, dc);
    sl_sha256_str(json, (size_t)jl, toc_digest);
    memset(tar, 0, sizeof(tar));
    ustar(tar, SL_TOC_TAR_NAME, '0', (size_t)jl);
    memcpy(tar + 512, json, (size_t)jl);
    size_t tl = 512 + ((size_t)jl + 511) / 512 * 512 + 1024;
    size_t toc_off = put_member(b, tar, tl);
    uint8_t footer[SL_TOC_FOOTER_SIZE];
    sl_toc_make_footer(toc_off, footer);
    put(b, footer, sizeof(footer));
}

static int mem_read_at(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err)
{
    struct blob *b = ud;
    if (off > b->len || len > b->len - off)
        return sl_error_make(err, EIO, "read past the end");
    memcpy(buf, b->p + off, len);
    return 0;
}

static void test_estargz_blob(void **state)
{
    struct blob b = {0};
    uint8_t fdata[3000];
    char want[SL_DIGEST_STR_LEN];
    build_estargz(&b, fdata, want);
    struct sl_toc *toc = NULL;
    sl_error_t err = NULL;
    int r = sl_toc_load(mem_read_at, &b, b.len, want, &toc, &err);
    if (r < 0)
        fail_msg("%s", sl_error_msg(err, r));
    const struct sl_toc_entry *f = sl_toc_find(toc, "a/f");
    assert_int_equal(f->n_chunks, 2);
    uint8_t out[2000];
    for (size_t i = 0; i < 2; i++) {
        assert_true(f->chunks[i].compressed_size_derived);
        assert_int_equal(sl_toc_read_chunk(mem_read_at, &b, &f->chunks[i], out, &err), 0);
        assert_memory_equal(out, fdata + f->chunks[i].chunk_offset, f->chunks[i].size);
        /* the same through the in-memory decoder */
        assert_int_equal(sl_toc_chunk_decode(b.p + f->chunks[i].offset,
                                             f->chunks[i].compressed_size, &f->chunks[i], out,
                                             &err),
                         0);
    }
    const struct sl_toc_entry *c = sl_toc_find(toc, "c");
    assert_int_equal(sl_toc_read_chunk(mem_read_at, &b, &c->chunks[0], out, &err), 0);
    assert_memory_equal(out, "0123456789", 10);

    /* a flipped byte inside a chunk member: corrupt data or digest mismatch */
    struct sl_toc_chunk bad = f->chunks[0];
    b.p[bad.offset + 30] ^= 0x40;
    r = sl_toc_read_chunk(mem_read_at, &b, &bad, out, &err);
    assert_int_equal(r, -EBADMSG);
    sl_error_free(&err);
    b.p[bad.offset + 30] ^= 0x40;
    memcpy(bad.digest, D1, sizeof(D1));
    assert_int_equal(sl_toc_read_chunk(mem_read_at, &b, &bad, out, &err), -EBADMSG);
    assert_non_null(strstr(err->msg, "expected " D1));
    sl_error_free(&err);
    sl_toc_free(toc);

    /* wrong expected digest */
    assert_int_equal(sl_toc_load(mem_read_at, &b, b.len, D1, &toc, &err), -EBADMSG);
    sl_error_free(&err);
    /* footer gone */
    assert_int_equal(sl_toc_load(mem_read_at, &b, b.len - 1, NULL, &toc, &err), -EINVAL);
    sl_error_free(&err);
    assert_int_equal(sl_toc_load(mem_read_at, &b, 20, NULL, &toc, &err), -EINVAL);
    sl_error_free(&err);
    /* footer pointing outside the blob, or at a member that is not the TOC */
    uint8_t saved[SL_TOC_FOOTER_SIZE];
    memcpy(saved, b.p + b.len - 51, 51);
    sl_toc_make_footer(b.len, b.p + b.len - 51);
    assert_int_equal(sl_toc_load(mem_read_at, &b, b.len, NULL, &toc, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "outside the blob"));
    sl_error_free(&err);
    sl_toc_make_footer(0, b.p + b.len - 51);
    assert_int_equal(sl_toc_load(mem_read_at, &b, b.len, NULL, &toc, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "not stargz.index.json"));
    sl_error_free(&err);
    sl_toc_make_footer(3, b.p + b.len - 51);
    assert_int_equal(sl_toc_load(mem_read_at, &b, b.len, NULL, &toc, &err), -EBADMSG);
    sl_error_free(&err);
    memcpy(b.p + b.len - 51, saved, 51);
    free(b.p);
}

static void test_writer_blob_truncated(void **state)
{
    struct fmt_spec s[] = {{.name = "f", .type = '0', .len = 5000}};
    int in = fmt_build_tar(s, 1, FMT_GZIP);
    int out = memfd_create("o", MFD_CLOEXEC);
    struct sl_format_result res;
    sl_error_t err = NULL;
    struct sl_format_options o = {.chunk_size = 1000};
    assert_int_equal(sl_format_convert(in, out, &o, &res, &err), 0);
    struct sl_toc *toc = NULL;
    assert_int_equal(sl_toc_load(sl_toc_pread_fd, &out, res.blob_size, NULL, &toc, &err), 0);
    assert_int_equal(sl_toc_find(toc, "f")->n_chunks, 5);
    sl_toc_free(toc);
    /* the blob cut anywhere no longer has a footer */
    assert_int_equal(sl_toc_load(sl_toc_pread_fd, &out, res.blob_size - 10, NULL, &toc, &err),
                     -EINVAL);
    sl_error_free(&err);
    /* reading past the end of the file is an I/O error, not a crash */
    assert_true(sl_toc_load(sl_toc_pread_fd, &out, res.blob_size + 100, NULL, &toc, &err) < 0);
    sl_error_free(&err);
    close(in);
    close(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_footer),       cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_init_fields),  cmocka_unit_test(test_duplicates),
        cmocka_unit_test(test_hostile_toc),  cmocka_unit_test(test_limits),
        cmocka_unit_test(test_estargz_blob), cmocka_unit_test(test_writer_blob_truncated),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
