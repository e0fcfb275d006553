/* sl-format-tool — drives common/format from scripts and end-to-end tests.
 *
 *   sl-format-tool convert [--chunk-size N] [--level L] [--threads N] IN OUT   result as JSON
 *   sl-format-tool toc [--entries] [--toc-digest D] BLOB          TOC summary as JSON
 *   sl-format-tool verify BLOB        every chunk against chunkDigest, every file against digest
 *
 * IN may be "-" for stdin and OUT "-" for stdout (then the JSON goes to stderr).
 * Exit status 0 on success, 1 on failure with the error chain on stderr. */
#include "format.h"
#include "json.h"
#include "toc.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int usage(void)
{
    fprintf(stderr,
            "usage: sl-format-tool convert [--chunk-size N] [--level L] [--threads N] IN OUT\n"
            "       sl-format-tool toc [--entries] [--toc-digest D] BLOB\n"
            "       sl-format-tool verify BLOB\n");
    return 2;
}

static int fail(sl_error_t *err, int r, const char *what)
{
    fprintf(stderr, "sl-format-tool: %s: %s\n", what, sl_error_msg(*err, r));
    sl_error_free(err);
    return 1;
}

static void print_json(json_t *j, FILE *f)
{
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    fprintf(f, "%s\n", s);
    free(s);
}

static int cmd_convert(int argc, char **argv)
{
    struct sl_format_options o = {0};
    int i = 0;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--chunk-size") == 0 && i + 1 < argc)
            o.chunk_size = strtoull(argv[++i], NULL, 0);
        else if (strcmp(argv[i], "--level") == 0 && i + 1 < argc)
            o.level = atoi(argv[++i]);
        else if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            o.threads = atoi(argv[++i]);
        else
            return usage();
    }
    if (argc - i != 2)
        return usage();
    const char *in = argv[i], *out = argv[i + 1];
    _cleanup_close_ int ifd = strcmp(in, "-") == 0 ? dup(0) : open(in, O_RDONLY | O_CLOEXEC);
    if (ifd < 0) {
        fprintf(stderr, "sl-format-tool: %s: %s\n", in, strerror(errno));
        return 1;
    }
    bool to_stdout = strcmp(out, "-") == 0;
    _cleanup_close_ int ofd =
        to_stdout ? dup(1) : open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (ofd < 0) {
        fprintf(stderr, "sl-format-tool: %s: %s\n", out, strerror(errno));
        return 1;
    }
    struct sl_format_result res;
    sl_error_t err = NULL;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int r = sl_format_convert(ifd, ofd, &o, &res, &err);
    if (r < 0) {
        if (!to_stdout)
            unlink(out);
        return fail(&err, r, in);
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    json_auto_t *j = json_object();
    json_object_set_new(j, "digest", json_string(res.blob_digest));
    json_object_set_new(j, "diffID", json_string(res.diff_id));
    json_object_set_new(j, "tocDigest", json_string(res.toc_digest));
    json_object_set_new(j, "size", json_integer((json_int_t)res.blob_size));
    json_object_set_new(j, "tarSize", json_integer((json_int_t)res.tar_size));
    json_object_set_new(j, "inputSize", json_integer((json_int_t)res.input_size));
    json_object_set_new(j, "tocOffset", json_integer((json_int_t)res.toc_offset));
    json_object_set_new(j, "tocSize", json_integer((json_int_t)res.toc_size));
    json_object_set_new(j, "entries", json_integer((json_int_t)res.entries));
    json_object_set_new(j, "regularFiles", json_integer((json_int_t)res.regular_files));
    json_object_set_new(j, "chunks", json_integer((json_int_t)res.chunks));
    json_object_set_new(j, "dropped", json_integer((json_int_t)res.dropped));
    json_object_set_new(j, "seconds", json_real(secs));
    print_json(j, to_stdout ? stderr : stdout);
    return 0;
}

static int load(const char *path, int *fd, const char *want, struct sl_toc **toc)
{
    *fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (*fd < 0 || fstat(*fd, &st) < 0) {
        fprintf(stderr, "sl-format-tool: %s: %s\n", path, strerror(errno));
        return 1;
    }
    sl_error_t err = NULL;
    int r = sl_toc_load(sl_toc_pread_fd, fd, (uint64_t)st.st_size, want, toc, &err);
    if (r < 0)
        return fail(&err, r, path);
    return 0;
}

