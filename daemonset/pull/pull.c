/* pull.c — the delta receiver (pull.h). The HTTP sink is a small state machine: prelude,
 * header, payload. Payload chunks are sorted by payload offset once, so the sink walks them
 * with one cursor and hands each gzip member to the store without looking at its bytes. */
#include "pull.h"
#include "cleanup.h"
#include "http.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#define PROGRESS_EVERY_NS   200000000LL /* progress events at most 5 per second */
#define MAX_HELD_DECLARED   4096        /* the proxy's cap on layers in one request */
#define MAX_MEMBER_BUFFERED ((uint64_t)SL_TOC_MAX_CHUNK * 2)

enum rx_state { RX_PRELUDE, RX_HEADER, RX_PAYLOAD, RX_DONE };

/* A payload chunk, in payload order. */
struct pchunk {
    uint64_t poff;
    uint32_t content;
    struct sl_toc_chunk tc;
};

struct rx {
    struct sl_store *store;
    struct sl_fs *fs;
    const struct sl_pull_request *req;
    struct sl_pull_stats st;
    sl_error_t *err;
    int64_t t0, last_progress;

    enum rx_state state;
    uint8_t prelude[SL_DELTA_PRELUDE_SIZE];
    size_t prelude_len;
    uint64_t header_len, payload_len;
    struct sl_buf header;
    struct sl_delta_header *h;
    struct sl_toc **tocs; /* per target layer: the tree of new layers, NULL for held ones */

    struct pchunk *chunks;
    size_t n_chunks, cur; /* cursor into chunks */
    uint64_t pos;         /* payload bytes consumed */
    uint8_t *member;      /* a chunk straddling two network reads */
    size_t member_len;
    uint32_t *chunks_left; /* per content */
    int failed;            /* first error of the sink (its message is in err) */
};

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static double ms_since(const struct rx *x)
{
    return (double)(now_ns() - x->t0) / 1e6;
}

const char *sl_pull_phase_name(enum sl_pull_phase p)
{
    switch (p) {
    case SL_PULL_HEADER:
        return "header";
    case SL_PULL_READY:
        return "ready";
    case SL_PULL_PROGRESS:
        return "progress";
    case SL_PULL_COMPLETE:
        return "complete";
    case SL_PULL_STARTUP:
        return "startup";
    }
    return "?";
}

const char *sl_pull_host_platform(void)
{
    static char buf[96];
    struct utsname u;
    const char *arch = "amd64";
    if (uname(&u) == 0) {
        if (strcmp(u.machine, "aarch64") == 0)
            arch = "arm64";
        else if (strcmp(u.machine, "x86_64") != 0)
            arch = u.machine;
    }
    snprintf(buf, sizeof(buf), "linux/%s", arch);
    return buf;
}

static int emit(struct rx *x, enum sl_pull_phase p)
{
    if (!x->req->on_event)
        return 0;
    int r = x->req->on_event(x->req->event_ud, p, &x->st);
    if (r < 0)
        return sl_error_make(x->err, -r, "pull cancelled");
    return 0;
}

/* STARTUP once, when the last traced content is stored (or before COMPLETE without any). */
static int emit_startup(struct rx *x)
{
    if (x->st.ms_startup >= 0)
        return 0;
    x->st.ms_startup = ms_since(x);
    return emit(x, SL_PULL_STARTUP);
}

/* ------------------------------------------------------------------ header checks */

struct tail_src {
    const struct sl_delta_hlayer *l;
};

/* read_at over the tail bytes [toc_offset, size) carried in the header. */
static int tail_read_at(void *ud, void *buf, size_t len, uint64_t off, sl_error_t *err)
{
    const struct sl_delta_hlayer *l = ud;
    if (off < l->toc_offset || off - l->toc_offset > l->toc_tail_len ||
        len > l->toc_tail_len - (off - l->toc_offset))
        return sl_error_make(err, EINVAL,
                             "TOC reaches blob bytes [%" PRIu64 ", +%zu) outside the tail sent",
                             off, len);
    memcpy(buf, l->toc_tail + (off - l->toc_offset), len);
    return 0;
}

