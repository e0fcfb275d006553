/* writer.c — one-pass converter from a source layer to a Starlight/eStargz blob.
 *
 * Data flow: in_fd -> (zlib inflate for gzip, or raw for tar/zstd) -> libarchive tar reader ->
 * our own tar encoder -> members compressed whole by libdeflate (on worker threads, see
 * "pipeline") -> out_fd, in order. gzip input is decoded here rather than by libarchive
 * because libarchive neither checks the gzip CRC nor notices a stream cut short after the tar
 * end blocks; zlib does both. */
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
#include <pthread.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define IN_BUF    (256u << 10)
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

/* ---------------------------------------------------------------- pipeline
 *
 * The output is a sequence of gzip members, each compressed independently, so members can be
 * compressed in any order and on any thread as long as they are written, hashed and recorded
 * in the TOC in stream order. The reading thread (the caller of sl_format_convert) decodes the
 * input, encodes the tar and packs the members' uncompressed bytes back to back into a
 * *batch* (about one chunk's worth: one big chunk, or many small files and headers). Full
 * batches go to the workers, which compress every member of a batch into its own gzip member
 * (and hash each data chunk for chunkDigest); one writer thread takes the batches back in
 * submission order and does the sequential part: diffID and blob digest, member offsets, the
 * per-file digest of multi-chunk files, the TOC text, write(2).
 *
 * Batches come from a fixed pool (workers + PIPE_SLACK) and are allocated lazily, so memory
 * is bounded by the pool size times about twice the batch size, and the reader blocks when
 * all of them are in flight (backpressure from a slow out_fd reaches the input too). The
 * first error of any thread sets `failed`, which wakes and stops everybody; the reader then
 * joins the threads before anything is freed. With one thread (threads = 1) nothing is
 * started: a batch is compressed and retired in place when it is submitted, through the same
 * functions, which is why both paths produce the same bytes. */

#define BATCH_MIN           (256u << 10) /* smallest batch size (small chunk sizes) */
#define PIPE_SLACK          3 /* pool = workers + PIPE_SLACK (reader, writer, one queued) */
#define MAX_THREADS         64
#define DEFAULT_MAX_THREADS 4

enum item_kind { ITEM_HEADER, ITEM_CHUNK, ITEM_TOC };

/* One step of the output stream, in stream order inside its batch. */
struct item {
    enum item_kind kind;
    bool multi;         /* CHUNK: the file has several chunks (its digest is its own sha256) */
    bool chunked;       /* TOC: a non-empty regular file: digest and chunk fields come from the
                         * writer */
    size_t off, len;    /* HEADER, CHUNK: bytes in batch.data; TOC: entry text in batch.text */
    size_t name_off;    /* TOC: the entry's name (NUL-terminated) in batch.text */
    size_t coff, clen;  /* HEADER, CHUNK: the compressed member in batch.cdata (workers) */
    uint64_t chunk_off; /* CHUNK: offset in the file */
    char digest[SL_DIGEST_STR_LEN]; /* CHUNK: chunkDigest (workers) */
};

struct batch {
    uint8_t *data; /* uncompressed members back to back */
    size_t len, cap;
    uint8_t *cdata; /* compressed members back to back */
    size_t clen, ccap;
    struct item *items;
    size_t n_items, cap_items;
    struct sl_buf text; /* TOC entry text rendered by the reader */
    bool done;          /* compressed (under pipe.lock) */
};

struct worker;

struct pipeline {
    size_t n_workers; /* 0: inline (threads = 1) */
    pthread_mutex_t lock;
    pthread_cond_t work_cv, done_cv, free_cv;
    bool sync_init;
    struct batch *pool;
    size_t n_pool;
    struct batch **free_list; /* stack: recently used batches first, so untouched ones stay
                               * unallocated */
    size_t n_free;
    struct batch **ring; /* in-flight batches, seq % n_pool */
    uint64_t submitted, claimed, retired;
    bool eof, failed;
    int err_code; /* 0 when failed only because the reader cancelled */
    char err_msg[256];
    struct worker *workers; /* n_workers, each with its own compressor */
    pthread_t *tids;
    size_t n_tids; /* started threads: workers, then the writer last */
    bool running;
};

