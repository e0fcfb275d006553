/* toc.c — footer, TOC parsing/validation and chunk decoding. */
#include "toc.h"
#include "base64.h"

#include "fmtutil.h"
#include "json.h"

#include <libdeflate.h>
#include <zlib.h>

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#define MAX_FILE_SIZE        (1ull << 50) /* 1 PiB: anything larger is nonsense */
#define MAX_COMPRESSED_CHUNK ((uint64_t)SL_TOC_MAX_CHUNK + (SL_TOC_MAX_CHUNK >> 4) + 4096)
#define MAX_TOC_MEMBER       ((uint64_t)SL_TOC_MAX_JSON + (1u << 20))
#define READ_PIECE           (256u << 10)

struct sl_toc {
    struct sl_arena arena;
    struct sl_toc_entry **list; /* TOC order, superseded entries removed at the end */
    size_t n, cap;
    struct sl_strmap map; /* name -> entry */
    struct sl_toc_entry *root;
    char digest[SL_DIGEST_STR_LEN];
    uint64_t toc_offset;
    size_t n_regs, n_chunks;
};

/* ---------------------------------------------------------------- small helpers */

int sl_toc_pread_fd(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err)
{
    int fd = *(int *)ud;
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t r = pread(fd, p, len, (off_t)off);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return sl_error_make(err, errno, "pread at %" PRIu64 ": %s", off, strerror(errno));
        if (r == 0)
            return sl_error_make(err, EIO, "pread at %" PRIu64 ": unexpected end of file", off);
        p += r;
        len -= (size_t)r;
        off += (uint64_t)r;
    }
    return 0;
}

const char *sl_toc_type_name(enum sl_toc_type t)
{
    static const char *const names[] = {"dir",  "reg",   "symlink", "hardlink",
                                        "char", "block", "fifo"};
    return (size_t)t < SL_ELEMENTSOF(names) ? names[t] : "?";
}

int sl_toc_path_normalize(const char *path, char *out)
{
    size_t o = 0;
    const char *p = path;
    while (*p) {
        while (*p == '/')
            p++;
        const char *s = p;
        while (*p && *p != '/')
            p++;
        size_t n = (size_t)(p - s);
        if (n == 0 || (n == 1 && s[0] == '.'))
            continue;
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (o == 0)
                return -EINVAL;
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the slash */
            continue;
        }
        if (o > 0)
            out[o++] = '/';
        memcpy(out + o, s, n);
        o += n;
    }
    out[o] = 0;
    return 0;
}

/* ---------------------------------------------------------------- footer */

void sl_toc_make_footer(uint64_t toc_offset, uint8_t out[SL_TOC_FOOTER_SIZE])
{
    static const uint8_t head[12] = {0x1f, 0x8b, 8, 0x04, 0, 0, 0, 0, 0, 0xff, 26, 0};
    memcpy(out, head, 12);
    out[12] = 'S';
    out[13] = 'G';
    out[14] = 22;
    out[15] = 0;
    char tmp[23];
    snprintf(tmp, sizeof(tmp), "%016" PRIx64 "STARGZ", toc_offset);
    memcpy(out + 16, tmp, 22);
    /* empty final stored block, then CRC32 and ISIZE of nothing */
    static const uint8_t tail[13] = {0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0};
    memcpy(out + 38, tail, 13);
}

static bool parse_hex16(const uint8_t *p, uint64_t *ret)
{
    uint64_t v = 0;
    for (int i = 0; i < 16; i++) {
        int c = p[i], d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if (c >= 'a' && c <= 'f')
            d = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F')
            d = c - 'A' + 10;
        else
            return false;
        v = (v << 4) | (uint64_t)d;
    }
    if (v > INT64_MAX)
        return false;
    *ret = v;
    return true;
}

static bool gzip_extra_header(const uint8_t *f, unsigned xlen)
{
    /* magic, deflate, FEXTRA and no name/comment/header-CRC (they would move the extra) */
    return f[0] == 0x1f && f[1] == 0x8b && f[2] == 8 && (f[3] & 0x04) && !(f[3] & 0x1a) &&
           f[10] == (xlen & 0xff) && f[11] == (xlen >> 8);
}

int sl_toc_parse_footer(const void *tail, size_t len, uint64_t *ret_toc_offset,
                        size_t *ret_footer_size, sl_error_t *err)
{
    const uint8_t *t = tail;
    if (len >= SL_TOC_FOOTER_SIZE) {
        const uint8_t *f = t + len - SL_TOC_FOOTER_SIZE;
        if (gzip_extra_header(f, 26) && f[12] == 'S' && f[13] == 'G' && f[14] == 22 && f[15] == 0 &&
            memcmp(f + 32, "STARGZ", 6) == 0) {
            if (!parse_hex16(f + 16, ret_toc_offset))
                return sl_error_make(err, EINVAL, "footer: bad TOC offset");
            *ret_footer_size = SL_TOC_FOOTER_SIZE;
            return 0;
        }
    }
    if (len >= SL_TOC_LEGACY_FOOTER_SIZE) {
        const uint8_t *f = t + len - SL_TOC_LEGACY_FOOTER_SIZE;
        if (gzip_extra_header(f, 22) && memcmp(f + 28, "STARGZ", 6) == 0) {
            if (!parse_hex16(f + 12, ret_toc_offset))
                return sl_error_make(err, EINVAL, "legacy footer: bad TOC offset");
            *ret_footer_size = SL_TOC_LEGACY_FOOTER_SIZE;
            return 0;
        }
    }
    return sl_error_make(err, EINVAL, "no eStargz/stargz footer (not a Starlight or eStargz blob)");
}

/* ---------------------------------------------------------------- JSON field helpers */

static int opt_u64(const json_t *o, const char *key, const char *path, uint64_t max, uint64_t *ret,
                   sl_error_t *err)
{
    int64_t v = 0;
    int r = sl_json_opt_i64(o, key, path, &v, err);
    if (r <= 0)
        return r;
    if (v < 0 || (uint64_t)v > max)
        return sl_error_make(err, EINVAL, "%s.%s: %" PRId64 " out of range", path, key, v);
    *ret = (uint64_t)v;
    return 1;
}