static json_t *entry_json(const struct sl_toc_entry *e)
{
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(e->name));
    json_object_set_new(j, "type", json_string(sl_toc_type_name(e->type)));
    json_object_set_new(j, "mode", json_integer(e->mode));
    json_object_set_new(j, "uid", json_integer(e->uid));
    json_object_set_new(j, "gid", json_integer(e->gid));
    json_object_set_new(j, "mtime", json_integer(e->mtime));
    json_object_set_new(j, "numLink", json_integer(e->num_link));
    if (e->type == SL_TOC_REG) {
        json_object_set_new(j, "size", json_integer((json_int_t)e->size));
        json_object_set_new(j, "chunks", json_integer((json_int_t)e->n_chunks));
        if (e->has_digest)
            json_object_set_new(j, "digest", json_string(e->digest));
    }
    if (e->link_name)
        json_object_set_new(j, "linkName", json_string(e->link_name));
    if (e->type == SL_TOC_CHAR || e->type == SL_TOC_BLOCK) {
        json_object_set_new(j, "devMajor", json_integer(e->dev_major));
        json_object_set_new(j, "devMinor", json_integer(e->dev_minor));
    }
    if (e->n_xattrs) {
        json_t *x = json_array();
        for (size_t i = 0; i < e->n_xattrs; i++)
            json_array_append_new(x, json_string(e->xattrs[i].name));
        json_object_set_new(j, "xattrs", x);
    }
    if (e->synthesized)
        json_object_set_new(j, "synthesized", json_true());
    return j;
}

static int cmd_toc(int argc, char **argv)
{
    bool entries = false;
    const char *want = NULL;
    int i = 0;
    for (; i < argc && strncmp(argv[i], "--", 2) == 0; i++) {
        if (strcmp(argv[i], "--entries") == 0)
            entries = true;
        else if (strcmp(argv[i], "--toc-digest") == 0 && i + 1 < argc)
            want = argv[++i];
        else
            return usage();
    }
    if (argc - i != 1)
        return usage();
    _cleanup_close_ int fd = -EBADF;
    _cleanup_toc_ struct sl_toc *toc = NULL;
    int r = load(argv[i], &fd, want, &toc);
    if (r)
        return r;
    size_t derived = 0;
    for (size_t k = 0; k < sl_toc_count(toc); k++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(toc, k);
        for (size_t c = 0; c < e->n_chunks; c++)
            derived += e->chunks[c].compressed_size_derived;
    }
    json_auto_t *j = json_object();
    json_object_set_new(j, "tocDigest", json_string(sl_toc_digest(toc)));
    json_object_set_new(j, "tocOffset", json_integer((json_int_t)sl_toc_offset(toc)));
    json_object_set_new(j, "entries", json_integer((json_int_t)sl_toc_count(toc)));
    json_object_set_new(j, "regularFiles", json_integer((json_int_t)sl_toc_regular_files(toc)));
    json_object_set_new(j, "chunks", json_integer((json_int_t)sl_toc_chunks(toc)));
    json_object_set_new(j, "derivedCompressedSizes", json_integer((json_int_t)derived));
    if (entries) {
        json_t *a = json_array();
        for (size_t k = 0; k < sl_toc_count(toc); k++)
            json_array_append_new(a, entry_json(sl_toc_entry_at(toc, k)));
        json_object_set_new(j, "list", a);
    }
    print_json(j, stdout);
    return 0;
}

static int cmd_verify(int argc, char **argv)
{
    if (argc != 1)
        return usage();
    _cleanup_close_ int fd = -EBADF;
    _cleanup_toc_ struct sl_toc *toc = NULL;
    int r = load(argv[0], &fd, NULL, &toc);
    if (r)
        return r;
    uint64_t files = 0, chunks = 0, bytes = 0;
    for (size_t k = 0; k < sl_toc_count(toc); k++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(toc, k);
        if (e->type != SL_TOC_REG)
            continue;
        struct sl_sha256 sha;
        sl_sha256_init(&sha);
        for (size_t c = 0; c < e->n_chunks; c++) {
            const struct sl_toc_chunk *ch = &e->chunks[c];
            _cleanup_free_ void *buf = sl_xmalloc(ch->size ? (size_t)ch->size : 1);
            sl_error_t err = NULL;
            r = sl_toc_read_chunk(sl_toc_pread_fd, &fd, ch, buf, &err);
            if (r < 0) {
                sl_sha256_done(&sha);
                sl_error_wrap(&err, r, "file `%s` chunk %zu", e->name, c);
                return fail(&err, r, argv[0]);
            }
            sl_sha256_update(&sha, buf, (size_t)ch->size);
            chunks++;
            bytes += ch->size;
        }
        char d[SL_DIGEST_STR_LEN];
        sl_sha256_final(&sha, d);
        if (e->has_digest && strcmp(d, e->digest) != 0) {
            fprintf(stderr, "sl-format-tool: %s: file `%s`: digest %s, expected %s\n", argv[0],
                    e->name, d, e->digest);
            return 1;
        }
        files++;
    }
    json_auto_t *j = json_object();
    json_object_set_new(j, "tocDigest", json_string(sl_toc_digest(toc)));
    json_object_set_new(j, "files", json_integer((json_int_t)files));
    json_object_set_new(j, "chunks", json_integer((json_int_t)chunks));
    json_object_set_new(j, "bytes", json_integer((json_int_t)bytes));
    json_object_set_new(j, "ok", json_true());
    print_json(j, stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "convert") == 0)
        return cmd_convert(argc - 2, argv + 2);
    if (strcmp(argv[1], "toc") == 0)
        return cmd_toc(argc - 2, argv + 2);
    if (strcmp(argv[1], "verify") == 0)
        return cmd_verify(argc - 2, argv + 2);
    return usage();
}
