/* writer.c — one-pass converter from a source layer to a Starlight/eStargz blob.
 *
 * Data flow: in_fd -> (zlib inflate for gzip, or raw for tar/zstd) -> libarchive tar reader ->
 * our own tar encoder -> members compressed whole by libdeflate -> out_fd. gzip input is
 * decoded here rather than by libarchive because libarchive neither checks the gzip CRC nor
 * notices a stream cut short after the tar end blocks; zlib does both. */
#include "format.h"
#include "base64.h"

#include "buf.h"
#include "cleanup.h"
#include "fmtutil.h"
#include "toc.h"

#include <archive.h>
#include <archive_entry.h>
#include <libdeflate.h>
#include <zlib.h>

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define IN_BUF    (256u << 10)
#define OUT_BUF   (1u << 20)
#define TAR_BLOCK 512

enum in_mode { IN_RAW, IN_GZIP };

struct input {
    int fd;
    enum in_mode mode;
    uint64_t consumed;
    sl_format_progress_fn progress;
    void *progress_ud;
    uint8_t *inbuf;
    uint8_t *outbuf;
    size_t pending; /* RAW: bytes of inbuf pre-read for sniffing, not yet handed out */
    bool in_eof;
    bool member_open; /* GZIP: inside a member */
    bool gz_finished; /* GZIP: stream ended (EOF after a complete member, or trailing data) */
    z_stream zs;
    bool zs_init;
    int err_code; /* first error seen by the read callback */
    char err_msg[256];
};

struct chunkrec {
    uint64_t offset, csize, coff, size;
    char digest[SL_DIGEST_STR_LEN];
};

struct writer {
    int out_fd;
    uint64_t chunk_size;
    struct libdeflate_compressor *comp;
    struct input in;

    struct sl_buf member; /* uncompressed bytes of the current header member */
    uint8_t *cbuf;        /* compression output */
    size_t cbuf_cap;
    uint8_t *chunk; /* one chunk of file data */
    uint8_t *obuf;  /* output buffer */
    size_t olen;
    uint64_t blob_off; /* bytes emitted so far */
    uint64_t tar_size;
    struct sl_sha256 blob_sha, diff_sha;

    struct sl_buf toc;
    bool toc_first;
    uint64_t toc_entries;
    struct chunkrec *chunks;
    size_t n_chunks, cap_chunks;

    struct sl_strmap names; /* normalised name -> (void *)1 non-dir, (void *)2 dir */
    struct sl_arena arena;
    struct {
        int64_t id;
        char *name;
    } unames[32], gnames[32];
    size_t n_unames, n_gnames;

    struct sl_format_result res;
};

/* ---------------------------------------------------------------- input */

static int in_fail(struct input *in, int code, const char *msg, const char *detail)
{
    if (!in->err_code) {
        in->err_code = code;
        snprintf(in->err_msg, sizeof(in->err_msg), "%s%s%s", msg, detail ? ": " : "",
                 detail ? detail : "");
    }
    return -code;
}