static int opt_string(const json_t *o, const char *key, const char *path, size_t max,
                      const char **ret, sl_error_t *err)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return sl_error_make(err, EINVAL, "%s.%s: expected a string", path, key);
    size_t n = json_string_length(v);
    const char *s = json_string_value(v);
    if (n > max)
        return sl_error_make(err, EINVAL, "%s.%s: %zu bytes (limit %zu)", path, key, n, max);
    if (strlen(s) != n)
        return sl_error_make(err, EINVAL, "%s.%s: contains a NUL byte", path, key);
    *ret = s;
    return 1;
}

static int parse_digest(const json_t *o, const char *key, const char *path, char out[],
                        sl_error_t *err)
{
    const char *s = NULL;
    int r = opt_string(o, key, path, 128, &s, err);
    if (r <= 0)
        return r;
    if (!sl_digest_valid(s))
        return sl_error_make(err, EINVAL, "%s.%s: `%s` is not a sha256 digest", path, key, s);
    memcpy(out, s, SL_DIGEST_STR_LEN);
    return 1;
}

static int digits(const char **p, int n, int *ret)
{
    int v = 0;
    for (int i = 0; i < n; i++, (*p)++) {
        if (**p < '0' || **p > '9')
            return -1;
        v = v * 10 + (**p - '0');
    }
    *ret = v;
    return 0;
}

/* RFC 3339: YYYY-MM-DDTHH:MM:SS[.frac](Z|+hh:mm|-hh:mm) */
static int parse_rfc3339(const char *s, int64_t *ret)
{
    struct tm tm = {0};
    int y, mo, d, h, mi, sec;
    const char *p = s;
    if (digits(&p, 4, &y) || *p++ != '-' || digits(&p, 2, &mo) || *p++ != '-' ||
        digits(&p, 2, &d) || (*p != 'T' && *p != 't'))
        return -EINVAL;
    p++;
    if (digits(&p, 2, &h) || *p++ != ':' || digits(&p, 2, &mi) || *p++ != ':' ||
        digits(&p, 2, &sec))
        return -EINVAL;
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -EINVAL;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return -EINVAL;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    int64_t off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int sign = *p++ == '-' ? -1 : 1, oh, om;
        if (digits(&p, 2, &oh) || *p++ != ':' || digits(&p, 2, &om) || oh > 23 || om > 59)
            return -EINVAL;
        off = sign * (oh * 3600 + om * 60);
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *ret = (int64_t)timegm(&tm) - off;
    return 0;
}

/* ---------------------------------------------------------------- index building */

struct idmap {
    struct sl_strmap m; /* decimal id -> name */
};

struct builder {
    struct sl_toc *toc;
    size_t n_total;               /* entries including synthesized ones */
    struct sl_toc_entry *cur_reg; /* regular file whose chunks are being read */
    const char *cur_reg_path;
    struct sl_toc_chunk *chunks; /* chunks of cur_reg */
    size_t n_chunks, cap_chunks;
    struct sl_toc_chunk **all; /* every chunk, for the blob-order check */
    size_t n_all, cap_all;
    struct idmap users, groups;
};

static void list_add(struct sl_toc *toc, struct sl_toc_entry *e)
{
    if (toc->n == toc->cap) {
        toc->cap = toc->cap ? toc->cap * 2 : 256;
        toc->list = sl_xrealloc(toc->list, toc->cap * sizeof(*toc->list));
    }
    toc->list[toc->n++] = e;
}

/* Internal flags kept outside the public struct. */
struct node {
    struct sl_toc_entry e;
    bool superseded;
    bool has_children;
};

static struct node *node_of(const struct sl_toc_entry *e)
{
    return (struct node *)(void *)e;
}

static struct sl_toc_entry *new_entry(struct builder *b, const char *name)
{
    struct node *n = sl_arena_alloc(&b->toc->arena, sizeof(*n));
    size_t len = strlen(name);
    char *s = sl_arena_strndup(&b->toc->arena, name, len);
    n->e.name = s;
    const char *slash = strrchr(s, '/');
    n->e.base = slash ? slash + 1 : s;
    n->e.num_link = 1;
    b->n_total++;
    return &n->e;
}

/* Returns the directory entry for `name`, synthesizing it (and its parents) when absent. */
static int ensure_dir(struct builder *b, const char *name, const char *path,
                      struct sl_toc_entry **ret, sl_error_t *err)
{
    struct sl_toc_entry *e = sl_strmap_get(&b->toc->map, name);
    if (e) {
        if (e->type != SL_TOC_DIR)
            return sl_error_make(err, EINVAL, "%s: parent `%s` is not a directory", path, name);
        *ret = e;
        return 0;
    }
    if (b->n_total >= 2 * (size_t)SL_TOC_MAX_ENTRIES)
        return sl_error_make(err, EFBIG, "%s: too many implicit directories", path);
    size_t len = strlen(name);
    _cleanup_free_ char *parent = sl_xstrndup(name, len);
    char *slash = strrchr(parent, '/');
    struct sl_toc_entry *pe;
    if (slash)
        *slash = 0;
    int r = ensure_dir(b, slash ? parent : "", path, &pe, err);
    if (r < 0)
        return r;
    e = new_entry(b, name);
    e->type = SL_TOC_DIR;
    e->mode = 0755;
    e->synthesized = true;
    e->parent = pe;
    node_of(pe)->has_children = true;
    sl_strmap_put(&b->toc->map, e->name, e);
    list_add(b->toc, e);
    *ret = e;
    return 0;
}