struct writer {
    int out_fd;
    uint64_t chunk_size;
    size_t batch_size;
    struct libdeflate_compressor *comp; /* reader thread: inline batches */
    struct input in;
    struct pipeline pipe;
    struct batch *cur; /* the batch the reader fills (owned by the reader) */

    /* reader thread */
    struct sl_buf member; /* uncompressed bytes of the current header member */
    uint64_t tar_size;
    bool toc_first;
    uint64_t toc_entries;
    struct sl_strmap names; /* normalised name -> (void *)1 non-dir, (void *)2 dir */
    struct sl_arena arena;
    struct {
        int64_t id;
        char *name;
    } unames[32], gnames[32];
    size_t n_unames, n_gnames;
    struct sl_format_result res;

    /* writer side (the writer thread while the pipeline runs, the reader after it stopped) */
    uint64_t blob_off; /* bytes emitted so far */
    struct sl_sha256 blob_sha, diff_sha, file_sha;
    struct sl_buf toc;
    struct chunkrec *chunks; /* chunks of the current file */
    size_t n_chunks, cap_chunks;
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

/* ---------------------------------------------------------------- tar stream (reader) */

/* Appends tar bytes to the current header member. The diffID is hashed by the writer side,
 * in stream order. */
static void tar_append(struct writer *w, const void *p, size_t n)
{
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

static void toc_str(struct sl_buf *t, const char *key, const char *val)
{
    sl_buf_printf(t, ",\"%s\":", key);
    sl_buf_json_string(t, val);
}

static void toc_int(struct sl_buf *t, const char *key, uint64_t v)
{
    if (v)
        sl_buf_printf(t, ",\"%s\":%" PRIu64, key, v);
}

static void toc_chunk_fields(struct sl_buf *t, const struct chunkrec *c)
{
    toc_int(t, "offset", c->offset);
    toc_int(t, "chunkOffset", c->coff);
    toc_int(t, "chunkSize", c->size);
    toc_str(t, "chunkDigest", c->digest);
    toc_int(t, "compressedSize", c->csize);
}

static void toc_base64(struct sl_buf *t, const uint8_t *p, size_t n)
{
    size_t len = 0;
    _cleanup_free_ char *enc = sl_base64_encode(p, n, &len);
    sl_buf_append(t, "\"", 1);
    sl_buf_append(t, enc, len);
    sl_buf_append(t, "\"", 1);
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

/* Writer side: appends an entry rendered by the reader, completing a non-empty regular file
 * with its digest and chunks, now that their offsets and compressed sizes are known. */
static int toc_finish_entry(struct writer *w, const struct batch *b, const struct item *it,
                            char *msg, size_t msglen)
{
    const char *name = b->text.data + it->name_off;
    sl_buf_append(&w->toc, b->text.data + it->off, it->len);
    if (it->chunked) {
        if (w->n_chunks == 0) {
            snprintf(msg, msglen, "entry `%s`: internal error: no chunks", name);
            return -EIO;
        }
        char digest[SL_DIGEST_STR_LEN];
        if (w->n_chunks > 1)
            sl_sha256_final(&w->file_sha, digest);
        else
            memcpy(digest, w->chunks[0].digest, SL_DIGEST_STR_LEN);
        toc_str(&w->toc, "digest", digest);
        toc_chunk_fields(&w->toc, &w->chunks[0]);
        sl_buf_append(&w->toc, "}", 1);
        for (size_t i = 1; i < w->n_chunks; i++) {
            sl_buf_puts(&w->toc, ",\n{\"name\":");
            sl_buf_json_string(&w->toc, name);
            toc_str(&w->toc, "type", "chunk");
            toc_chunk_fields(&w->toc, &w->chunks[i]);
            sl_buf_append(&w->toc, "}", 1);
        }
        w->n_chunks = 0;
    }
    /* never write a blob the reader would refuse */
    if (w->toc.len > SL_TOC_MAX_JSON) {
        snprintf(msg, msglen, "entry `%s`: the TOC exceeds %u bytes or %u entries", name,
                 SL_TOC_MAX_JSON, SL_TOC_MAX_ENTRIES);
        return -EFBIG;
    }
    return 0;
}

/* ---------------------------------------------------------------- pipeline: batches */

static void batch_reset(struct batch *b)
{
    b->len = b->clen = b->n_items = 0;
    sl_buf_reset(&b->text);
    b->done = false;
}

static void batch_free(struct batch *b)
{
    free(b->data);
    free(b->cdata);
    free(b->items);
    sl_buf_free(&b->text);
}

static struct item *batch_add(struct batch *b, enum item_kind kind)
{
    if (b->n_items == b->cap_items) {
        b->cap_items = b->cap_items ? b->cap_items * 2 : 64;
        b->items = sl_xrealloc(b->items, b->cap_items * sizeof(*b->items));
    }
    struct item *it = &b->items[b->n_items++];
    *it = (struct item){.kind = kind};
    return it;
}

/* Compresses every member of the batch into its own gzip member and hashes the data chunks.
 * Touches nothing but the batch: runs on any worker (or the reader when inline). */
static int batch_compress(struct batch *b, struct libdeflate_compressor *c)
{
    size_t need = 0;
    for (size_t i = 0; i < b->n_items; i++)
        if (b->items[i].kind != ITEM_TOC)
            need += libdeflate_gzip_compress_bound(c, b->items[i].len);
    if (need > b->ccap) {
        free(b->cdata);
        b->cdata = sl_xmalloc(need);
        b->ccap = need;
    }
    size_t pos = 0;
    for (size_t i = 0; i < b->n_items; i++) {
        struct item *it = &b->items[i];
        if (it->kind == ITEM_TOC)
            continue;
        size_t n =
            libdeflate_gzip_compress(c, b->data + it->off, it->len, b->cdata + pos, need - pos);
        if (n == 0)
            return -EIO; /* cannot happen with bound-sized room */
        it->coff = pos;
        it->clen = n;
        pos += n;
        if (it->kind == ITEM_CHUNK)
            sl_sha256_str(b->data + it->off, it->len, it->digest);
    }
    b->clen = pos;
    return 0;
}

static int out_write_all(int fd, const uint8_t *p, size_t n)
{
    while (n > 0) {
        ssize_t r = write(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

/* The sequential part, in stream order: diffID, chunk offsets, file digests, TOC text, blob
 * digest, write(2). Runs on the writer thread (or the reader when inline). Returns 0 or
 * -errno with a message in msg. */
static int batch_retire(struct writer *w, struct batch *b, char *msg, size_t msglen)
{
    sl_sha256_update(&w->diff_sha, b->data, b->len);
    for (size_t i = 0; i < b->n_items; i++) {
        const struct item *it = &b->items[i];
        if (it->kind == ITEM_CHUNK) {
            if (w->n_chunks == w->cap_chunks) {
                w->cap_chunks = w->cap_chunks ? w->cap_chunks * 2 : 16;
                w->chunks = sl_xrealloc(w->chunks, w->cap_chunks * sizeof(*w->chunks));
            }
            struct chunkrec *c = &w->chunks[w->n_chunks++];
            c->offset = w->blob_off + it->coff;
            c->coff = it->chunk_off;
            c->size = it->len;
            c->csize = it->clen;
            memcpy(c->digest, it->digest, SL_DIGEST_STR_LEN);
            if (it->multi) {
                if (it->chunk_off == 0)
                    sl_sha256_init(&w->file_sha);
                sl_sha256_update(&w->file_sha, b->data + it->off, it->len);
            }
        } else if (it->kind == ITEM_TOC) {
            int r = toc_finish_entry(w, b, it, msg, msglen);
            if (r < 0)
                return r;
        }
    }
    sl_sha256_update(&w->blob_sha, b->cdata, b->clen);
    int r = out_write_all(w->out_fd, b->cdata, b->clen);
    if (r < 0) {
        snprintf(msg, msglen, "writing the blob: %s", strerror(-r));
        return r;
    }
    w->blob_off += b->clen;
    return 0;
}

/* ---------------------------------------------------------------- pipeline: threads */

struct worker {
    struct pipeline *p;
    struct libdeflate_compressor *comp;
};

/* Under p->lock. The first error wins; code 0 means the reader cancelled. Wakes everybody. */
static void pipe_fail_locked(struct pipeline *p, int code, const char *msg)
{
    if (!p->failed) {
        p->failed = true;
        p->err_code = code;
        snprintf(p->err_msg, sizeof(p->err_msg), "%s", msg ? msg : "");
    }
    pthread_cond_broadcast(&p->work_cv);
    pthread_cond_broadcast(&p->done_cv);
    pthread_cond_broadcast(&p->free_cv);
}

static void *worker_main(void *arg)
{
    struct worker *wk = arg;
    struct pipeline *p = wk->p;
    pthread_mutex_lock(&p->lock);
    while (!p->failed) {
        if (p->claimed < p->submitted) {
            struct batch *b = p->ring[p->claimed++ % p->n_pool];
            pthread_mutex_unlock(&p->lock);
            int r = batch_compress(b, wk->comp);
            pthread_mutex_lock(&p->lock);
            if (r < 0) {
                pipe_fail_locked(p, -r, "libdeflate: compression failed");
                break;
            }
            b->done = true;
            pthread_cond_signal(&p->done_cv); /* only the writer waits there */
            continue;
        }
        if (p->eof)
            break;
        pthread_cond_wait(&p->work_cv, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

static void *writer_main(void *arg)
{
    struct writer *w = arg;
    struct pipeline *p = &w->pipe;
    char msg[sizeof(p->err_msg)];
    pthread_mutex_lock(&p->lock);
    while (!p->failed) {
        struct batch *b = p->ring[p->retired % p->n_pool];
        if (p->retired < p->submitted && b->done) {
            pthread_mutex_unlock(&p->lock);
            int r = batch_retire(w, b, msg, sizeof(msg));
            pthread_mutex_lock(&p->lock);
            if (r < 0) {
                pipe_fail_locked(p, -r, msg);
                break;
            }
            p->retired++;
            p->free_list[p->n_free++] = b;
            pthread_cond_signal(&p->free_cv); /* only the reader waits there */
            continue;
        }
        if (p->eof && p->retired == p->submitted)
            break;
        pthread_cond_wait(&p->done_cv, &p->lock);
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

/* Sets up the batch pool and, with threads > 1, starts the workers and the writer. */
static int pipe_start(struct writer *w, int threads, int level, sl_error_t *err)
{
    struct pipeline *p = &w->pipe;
    p->n_workers = threads > 1 ? (size_t)threads : 0;
    p->n_pool = p->n_workers ? p->n_workers + PIPE_SLACK : 1;
    p->pool = sl_xcalloc(p->n_pool, sizeof(*p->pool));
    p->free_list = sl_xcalloc(p->n_pool, sizeof(*p->free_list));
    p->ring = sl_xcalloc(p->n_pool, sizeof(*p->ring));
    for (size_t i = 0; i < p->n_pool; i++) {
        sl_buf_init(&p->pool[i].text, SIZE_MAX);
        p->free_list[p->n_free++] = &p->pool[p->n_pool - 1 - i];
    }
    if (!p->n_workers)
        return 0;
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    pthread_cond_init(&p->free_cv, NULL);
    p->sync_init = true;
    p->workers = sl_xcalloc(p->n_workers, sizeof(*p->workers));
    for (size_t i = 0; i < p->n_workers; i++) {
        p->workers[i].p = p;
        p->workers[i].comp = libdeflate_alloc_compressor(level);
        if (!p->workers[i].comp)
            return sl_error_make(err, ENOMEM, "libdeflate: cannot allocate a compressor");
    }
    p->tids = sl_xcalloc(p->n_workers + 1, sizeof(*p->tids));
    p->running = true;
    for (size_t i = 0; i <= p->n_workers; i++) {
        int r = i < p->n_workers ? pthread_create(&p->tids[i], NULL, worker_main, &p->workers[i])
                                 : pthread_create(&p->tids[i], NULL, writer_main, w);
        if (r != 0)
            return sl_error_make(err, r, "cannot start a compression thread: %s", strerror(r));
        p->n_tids++;
    }
    return 0;
}

/* Stops the threads, after the last submitted batch is written (drain) or at once (cancel,
 * on the reader's own error). Returns 0 or the pipeline's first error. Afterwards the reader
 * owns the writer side again and batches are processed inline. */
static int pipe_stop(struct writer *w, bool cancel, sl_error_t *err)
{
    struct pipeline *p = &w->pipe;
    if (!p->running)
        return 0;
    pthread_mutex_lock(&p->lock);
    if (cancel) {
        pipe_fail_locked(p, 0, NULL);
    } else {
        p->eof = true;
        pthread_cond_broadcast(&p->work_cv);
        pthread_cond_broadcast(&p->done_cv);
    }
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->n_tids; i++)
        pthread_join(p->tids[i], NULL);
    p->running = false;
    if (p->failed && p->err_code)
        return sl_error_make(err, p->err_code, "%s", p->err_msg);
    return 0;
}

static void pipe_free(struct pipeline *p)
{
    for (size_t i = 0; i < p->n_pool; i++)
        batch_free(&p->pool[i]);
    free(p->pool);
    free(p->free_list);
    free(p->ring);
    for (size_t i = 0; p->workers && i < p->n_workers; i++)
        if (p->workers[i].comp)
            libdeflate_free_compressor(p->workers[i].comp);
    free(p->workers);
    free(p->tids);
    if (p->sync_init) {
        pthread_mutex_destroy(&p->lock);
        pthread_cond_destroy(&p->work_cv);
        pthread_cond_destroy(&p->done_cv);
        pthread_cond_destroy(&p->free_cv);
    }
}

/* Reader: hands the current batch over. Inline, it is compressed and written right here. */
static int pipe_submit(struct writer *w, sl_error_t *err)
{
    struct pipeline *p = &w->pipe;
    struct batch *b = TAKE_PTR(w->cur);
    if (!b)
        return 0;
    if (!p->running) {
        p->free_list[p->n_free++] = b;
        int r = batch_compress(b, w->comp);
        if (r < 0)
            return sl_error_make(err, -r, "libdeflate: compression failed");
        char msg[sizeof(p->err_msg)];
        r = batch_retire(w, b, msg, sizeof(msg));
        if (r < 0)
            return sl_error_make(err, -r, "%s", msg);
        return 0;
    }
    pthread_mutex_lock(&p->lock);
    p->ring[p->submitted++ % p->n_pool] = b;
    pthread_cond_signal(&p->work_cv);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

/* Reader: takes a free batch as the current one, waiting while all are in flight. Fails with
 * the pipeline's error once any thread has failed. */
static int pipe_acquire(struct writer *w, sl_error_t *err)
{
    struct pipeline *p = &w->pipe;
    struct batch *b;
    if (p->running) {
        pthread_mutex_lock(&p->lock);
        while (!p->failed && p->n_free == 0)
            pthread_cond_wait(&p->free_cv, &p->lock);
        if (p->failed) {
            int code = p->err_code ? p->err_code : ECANCELED;
            int r = sl_error_make(err, code, "%s", p->err_msg);
            pthread_mutex_unlock(&p->lock);
            return r;
        }
        b = p->free_list[--p->n_free];
        pthread_mutex_unlock(&p->lock);
    } else {
        b = p->free_list[--p->n_free];
    }
    batch_reset(b);
    w->cur = b;
    return 0;
}

/* Reader: room for n more member bytes in the current batch (submitting it first when it is
 * full). A member never spans batches; one larger than a batch gets a batch of its own. */
static int batch_room(struct writer *w, size_t n, struct batch **ret, sl_error_t *err)
{
    int r;
    if (w->cur && w->cur->len > 0 && w->cur->len + n > w->batch_size &&
        (r = pipe_submit(w, err)) < 0)
        return r;
    if (!w->cur && (r = pipe_acquire(w, err)) < 0)
        return r;
    struct batch *b = w->cur;
    if (b->len + n > b->cap) {
        size_t cap = SL_MAX(SL_MAX(b->cap * 2, (size_t)64 << 10), b->len + n);
        cap = SL_MIN(cap, SL_MAX(w->batch_size, b->len + n));
        b->data = sl_xrealloc(b->data, cap);
        b->cap = cap;
    }
    *ret = b;
    return 0;
}

/* Reader: moves the current header member into the stream. */
static int close_member(struct writer *w, sl_error_t *err)
{
    if (w->member.len == 0)
        return 0;
    struct batch *b;
    int r = batch_room(w, w->member.len, &b, err);
    if (r < 0)
        return r;
    memcpy(b->data + b->len, w->member.data, w->member.len);
    struct item *it = batch_add(b, ITEM_HEADER);
    it->off = b->len;
    it->len = w->member.len;
    b->len += w->member.len;
    sl_buf_reset(&w->member);
    return 0;
}

/* Reader: renders the entry's TOC text as a TOC item of the stream. A non-empty regular file
 * stops before its digest: the writer side adds the digest and the chunks. */
static int toc_entry(struct writer *w, const struct hdr *h, uint64_t n_chunks, sl_error_t *err)
{
    char ts[32];
    if (h->mtime != 0 && toc_mtime(ts, h->mtime) < 0)
        return sl_error_make(err, EINVAL, "entry `%s`: modification time %" PRId64 " out of range",
                             h->name, h->mtime);
    /* never write a blob the reader would refuse (the JSON size is checked by the writer) */
    w->toc_entries += n_chunks > 1 ? n_chunks : 1;
    if (w->toc_entries > SL_TOC_MAX_ENTRIES)
        return sl_error_make(err, EFBIG, "entry `%s`: the TOC exceeds %u bytes or %u entries",
                             h->name, SL_TOC_MAX_JSON, SL_TOC_MAX_ENTRIES);
    int r;
    if (!w->cur && (r = pipe_acquire(w, err)) < 0)
        return r;
    struct batch *b = w->cur;
    struct sl_buf *t = &b->text;
    size_t start = t->len;
    sl_buf_puts(t, w->toc_first ? "\n{\"name\":" : ",\n{\"name\":");
    w->toc_first = false;
    sl_buf_json_string(t, h->name);
    toc_str(t, "type", type_name(h->type));
    toc_int(t, "size", h->size);
    if (h->mtime != 0)
        toc_str(t, "modtime", ts);
    if (h->linkname)
        toc_str(t, "linkName", h->linkname);
    toc_int(t, "mode", h->mode);
    toc_int(t, "uid", (uint64_t)h->uid);
    toc_int(t, "gid", (uint64_t)h->gid);
    if (h->uname && h->uname[0] && name_changed(w, true, h->uid, h->uname))
        toc_str(t, "userName", h->uname);
    if (h->gname && h->gname[0] && name_changed(w, false, h->gid, h->gname))
        toc_str(t, "groupName", h->gname);
    if (h->type == '3' || h->type == '4') {
        toc_int(t, "devMajor", h->devmajor);
        toc_int(t, "devMinor", h->devminor);
    }
    if (h->n_xattrs) {
        sl_buf_puts(t, ",\"xattrs\":{");
        for (size_t i = 0; i < h->n_xattrs; i++) {
            if (i)
                sl_buf_append(t, ",", 1);
            sl_buf_json_string(t, h->xattrs[i].name);
            sl_buf_append(t, ":", 1);
            toc_base64(t, h->xattrs[i].value, h->xattrs[i].len);
        }
        sl_buf_append(t, "}", 1);
    }
    bool chunked = h->type == '0' && h->size > 0;
    if (h->type == '0' && !chunked) {
        char empty[SL_DIGEST_STR_LEN];
        sl_sha256_str("", 0, empty);
        toc_str(t, "digest", empty);
    }
    if (!chunked)
        sl_buf_append(t, "}", 1);
    struct item *it = batch_add(b, ITEM_TOC);
    it->off = start;
    it->len = t->len - start;
    it->chunked = chunked;
    sl_buf_append(t, "", 1); /* NUL after the text */
    it->name_off = t->len;
    sl_buf_append(t, h->name, strlen(h->name) + 1);
    /* a long run of entries without data must not grow one batch without bound */
    if (t->len > w->batch_size)
        return pipe_submit(w, err);
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

/* Reads the file data chunk by chunk, straight into the batch: each chunk becomes one gzip
 * member. */
static int copy_data(struct writer *w, struct archive *a, const char *name, uint64_t size,
                     sl_error_t *err)
{
    int r = close_member(w, err);
    if (r < 0)
        return r;
    bool multi = size > w->chunk_size;
    for (uint64_t done = 0; done < size;) {
        size_t want = (size_t)SL_MIN(w->chunk_size, size - done);
        struct batch *b;
        r = batch_room(w, want, &b, err);
        if (r < 0)
            return r;
        uint8_t *dst = b->data + b->len;
        size_t got = 0;
        while (got < want) {
            la_ssize_t n = archive_read_data(a, dst + got, want - got);
            if (n < 0) {
                int code = w->in.err_code ? w->in.err_code : EINVAL;
                return sl_error_make(err, code, "entry `%s`: reading data: %s", name,
                                     archive_error_string(a) ? archive_error_string(a)
                                                             : "read error");
            }
            if (n == 0)
                return sl_error_make(
                    err, EINVAL, "entry `%s`: data truncated at %" PRIu64 " of %" PRIu64 " bytes",
                    name, done + got, size);
            got += (size_t)n;
        }
        struct item *it = batch_add(b, ITEM_CHUNK);
        it->off = b->len;
        it->len = want;
        it->chunk_off = done;
        it->multi = multi;
        b->len += want;
        w->tar_size += want;
        w->res.chunks++;
        done += want;
    }
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
    /* Every parent must be a directory (or absent): an entry written through an earlier
     * symlink or file (`esc` -> /etc, then `esc/passwd`) is refused here, as the reader would. */
    for (char *slash = strchr(norm, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        bool file = sl_strmap_get(&w->names, norm) == (void *)1;
        if (file)
            r = sl_error_make(err, EINVAL,
                              "entry `%s`: parent `%s` is not a directory (an earlier symlink, "
                              "file or link)",
                              name, norm);
        *slash = '/';
        if (file)
            return r;
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
    uint64_t n_chunks = 0;
    if (h.type == '0') {
        w->res.regular_files++;
        if (h.size > 0) {
            r = copy_data(w, a, name, h.size, err);
            if (r < 0)
                return r;
            n_chunks = (h.size + w->chunk_size - 1) / w->chunk_size;
        }
    } else {
        archive_read_data_skip(a);
    }
    r = toc_entry(w, &h, n_chunks, err);
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
    int r = close_member(w, err);
    if (r < 0)
        return r;
    r = pipe_submit(w, err);
    if (r < 0)
        return r;
    /* Wait for the threads to write everything: the TOC member's offset is the blob size so
     * far. From here on the reader owns the writer side and the rest is done inline. */
    r = pipe_stop(w, false, err);
    if (r < 0)
        return r;
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
    r = close_member(w, err);
    if (r >= 0)
        r = pipe_submit(w, err);
    if (r < 0)
        return r;
    uint8_t footer[SL_TOC_FOOTER_SIZE];
    sl_toc_make_footer(w->res.toc_offset, footer);
    sl_sha256_update(&w->blob_sha, footer, sizeof(footer));
    r = out_write_all(w->out_fd, footer, sizeof(footer));
    if (r < 0)
        return sl_error_make(err, -r, "writing the blob: %s", strerror(-r));
    w->blob_off += sizeof(footer);
    sl_sha256_final(&w->blob_sha, w->res.blob_digest);
    sl_sha256_final(&w->diff_sha, w->res.diff_id);
    w->res.blob_size = w->blob_off;
    w->res.tar_size = w->tar_size;
    return 0;
}

static void writer_free(struct writer *w)
{
    /* threads first: they use everything below */
    pipe_stop(w, true, NULL);
    pipe_free(&w->pipe);
    if (w->comp)
        libdeflate_free_compressor(w->comp);
    if (w->in.zs_init)
        inflateEnd(&w->in.zs);
    free(w->in.inbuf);
    free(w->in.outbuf);
    sl_buf_free(&w->member);
    sl_buf_free(&w->toc);
    free(w->chunks);
    sl_strmap_free(&w->names);
    sl_arena_free(&w->arena);
    sl_sha256_done(&w->blob_sha);
    sl_sha256_done(&w->diff_sha);
    sl_sha256_done(&w->file_sha);
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
    if (o.threads < 0 || o.threads > MAX_THREADS)
        return sl_error_make(err, EINVAL, "thread count %d outside [0, %d]", o.threads,
                             MAX_THREADS);
    if (o.threads == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        o.threads = (int)SL_MAX(1, SL_MIN(n, DEFAULT_MAX_THREADS));
    }

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
    w->batch_size = (size_t)SL_MAX(o.chunk_size, (uint64_t)BATCH_MIN);
    sl_buf_init(&w->member, SIZE_MAX);
    sl_buf_init(&w->toc, SIZE_MAX);
    sl_buf_puts(&w->toc, "{\"version\":1,\"entries\":[");
    w->toc_first = true;
    sl_sha256_init(&w->blob_sha);
    sl_sha256_init(&w->diff_sha);

    int r = pipe_start(w, o.threads, o.level, err);
    if (r < 0)
        return r;
    r = convert(w, err);
    if (r < 0)
        return r;
    w->res.input_size = w->in.consumed;
    if (ret)
        *ret = w->res;
    return 0;
}