static ssize_t in_read_fd(struct input *in, uint8_t *buf, size_t n)
{
    for (;;) {
        ssize_t r = read(in->fd, buf, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return in_fail(in, errno, "reading the source layer", strerror(errno));
        if (r == 0)
            in->in_eof = true;
        in->consumed += (uint64_t)r;
        if (in->progress && r > 0)
            in->progress(in->consumed, in->progress_ud);
        return r;
    }
}

/* Produces the next piece of decompressed tar bytes. Returns bytes (0 at the end) or -errno. */
static ssize_t in_next(struct input *in, const void **ret)
{
    if (in->err_code)
        return -in->err_code;
    if (in->mode == IN_RAW) {
        if (in->pending) {
            size_t n = in->pending;
            in->pending = 0;
            *ret = in->inbuf;
            return (ssize_t)n;
        }
        if (in->in_eof)
            return 0;
        ssize_t r = in_read_fd(in, in->inbuf, IN_BUF);
        *ret = in->inbuf;
        return r;
    }
    if (in->gz_finished)
        return 0;
    in->zs.next_out = in->outbuf;
    in->zs.avail_out = IN_BUF;
    while (in->zs.avail_out == IN_BUF) {
        if (in->zs.avail_in == 0) {
            if (in->in_eof) {
                if (in->member_open)
                    return in_fail(in, EBADMSG, "truncated gzip input", NULL);
                in->gz_finished = true;
                break;
            }
            ssize_t r = in_read_fd(in, in->inbuf, IN_BUF);
            if (r < 0)
                return r;
            in->zs.next_in = in->inbuf;
            in->zs.avail_in = (uInt)r;
            continue;
        }
        if (!in->member_open) {
            /* A new member must start with the gzip magic; anything else after a complete
             * member is trailing garbage, ignored as gzip(1) does. */
            if (in->zs.avail_in < 2 && !in->in_eof) {
                /* rare: a read ended between the two magic bytes */
                uint8_t b0 = in->zs.next_in[0];
                in->inbuf[0] = b0;
                ssize_t r = in_read_fd(in, in->inbuf + 1, IN_BUF - 1);
                if (r < 0)
                    return r;
                in->zs.next_in = in->inbuf;
                in->zs.avail_in = (uInt)r + 1;
                continue;
            }
            if (in->zs.avail_in < 2 || in->zs.next_in[0] != 0x1f || in->zs.next_in[1] != 0x8b) {
                in->gz_finished = true;
                break;
            }
            if (inflateReset(&in->zs) != Z_OK)
                return in_fail(in, EBADMSG, "gzip: inflateReset failed", NULL);
            in->member_open = true;
        }
        int z = inflate(&in->zs, Z_NO_FLUSH);
        if (z == Z_STREAM_END) {
            in->member_open = false;
        } else if (z == Z_DATA_ERROR || z == Z_NEED_DICT) {
            return in_fail(in, EBADMSG, "corrupt gzip input",
                           in->zs.msg ? in->zs.msg : "invalid data");
        } else if (z == Z_MEM_ERROR) {
            return in_fail(in, ENOMEM, "gzip: out of memory", NULL);
        } else if (z != Z_OK && z != Z_BUF_ERROR) {
            return in_fail(in, EBADMSG, "corrupt gzip input", NULL);
        }
    }
    *ret = in->outbuf;
    return (ssize_t)(IN_BUF - in->zs.avail_out);
}

static la_ssize_t archive_read_cb(struct archive *a, void *ud, const void **buf)
{
    struct input *in = ud;
    ssize_t r = in_next(in, buf);
    if (r < 0) {
        archive_set_error(a, (int)-r, "%s", in->err_msg[0] ? in->err_msg : strerror((int)-r));
        return ARCHIVE_FATAL;
    }
    return r;
}

/* Reads the rest of the input after the tar end blocks so truncation and corruption anywhere
 * are noticed and the whole blob is consumed (a pipe writer must not see EPIPE). */
static int in_drain(struct input *in)
{
    const void *p;
    ssize_t r;
    while ((r = in_next(in, &p)) > 0)
        ;
    if (r < 0)
        return (int)r;
    if (in->mode == IN_GZIP) {
        /* trailing bytes after the last member: keep reading to EOF */
        while (!in->in_eof) {
            r = in_read_fd(in, in->inbuf, IN_BUF);
            if (r < 0)
                return (int)r;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------- output */

static int out_write_all(struct writer *w, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(w->out_fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static int out_flush(struct writer *w)
{
    int r = out_write_all(w, w->obuf, w->olen);
    w->olen = 0;
    return r;
}

static int emit(struct writer *w, const uint8_t *p, size_t n)
{
    sl_sha256_update(&w->blob_sha, p, n);
    w->blob_off += n;
    if (w->olen + n > OUT_BUF) {
        int r = out_flush(w);
        if (r < 0)
            return r;
        if (n >= OUT_BUF / 2)
            return out_write_all(w, p, n);
    }
    memcpy(w->obuf + w->olen, p, n);
    w->olen += n;
    return 0;
}

/* Compresses `n` bytes as one gzip member and emits it. Returns the member length. */
static int64_t emit_member(struct writer *w, const void *p, size_t n)
{
    size_t bound = libdeflate_gzip_compress_bound(w->comp, n);
    if (bound > w->cbuf_cap) {
        free(w->cbuf);
        w->cbuf = sl_xmalloc(bound);
        w->cbuf_cap = bound;
    }
    size_t c = libdeflate_gzip_compress(w->comp, p, n, w->cbuf, w->cbuf_cap);
    if (c == 0)
        return -EIO; /* cannot happen with a bound-sized buffer */
    int r = emit(w, w->cbuf, c);
    return r < 0 ? r : (int64_t)c;
}

static int close_member(struct writer *w)
{
    if (w->member.len == 0)
        return 0;
    int64_t r = emit_member(w, w->member.data, w->member.len);
    sl_buf_reset(&w->member);
    return r < 0 ? (int)r : 0;
}

/* Appends tar bytes to the current member (and the diffID). */
static void tar_append(struct writer *w, const void *p, size_t n)
{
    sl_sha256_update(&w->diff_sha, p, n);
    w->tar_size += n;
    if (sl_buf_append(&w->member, p, n) < 0)
        abort(); /* uncapped buffer */
}

static void tar_pad(struct writer *w, uint64_t size)
{
    static const uint8_t zeros[TAR_BLOCK];
    size_t pad = (size_t)((TAR_BLOCK - size % TAR_BLOCK) % TAR_BLOCK);
    if (pad)
        tar_append(w, zeros, pad);
}

/* ---------------------------------------------------------------- tar encoding */

struct xattr {
    const char *name;
    const void *value;
    size_t len;
};

static int xattr_cmp(const void *a, const void *b)
{
    return strcmp(((const struct xattr *)a)->name, ((const struct xattr *)b)->name);
}

#define MAX_XATTRS 1024

struct hdr {
    const char *name;
    char type;
    uint32_t mode;
    int64_t uid, gid;
    uint64_t size;
    int64_t mtime;
    long nsec;
    const char *linkname;
    const char *uname, *gname;
    uint32_t devmajor, devminor;
    const struct xattr *xattrs;
    size_t n_xattrs;
};

static bool ascii_fits(const char *s, size_t max)
{
    size_t n = 0;
    for (; s[n]; n++)
        if ((unsigned char)s[n] >= 0x80 || n >= max)
            return false;
    return true;
}

static void octal(char *field, size_t width, uint64_t v)
{
    /* width includes the terminating NUL */
    field[width - 1] = 0;
    for (size_t i = width - 1; i-- > 0;) {
        field[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

static void pax_record(struct sl_buf *b, const char *key, const void *val, size_t vlen)
{
    size_t n = strlen(key) + vlen + 3; /* ' ', '=', '\n' */
    size_t d = 1;
    for (size_t t = n; t >= 10; t /= 10)
        d++;
    size_t total = n + d;
    size_t d2 = 1;
    for (size_t t = total; t >= 10; t /= 10)
        d2++;
    if (d2 != d)
        total++;
    sl_buf_printf(b, "%zu %s=", total, key);
    sl_buf_append(b, val, vlen);
    sl_buf_append(b, "\n", 1);
}

static void ustar_block(uint8_t blk[TAR_BLOCK], const char *name, char type, uint32_t mode,
                        uint64_t uid, uint64_t gid, uint64_t size, uint64_t mtime,
                        const char *linkname, const char *uname, const char *gname,
                        uint32_t devmajor, uint32_t devminor)
{
    memset(blk, 0, TAR_BLOCK);
    char *h = (char *)blk;
    strncpy(h, name, 100);
    octal(h + 100, 8, mode);
    octal(h + 108, 8, uid);
    octal(h + 116, 8, gid);
    octal(h + 124, 12, size);
    octal(h + 136, 12, mtime);
    h[156] = type;
    if (linkname)
        strncpy(h + 157, linkname, 100);
    memcpy(h + 257,
           "ustar\0"
           "00",
           8);
    if (uname)
        strncpy(h + 265, uname, 32);
    if (gname)
        strncpy(h + 297, gname, 32);
    if (type == '3' || type == '4') {
        octal(h + 329, 8, devmajor);
        octal(h + 337, 8, devminor);
    }
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < TAR_BLOCK; i++)
        sum += blk[i];
    octal(h + 148, 7, sum);
    h[155] = ' ';
}

#define OCT7  07777777ull
#define OCT11 077777777777ull

/* Writes the header (with a PAX extended header first when a field does not fit ustar). */
static void tar_header(struct writer *w, const struct hdr *h)
{
    _cleanup_buf_ struct sl_buf pax = {0};
    sl_buf_init(&pax, SIZE_MAX);
    char tmp[64];

    bool name_ok = ascii_fits(h->name, 100);
    if (!name_ok)
        pax_record(&pax, "path", h->name, strlen(h->name));
    if (h->linkname && !ascii_fits(h->linkname, 100))
        pax_record(&pax, "linkpath", h->linkname, strlen(h->linkname));
    if (h->uname && !ascii_fits(h->uname, 32))
        pax_record(&pax, "uname", h->uname, strlen(h->uname));
    if (h->gname && !ascii_fits(h->gname, 32))
        pax_record(&pax, "gname", h->gname, strlen(h->gname));
    bool uid_ok = (uint64_t)h->uid <= OCT7, gid_ok = (uint64_t)h->gid <= OCT7;
    if (!uid_ok) {
        snprintf(tmp, sizeof(tmp), "%" PRId64, h->uid);
        pax_record(&pax, "uid", tmp, strlen(tmp));
    }
    if (!gid_ok) {
        snprintf(tmp, sizeof(tmp), "%" PRId64, h->gid);
        pax_record(&pax, "gid", tmp, strlen(tmp));
    }
    bool size_ok = h->size <= OCT11;
    if (!size_ok) {
        snprintf(tmp, sizeof(tmp), "%" PRIu64, h->size);
        pax_record(&pax, "size", tmp, strlen(tmp));
    }
    bool mtime_ok = h->mtime >= 0 && (uint64_t)h->mtime <= OCT11 && h->nsec == 0;
    if (!mtime_ok) {
        /* sub-second or out-of-range times keep their exact value in PAX */
        int64_t s = h->mtime;
        long ns = h->nsec;
        if (ns == 0) {
            snprintf(tmp, sizeof(tmp), "%" PRId64, s);
        } else {
            bool neg = s < 0;
            if (neg && ns) {
                s += 1;
                ns = 1000000000L - ns;
            }
            int k =
                snprintf(tmp, sizeof(tmp), "%s%" PRId64 ".%09ld", neg && s == 0 ? "-" : "", s, ns);
            while (k > 0 && tmp[k - 1] == '0')
                tmp[--k] = 0;
        }
        pax_record(&pax, "mtime", tmp, strlen(tmp));
    }
    for (size_t i = 0; i < h->n_xattrs; i++) {
        _cleanup_free_ char *key = sl_xasprintf("SCHILY.xattr.%s", h->xattrs[i].name);
        pax_record(&pax, key, h->xattrs[i].value, h->xattrs[i].len);
    }

    uint8_t blk[TAR_BLOCK];
    if (pax.len) {
        ustar_block(blk, "././@PaxHeader", 'x', 0644, 0, 0, pax.len, 0, NULL, NULL, NULL, 0, 0);
        tar_append(w, blk, TAR_BLOCK);
        tar_append(w, pax.data, pax.len);
        tar_pad(w, pax.len);
    }
    ustar_block(blk, h->name, h->type, h->mode, uid_ok ? (uint64_t)h->uid : 0,
                gid_ok ? (uint64_t)h->gid : 0, size_ok ? h->size : 0,
                mtime_ok ? (uint64_t)h->mtime
                         : (h->mtime < 0 ? 0 : SL_MIN((uint64_t)h->mtime, OCT11)),
                h->linkname, h->uname && ascii_fits(h->uname, 32) ? h->uname : NULL,
                h->gname && ascii_fits(h->gname, 32) ? h->gname : NULL, h->devmajor, h->devminor);
    tar_append(w, blk, TAR_BLOCK);
}

/* ---------------------------------------------------------------- TOC JSON */

static void toc_begin_entry(struct writer *w)
{
    sl_buf_puts(&w->toc, w->toc_first ? "\n{" : ",\n{");
    w->toc_first = false;
}

static void toc_str(struct writer *w, const char *key, const char *val)
{
    sl_buf_printf(&w->toc, ",\"%s\":", key);
    sl_buf_json_string(&w->toc, val);
}

static void toc_int(struct writer *w, const char *key, uint64_t v)
{
    if (v)
        sl_buf_printf(&w->toc, ",\"%s\":%" PRIu64, key, v);
}

static void toc_chunk_fields(struct writer *w, const struct chunkrec *c)
{
    toc_int(w, "offset", c->offset);
    toc_int(w, "chunkOffset", c->coff);
    toc_int(w, "chunkSize", c->size);
    toc_str(w, "chunkDigest", c->digest);
    toc_int(w, "compressedSize", c->csize);
}

static void toc_base64(struct writer *w, const uint8_t *p, size_t n)
{
    size_t len = 0;
    _cleanup_free_ char *enc = sl_base64_encode(p, n, &len);
    sl_buf_append(&w->toc, "\"", 1);
    sl_buf_append(&w->toc, enc, len);
    sl_buf_append(&w->toc, "\"", 1);
}

/* userName/groupName are written when they differ from the last one written for that id (as
 * the original writer does); the reader back-fills. */
static bool name_changed(struct writer *w, bool user, int64_t id, const char *name)
{
    __typeof__(w->unames[0]) *tab = user ? w->unames : w->gnames;
    size_t *n = user ? &w->n_unames : &w->n_gnames;
    for (size_t i = 0; i < *n; i++) {
        if (tab[i].id == id) {
            if (strcmp(tab[i].name, name) == 0)
                return false;
            tab[i].name = sl_arena_strndup(&w->arena, name, strlen(name));
            return true;
        }
    }
    if (*n < SL_ELEMENTSOF(w->unames)) {
        tab[*n].id = id;
        tab[*n].name = sl_arena_strndup(&w->arena, name, strlen(name));
        (*n)++;
    }
    return true;
}

static int toc_mtime(char out[32], int64_t t)
{
    struct tm tm;
    time_t tt = (time_t)t;
    if (!gmtime_r(&tt, &tm) || tm.tm_year + 1900 < 0 || tm.tm_year + 1900 > 9999)
        return -ERANGE;
    strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return 0;
}

static const char *type_name(char t)
{
    switch (t) {
    case '0':
        return "reg";
    case '1':
        return "hardlink";
    case '2':
        return "symlink";
    case '3':
        return "char";
    case '4':
        return "block";
    case '5':
        return "dir";
    default:
        return "fifo";
    }
}

static int toc_entry(struct writer *w, const struct hdr *h, const char *digest, sl_error_t *err)
{
    toc_begin_entry(w);
    sl_buf_puts(&w->toc, "\"name\":");
    sl_buf_json_string(&w->toc, h->name);
    toc_str(w, "type", type_name(h->type));
    toc_int(w, "size", h->size);
    if (h->mtime != 0) {
        char ts[32];
        if (toc_mtime(ts, h->mtime) < 0)
            return sl_error_make(err, EINVAL,
                                 "entry `%s`: modification time %" PRId64 " out of range", h->name,
                                 h->mtime);
        toc_str(w, "modtime", ts);
    }
    if (h->linkname)
        toc_str(w, "linkName", h->linkname);
    toc_int(w, "mode", h->mode);
    toc_int(w, "uid", (uint64_t)h->uid);
    toc_int(w, "gid", (uint64_t)h->gid);
    if (h->uname && h->uname[0] && name_changed(w, true, h->uid, h->uname))
        toc_str(w, "userName", h->uname);
    if (h->gname && h->gname[0] && name_changed(w, false, h->gid, h->gname))
        toc_str(w, "groupName", h->gname);
    if (h->type == '3' || h->type == '4') {
        toc_int(w, "devMajor", h->devmajor);
        toc_int(w, "devMinor", h->devminor);
    }
    if (h->n_xattrs) {
        sl_buf_puts(&w->toc, ",\"xattrs\":{");
        for (size_t i = 0; i < h->n_xattrs; i++) {
            if (i)
                sl_buf_append(&w->toc, ",", 1);
            sl_buf_json_string(&w->toc, h->xattrs[i].name);
            sl_buf_append(&w->toc, ":", 1);
            toc_base64(w, h->xattrs[i].value, h->xattrs[i].len);
        }
        sl_buf_append(&w->toc, "}", 1);
    }
    if (digest)
        toc_str(w, "digest", digest);
    if (h->type == '0' && w->n_chunks > 0) {
        toc_chunk_fields(w, &w->chunks[0]);
        sl_buf_append(&w->toc, "}", 1);
        for (size_t i = 1; i < w->n_chunks; i++) {
            toc_begin_entry(w);
            sl_buf_puts(&w->toc, "\"name\":");
            sl_buf_json_string(&w->toc, h->name);
            toc_str(w, "type", "chunk");
            toc_chunk_fields(w, &w->chunks[i]);
            sl_buf_append(&w->toc, "}", 1);
        }
    } else {
        sl_buf_append(&w->toc, "}", 1);
    }
    w->toc_entries += w->n_chunks > 1 ? w->n_chunks : 1;
    /* never write a blob the reader would refuse */
    if (w->toc.len > SL_TOC_MAX_JSON || w->toc_entries > SL_TOC_MAX_ENTRIES)
        return sl_error_make(err, EFBIG, "entry `%s`: the TOC exceeds %u bytes or %u entries",
                             h->name, SL_TOC_MAX_JSON, SL_TOC_MAX_ENTRIES);
    return 0;
}

/* ---------------------------------------------------------------- entries */

static int check_text(const char *what, const char *entry, const char *s, sl_error_t *err)
{
    size_t n = strlen(s);
    if (n > SL_TOC_MAX_NAME)
        return sl_error_make(err, EINVAL, "entry `%.200s...`: %s is %zu bytes (limit %d)", entry,
                             what, n, SL_TOC_MAX_NAME);
    if (!sl_utf8_valid(s, n))
        return sl_error_make(err, EINVAL, "entry `%s`: %s is not valid UTF-8", entry, what);
    return 0;
}

static const char *entry_str(const char *utf8, const char *mbs)
{
    return utf8 ? utf8 : mbs;
}

/* Reads the file data chunk by chunk: each chunk becomes one gzip member. */
static int copy_data(struct writer *w, struct archive *a, const char *name, uint64_t size,
                     char digest[SL_DIGEST_STR_LEN], sl_error_t *err)
{
    int r = close_member(w);
    if (r < 0)
        return sl_error_make(err, -r, "writing the blob: %s", strerror(-r));
    struct sl_sha256 file_sha = {0};
    bool multi = size > w->chunk_size;
    if (multi)
        sl_sha256_init(&file_sha);
    w->n_chunks = 0;
    for (uint64_t done = 0; done < size;) {
        size_t want = (size_t)SL_MIN(w->chunk_size, size - done);
        size_t got = 0;
        while (got < want) {
            la_ssize_t n = archive_read_data(a, w->chunk + got, want - got);
            if (n < 0) {
                sl_sha256_done(&file_sha);
                int code = w->in.err_code ? w->in.err_code : EINVAL;
                return sl_error_make(err, code, "entry `%s`: reading data: %s", name,
                                     archive_error_string(a) ? archive_error_string(a)
                                                             : "read error");
            }
            if (n == 0) {
                sl_sha256_done(&file_sha);
                return sl_error_make(
                    err, EINVAL, "entry `%s`: data truncated at %" PRIu64 " of %" PRIu64 " bytes",
                    name, done + got, size);
            }
            got += (size_t)n;
        }
        if (w->n_chunks == w->cap_chunks) {
            w->cap_chunks = w->cap_chunks ? w->cap_chunks * 2 : 16;
            w->chunks = sl_xrealloc(w->chunks, w->cap_chunks * sizeof(*w->chunks));
        }
        struct chunkrec *c = &w->chunks[w->n_chunks++];
        c->offset = w->blob_off;
        c->coff = done;
        c->size = want;
        sl_sha256_update(&w->diff_sha, w->chunk, want);
        w->tar_size += want;
        if (multi)
            sl_sha256_update(&file_sha, w->chunk, want);
        sl_sha256_str(w->chunk, want, c->digest);
        int64_t cs = emit_member(w, w->chunk, want);
        if (cs < 0) {
            sl_sha256_done(&file_sha);
            return sl_error_make(err, (int)-cs, "writing the blob: %s", strerror((int)-cs));
        }
        c->csize = (uint64_t)cs;
        done += want;
    }
    if (multi)
        sl_sha256_final(&file_sha, digest);
    else
        memcpy(digest, w->chunks[0].digest, SL_DIGEST_STR_LEN);
    w->res.chunks += w->n_chunks;
    tar_pad(w, size);
    return 0;
}

static int convert_entry(struct writer *w, struct archive *a, struct archive_entry *e,
                         sl_error_t *err)
{
    const char *name = entry_str(archive_entry_pathname_utf8(e), archive_entry_pathname(e));
    if (!name)
        return sl_error_make(err, EINVAL, "entry %" PRIu64 ": no name", w->res.entries + 1);
    int r = check_text("name", name, name, err);
    if (r < 0)
        return r;
    size_t nlen = strlen(name);
    _cleanup_free_ char *norm = sl_xmalloc(nlen + 1);
    if (sl_toc_path_normalize(name, norm) < 0)
        return sl_error_make(err, EINVAL, "entry `%s`: path escapes the layer root", name);
    if (strcmp(norm, SL_TOC_TAR_NAME) == 0) {
        w->res.dropped++;
        archive_read_data_skip(a);
        return 0;
    }

    struct hdr h = {.name = name};
    const char *hardlink = entry_str(archive_entry_hardlink_utf8(e), archive_entry_hardlink(e));
    mode_t ft = archive_entry_filetype(e);
    _cleanup_free_ char *target = NULL;
    if (hardlink) {
        h.type = '1';
        h.linkname = hardlink;
        r = check_text("hardlink target", name, hardlink, err);
        if (r < 0)
            return r;
        if (hardlink[0] == '/')
            return sl_error_make(err, EINVAL, "entry `%s`: hardlink target `%s` is absolute", name,
                                 hardlink);
        target = sl_xmalloc(strlen(hardlink) + 1);
        if (sl_toc_path_normalize(hardlink, target) < 0)
            return sl_error_make(err, EINVAL,
                                 "entry `%s`: hardlink target `%s` escapes the layer root", name,
                                 hardlink);
        void *kind = sl_strmap_get(&w->names, target);
        if (!kind)
            return sl_error_make(err, EINVAL,
                                 "entry `%s`: hardlink to `%s`, which is not earlier in the layer",
                                 name, hardlink);
        if (kind == (void *)2)
            return sl_error_make(err, EINVAL, "entry `%s`: hardlink to directory `%s`", name,
                                 hardlink);
    } else {
        switch (ft) {
        case AE_IFREG:
            h.type = '0';
            break;
        case AE_IFDIR:
            h.type = '5';
            break;
        case AE_IFLNK:
            h.type = '2';
            h.linkname = entry_str(archive_entry_symlink_utf8(e), archive_entry_symlink(e));
            if (!h.linkname)
                return sl_error_make(err, EINVAL, "entry `%s`: symlink without target", name);
            r = check_text("symlink target", name, h.linkname, err);
            if (r < 0)
                return r;
            break;
        case AE_IFCHR:
            h.type = '3';
            break;
        case AE_IFBLK:
            h.type = '4';
            break;
        case AE_IFIFO:
            h.type = '6';
            break;
        default:
            return sl_error_make(err, EINVAL, "entry `%s`: unsupported tar entry type (mode %06o)",
                                 name, (unsigned)ft);
        }
    }
    h.mode = archive_entry_perm(e) & 07777;
    h.uid = archive_entry_uid(e);
    h.gid = archive_entry_gid(e);
    if (h.uid < 0 || h.uid > UINT32_MAX || h.gid < 0 || h.gid > UINT32_MAX)
        return sl_error_make(err, EINVAL, "entry `%s`: owner %" PRId64 ":%" PRId64 " out of range",
                             name, h.uid, h.gid);
    h.uname = entry_str(archive_entry_uname_utf8(e), archive_entry_uname(e));
    h.gname = entry_str(archive_entry_gname_utf8(e), archive_entry_gname(e));
    if (h.uname && (r = check_text("user name", name, h.uname, err)) < 0)
        return r;
    if (h.gname && (r = check_text("group name", name, h.gname, err)) < 0)
        return r;
    if (archive_entry_mtime_is_set(e)) {
        h.mtime = archive_entry_mtime(e);
        h.nsec = archive_entry_mtime_nsec(e);
        if (h.nsec < 0 || h.nsec >= 1000000000L)
            h.nsec = 0;
    }
    if (h.type == '3' || h.type == '4') {
        uint64_t ma = archive_entry_rdevmajor(e), mi = archive_entry_rdevminor(e);
        if (ma > OCT7 || mi > OCT7)
            return sl_error_make(err, EINVAL, "entry `%s`: device number out of range", name);
        h.devmajor = (uint32_t)ma;
        h.devminor = (uint32_t)mi;
    }
    /* libarchive reports an xattr stored both as LIBARCHIVE.xattr and SCHILY.xattr twice:
     * keep the first of each name. */
    _cleanup_free_ struct xattr *xs = NULL;
    if (archive_entry_xattr_count(e) > 0) {
        const char *xn;
        const void *xv;
        size_t xl;
        xs = sl_xcalloc(MAX_XATTRS, sizeof(*xs));
        archive_entry_xattr_reset(e);
        while (archive_entry_xattr_next(e, &xn, &xv, &xl) == ARCHIVE_OK) {
            if ((r = check_text("xattr name", name, xn, err)) < 0)
                return r;
            if (xl > SL_TOC_MAX_XATTR_VALUE)
                return sl_error_make(err, EINVAL, "entry `%s`: xattr `%s` is %zu bytes", name, xn,
                                     xl);
            bool dup = false;
            for (size_t i = 0; i < h.n_xattrs && !dup; i++)
                dup = strcmp(xs[i].name, xn) == 0;
            if (dup)
                continue;
            if (h.n_xattrs == MAX_XATTRS)
                return sl_error_make(err, EINVAL, "entry `%s`: more than %d xattrs", name,
                                     MAX_XATTRS);
            xs[h.n_xattrs++] = (struct xattr){xn, xv, xl};
        }
        /* libarchive hands xattrs back in an order that is not stable across a write and
         * re-read; sorting by name keeps re-conversion byte-identical (idempotent convert). */
        qsort(xs, h.n_xattrs, sizeof(*xs), xattr_cmp);
        h.xattrs = xs;
    }
    if (h.type == '0') {
        if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0)
            return sl_error_make(err, EINVAL, "entry `%s`: regular file without a size", name);
        h.size = (uint64_t)archive_entry_size(e);
    }

    tar_header(w, &h);
    char digest[SL_DIGEST_STR_LEN];
    w->n_chunks = 0;
    if (h.type == '0') {
        w->res.regular_files++;
        if (h.size > 0) {
            r = copy_data(w, a, name, h.size, digest, err);
            if (r < 0)
                return r;
        } else {
            sl_sha256_str("", 0, digest);
        }
    } else {
        archive_read_data_skip(a);
    }
    r = toc_entry(w, &h, h.type == '0' ? digest : NULL, err);
    if (r < 0)
        return r;
    /* Remember the name for hardlink checks. Later duplicates overwrite (tar semantics). */
    char *key = sl_arena_strndup(&w->arena, norm, strlen(norm));
    sl_strmap_put(&w->names, key, h.type == '5' ? (void *)2 : (void *)1);
    w->res.entries++;
    return 0;
}

/* ---------------------------------------------------------------- driver */

static int finish(struct writer *w, sl_error_t *err)
{
    int r = close_member(w);
    if (r < 0)
        return sl_error_make(err, -r, "writing the blob: %s", strerror(-r));
    sl_buf_puts(&w->toc, "\n]}\n");
    if (w->toc.len > SL_TOC_MAX_JSON)
        return sl_error_make(err, EFBIG, "the TOC is %zu bytes (limit %u)", w->toc.len,
                             SL_TOC_MAX_JSON);
    sl_sha256_str(w->toc.data, w->toc.len, w->res.toc_digest);
    w->res.toc_size = w->toc.len;
    w->res.toc_offset = w->blob_off;

    struct hdr h = {.name = SL_TOC_TAR_NAME, .type = '0', .mode = 0644, .size = w->toc.len};
    tar_header(w, &h);
    tar_append(w, w->toc.data, w->toc.len);
    tar_pad(w, w->toc.len);
    static const uint8_t eof[2 * TAR_BLOCK];
    tar_append(w, eof, sizeof(eof));
    r = close_member(w);
    if (r < 0)
        return sl_error_make(err, -r, "writing the blob: %s", strerror(-r));
    uint8_t footer[SL_TOC_FOOTER_SIZE];
    sl_toc_make_footer(w->res.toc_offset, footer);
    r = emit(w, footer, sizeof(footer));
    if (r >= 0)
        r = out_flush(w);
    if (r < 0)
        return sl_error_make(err, -r, "writing the blob: %s", strerror(-r));
    sl_sha256_final(&w->blob_sha, w->res.blob_digest);
    sl_sha256_final(&w->diff_sha, w->res.diff_id);
    w->res.blob_size = w->blob_off;
    w->res.tar_size = w->tar_size;
    return 0;
}

static void writer_free(struct writer *w)
{
    if (w->comp)
        libdeflate_free_compressor(w->comp);
    if (w->in.zs_init)
        inflateEnd(&w->in.zs);
    free(w->in.inbuf);
    free(w->in.outbuf);
    sl_buf_free(&w->member);
    sl_buf_free(&w->toc);
    free(w->cbuf);
    free(w->chunk);
    free(w->obuf);
    free(w->chunks);
    sl_strmap_free(&w->names);
    sl_arena_free(&w->arena);
    sl_sha256_done(&w->blob_sha);
    sl_sha256_done(&w->diff_sha);
    free(w);
}
SL_DEFINE_CLEANUP(struct writer, writer_free)

static void archive_freep(struct archive **a)
{
    if (*a)
        archive_read_free(*a);
}

static int convert(struct writer *w, sl_error_t *err)
{
    struct input *in = &w->in;
    /* Sniff the compression from the first bytes. */
    size_t have = 0;
    while (have < 4 && !in->in_eof) {
        ssize_t n = in_read_fd(in, in->inbuf + have, IN_BUF - have);
        if (n < 0)
            return sl_error_make(err, in->err_code, "%s", in->err_msg);
        have += (size_t)n;
    }
    bool zstd = false;
    if (have >= 2 && in->inbuf[0] == 0x1f && in->inbuf[1] == 0x8b) {
        in->mode = IN_GZIP;
        if (inflateInit2(&in->zs, 15 + 16) != Z_OK)
            return sl_error_make(err, ENOMEM, "gzip: inflateInit failed");
        in->zs_init = true;
        in->zs.next_in = in->inbuf;
        in->zs.avail_in = (uInt)have;
    } else {
        in->mode = IN_RAW;
        in->pending = have;
        zstd = have >= 4 && in->inbuf[0] == 0x28 && in->inbuf[1] == 0xb5 && in->inbuf[2] == 0x2f &&
               in->inbuf[3] == 0xfd;
    }

    _cleanup_(archive_freep) struct archive *a = archive_read_new();
    if (!a)
        return sl_error_make(err, ENOMEM, "libarchive: out of memory");
    archive_read_support_format_tar(a);
    archive_read_support_format_empty(a);
    if (zstd)
        archive_read_support_filter_zstd(a);
    if (archive_read_open(a, in, NULL, archive_read_cb, NULL) != ARCHIVE_OK) {
        if (in->err_code)
            return sl_error_make(err, in->err_code, "%s", in->err_msg);
        return sl_error_make(err, EINVAL, "source layer is not a tar, tar+gzip or tar+zstd: %s",
                             archive_error_string(a));
    }
    for (;;) {
        struct archive_entry *e;
        int ar = archive_read_next_header(a, &e);
        if (ar == ARCHIVE_EOF)
            break;
        if (ar < ARCHIVE_WARN) {
            int code = in->err_code ? in->err_code : EINVAL;
            return sl_error_make(err, code, "after entry %" PRIu64 ": %s", w->res.entries,
                                 archive_error_string(a) ? archive_error_string(a) : "corrupt tar");
        }
        int r = convert_entry(w, a, e, err);
        if (r < 0)
            return r;
    }
    int r = in_drain(in);
    if (r < 0)
        return sl_error_make(err, in->err_code ? in->err_code : -r, "after the tar end: %s",
                             in->err_msg[0] ? in->err_msg : strerror(-r));
    return finish(w, err);
}

int sl_format_convert(int in_fd, int out_fd, const struct sl_format_options *opts,
                      struct sl_format_result *ret, sl_error_t *err)
{
    struct sl_format_options o = opts ? *opts : (struct sl_format_options){0};
    if (o.chunk_size == 0)
        o.chunk_size = SL_FORMAT_DEFAULT_CHUNK_SIZE;
    if (o.level == 0)
        o.level = SL_FORMAT_DEFAULT_LEVEL;
    if (o.chunk_size < SL_FORMAT_MIN_CHUNK_SIZE || o.chunk_size > SL_FORMAT_MAX_CHUNK_SIZE)
        return sl_error_make(err, EINVAL, "chunk size %" PRIu64 " outside [%u, %u]", o.chunk_size,
                             SL_FORMAT_MIN_CHUNK_SIZE, SL_FORMAT_MAX_CHUNK_SIZE);
    if (o.level < 1 || o.level > 12)
        return sl_error_make(err, EINVAL, "compression level %d outside [1, 12]", o.level);

    _cleanup_(writer_freep) struct writer *w = sl_xcalloc(1, sizeof(*w));
    w->out_fd = out_fd;
    w->chunk_size = o.chunk_size;
    w->comp = libdeflate_alloc_compressor(o.level);
    if (!w->comp)
        return sl_error_make(err, ENOMEM, "libdeflate: cannot allocate a compressor");
    w->in.fd = in_fd;
    w->in.progress = o.progress;
    w->in.progress_ud = o.progress_ud;
    w->in.inbuf = sl_xmalloc(IN_BUF);
    w->in.outbuf = sl_xmalloc(IN_BUF);
    w->chunk = sl_xmalloc(o.chunk_size);
    w->obuf = sl_xmalloc(OUT_BUF);
    sl_buf_init(&w->member, SIZE_MAX);
    sl_buf_init(&w->toc, SIZE_MAX);
    sl_buf_puts(&w->toc, "{\"version\":1,\"entries\":[");
    w->toc_first = true;
    sl_sha256_init(&w->blob_sha);
    sl_sha256_init(&w->diff_sha);

    int r = convert(w, err);
    if (r < 0)
        return r;
    w->res.input_size = w->in.consumed;
    if (ret)
        *ret = w->res;
    return 0;
}