static bool chunk_eq(const struct sl_delta_chunk *d, const struct sl_toc_chunk *t)
{
    return d->blob_offset == t->offset && d->compressed_size == t->compressed_size &&
           d->chunk_offset == t->chunk_offset && d->size == t->size &&
           strcmp(d->digest, t->digest) == 0;
}

/* Checks a new layer's file list against its TOC; records which TOC entry carries each content
 * of this layer in content_entry. */
static int check_files(struct rx *x, uint32_t li, const struct sl_toc *toc,
                       const struct sl_toc_entry **content_entry)
{
    const struct sl_delta_hlayer *l = &x->h->layers[li];
    for (size_t i = 0; i < l->n_files; i++) {
        const struct sl_delta_file *f = &l->files[i];
        size_t n = strlen(f->path);
        _cleanup_free_ char *norm = sl_xmalloc(n + 1);
        if (sl_toc_path_normalize(f->path, norm) < 0 || strcmp(norm, f->path) != 0 || !*norm)
            return sl_error_make(x->err, EINVAL,
                                 "layer %s: file name `%s` is not a normalised relative path",
                                 l->digest, f->path);
        const struct sl_toc_entry *e = sl_toc_find(toc, f->path);
        if (e && e->type == SL_TOC_HARDLINK)
            e = e->link;
        if (!e || e->type != SL_TOC_REG)
            return sl_error_make(x->err, EINVAL,
                                 "layer %s: file `%s` is not a regular file of "
                                 "its TOC",
                                 l->digest, f->path);
        if (e->size != f->size || !e->has_digest || strcmp(e->digest, f->digest) != 0)
            return sl_error_make(x->err, EINVAL,
                                 "layer %s: file `%s`: header says %" PRIu64 " bytes %s, TOC "
                                 "says %" PRIu64 " bytes %s",
                                 l->digest, f->path, f->size, f->digest, e->size,
                                 e->has_digest ? e->digest : "(none)");
        if ((f->source == SL_DELTA_FILE_EMPTY) != (f->size == 0))
            return sl_error_make(x->err, EINVAL,
                                 "layer %s: file `%s`: source %s with %" PRIu64 " bytes", l->digest,
                                 f->path, sl_delta_file_source_name(f->source), f->size);
        if (f->source == SL_DELTA_FILE_PAYLOAD) {
            if (f->content >= x->h->n_contents)
                return sl_error_make(x->err, EINVAL, "layer %s: file `%s`: content %u of %zu",
                                     l->digest, f->path, f->content, x->h->n_contents);
            if (x->h->contents[f->content].layer == li && !content_entry[f->content])
                content_entry[f->content] = e;
        }
    }
    return 0;
}

/* Every content must be carried by a file of its layer with exactly the TOC's size and chunk
 * list, and its chunks must lie inside the payload without overlapping. */
