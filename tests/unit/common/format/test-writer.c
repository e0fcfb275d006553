/* Converter round trips: build tars, convert, then compare the blob's tar with the source
 * entry by entry, check the TOC, every chunk member, and re-conversion stability. */
#include "test.h"

#include "fmt-test.h"
#include "format.h"
#include "toc.h"

#include <archive.h>
#include <archive_entry.h>
#include <pthread.h>
#include <string.h>
#include <sys/mman.h>
#include <zlib.h>

#define CHUNK 1024

static char long_name[400], long_target[220];
static const char unicode_data[] = "unicode content\n";

static struct fmt_spec rich[] = {
    {.name = "etc/", .type = '5', .mode = 0755},
    {.name = "etc/passwd",
     .type = '0',
     .data = "root:x:0:0\n",
     .len = 11,
     .uid = 1000,
     .gid = 1000,
     .uname = "user",
     .gname = "group"},
    {.name = "etc/empty", .type = '0', .len = 0, .data = ""},
    {.name = "etc/xattr",
     .type = '0',
     .data = "x",
     .len = 1,
     .xattr = "user.foo",
     .xattr_value = "bar\001baz"},
    {.name = "etc/link", .type = '2', .link = "passwd"},
    {.name = "etc/hard", .type = '1', .link = "etc/passwd"},
    {.name = "etc/.wh..wh..opq", .type = '0', .len = 0, .data = ""},
    {.name = ".wh.removed", .type = '0', .len = 0, .data = ""},
    {.name = "big", .type = '0', .len = 10 * CHUNK - 240, .mode = 04755},
    {.name = "exact", .type = '0', .len = 2 * CHUNK},
    {.name = "dev/", .type = '5', .mode = 01777},
    {.name = "dev/null", .type = '3', .devmajor = 1, .devminor = 3},
    {.name = "dev/sda", .type = '4', .devmajor = 8, .devminor = 0},
    {.name = "run/fifo", .type = '6', .mode = 0600},
    {.name = long_name, .type = '0', .data = "long", .len = 4},
    {.name = "longlink", .type = '2', .link = long_target},
    {.name = "ünïcødé/日本語.txt",
     .type = '0',
     .data = unicode_data,
     .len = sizeof(unicode_data) - 1},
    {.name = "nsec",
     .type = '0',
     .data = "t",
     .len = 1,
     .mtime = 1700000000,
     .mtime_nsec = 123456789},
    {.name = "biguid", .type = '0', .data = "u", .len = 1, .uid = 3000000, .gid = 3000001},
    {.name = "implicit/sub/file", .type = '0', .data = "deep", .len = 4},
};

static void setup_names(void)
{
    memset(long_name, 'n', sizeof(long_name) - 1);
    memcpy(long_name, "long/", 5);
    long_name[150] = '/';
    memset(long_target, 't', sizeof(long_target) - 1);
}

static int convert_fd(int in, struct sl_format_result *res, uint64_t chunk, sl_error_t *err)
{
    int out = memfd_create("out", MFD_CLOEXEC);
    struct sl_format_options o = {.chunk_size = chunk};
    int r = sl_format_convert(in, out, &o, res, err);
    if (r < 0) {
        close(out);
        return r;
    }
    return out;
}

static int convert_specs(const struct fmt_spec *s, size_t n, enum fmt_compress c,
                         struct sl_format_result *res, sl_error_t *err)
{
    int in = fmt_build_tar(s, n, c);
    assert_true(in >= 0);
    int r = convert_fd(in, res, CHUNK, err);
    close(in);
    return r;
}

/* --- (a) the blob's tar equals the source tar, entry by entry, byte by byte */