static int finish_reg(struct builder *b, sl_error_t *err)
{
    struct sl_toc_entry *e = b->cur_reg;
    if (!e)
        return 0;
    const char *path = b->cur_reg_path;
    uint64_t pos = 0;
    for (size_t i = 0; i < b->n_chunks; i++) {
        struct sl_toc_chunk *c = &b->chunks[i];
        if (c->chunk_offset != pos)
            return sl_error_make(
                err, EINVAL, "%s: file `%s`: chunk %zu starts at %" PRIu64 ", expected %" PRIu64,
                path, e->name, i, c->chunk_offset, pos);
        if (c->size == 0) /* chunkSize 0: to the end of the file */
            c->size = e->size - c->chunk_offset;
        if (c->size == 0 || c->size > e->size - c->chunk_offset)
            return sl_error_make(err, EINVAL,
                                 "%s: file `%s`: chunk %zu size %" PRIu64
                                 " does not fit the file size %" PRIu64,
                                 path, e->name, i, c->size, e->size);
        if (c->size > SL_TOC_MAX_CHUNK)
            return sl_error_make(err, EFBIG, "%s: file `%s`: chunk %zu is %" PRIu64 " bytes", path,
                                 e->name, i, c->size);
        pos += c->size;
    }
    if (pos != e->size)
        return sl_error_make(err, EINVAL,
                             "%s: file `%s`: chunks cover %" PRIu64 " of %" PRIu64 " bytes", path,
                             e->name, pos, e->size);
    if (b->n_chunks) {
        struct sl_toc_chunk *cs =
            sl_arena_alloc(&b->toc->arena, b->n_chunks * sizeof(struct sl_toc_chunk));
        memcpy(cs, b->chunks, b->n_chunks * sizeof(*cs));
        e->chunks = cs;
        e->n_chunks = b->n_chunks;
        if (b->n_all + b->n_chunks > b->cap_all) {
            b->cap_all = SL_MAX(b->cap_all * 2, b->n_all + b->n_chunks + 64);
            b->all = sl_xrealloc(b->all, b->cap_all * sizeof(*b->all));
        }
        for (size_t i = 0; i < b->n_chunks; i++)
            b->all[b->n_all++] = &cs[i];
        b->toc->n_chunks += b->n_chunks;
    }
    b->cur_reg = NULL;
    b->n_chunks = 0;
    return 0;
}

static int add_chunk(struct builder *b, const json_t *o, const char *path, bool first,
                     sl_error_t *err)
{
    struct sl_toc_chunk c = {0};
    uint64_t inner = 0;
    int r;
    if ((r = opt_u64(o, "offset", path, INT64_MAX, &c.offset, err)) < 0 ||
        (r = opt_u64(o, "chunkOffset", path, MAX_FILE_SIZE, &c.chunk_offset, err)) < 0 ||
        (r = opt_u64(o, "chunkSize", path, MAX_FILE_SIZE, &c.size, err)) < 0 ||
        (r = opt_u64(o, "compressedSize", path, INT64_MAX, &c.compressed_size, err)) < 0 ||
        (r = opt_u64(o, "innerOffset", path, INT64_MAX, &inner, err)) < 0)
        return r;
    if (inner)
        return sl_error_make(
            err, EINVAL, "%s: innerOffset (several files per gzip member) is not supported", path);
    r = parse_digest(o, "chunkDigest", path, c.digest, err);
    if (r < 0)
        return r;
    if (r == 0)
        return sl_error_make(err, EINVAL, "%s.chunkDigest: missing", path);
    if (first && c.chunk_offset != 0)
        return sl_error_make(err, EINVAL, "%s.chunkOffset: first chunk must start at 0", path);
    if (b->n_chunks == b->cap_chunks) {
        b->cap_chunks = b->cap_chunks ? b->cap_chunks * 2 : 16;
        b->chunks = sl_xrealloc(b->chunks, b->cap_chunks * sizeof(*b->chunks));
    }
    b->chunks[b->n_chunks++] = c;
    return 0;
}

static const char *backfill(struct sl_toc *toc, struct idmap *m, uint32_t id, const char *name)
{
    char key[16];
    int kl = snprintf(key, sizeof(key), "%" PRIu32, id);
    if (!name)
        return sl_strmap_get(&m->m, key);
    /* the map borrows keys: give it one that lives as long as the index */
    const char *copy = sl_arena_strndup(&toc->arena, name, strlen(name));
    sl_strmap_put(&m->m, sl_arena_strndup(&toc->arena, key, (size_t)kl), (void *)copy);
    return copy;
}

static int parse_type(const char *s, enum sl_toc_type *t)
{
    static const char *const names[] = {"dir",  "reg",   "symlink", "hardlink",
                                        "char", "block", "fifo"};
    for (size_t i = 0; i < SL_ELEMENTSOF(names); i++) {
        if (strcmp(s, names[i]) == 0) {
            *t = (enum sl_toc_type)i;
            return 0;
        }
    }
    return -EINVAL;
}

/* Places a new entry under its name, applying "later wins" for duplicates. */
static int place(struct builder *b, struct sl_toc_entry *e, const char *path, sl_error_t *err)
{
    struct sl_toc *toc = b->toc;
    struct sl_toc_entry *old = sl_strmap_get(&toc->map, e->name);
    if (old) {
        if (old->type == SL_TOC_DIR && e->type == SL_TOC_DIR) {
            /* keep the node (children point at it); take the later metadata */
            const struct sl_toc_entry *parent = old->parent;
            const char *name = old->name, *base = old->base;
            *old = *e;
            old->parent = parent;
            old->name = name;
            old->base = base;
            old->synthesized = false;
            return 0;
        }
        if (old->type == SL_TOC_DIR && node_of(old)->has_children)
            return sl_error_make(err, EINVAL, "%s: `%s` replaces a non-empty directory with a %s",
                                 path, e->name, sl_toc_type_name(e->type));
        if (old == toc->root)
            return sl_error_make(err, EINVAL, "%s: the root must be a directory", path);
        node_of(old)->superseded = true;
    }
    if (e->name[0] == 0) {
        if (e->type != SL_TOC_DIR)
            return sl_error_make(err, EINVAL, "%s: the root must be a directory", path);
    } else {
        const char *slash = strrchr(e->name, '/');
        _cleanup_free_ char *pname =
            slash ? sl_xstrndup(e->name, (size_t)(slash - e->name)) : sl_xstrdup("");
        struct sl_toc_entry *pe;
        int r = ensure_dir(b, pname, path, &pe, err);
        if (r < 0)
            return r;
        e->parent = pe;
        node_of(pe)->has_children = true;
    }
    sl_strmap_put(&toc->map, e->name, e);
    list_add(toc, e);
    return 0;
}