static int check_contents(struct rx *x, const struct sl_toc_entry **content_entry)
{
    const struct sl_delta_header *h = x->h;
    size_t total = 0;
    for (size_t i = 0; i < h->n_contents; i++) {
        const struct sl_delta_content *c = &h->contents[i];
        const struct sl_toc_entry *e = content_entry[i];
        if (c->layer >= h->n_layers || !x->tocs[c->layer] || !e)
            return sl_error_make(x->err, EINVAL,
                                 "content %s: no file of target layer %u carries it", c->digest,
                                 c->layer);
        if (strcmp(e->digest, c->digest) != 0 || e->size != c->size || e->n_chunks != c->n_chunks)
            return sl_error_make(x->err, EINVAL,
                                 "content %s: header says %" PRIu64 " bytes in %zu chunks, the "
                                 "TOC of `%s` says %" PRIu64 " bytes in %zu chunks",
                                 c->digest, c->size, c->n_chunks, e->name, e->size, e->n_chunks);
        for (size_t k = 0; k < c->n_chunks; k++)
            if (!chunk_eq(&c->chunks[k], &e->chunks[k]))
                return sl_error_make(x->err, EINVAL,
                                     "content %s: chunk %zu differs from the TOC of `%s`",
                                     c->digest, k, e->name);
        total += c->n_chunks;
    }
    x->chunks = sl_xcalloc(total ? total : 1, sizeof(*x->chunks));
    x->chunks_left = sl_xcalloc(h->n_contents ? h->n_contents : 1, sizeof(uint32_t));
    for (size_t i = 0; i < h->n_contents; i++) {
        const struct sl_delta_content *c = &h->contents[i];
        const struct sl_toc_entry *e = content_entry[i];
        x->chunks_left[i] = (uint32_t)c->n_chunks;
        for (size_t k = 0; k < c->n_chunks; k++) {
            const struct sl_delta_chunk *d = &c->chunks[k];
            if (d->compressed_size == 0 || d->compressed_size > MAX_MEMBER_BUFFERED ||
                d->payload_offset > h->payload_length ||
                d->compressed_size > h->payload_length - d->payload_offset)
                return sl_error_make(x->err, EINVAL,
                                     "content %s chunk %zu: payload bytes [%" PRIu64 ", +%" PRIu64
                                     ") outside the payload of %" PRIu64 " bytes",
                                     c->digest, k, d->payload_offset, d->compressed_size,
                                     h->payload_length);
            x->chunks[x->n_chunks++] = (struct pchunk){
                .poff = d->payload_offset, .content = (uint32_t)i, .tc = e->chunks[k]};
        }
        if (c->traced)
            x->st.traced_total++;
        if (c->n_chunks == 0) {
            x->st.contents_done++;
            if (c->traced)
                x->st.traced_done++;
        }
    }
    /* Payload order is content order in well-formed deltas; sort anyway, then refuse overlap. */
    for (size_t i = 1; i < x->n_chunks; i++) {
        if (x->chunks[i].poff >= x->chunks[i - 1].poff)
            continue;
        struct pchunk t = x->chunks[i];
        size_t j = i;
        while (j > 0 && x->chunks[j - 1].poff > t.poff) {
            x->chunks[j] = x->chunks[j - 1];
            j--;
        }
        x->chunks[j] = t;
    }
    for (size_t i = 1; i < x->n_chunks; i++)
        if (x->chunks[i].poff < x->chunks[i - 1].poff + x->chunks[i - 1].tc.compressed_size)
            return sl_error_make(x->err, EINVAL, "payload chunks overlap at offset %" PRIu64,
                                 x->chunks[i].poff);
    return 0;
}

/* Layers held complete by the node, for the request. */
static int held_layers(struct sl_store *s, char ***ret, size_t *ret_n, sl_error_t *err)
{
    char **all = NULL;
    size_t n = 0, k = 0;
    int r = sl_store_layer_list(s, &all, &n, err);
    if (r < 0)
        return r;
    for (size_t i = 0; i < n; i++) {
        struct sl_store_layer l = {0};
        bool keep = k < MAX_HELD_DECLARED && sl_store_layer_get(s, all[i], &l, NULL) >= 0 &&
                    l.state == SL_STORE_LAYER_COMPLETE;
        sl_store_layer_clear(&l);
        if (keep)
            all[k++] = all[i];
        else
            free(all[i]);
    }
    *ret = all;
    *ret_n = k;
    return 0;
}