static la_ssize_t read_all(struct archive *a, uint8_t **ret)
{
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    for (;;) {
        if (len == cap)
            buf = realloc(buf, cap *= 2);
        la_ssize_t n = archive_read_data(a, buf + len, cap - len);
        if (n < 0) {
            free(buf);
            return n;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    *ret = buf;
    return (la_ssize_t)len;
}

static void str_eq(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

/* libarchive lists an xattr stored as both LIBARCHIVE.xattr and SCHILY.xattr twice; the
 * converter writes each name once. Compare the sets. */
static void compare_xattrs(struct archive_entry *es, struct archive_entry *eo)
{
    const char *n1, *n2;
    const void *v1, *v2;
    size_t l1, l2, unique = 0;
    archive_entry_xattr_reset(es);
    const char *seen[16];
    while (archive_entry_xattr_next(es, &n1, &v1, &l1) == ARCHIVE_OK) {
        bool dup = false;
        for (size_t i = 0; i < unique; i++)
            dup = dup || strcmp(seen[i], n1) == 0;
        if (dup)
            continue;
        seen[unique++] = n1;
        bool found = false;
        archive_entry_xattr_reset(eo);
        while (archive_entry_xattr_next(eo, &n2, &v2, &l2) == ARCHIVE_OK) {
            if (strcmp(n1, n2) == 0) {
                assert_int_equal(l1, l2);
                assert_memory_equal(v1, v2, l1);
                found = true;
            }
        }
        assert_true(found);
    }
    assert_int_equal(archive_entry_xattr_count(eo), unique);
}

static void compare_tars(int src_fd, const uint8_t *tar, size_t tar_len)
{
    struct archive *s = archive_read_new(), *o = archive_read_new();
    archive_read_support_format_tar(s);
    archive_read_support_filter_all(s);
    archive_read_support_format_tar(o);
    lseek(src_fd, 0, SEEK_SET);
    assert_int_equal(archive_read_open_fd(s, src_fd, 65536), ARCHIVE_OK);
    assert_int_equal(archive_read_open_memory(o, tar, tar_len), ARCHIVE_OK);
    struct archive_entry *es, *eo;
    size_t count = 0;
    while (archive_read_next_header(s, &es) == ARCHIVE_OK) {
        assert_int_equal(archive_read_next_header(o, &eo), ARCHIVE_OK);
        str_eq(archive_entry_pathname_utf8(es), archive_entry_pathname_utf8(eo));
        assert_int_equal(archive_entry_filetype(es), archive_entry_filetype(eo));
        assert_int_equal(archive_entry_perm(es), archive_entry_perm(eo));
        assert_int_equal(archive_entry_uid(es), archive_entry_uid(eo));
        assert_int_equal(archive_entry_gid(es), archive_entry_gid(eo));
        str_eq(archive_entry_uname_utf8(es), archive_entry_uname_utf8(eo));
        str_eq(archive_entry_gname_utf8(es), archive_entry_gname_utf8(eo));
        assert_int_equal(archive_entry_mtime(es), archive_entry_mtime(eo));
        assert_int_equal(archive_entry_mtime_nsec(es), archive_entry_mtime_nsec(eo));
        str_eq(archive_entry_symlink_utf8(es), archive_entry_symlink_utf8(eo));
        str_eq(archive_entry_hardlink_utf8(es), archive_entry_hardlink_utf8(eo));
        assert_int_equal(archive_entry_rdevmajor(es), archive_entry_rdevmajor(eo));
        assert_int_equal(archive_entry_rdevminor(es), archive_entry_rdevminor(eo));
        compare_xattrs(es, eo);
        uint8_t *d1 = NULL, *d2 = NULL;
        la_ssize_t s1 = read_all(s, &d1), s2 = read_all(o, &d2);
        assert_true(s1 >= 0);
        assert_int_equal(s1, s2);
        if (s1)
            assert_memory_equal(d1, d2, (size_t)s1);
        free(d1);
        free(d2);
        count++;
    }
    assert_int_equal(archive_read_next_header(o, &eo), ARCHIVE_OK);
    assert_string_equal(archive_entry_pathname(eo), SL_TOC_TAR_NAME);
    assert_int_equal(archive_read_next_header(o, &eo), ARCHIVE_EOF);
    assert_true(count > 0);
    archive_read_free(s);
    archive_read_free(o);
}

/* --- (b) TOC fields, (c) chunk members */

static void check_toc(int blob_fd, const struct sl_format_result *res, const struct fmt_spec *specs,
                      size_t n, const uint8_t *blob)
{
    struct sl_toc *toc = NULL;
    sl_error_t err = NULL;
    int r = sl_toc_load(sl_toc_pread_fd, &blob_fd, res->blob_size, res->toc_digest, &toc, &err);
    if (r < 0)
        fail_msg("load: %s", sl_error_msg(err, r));
    assert_string_equal(sl_toc_digest(toc), res->toc_digest);
    assert_int_equal(sl_toc_offset(toc), res->toc_offset);
    assert_int_equal(sl_toc_chunks(toc), res->chunks);
    assert_int_equal(sl_toc_regular_files(toc), res->regular_files);
    struct libdeflate_decompressor;
    for (size_t i = 0; i < n; i++) {
        const struct fmt_spec *s = &specs[i];
        const struct sl_toc_entry *e = sl_toc_find(toc, s->name);
        assert_non_null(e);
        char norm[512];
        assert_int_equal(sl_toc_path_normalize(s->name, norm), 0);
        assert_string_equal(e->name, norm);
        unsigned want_mode = s->mode ? s->mode : (s->type == '5' ? 0755 : 0644);
        assert_int_equal(e->mode, want_mode);
        assert_int_equal(e->uid, s->uid);
        assert_int_equal(e->gid, s->gid);
        if (s->uname)
            assert_string_equal(e->user_name, s->uname);
        assert_int_equal(e->mtime, s->mtime ? s->mtime : 1700000000);
        assert_false(e->synthesized);
        switch (s->type) {
        case '0': {
            assert_int_equal(e->type, SL_TOC_REG);
            assert_int_equal(e->size, s->len);
            assert_int_equal(e->n_chunks, (s->len + CHUNK - 1) / CHUNK);
            uint8_t *data = malloc(s->len + 1);
            if (s->data)
                memcpy(data, s->data, s->len);
            else
                fmt_fill(data, s->len, (uint32_t)i);
            char d[SL_DIGEST_STR_LEN];
            sl_sha256_str(data, s->len, d);
            assert_true(e->has_digest);
            assert_string_equal(e->digest, d);
            for (size_t c = 0; c < e->n_chunks; c++) {
                const struct sl_toc_chunk *ch = &e->chunks[c];
                assert_false(ch->compressed_size_derived);
                assert_int_equal(ch->chunk_offset, c * CHUNK);
                assert_int_equal(ch->size, SL_MIN((uint64_t)CHUNK, s->len - c * CHUNK));
                uint8_t out[CHUNK];
                assert_int_equal(sl_toc_read_chunk(sl_toc_pread_fd, &blob_fd, ch, out, &err), 0);
                assert_memory_equal(out, data + ch->chunk_offset, ch->size);
                /* the member holds exactly this chunk: gunzip of the slice alone */
                size_t gl = 0;
                uint8_t *g = fmt_gunzip(blob + ch->offset, ch->compressed_size, &gl);
                assert_non_null(g);
                assert_int_equal(gl, ch->size);
                assert_memory_equal(g, data + ch->chunk_offset, gl);
                free(g);
            }
            free(data);
            if (s->xattr) {
                assert_int_equal(e->n_xattrs, 1);
                assert_string_equal(e->xattrs[0].name, s->xattr);
                assert_int_equal(e->xattrs[0].len, strlen(s->xattr_value));
                assert_memory_equal(e->xattrs[0].value, s->xattr_value, e->xattrs[0].len);
            }
            break;
        }
        case '1':
            assert_int_equal(e->type, SL_TOC_HARDLINK);
            assert_non_null(e->link);
            assert_ptr_equal(e->link, sl_toc_find(toc, s->link));
            assert_int_equal(e->link->num_link, 2);
            break;
        case '2':
            assert_int_equal(e->type, SL_TOC_SYMLINK);
            assert_string_equal(e->link_name, s->link);
            break;
        case '3':
        case '4':
            assert_int_equal(e->type, s->type == '3' ? SL_TOC_CHAR : SL_TOC_BLOCK);
            assert_int_equal(e->dev_major, s->devmajor);
            assert_int_equal(e->dev_minor, s->devminor);
            break;
        case '5':
            assert_int_equal(e->type, SL_TOC_DIR);
            break;
        case '6':
            assert_int_equal(e->type, SL_TOC_FIFO);
            break;
        }
    }
    /* implicit parents, tree, link counts */
    const struct sl_toc_entry *im = sl_toc_find(toc, "implicit/sub");
    assert_non_null(im);
    assert_true(im->synthesized);
    assert_int_equal(im->type, SL_TOC_DIR);
    assert_int_equal(im->mode, 0755);
    assert_int_equal(im->n_children, 1);
    assert_string_equal(im->children[0]->base, "file");
    const struct sl_toc_entry *root = sl_toc_root(toc);
    assert_string_equal(root->name, "");
    for (size_t i = 1; i < root->n_children; i++)
        assert_true(strcmp(root->children[i - 1]->base, root->children[i]->base) < 0);
    const struct sl_toc_entry *etc = sl_toc_find(toc, "/etc/./");
    assert_non_null(etc);
    assert_ptr_equal(etc->parent, root);
    assert_int_equal(etc->num_link, 2);
    assert_null(sl_toc_find(toc, "etc/nope"));
    assert_null(sl_toc_find(toc, "../etc"));
    sl_toc_free(toc);
}

static void roundtrip(enum fmt_compress comp, char digest_out[SL_DIGEST_STR_LEN])
{
    setup_names();
    size_t n = SL_ELEMENTSOF(rich);
    int src = fmt_build_tar(rich, n, comp);
    assert_true(src >= 0);
    struct sl_format_result res;
    sl_error_t err = NULL;
    int out = convert_fd(src, &res, CHUNK, &err);
    if (out < 0)
        fail_msg("convert: %s", sl_error_msg(err, out));
    size_t blob_len = 0;
    uint8_t *blob = fmt_slurp(out, &blob_len);
    assert_int_equal(blob_len, res.blob_size);
    char d[SL_DIGEST_STR_LEN];
    sl_sha256_str(blob, blob_len, d);
    assert_string_equal(d, res.blob_digest);
    assert_int_equal(res.entries, n);
    assert_int_equal(res.dropped, 0);
    assert_int_equal(res.chunks, 10 + 2 + 7);

    /* one valid gzip stream (zlib), whose tar is the source's plus the TOC */
    size_t tar_len = 0;
    uint8_t *tar = fmt_gunzip(blob, blob_len, &tar_len);
    assert_non_null(tar);
    assert_int_equal(tar_len, res.tar_size);
    sl_sha256_str(tar, tar_len, d);
    assert_string_equal(d, res.diff_id);
    compare_tars(src, tar, tar_len);

    check_toc(out, &res, rich, n, blob);

    /* (d) re-conversion is stable: the TOC entry is dropped and rebuilt identically */
    struct sl_format_result res2;
    lseek(out, 0, SEEK_SET);
    int out2 = convert_fd(out, &res2, CHUNK, &err);
    assert_true(out2 >= 0);
    assert_int_equal(res2.dropped, 1);
    assert_string_equal(res2.blob_digest, res.blob_digest);
    assert_string_equal(res2.toc_digest, res.toc_digest);
    assert_string_equal(res2.diff_id, res.diff_id);
    memcpy(digest_out, res.blob_digest, SL_DIGEST_STR_LEN);
    close(out2);
    free(tar);
    free(blob);
    close(out);
    close(src);
}

static void test_roundtrip_all_compressions(void **state)
{
    char g[SL_DIGEST_STR_LEN], z[SL_DIGEST_STR_LEN], none[SL_DIGEST_STR_LEN];
    roundtrip(FMT_GZIP, g);
    roundtrip(FMT_ZSTD, z);
    roundtrip(FMT_NONE, none);
    /* the blob depends only on the tar entries, not on the source compression */
    assert_string_equal(g, z);
    assert_string_equal(g, none);
}

static void test_absolute_names(void **state)
{
    struct fmt_spec s[] = {
        {.name = "/abs/file", .type = '0', .data = "a", .len = 1},
        {.name = "./dot/file", .type = '0', .data = "b", .len = 1},
        {.name = "rel/../rel2", .type = '0', .data = "c", .len = 1},
    };
    struct sl_format_result res;
    sl_error_t err = NULL;
    int out = convert_specs(s, 3, FMT_GZIP, &res, &err);
    assert_true(out >= 0);
    struct sl_toc *toc = NULL;
    assert_int_equal(sl_toc_load(sl_toc_pread_fd, &out, res.blob_size, NULL, &toc, &err), 0);
    assert_non_null(sl_toc_find(toc, "abs/file"));
    assert_non_null(sl_toc_find(toc, "dot/file"));
    assert_non_null(sl_toc_find(toc, "rel2"));
    sl_toc_free(toc);
    close(out);
}

static void expect_reject(const struct fmt_spec *s, size_t n, const char *needle)
{
    struct sl_format_result res;
    sl_error_t err = NULL;
    int r = convert_specs(s, n, FMT_GZIP, &res, &err);
    assert_true(r < 0);
    assert_int_equal(r, -EINVAL);
    assert_non_null(err);
    if (!strstr(err->msg, needle))
        fail_msg("error `%s` lacks `%s`", err->msg, needle);
    sl_error_free(&err);
}

static void test_hostile_names(void **state)
{
    struct fmt_spec dotdot[] = {{.name = "../evil", .type = '0', .data = "x", .len = 1}};
    expect_reject(dotdot, 1, "`../evil`: path escapes");
    struct fmt_spec deep[] = {{.name = "a/../../evil", .type = '5'}};
    expect_reject(deep, 1, "a/../../evil");
    struct fmt_spec absdot[] = {{.name = "/../etc/passwd", .type = '0', .data = "x", .len = 1}};
    expect_reject(absdot, 1, "/../etc/passwd");
    struct fmt_spec nolink[] = {{.name = "hard", .type = '1', .link = "missing"}};
    expect_reject(nolink, 1, "not earlier in the layer");
    struct fmt_spec later[] = {{.name = "hard", .type = '1', .link = "file"},
                               {.name = "file", .type = '0', .data = "x", .len = 1}};
    expect_reject(later, 2, "`hard`: hardlink to `file`");
    struct fmt_spec esc[] = {{.name = "file", .type = '0', .data = "x", .len = 1},
                             {.name = "hard", .type = '1', .link = "../file"}};
    expect_reject(esc, 2, "escapes");
    struct fmt_spec abs[] = {{.name = "file", .type = '0', .data = "x", .len = 1},
                             {.name = "hard", .type = '1', .link = "/file"}};
    expect_reject(abs, 2, "absolute");
    struct fmt_spec todir[] = {{.name = "d/", .type = '5'},
                               {.name = "hard", .type = '1', .link = "d"}};
    expect_reject(todir, 2, "directory");
    static char huge[5000];
    memset(huge, 'h', sizeof(huge) - 1);
    struct fmt_spec longn[] = {{.name = huge, .type = '0', .data = "x", .len = 1}};
    expect_reject(longn, 1, "name is 4999 bytes");
}

static uint8_t *gz_bytes(size_t *len)
{
    setup_names();
    int fd = fmt_build_tar(rich, SL_ELEMENTSOF(rich), FMT_GZIP);
    uint8_t *b = fmt_slurp(fd, len);
    close(fd);
    return b;
}

static void expect_bad_input(const uint8_t *p, size_t len, int code, const char *needle)
{
    int in = fmt_memfd(p, len);
    struct sl_format_result res;
    sl_error_t err = NULL;
    int r = convert_fd(in, &res, CHUNK, &err);
    close(in);
    if (r >= 0)
        fail_msg("accepted bad input (%s)", needle);
    if (code)
        assert_int_equal(r, -code);
    if (!strstr(sl_error_msg(err, r), needle))
        fail_msg("error `%s` lacks `%s`", sl_error_msg(err, r), needle);
    sl_error_free(&err);
}

static void test_truncated_corrupt(void **state)
{
    size_t len = 0;
    uint8_t *gz = gz_bytes(&len);
    expect_bad_input(gz, len / 2, EBADMSG, "truncated gzip");
    expect_bad_input(gz, len - 4, EBADMSG, "truncated gzip"); /* cut in the trailer */
    expect_bad_input(gz, 5, EBADMSG, "truncated gzip");
    uint8_t *bad = malloc(len);
    memcpy(bad, gz, len);
    bad[len / 2] ^= 0x55;
    expect_bad_input(bad, len, EBADMSG, "gzip");
    memcpy(bad, gz, len);
    bad[len - 6] ^= 0x01; /* CRC32 */
    expect_bad_input(bad, len, EBADMSG, "corrupt gzip");
    free(bad);
    free(gz);

    /* zstd: truncated and corrupt */
    int zfd = fmt_build_tar(rich, SL_ELEMENTSOF(rich), FMT_ZSTD);
    uint8_t *z = fmt_slurp(zfd, &len);
    close(zfd);
    expect_bad_input(z, len / 2, 0, "zstd");
    /* zstd frames written without a checksum cannot reveal a flipped literal byte; a broken
     * frame header is detected */
    z[4] ^= 0xff;
    z[5] ^= 0xff;
    expect_bad_input(z, len, 0, "");
    free(z);

    /* not a layer at all */
    uint8_t junk[4096];
    fmt_fill(junk, sizeof(junk), 7);
    junk[0] = 'J';
    expect_bad_input(junk, sizeof(junk), 0, "");
}

static void progress(uint64_t n, void *ud)
{
    uint64_t *last = ud;
    assert_true(n >= *last);
    *last = n;
}

static void test_progress_and_options(void **state)
{
    setup_names();
    int in = fmt_build_tar(rich, SL_ELEMENTSOF(rich), FMT_GZIP);
    struct stat st;
    assert_int_equal(fstat(in, &st), 0);
    uint64_t last = 0;
    struct sl_format_options o = {.progress = progress, .progress_ud = &last, .level = 9};
    struct sl_format_result res;
    sl_error_t err = NULL;
    int out = memfd_create("o", MFD_CLOEXEC);
    assert_int_equal(sl_format_convert(in, out, &o, &res, &err), 0);
    assert_int_equal(last, (uint64_t)st.st_size);
    assert_int_equal(res.input_size, (uint64_t)st.st_size);
    assert_int_equal(res.chunks, 9); /* one per non-empty file */
    o.level = 13;
    assert_int_equal(sl_format_convert(in, out, &o, &res, &err), -EINVAL);
    sl_error_free(&err);
    o.level = 0;
    o.chunk_size = 100;
    assert_int_equal(sl_format_convert(in, out, &o, &res, &err), -EINVAL);
    sl_error_free(&err);
    close(out);
    close(in);
}

struct thread_arg {
    int in;
    char digest[SL_DIGEST_STR_LEN];
    int r;
};

static void *thread_main(void *p)
{
    struct thread_arg *a = p;
    struct sl_format_result res;
    sl_error_t err = NULL;
    int out = convert_fd(a->in, &res, CHUNK, &err);
    a->r = out < 0 ? out : 0;
    if (out >= 0) {
        memcpy(a->digest, res.blob_digest, SL_DIGEST_STR_LEN);
        close(out);
    }
    sl_error_free(&err);
    return NULL;
}

static void test_parallel(void **state)
{
    setup_names();
    size_t len = 0;
    uint8_t *gz = gz_bytes(&len);
    struct thread_arg args[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        args[i].in = fmt_memfd(gz, len);
        pthread_create(&t[i], NULL, thread_main, &args[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        assert_int_equal(args[i].r, 0);
        assert_string_equal(args[i].digest, args[0].digest);
        close(args[i].in);
    }
    free(gz);
}

static void test_empty_layer(void **state)
{
    /* a tar with no entries (1024 zero bytes), gzip'ed by the test builder */
    int in = fmt_build_tar(NULL, 0, FMT_GZIP);
    struct sl_format_result res;
    sl_error_t err = NULL;
    int out = convert_fd(in, &res, 0, &err);
    assert_true(out >= 0);
    assert_int_equal(res.entries, 0);
    struct sl_toc *toc = NULL;
    assert_int_equal(sl_toc_load(sl_toc_pread_fd, &out, res.blob_size, NULL, &toc, &err), 0);
    assert_int_equal(sl_toc_count(toc), 1); /* the root */
    sl_toc_free(toc);
    close(out);
    close(in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all_compressions),
        cmocka_unit_test(test_absolute_names),
        cmocka_unit_test(test_hostile_names),
        cmocka_unit_test(test_truncated_corrupt),
        cmocka_unit_test(test_progress_and_options),
        cmocka_unit_test(test_parallel),
        cmocka_unit_test(test_empty_layer),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