static int parse_entry(struct builder *b, const json_t *o, size_t idx, sl_error_t *err)
{
    struct sl_toc *toc = b->toc;
    char path[48];
    snprintf(path, sizeof(path), ".entries[%zu]", idx);
    if (!json_is_object(o))
        return sl_error_make(err, EINVAL, "%s: expected an object", path);
    const char *type_s = NULL, *name_s = NULL;
    int r = sl_json_get_str(o, "type", path, &type_s, err);
    if (r < 0)
        return r;
    r = opt_string(o, "name", path, SL_TOC_MAX_NAME, &name_s, err);
    if (r < 0)
        return r;

    if (strcmp(type_s, "chunk") == 0) {
        if (!b->cur_reg)
            return sl_error_make(err, EINVAL, "%s: chunk without a preceding regular file", path);
        if (name_s && name_s[0]) {
            _cleanup_free_ char *n = sl_xmalloc(strlen(name_s) + 1);
            if (sl_toc_path_normalize(name_s, n) < 0 || strcmp(n, b->cur_reg->name) != 0)
                return sl_error_make(err, EINVAL, "%s: chunk of `%s` follows file `%s`", path,
                                     name_s, b->cur_reg->name);
        }
        return add_chunk(b, o, path, false, err);
    }
    r = finish_reg(b, err);
    if (r < 0)
        return r;
    if (!name_s)
        return sl_error_make(err, EINVAL, "%s.name: missing", path);

    enum sl_toc_type type;
    if (parse_type(type_s, &type) < 0)
        return sl_error_make(err, EINVAL, "%s.type: unknown type `%s`", path, type_s);
    _cleanup_free_ char *norm = sl_xmalloc(strlen(name_s) + 1);
    if (sl_toc_path_normalize(name_s, norm) < 0)
        return sl_error_make(err, EINVAL, "%s.name: `%s` escapes the root", path, name_s);
    if (strcmp(norm, SL_TOC_TAR_NAME) == 0)
        return sl_error_make(err, EINVAL, "%s.name: `%s` is reserved", path, name_s);

    struct sl_toc_entry *e = new_entry(b, norm);
    e->type = type;
    uint64_t v;
    if ((r = opt_u64(o, "size", path, MAX_FILE_SIZE, &e->size, err)) < 0)
        return r;
    if (type != SL_TOC_REG)
        e->size = 0;
    const char *s = NULL;
    if ((r = opt_string(o, "modtime", path, 64, &s, err)) < 0)
        return r;
    if (r > 0 && parse_rfc3339(s, &e->mtime) < 0)
        return sl_error_make(err, EINVAL, "%s.modtime: `%s` is not an RFC 3339 time", path, s);
    v = 0;
    if ((r = opt_u64(o, "mode", path, UINT32_MAX, &v, err)) < 0)
        return r;
    e->mode = (uint32_t)v & 07777;
    v = 0;
    if ((r = opt_u64(o, "uid", path, UINT32_MAX, &v, err)) < 0)
        return r;
    e->uid = (uint32_t)v;
    v = 0;
    if ((r = opt_u64(o, "gid", path, UINT32_MAX, &v, err)) < 0)
        return r;
    e->gid = (uint32_t)v;
    s = NULL;
    if ((r = opt_string(o, "userName", path, 256, &s, err)) < 0)
        return r;
    e->user_name = backfill(toc, &b->users, e->uid, s && s[0] ? s : NULL);
    s = NULL;
    if ((r = opt_string(o, "groupName", path, 256, &s, err)) < 0)
        return r;
    e->group_name = backfill(toc, &b->groups, e->gid, s && s[0] ? s : NULL);
    if (type == SL_TOC_CHAR || type == SL_TOC_BLOCK) {
        v = 0;
        if ((r = opt_u64(o, "devMajor", path, UINT32_MAX, &v, err)) < 0)
            return r;
        e->dev_major = (uint32_t)v;
        v = 0;
        if ((r = opt_u64(o, "devMinor", path, UINT32_MAX, &v, err)) < 0)
            return r;
        e->dev_minor = (uint32_t)v;
    }
    if ((r = parse_digest(o, "digest", path, e->digest, err)) < 0)
        return r;
    e->has_digest = r > 0 && type == SL_TOC_REG;

    json_t *xa = json_object_get(o, "xattrs");
    if (xa && !json_is_null(xa)) {
        if (!json_is_object(xa))
            return sl_error_make(err, EINVAL, "%s.xattrs: expected an object", path);
        size_t n = json_object_size(xa), i = 0;
        struct sl_toc_xattr *xs = sl_arena_alloc(&toc->arena, (n ? n : 1) * sizeof(*xs));
        const char *k;
        json_t *val;
        json_object_foreach(xa, k, val)
        {
            if (!json_is_string(val))
                return sl_error_make(err, EINVAL, "%s.xattrs.%s: expected a base64 string", path,
                                     k);
            size_t sl = json_string_length(val);
            if (strlen(k) == 0 || strlen(k) > 255 || sl / 4 * 3 > SL_TOC_MAX_XATTR_VALUE)
                return sl_error_make(err, EINVAL, "%s.xattrs.%s: bad name or value size", path, k);
            _cleanup_free_ uint8_t *dec = NULL;
            size_t dl = 0;
            if (sl_base64_decode(json_string_value(val), sl, &dec, &dl) < 0)
                return sl_error_make(err, EINVAL, "%s.xattrs.%s: invalid base64", path, k);
            uint8_t *buf = sl_arena_alloc(&toc->arena, dl + 1);
            memcpy(buf, dec, dl + 1);
            xs[i].name = sl_arena_strndup(&toc->arena, k, strlen(k));
            xs[i].value = buf;
            xs[i].len = (size_t)dl;
            i++;
        }
        e->xattrs = xs;
        e->n_xattrs = n;
    }

    const char *link = NULL;
    if ((r = opt_string(o, "linkName", path, SL_TOC_MAX_NAME, &link, err)) < 0)
        return r;
    if (type == SL_TOC_SYMLINK) {
        if (!link || !link[0])
            return sl_error_make(err, EINVAL, "%s.linkName: symlink `%s` without a target", path,
                                 e->name);
        e->link_name = sl_arena_strndup(&toc->arena, link, strlen(link));
    } else if (type == SL_TOC_HARDLINK) {
        if (!link || !link[0])
            return sl_error_make(err, EINVAL, "%s.linkName: hardlink `%s` without a target", path,
                                 e->name);
        if (link[0] == '/')
            return sl_error_make(err, EINVAL, "%s.linkName: hardlink target `%s` is absolute", path,
                                 link);
        _cleanup_free_ char *t = sl_xmalloc(strlen(link) + 1);
        if (sl_toc_path_normalize(link, t) < 0)
            return sl_error_make(err, EINVAL, "%s.linkName: `%s` escapes the root", path, link);
        struct sl_toc_entry *target = sl_strmap_get(&toc->map, t);
        if (!target || strcmp(t, e->name) == 0)
            return sl_error_make(err, EINVAL,
                                 "%s.linkName: hardlink `%s` to `%s`, which is not earlier in "
                                 "the TOC",
                                 path, e->name, link);
        if (target->type == SL_TOC_DIR)
            return sl_error_make(err, EINVAL, "%s.linkName: hardlink `%s` to directory `%s`", path,
                                 e->name, link);
        if (target->link)
            target = (struct sl_toc_entry *)target->link;
        if (target->type != SL_TOC_REG) /* the fs serves links to regular files only */
            return sl_error_make(err, EINVAL,
                                 "%s.linkName: hardlink `%s` to `%s`, which is not a regular "
                                 "file (only regular files can be hardlinked)",
                                 path, e->name, link);
        e->link = target;
        e->link_name = target->name;
        target->num_link++;
    }

    r = place(b, e, path, err);
    if (r < 0)
        return r;
    if (type == SL_TOC_REG) {
        toc->n_regs++;
        if (e->size > 0) {
            b->cur_reg = e;
            b->cur_reg_path = path;
            /* the first chunk's fields live on the reg entry itself */
            r = add_chunk(b, o, path, true, err);
            if (r < 0)
                return r;
            b->cur_reg_path = "";
        }
    }
    return 0;
}