static int publish(struct sl_fs *fs, const struct sl_store_layer *rec, sl_error_t *err)
{
    if (!fs)
        return 0;
    _cleanup_free_ char *dir = NULL;
    if (sl_fs_layer_dir(fs, rec->digest, &dir, NULL) >= 0)
        return 0;
    struct sl_toc *toc = NULL;
    int r = sl_store_layer_load_toc(rec, &toc, err);
    if (r < 0)
        return r;
    uint32_t slot = rec->id > 0 && rec->id <= SL_FS_MAX_SLOT ? (uint32_t)rec->id : 0;
    r = sl_fs_add_layer(fs, rec->digest, toc, slot, err);
    if (r == -EEXIST) {
        /* slot taken (or a racing pull published it): retry with any free slot */
        sl_error_free(err);
        if (sl_fs_layer_dir(fs, rec->digest, &dir, NULL) >= 0)
            return 0;
        r = sl_store_layer_load_toc(rec, &toc, err);
        if (r >= 0)
            r = sl_fs_add_layer(fs, rec->digest, toc, 0, err);
        if (r == -EEXIST) {
            sl_error_free(err);
            r = 0;
        }
    }
    return r;
}

/* The header arrived: check it, record and publish the new layers, register, report READY. */
static int on_header(struct rx *x)
{
    struct sl_delta_header *h = NULL;
    int r = sl_delta_header_decode(x->header.data, x->header.len, &h, x->err);
    if (r < 0)
        return r;
    x->h = h;
    if (h->payload_length != x->payload_len)
        return sl_error_make(x->err, EINVAL,
                             "delta: prelude announces %" PRIu64 " payload bytes, header %" PRIu64,
                             x->payload_len, h->payload_length);
    snprintf(x->st.digest, sizeof(x->st.digest), "%s", h->digest);
    x->st.payload_total = h->payload_length;
    x->st.contents_total = h->n_contents;
    x->st.layers_total = (uint32_t)h->n_layers;
    x->st.ms_header = ms_since(x);
    for (size_t i = 0; i < h->n_layers; i++)
        x->st.image_bytes += h->layers[i].size;

    x->tocs = sl_xcalloc(h->n_layers ? h->n_layers : 1, sizeof(*x->tocs));
    _cleanup_free_ const struct sl_toc_entry **content_entry =
        sl_xcalloc(h->n_contents ? h->n_contents : 1, sizeof(*content_entry));
    for (uint32_t i = 0; i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        if (l->held) {
            x->st.layers_held++;
            continue;
        }
        r = sl_toc_load(tail_read_at, (void *)l, l->size, l->toc_digest, &x->tocs[i], x->err);
        if (r < 0)
            return sl_error_wrap(x->err, r, "layer %s: TOC", l->digest);
        if ((r = check_files(x, i, x->tocs[i], content_entry)) < 0)
            return r;
        x->st.layers_new++;
    }
    if ((r = check_contents(x, content_entry)) < 0)
        return r;
    if ((r = emit(x, SL_PULL_HEADER)) < 0)
        return r;

    /* Held layers: the node must have them, published. */
    for (uint32_t i = 0; i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        struct sl_store_layer rec = {0};
        if (l->held) {
            r = sl_store_layer_get(x->store, l->digest, &rec, x->err);
            if (r >= 0)
                r = publish(x->fs, &rec, x->err);
            sl_store_layer_clear(&rec);
            if (r < 0)
                return sl_error_wrap(x->err, r, "held layer %s", l->digest);
            continue;
        }
        snprintf(rec.digest, sizeof(rec.digest), "%s", l->digest);
        snprintf(rec.toc_digest, sizeof(rec.toc_digest), "%s", l->toc_digest);
        rec.blob_size = l->size;
        rec.toc_offset = l->toc_offset;
        rec.tail = l->toc_tail; /* borrowed: not cleared */
        rec.tail_len = l->toc_tail_len;
        r = sl_store_layer_put(x->store, &rec, x->tocs[i], x->err);
        if (r >= 0)
            r = publish(x->fs, &rec, x->err);
        if (r < 0)
            return sl_error_wrap(x->err, r, "layer %s", l->digest);
    }
    for (size_t i = 0; i < h->n_contents; i++) {
        r = sl_store_expect(x->store, h->contents[i].digest, h->contents[i].size, x->err);
        if (r < 0)
            return sl_error_wrap(x->err, r, "content %s", h->contents[i].digest);
    }
    if (x->req->on_register) {
        r = x->req->on_register(x->req->register_ud, h, x->req->ns ? x->req->ns : "default",
                                x->err);
        if (r < 0)
            return sl_error_wrap(x->err, r, "register %s", h->reference);
    }
    x->st.ms_ready = ms_since(x);
    if ((r = emit(x, SL_PULL_READY)) < 0)
        return r;
    if (x->st.traced_total > 0 && x->st.traced_done == x->st.traced_total)
        return emit_startup(x);
    return 0;
}