static int cmp_chunk_off(const void *a, const void *b)
{
    const struct sl_toc_chunk *x = *(const struct sl_toc_chunk *const *)a;
    const struct sl_toc_chunk *y = *(const struct sl_toc_chunk *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* Every data member lies before the TOC; members do not overlap; sizes missing from eStargz
 * TOCs are derived from the next member in blob order. */
static int check_blob_order(struct builder *b, uint64_t toc_offset, sl_error_t *err)
{
    if (b->n_all > 1)
        qsort(b->all, b->n_all, sizeof(*b->all), cmp_chunk_off);
    for (size_t i = 0; i < b->n_all; i++) {
        struct sl_toc_chunk *c = b->all[i];
        uint64_t limit = i + 1 < b->n_all ? b->all[i + 1]->offset : toc_offset;
        if (c->offset >= toc_offset)
            return sl_error_make(err, EINVAL,
                                 "chunk at offset %" PRIu64 " is not before the TOC (%" PRIu64 ")",
                                 c->offset, toc_offset);
        if (limit == c->offset)
            return sl_error_make(err, EINVAL, "two chunks share the member at offset %" PRIu64,
                                 c->offset);
        if (c->compressed_size == 0) {
            c->compressed_size = limit - c->offset;
            c->compressed_size_derived = true;
        } else {
            if (c->compressed_size > limit - c->offset)
                return sl_error_make(err, EINVAL,
                                     "chunk member [%" PRIu64 ", +%" PRIu64
                                     ") overlaps the next member or the TOC at %" PRIu64,
                                     c->offset, c->compressed_size, limit);
            if (c->compressed_size > MAX_COMPRESSED_CHUNK)
                return sl_error_make(err, EFBIG, "chunk member at %" PRIu64 " is %" PRIu64 " bytes",
                                     c->offset, c->compressed_size);
        }
        if (c->compressed_size < 18)
            return sl_error_make(err, EINVAL,
                                 "chunk member at %" PRIu64 " is too small (%" PRIu64 " bytes)",
                                 c->offset, c->compressed_size);
    }
    return 0;
}

static int cmp_child(const void *a, const void *b)
{
    const struct sl_toc_entry *x = *(const struct sl_toc_entry *const *)a;
    const struct sl_toc_entry *y = *(const struct sl_toc_entry *const *)b;
    return strcmp(x->base, y->base);
}

/* Drops superseded entries from the list, builds the sorted children arrays, link counts. */
static void build_tree(struct sl_toc *toc)
{
    size_t o = 0;
    for (size_t i = 0; i < toc->n; i++)
        if (!node_of(toc->list[i])->superseded)
            toc->list[o++] = toc->list[i];
    toc->n = o;
    for (size_t i = 0; i < toc->n; i++) {
        struct sl_toc_entry *e = toc->list[i];
        if (e->type == SL_TOC_DIR)
            e->num_link = 2;
    }
    for (size_t i = 0; i < toc->n; i++) {
        struct sl_toc_entry *e = toc->list[i];
        if (!e->parent)
            continue;
        struct sl_toc_entry *p = (struct sl_toc_entry *)e->parent;
        p->n_children++;
        if (e->type == SL_TOC_DIR)
            p->num_link++;
    }
    for (size_t i = 0; i < toc->n; i++) {
        struct sl_toc_entry *e = toc->list[i];
        if (e->n_children) {
            e->children = sl_arena_alloc(&toc->arena, e->n_children * sizeof(*e->children));
            e->n_children = 0;
        }
    }
    for (size_t i = 0; i < toc->n; i++) {
        struct sl_toc_entry *e = toc->list[i];
        if (!e->parent)
            continue;
        struct sl_toc_entry *p = (struct sl_toc_entry *)e->parent;
        ((const struct sl_toc_entry **)p->children)[p->n_children++] = e;
    }
    for (size_t i = 0; i < toc->n; i++) {
        struct sl_toc_entry *e = toc->list[i];
        if (e->n_children > 1)
            qsort((void *)e->children, e->n_children, sizeof(*e->children), cmp_child);
    }
}

void sl_toc_free(struct sl_toc *toc)
{
    if (!toc)
        return;
    free(toc->list);
    sl_strmap_free(&toc->map);
    sl_arena_free(&toc->arena);
    free(toc);
}

static void builder_done(struct builder *b)
{
    free(b->chunks);
    free(b->all);
    sl_strmap_free(&b->users.m);
    sl_strmap_free(&b->groups.m);
}

int sl_toc_parse_json(const char *json, size_t len, uint64_t toc_offset, struct sl_toc **ret,
                      sl_error_t *err)
{
    json_auto_t *j = NULL;
    int r = sl_json_parse(json, len, SL_TOC_MAX_JSON, "TOC", &j, err);
    if (r < 0)
        return r;
    if (!json_is_object(j))
        return sl_error_make(err, EINVAL, "TOC: expected an object");
    int64_t version = 0;
    r = sl_json_get_i64(j, "version", "", &version, err);
    if (r < 0)
        return sl_error_wrap(err, r, "TOC");
    if (version != 1)
        return sl_error_make(err, EINVAL, "TOC: unsupported version %" PRId64, version);
    json_t *entries = NULL;
    r = sl_json_get_arr(j, "entries", "", &entries, err);
    if (r < 0)
        return sl_error_wrap(err, r, "TOC");
    size_t n = json_array_size(entries);
    if (n > SL_TOC_MAX_ENTRIES)
        return sl_error_make(err, EFBIG, "TOC: %zu entries (limit %u)", n, SL_TOC_MAX_ENTRIES);

    _cleanup_toc_ struct sl_toc *toc = sl_xcalloc(1, sizeof(*toc));
    toc->toc_offset = toc_offset;
    sl_sha256_str(json, len, toc->digest);
    struct builder b = {.toc = toc};
    toc->root = new_entry(&b, "");
    toc->root->type = SL_TOC_DIR;
    toc->root->mode = 0755;
    toc->root->synthesized = true;
    sl_strmap_put(&toc->map, toc->root->name, toc->root);
    list_add(toc, toc->root);

    for (size_t i = 0; i < n && r >= 0; i++)
        r = parse_entry(&b, json_array_get(entries, i), i, err);
    if (r >= 0)
        r = finish_reg(&b, err);
    if (r >= 0)
        r = check_blob_order(&b, toc_offset, err);
    builder_done(&b);
    if (r < 0)
        return sl_error_wrap(err, r, "TOC");
    build_tree(toc);
    *ret = TAKE_PTR(toc);
    return 0;
}

/* ---------------------------------------------------------------- loading */

static uint64_t tar_octal(const char *p, size_t n, bool *ok)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && p[i] == ' ')
        i++;
    bool any = false;
    for (; i < n && p[i] >= '0' && p[i] <= '7'; i++) {
        if (v >> 60)
            *ok = false;
        v = v * 8 + (uint64_t)(p[i] - '0');
        any = true;
    }
    for (; i < n; i++)
        if (p[i] != ' ' && p[i] != 0)
            *ok = false;
    if (!any)
        *ok = false;
    return v;
}

/* Finds stargz.index.json at the start of the inflated TOC member (a PAX header first is
 * tolerated). */
static int find_toc_entry(const uint8_t *d, size_t n, const char **ret, size_t *ret_len,
                          sl_error_t *err)
{
    size_t pos = 0;
    uint64_t pax_size = UINT64_MAX;
    char pax_path[64] = "";
    for (int hdrs = 0; hdrs < 3; hdrs++) {
        if (n - pos < 512)
            return sl_error_make(err, EINVAL, "TOC member: truncated tar header");
        const char *h = (const char *)d + pos;
        unsigned sum = 0;
        for (size_t i = 0; i < 512; i++)
            sum += (i >= 148 && i < 156) ? ' ' : (uint8_t)h[i];
        bool ok = true;
        uint64_t want = tar_octal(h + 148, 8, &ok);
        if (!ok || want != sum)
            return sl_error_make(err, EINVAL, "TOC member: bad tar header checksum");
        uint64_t size = tar_octal(h + 124, 12, &ok);
        if (!ok)
            return sl_error_make(err, EINVAL, "TOC member: bad tar size field");
        char type = h[156];
        if (type == 'x') {
            if (size > 64 * 1024 || size > n - pos - 512)
                return sl_error_make(err, EINVAL, "TOC member: bad PAX header");
            const char *p = h + 512, *end = p + size;
            while (p < end) {
                char *sp;
                unsigned long rl = strtoul(p, &sp, 10);
                if (sp >= end || *sp != ' ' || rl == 0 || rl > (size_t)(end - p))
                    return sl_error_make(err, EINVAL, "TOC member: bad PAX record");
                const char *kv = sp + 1, *rend = p + rl - 1; /* rend: the '\n' */
                if (rend - kv > 5 && memcmp(kv, "size=", 5) == 0) {
                    char num[32];
                    size_t l = SL_MIN((size_t)(rend - kv - 5), sizeof(num) - 1);
                    memcpy(num, kv + 5, l);
                    num[l] = 0;
                    pax_size = strtoull(num, NULL, 10);
                } else if (rend - kv > 5 && memcmp(kv, "path=", 5) == 0) {
                    size_t l = SL_MIN((size_t)(rend - kv - 5), sizeof(pax_path) - 1);
                    memcpy(pax_path, kv + 5, l);
                    pax_path[l] = 0;
                }
                p += rl;
            }
            pos += 512 + (size + 511) / 512 * 512;
            continue;
        }
        char name[101];
        memcpy(name, h, 100);
        name[100] = 0;
        const char *nm = pax_path[0] ? pax_path : name;
        if (pax_size != UINT64_MAX)
            size = pax_size;
        if (strcmp(nm, SL_TOC_TAR_NAME) != 0 || (type != '0' && type != 0))
            return sl_error_make(err, EINVAL, "TOC member: first entry is `%s`, not %s", nm,
                                 SL_TOC_TAR_NAME);
        if (size > n - pos - 512)
            return sl_error_make(err, EINVAL, "TOC member: %s truncated", SL_TOC_TAR_NAME);
        *ret = (const char *)d + pos + 512;
        *ret_len = (size_t)size;
        return 0;
    }
    return sl_error_make(err, EINVAL, "TOC member: too many extended headers");
}