/* ------------------------------------------------------------------ payload */

static int put(struct rx *x, const struct pchunk *c, const void *p, size_t len)
{
    const char *digest = x->h->contents[c->content].digest;
    int r = sl_store_put_chunk(x->store, digest, &c->tc, p, len, x->err);
    if (r < 0)
        return sl_error_wrap(x->err, r, "content %s chunk at %" PRIu64, digest, c->tc.chunk_offset);
    if (r > 0)
        x->st.chunks_stored++;
    else
        x->st.chunks_duplicate++;
    if (--x->chunks_left[c->content] == 0) {
        x->st.contents_done++;
        if (x->h->contents[c->content].traced && ++x->st.traced_done == x->st.traced_total) {
            x->st.payload_bytes = c->poff + c->tc.compressed_size;
            return emit_startup(x);
        }
    }
    return 0;
}

static int on_payload(struct rx *x, const uint8_t *p, size_t len)
{
    uint64_t end = x->pos + len;
    while (x->pos < end && x->cur < x->n_chunks) {
        const struct pchunk *c = &x->chunks[x->cur];
        if (x->pos < c->poff) { /* gap before the next chunk (none in proxy output) */
            uint64_t skip = SL_MIN(c->poff, end) - x->pos;
            p += skip;
            x->pos += skip;
            continue;
        }
        uint64_t have = x->pos - c->poff; /* bytes of this chunk already buffered */
        uint64_t want = c->tc.compressed_size - have;
        uint64_t avail = end - x->pos;
        if (have == 0 && avail >= want) { /* whole member in this read: no copy */
            int r = put(x, c, p, (size_t)want);
            if (r < 0)
                return r;
        } else {
            if (!x->member)
                x->member = sl_xmalloc((size_t)c->tc.compressed_size);
            uint64_t n = SL_MIN(want, avail);
            memcpy(x->member + x->member_len, p, (size_t)n);
            x->member_len += (size_t)n;
            p += n;
            x->pos += n;
            if (x->member_len < c->tc.compressed_size)
                break;
            int r = put(x, c, x->member, x->member_len);
            free(x->member);
            x->member = NULL;
            x->member_len = 0;
            if (r < 0)
                return r;
            x->cur++;
            continue;
        }
        p += want;
        x->pos += want;
        x->cur++;
    }
    if (x->cur == x->n_chunks)
        x->pos = end; /* trailing bytes after the last chunk */
    x->st.payload_bytes = x->pos;
    int64_t t = now_ns();
    if (t - x->last_progress >= PROGRESS_EVERY_NS) {
        x->last_progress = t;
        return emit(x, SL_PULL_PROGRESS);
    }
    return 0;
}