/* Inflates gzip members in `in` into a new buffer of at most `max` bytes. */
static int inflate_all(const uint8_t *in, size_t n, size_t max, uint8_t **ret, size_t *ret_len,
                       sl_error_t *err)
{
    z_stream zs = {0};
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return sl_error_make(err, ENOMEM, "inflateInit failed");
    size_t cap = SL_MIN(max, SL_MAX((size_t)n * 4, (size_t)65536)), len = 0;
    _cleanup_free_ uint8_t *out = sl_xmalloc(cap);
    zs.next_in = (uint8_t *)in;
    zs.avail_in = (uInt)n;
    int r = 0;
    for (;;) {
        if (len == cap) {
            if (cap == max) {
                r = sl_error_make(err, EFBIG, "TOC member inflates to more than %zu bytes", max);
                break;
            }
            cap = SL_MIN(max, cap * 2);
            out = sl_xrealloc(out, cap);
        }
        zs.next_out = out + len;
        zs.avail_out = (uInt)(cap - len);
        int z = inflate(&zs, Z_NO_FLUSH);
        len = cap - zs.avail_out;
        if (z == Z_STREAM_END) {
            if (zs.avail_in == 0)
                break;
            inflateReset(&zs);
            continue;
        }
        if (z == Z_BUF_ERROR && zs.avail_in == 0) {
            r = sl_error_make(err, EBADMSG, "TOC member: truncated gzip data");
            break;
        }
        if (z != Z_OK && z != Z_BUF_ERROR) {
            r = sl_error_make(err, EBADMSG, "TOC member: corrupt gzip data: %s",
                              zs.msg ? zs.msg : "?");
            break;
        }
    }
    inflateEnd(&zs);
    if (r < 0)
        return r;
    *ret = TAKE_PTR(out);
    *ret_len = len;
    return 0;
}

int sl_toc_load(sl_toc_read_at_fn read_at, void *ud, uint64_t blob_size,
                const char *expected_toc_digest, struct sl_toc **ret, sl_error_t *err)
{
    uint8_t tail[SL_TOC_FOOTER_SIZE];
    if (blob_size < SL_TOC_LEGACY_FOOTER_SIZE)
        return sl_error_make(err, EINVAL, "blob of %" PRIu64 " bytes is too small for a footer",
                             blob_size);
    size_t tl = (size_t)SL_MIN(blob_size, (uint64_t)sizeof(tail));
    int r = read_at(ud, tail, tl, blob_size - tl, err);
    if (r < 0)
        return sl_error_wrap(err, r, "reading the footer");
    uint64_t toc_off;
    size_t fsize;
    r = sl_toc_parse_footer(tail, tl, &toc_off, &fsize, err);
    if (r < 0)
        return r;
    if (toc_off >= blob_size - fsize)
        return sl_error_make(err, EINVAL,
                             "footer: TOC offset %" PRIu64 " outside the blob (%" PRIu64 " bytes)",
                             toc_off, blob_size);
    uint64_t clen = blob_size - fsize - toc_off;
    if (clen > MAX_TOC_MEMBER)
        return sl_error_make(err, EFBIG, "TOC member is %" PRIu64 " bytes (limit %" PRIu64 ")",
                             clen, MAX_TOC_MEMBER);
    _cleanup_free_ uint8_t *comp = sl_xmalloc((size_t)clen);
    r = read_at(ud, comp, (size_t)clen, toc_off, err);
    if (r < 0)
        return sl_error_wrap(err, r, "reading the TOC member");
    _cleanup_free_ uint8_t *tar = NULL;
    size_t tar_len = 0;
    r = inflate_all(comp, (size_t)clen, SL_TOC_MAX_JSON + 64 * 1024, &tar, &tar_len, err);
    if (r < 0)
        return r;
    const char *json = NULL;
    size_t json_len = 0;
    r = find_toc_entry(tar, tar_len, &json, &json_len, err);
    if (r < 0)
        return r;
    if (expected_toc_digest) {
        char d[SL_DIGEST_STR_LEN];
        sl_sha256_str(json, json_len, d);
        if (strcmp(d, expected_toc_digest) != 0)
            return sl_error_make(err, EBADMSG, "TOC digest %s, expected %s", d,
                                 expected_toc_digest);
    }
    return sl_toc_parse_json(json, json_len, toc_off, ret, err);
}

/* ---------------------------------------------------------------- accessors */

const char *sl_toc_digest(const struct sl_toc *toc)
{
    return toc->digest;
}

uint64_t sl_toc_offset(const struct sl_toc *toc)
{
    return toc->toc_offset;
}

const struct sl_toc_entry *sl_toc_root(const struct sl_toc *toc)
{
    return toc->root;
}

size_t sl_toc_count(const struct sl_toc *toc)
{
    return toc->n;
}

const struct sl_toc_entry *sl_toc_entry_at(const struct sl_toc *toc, size_t i)
{
    return i < toc->n ? toc->list[i] : NULL;
}

const struct sl_toc_entry *sl_toc_find(const struct sl_toc *toc, const char *path)
{
    size_t n = strlen(path);
    if (n > SL_TOC_MAX_NAME)
        return NULL;
    _cleanup_free_ char *norm = sl_xmalloc(n + 1);
    if (sl_toc_path_normalize(path, norm) < 0)
        return NULL;
    return sl_strmap_get(&toc->map, norm);
}

size_t sl_toc_regular_files(const struct sl_toc *toc)
{
    return toc->n_regs;
}

size_t sl_toc_chunks(const struct sl_toc *toc)
{
    return toc->n_chunks;
}