static int sink(void *ud, const void *data, size_t len)
{
    struct rx *x = ud;
    const uint8_t *p = data;
    int r = 0;
    x->st.bytes_received += len;
    while (len > 0 && r >= 0) {
        switch (x->state) {
        case RX_PRELUDE: {
            size_t n = SL_MIN(len, sizeof(x->prelude) - x->prelude_len);
            memcpy(x->prelude + x->prelude_len, p, n);
            x->prelude_len += n;
            p += n;
            len -= n;
            if (x->prelude_len < sizeof(x->prelude))
                break;
            r = sl_delta_prelude_parse(x->prelude, sizeof(x->prelude), &x->header_len,
                                       &x->payload_len, x->err);
            if (r < 0)
                break;
            x->st.head_bytes = SL_DELTA_PRELUDE_SIZE + x->header_len;
            sl_buf_init(&x->header, (size_t)x->header_len + 1);
            x->state = RX_HEADER;
            break;
        }
        case RX_HEADER: {
            size_t n = (size_t)SL_MIN((uint64_t)len, x->header_len - x->header.len);
            if ((r = sl_buf_append(&x->header, p, n)) < 0) {
                r = sl_error_make(x->err, -r, "delta header of %" PRIu64 " bytes", x->header_len);
                break;
            }
            p += n;
            len -= n;
            if (x->header.len < x->header_len)
                break;
            r = on_header(x);
            x->state = RX_PAYLOAD;
            sl_buf_free(&x->header);
            break;
        }
        case RX_PAYLOAD: {
            size_t n = (size_t)SL_MIN((uint64_t)len, x->payload_len - x->pos);
            r = on_payload(x, p, n);
            p += n;
            len -= n;
            if (r >= 0 && x->pos == x->payload_len)
                x->state = RX_DONE;
            break;
        }
        case RX_DONE:
            r = sl_error_make(x->err, EPROTO, "delta: %zu bytes after the payload", len);
            break;
        }
    }
    if (r < 0)
        x->failed = r;
    return r < 0 ? r : 0;
}

static int status_errno(long status)
{
    switch (status) {
    case 400:
        return EINVAL;
    case 401:
    case 403:
        return EACCES;
    case 404:
        return ENOENT;
    case 503:
        return EAGAIN;
    default:
        return EIO;
    }
}

static void rx_clear(struct rx *x)
{
    if (x->tocs && x->h)
        for (size_t i = 0; i < x->h->n_layers; i++)
            sl_toc_free(x->tocs[i]);
    free(x->tocs);
    sl_delta_header_free(x->h);
    sl_buf_free(&x->header);
    free(x->chunks);
    free(x->chunks_left);
    free(x->member);
}

static int pull(struct rx *x)
{
    const struct sl_pull_request *req = x->req;
    if (!req->proxy_url || !*req->proxy_url)
        return sl_error_make(x->err, EINVAL, "no proxy configured");
    if (!req->ref || !*req->ref)
        return sl_error_make(x->err, EINVAL, "no image reference");
    _cleanup_free_ char *base = sl_xasprintf("%s/starlight/delta", req->proxy_url);
    _cleanup_free_ char *url = NULL;
    int r = sl_http_url_add_query(base, "to", req->ref, &url);
    char *next = NULL;
#define ADDQ(k, v)                                                                                 \
    do {                                                                                           \
        if (r >= 0) {                                                                              \
            r = sl_http_url_add_query(url, k, v, &next);                                           \
            free(url);                                                                             \
            url = next;                                                                            \
        }                                                                                          \
    } while (0)
    ADDQ("platform", req->platform ? req->platform : sl_pull_host_platform());
    if (req->insecure)
        ADDQ("insecure", "1");
    for (size_t i = 0; req->from && req->from[i]; i++)
        ADDQ("from", req->from[i]);
    char **held = NULL;
    size_t n_held = 0;
    if (r >= 0)
        r = held_layers(x->store, &held, &n_held, x->err);
    for (size_t i = 0; i < n_held; i++) {
        ADDQ("layer", held[i]);
        free(held[i]);
    }
    free(held);
#undef ADDQ
    if (r < 0)
        return sl_error_wrap(x->err, r, "delta request for %s", req->ref);
    if (strlen(url) > 512 * 1024)
        return sl_error_make(x->err, E2BIG, "delta request for %s: URL too long", req->ref);

    _cleanup_free_ char *authh = NULL;
    struct sl_http_options o = {
        .low_speed_time_s = req->low_speed_time_s ? req->low_speed_time_s : 60, .retries = 2};
    struct sl_http_request hr;
    sl_http_request_init(&hr);
    hr.url = url;
    hr.authorization = req->proxy_auth;
    hr.sink = sink;
    hr.sink_userdata = x;
    struct sl_http_response resp = {0};
    log_debug("pull %s: GET %s", req->ref, url);
    /* The sink's errors land in x->err; the transport's in herr (it would overwrite them). */
    _cleanup_error_ sl_error_t herr = NULL;
    r = sl_http_perform(&o, &hr, &resp, &herr);
    if (r < 0) {
        if (x->failed < 0) {
            r = x->failed;
        } else {
            sl_error_free(x->err);
            *x->err = TAKE_PTR(herr);
            r = sl_error_wrap(x->err, r, "delta from %s", req->proxy_url);
        }
        sl_http_response_free(&resp);
        return r;
    }
    long status = resp.status;
    if (status < 200 || status > 299) {
        r = sl_error_make(x->err, status_errno(status), "delta from %s: HTTP %ld %.*s",
                          req->proxy_url, status, (int)SL_MIN(resp.error_body.len, 512),
                          resp.error_body.data ? resp.error_body.data : "");
        sl_http_response_free(&resp);
        return r;
    }
    sl_http_response_free(&resp);
    if (x->state != RX_DONE && !(x->state == RX_PAYLOAD && x->payload_len == 0 && x->h))
        return sl_error_make(x->err, EPROTO,
                             "delta from %s: body ended early (%" PRIu64 " of %" PRIu64
                             " payload bytes)",
                             req->proxy_url, x->pos, x->payload_len);
    if (x->cur != x->n_chunks)
        return sl_error_make(x->err, EPROTO, "delta: %zu chunks never arrived",
                             x->n_chunks - x->cur);

    /* Mark the new layers complete when every content is. */
    for (size_t i = 0; i < x->h->n_layers; i++) {
        enum sl_store_layer_state ls;
        const char *d = x->h->layers[i].digest;
        if (!x->tocs[i])
            continue;
        r = sl_store_layer_refresh(x->store, d, x->tocs[i], &ls, x->err);
        if (r < 0)
            return sl_error_wrap(x->err, r, "layer %s", d);
        if (ls != SL_STORE_LAYER_COMPLETE)
            log_warn("pull %s: layer %s still incomplete after the payload", req->ref, d);
    }
    x->st.payload_bytes = x->pos;
    if ((r = emit_startup(x)) < 0)
        return r;
    x->st.ms_complete = ms_since(x);
    return emit(x, SL_PULL_COMPLETE);
}

int sl_pull_run(struct sl_store *store, struct sl_fs *fs, const struct sl_pull_request *req,
                struct sl_pull_stats *ret_stats, sl_error_t *err)
{
    struct rx x = {.store = store, .fs = fs, .req = req, .err = err, .t0 = now_ns()};
    x.st.ms_header = x.st.ms_ready = x.st.ms_complete = x.st.ms_startup = -1;
    x.last_progress = x.t0;
    int r = pull(&x);
    if (r < 0)
        r = sl_error_wrap(err, r, "pull %s", req->ref ? req->ref : "(none)");
    if (ret_stats)
        *ret_stats = x.st;
    rx_clear(&x);
    return r;
}

int sl_pull_publish_known(struct sl_store *store, struct sl_fs *fs, sl_error_t *err)
{
    char **all = NULL;
    size_t n = 0;
    int r = sl_store_layer_list(store, &all, &n, err);
    if (r < 0)
        return r;
    int published = 0;
    for (size_t i = 0; i < n; i++) {
        struct sl_store_layer rec = {0};
        sl_error_t e = NULL;
        r = sl_store_layer_get(store, all[i], &rec, &e);
        if (r >= 0)
            r = publish(fs, &rec, &e);
        if (r < 0)
            log_warn("layer %s: not published: %s", all[i], sl_error_msg(e, r));
        else
            published++;
        sl_error_free(&e);
        sl_store_layer_clear(&rec);
        free(all[i]);
    }
    free(all);
    return published;
}