/* ---------------------------------------------------------------- chunks */

static int verify(const void *out, const struct sl_toc_chunk *c, sl_error_t *err)
{
    char d[SL_DIGEST_STR_LEN];
    sl_sha256_str(out, (size_t)c->size, d);
    if (strcmp(d, c->digest) != 0)
        return sl_error_make(err, EBADMSG,
                             "chunk at blob offset %" PRIu64 ": digest %s, expected %s", c->offset,
                             d, c->digest);
    return 0;
}

/* Streaming inflate of up to c->size bytes; members may follow one another. */
struct stream_inflate {
    z_stream zs;
    bool member_open;
};

static int stream_feed(struct stream_inflate *s, const uint8_t *in, size_t n,
                       const struct sl_toc_chunk *c, sl_error_t *err)
{
    s->zs.next_in = (uint8_t *)in;
    s->zs.avail_in = (uInt)n;
    while (s->zs.avail_out > 0 && s->zs.avail_in > 0) {
        if (!s->member_open) {
            inflateReset(&s->zs);
            s->member_open = true;
        }
        int z = inflate(&s->zs, Z_NO_FLUSH);
        if (z == Z_STREAM_END)
            s->member_open = false;
        else if (z != Z_OK && z != Z_BUF_ERROR)
            return sl_error_make(err, EBADMSG, "chunk at blob offset %" PRIu64 ": corrupt gzip: %s",
                                 c->offset, s->zs.msg ? s->zs.msg : "?");
    }
    return 0;
}

/* Inflates one gzip member into `out` (c->size bytes); -ENOMEM when zlib cannot start. */
static int stream_begin(struct stream_inflate *s, const struct sl_toc_chunk *c, void *out)
{
    if (inflateInit2(&s->zs, 15 + 16) != Z_OK)
        return -ENOMEM;
    s->member_open = true;
    s->zs.next_out = out;
    s->zs.avail_out = (uInt)c->size;
    return 0;
}

/* Ends what stream_begin started: `r` (the feeding's result) when negative, an error when the
 * member held fewer than c->size bytes, else the chunk's digest check. */
static int stream_end(struct stream_inflate *s, int r, const struct sl_toc_chunk *c,
                      const void *out, sl_error_t *err)
{
    uInt left = s->zs.avail_out;
    inflateEnd(&s->zs);
    if (r < 0)
        return r;
    if (left)
        return sl_error_make(err, EBADMSG,
                             "chunk at blob offset %" PRIu64 ": member holds %" PRIu64
                             " of %" PRIu64 " bytes",
                             c->offset, c->size - left, c->size);
    return verify(out, c, err);
}

int sl_toc_chunk_decode(const void *comp, size_t comp_len, const struct sl_toc_chunk *c, void *out,
                        sl_error_t *err)
{
    const uint8_t *p = comp;
    if (c->size > SL_TOC_MAX_CHUNK)
        return sl_error_make(err, EFBIG, "chunk of %" PRIu64 " bytes", c->size);
    if (comp_len >= 18) {
        uint32_t isize = (uint32_t)p[comp_len - 4] | (uint32_t)p[comp_len - 3] << 8 |
                         (uint32_t)p[comp_len - 2] << 16 | (uint32_t)p[comp_len - 1] << 24;
        if (isize == (uint32_t)c->size) {
            /* one member holding exactly the chunk (Starlight): libdeflate in one call */
            struct libdeflate_decompressor *d = libdeflate_alloc_decompressor();
            if (!d)
                return sl_error_make(err, ENOMEM, "libdeflate: out of memory");
            size_t in_used = 0, got = 0;
            enum libdeflate_result res = libdeflate_gzip_decompress_ex(
                d, comp, comp_len, out, (size_t)c->size, &in_used, &got);
            libdeflate_free_decompressor(d);
            if (res == LIBDEFLATE_SUCCESS && got == c->size && in_used == comp_len)
                return verify(out, c, err);
        }
    }
    struct stream_inflate s = {0};
    if (stream_begin(&s, c, out) < 0)
        return sl_error_make(err, ENOMEM, "inflateInit failed");
    int r = stream_feed(&s, comp, comp_len, c, err);
    return stream_end(&s, r, c, out, err);
}

int sl_toc_read_chunk(sl_toc_read_at_fn read_at, void *ud, const struct sl_toc_chunk *c, void *out,
                      sl_error_t *err)
{
    if (c->size > SL_TOC_MAX_CHUNK)
        return sl_error_make(err, EFBIG, "chunk of %" PRIu64 " bytes", c->size);
    if (!c->compressed_size_derived) {
        if (c->compressed_size > MAX_COMPRESSED_CHUNK)
            return sl_error_make(err, EFBIG, "chunk member of %" PRIu64 " bytes",
                                 c->compressed_size);
        _cleanup_free_ uint8_t *comp = sl_xmalloc((size_t)c->compressed_size);
        int r = read_at(ud, comp, (size_t)c->compressed_size, c->offset, err);
        if (r < 0)
            return sl_error_wrap(err, r, "reading chunk at %" PRIu64, c->offset);
        return sl_toc_chunk_decode(comp, (size_t)c->compressed_size, c, out, err);
    }
    /* Derived sizes may span tar headers after the chunk: read piecewise, stop when full. */
    struct stream_inflate s = {0};
    if (stream_begin(&s, c, out) < 0)
        return sl_error_make(err, ENOMEM, "inflateInit failed");
    _cleanup_free_ uint8_t *piece = sl_xmalloc(READ_PIECE);
    int r = 0;
    for (uint64_t pos = 0; pos < c->compressed_size && s.zs.avail_out > 0 && r >= 0;) {
        size_t n = (size_t)SL_MIN((uint64_t)READ_PIECE, c->compressed_size - pos);
        r = read_at(ud, piece, n, c->offset + pos, err);
        if (r < 0) {
            r = sl_error_wrap(err, r, "reading chunk at %" PRIu64, c->offset);
            break;
        }
        r = stream_feed(&s, piece, n, c, err);
        pos += n;
    }
    return stream_end(&s, r, c, out, err);
}
