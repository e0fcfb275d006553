/* pull.c — the delta receiver (pull.h). The HTTP sink is a small state machine: prelude,
 * header, payload. Payload chunks are sorted by payload offset once, so the sink walks them
 * with one cursor and hands each gzip member to the store without looking at its bytes. */
#include "pull.h"
#include "cleanup.h"
#include "http.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <time.h>

#define PROGRESS_EVERY_NS   200000000LL /* progress events at most 5 per second */
#define MAX_HELD_DECLARED   4096        /* the proxy's cap on layers in one request */
#define MAX_MEMBER_BUFFERED ((uint64_t)SL_TOC_MAX_CHUNK * 2)
#define MAX_HELD_CONTENTS   8192 /* the proxy's cap on held contents in one request */
#define MAX_STALLS          10   /* failed attempts in a row without a new byte */
#define MAX_RESUMES         200  /* attempts of one pull in all */
#define MAX_REPLANS         3    /* new deltas after the proxy's plan changed */
#define MAX_BAD_CHUNKS      3    /* chunks failing verification, fetched again */
#define BACKOFF_FIRST_MS    100
#define BACKOFF_MAX_MS      4000
#define CHECKPOINT_EVERY_NS 1000000000LL /* resume point persisted at most once a second */
#define MAX_EARLY_BYTES     (64u << 20)  /* payload held while the header is processed */

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
    /* layers of this pull's plans, pinned in the store (the collector keeps them) until the
     * pull ends */
    char (*pins)[SL_DIGEST_STR_LEN];
    size_t n_pins;
    int64_t t0, last_progress;

    enum rx_state state;
    uint8_t prelude[SL_DELTA_PRELUDE_SIZE];
    size_t prelude_len;
    uint64_t header_len, payload_len;
    uint32_t version; /* of the delta format, from the prelude */
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

    /* resume (docs/protocol.md §2 Range/If-Range): the current request, its answer's ETag and
     * where the state machine stands in the body */
    char *key;           /* resume key in the store: proxy, reference, platform */
    char *url, *body;    /* the delta request (body: POST JSON, NULL: GET) */
    char etag[160];      /* of the current plan's answer; "" = none yet */
    uint64_t body_off;   /* body bytes consumed by the state machine */
    uint64_t high_water; /* body bytes ever delivered for this plan (to count re-sent bytes) */
    bool head_only;      /* this attempt asks for the head only (resuming after a restart) */
    uint64_t resume_off; /* after a head-only answer: payload offset to continue from */
    bool replan;         /* the proxy's answer belongs to another plan */
    bool bad_chunk;      /* the sink failed on a chunk that did not verify */
    bool no_contents;    /* the proxy refused held contents (older proxy) */
    bool ckpt_failed;    /* persisting the resume point failed once (logged) */
    int64_t ckpt_t;

    /* The header is processed (on_header) on a thread of its own while curl keeps reading the
     * answer: the body bytes that arrive meanwhile wait in `early` (at most MAX_EARLY_BYTES;
     * beyond, the sink waits for the header) and go through the state machine after it. While
     * hdr_pending only the worker touches the plan and x->st. */
    pthread_t hdr_thread;
    bool hdr_pending;
    atomic_bool hdr_done;
    int hdr_r;
    struct sl_buf early;
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
static int cmp_content_digest(const void *a, const void *b, void *ud)
{
    const struct sl_delta_content *c = ud;
    return strcmp(c[*(const uint32_t *)a].digest, c[*(const uint32_t *)b].digest);
}

/* Version 2 lists no files: each regular file of the layer's TOC comes from the payload when a
 * content of this layer has its digest (docs/protocol.md §3); the first such file carries the
 * content. by_digest: content indexes sorted by digest. */
static void derive_files(struct rx *x, uint32_t li, const struct sl_toc *toc,
                         const uint32_t *by_digest, const struct sl_toc_entry **content_entry)
{
    const struct sl_delta_content *c = x->h->contents;
    size_t n = x->h->n_contents;
    for (size_t i = 0, ne = sl_toc_count(toc); i < ne && n; i++) {
        const struct sl_toc_entry *e = sl_toc_entry_at(toc, i);
        if (e->type != SL_TOC_REG || e->size == 0 || !e->has_digest)
            continue; /* empty files need nothing; others come from held contents */
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int d = strcmp(c[by_digest[mid]].digest, e->digest);
            if (d == 0) {
                uint32_t k = by_digest[mid];
                if (c[k].layer == li && !content_entry[k])
                    content_entry[k] = e;
                break;
            }
            if (d < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
}

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

/* Publishes a recorded layer on the fs with `toc` (taken; NULL: loaded from the record). */
/* Fills REC's identity and TOC tail from header layer L (the tail is borrowed, not cleared). */
static void layer_record_from(struct sl_store_layer *rec, const struct sl_delta_hlayer *l)
{
    snprintf(rec->digest, sizeof(rec->digest), "%s", l->digest);
    snprintf(rec->toc_digest, sizeof(rec->toc_digest), "%s", l->toc_digest);
    rec->blob_size = l->size;
    rec->toc_offset = l->toc_offset;
    rec->tail = l->toc_tail;
    rec->tail_len = l->toc_tail_len;
}

static int publish(struct sl_fs *fs, const struct sl_store_layer *rec, struct sl_toc *toc,
                   sl_error_t *err)
{
    _cleanup_toc_ struct sl_toc *given = toc;
    if (!fs)
        return 0;
    _cleanup_free_ char *dir = NULL;
    if (sl_fs_layer_dir(fs, rec->digest, &dir, NULL) >= 0)
        return 0;
    toc = TAKE_PTR(given);
    int r = toc ? 0 : sl_store_layer_load_toc(rec, &toc, err);
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
        if (r == -EEXIST && sl_fs_layer_dir(fs, rec->digest, &dir, NULL) >= 0) {
            sl_error_free(err); /* a racing pull published it */
            r = 0;
        }
    }
    return r;
}

#define ANN_STARLIGHT_TOC "containerd.io/snapshot/remote/starlight/toc.digest"
#define ANN_STARGZ_TOC    "containerd.io/snapshot/stargz/toc.digest"

/* The manifest bytes (sha256 = the header's digest, checked by the decoder) must vouch for
 * the TOC of every layer built from the proxy's bytes: a TOC-digest annotation, which the
 * decoder checked equals tocDigest, which sl_toc_load checks against the tail. Without it a
 * proxy could serve any self-consistent TOC. */
static int check_toc_vouched(struct rx *x)
{
    const struct sl_delta_header *h = x->h;
    json_auto_t *m = NULL;
    int r = sl_json_parse((const char *)h->manifest, h->manifest_len, SL_DELTA_MAX_BLOB, "manifest",
                          &m, x->err);
    if (r < 0)
        return r;
    json_t *layers = json_object_get(m, "layers");
    for (size_t i = 0; i < h->n_layers; i++) {
        if (h->layers[i].held)
            continue;
        json_t *ann = json_object_get(json_array_get(layers, i), "annotations");
        if (!json_is_string(json_object_get(ann, ANN_STARLIGHT_TOC)) &&
            !json_is_string(json_object_get(ann, ANN_STARGZ_TOC)))
            return sl_error_make(x->err, EBADMSG,
                                 "layer %s: the manifest carries no TOC digest annotation, so "
                                 "the TOC the proxy sends cannot be verified (convert the image "
                                 "with `ctr-starlight convert`)",
                                 h->layers[i].digest);
    }
    return 0;
}

/* Records the new layers of the header in the store (and expects every content of the plan),
 * on its own thread while the header's worker registers the image (on_header). */
struct recorder {
    struct rx *x;
    pthread_t thread;
    bool joined;
    int r;
    sl_error_t err;
    int64_t *ids; /* per target layer: the store's record id (new layers) */
    double ms;
};

static void *record_layers(void *ud)
{
    struct recorder *rc = ud;
    struct rx *x = rc->x;
    const struct sl_delta_header *h = x->h;
    int64_t t0 = now_ns();
    int r = 0;
    for (uint32_t i = 0; r >= 0 && i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        struct sl_store_layer rec = {0};
        if (l->held) { /* the node must have it, published */
            r = sl_store_layer_get(x->store, l->digest, &rec, &rc->err);
            if (r >= 0)
                r = publish(x->fs, &rec, NULL, &rc->err);
            sl_store_layer_clear(&rec);
            if (r < 0)
                r = sl_error_wrap(&rc->err, r, "held layer %s", l->digest);
            continue;
        }
        layer_record_from(&rec, l);
        r = sl_store_layer_put(x->store, &rec, x->tocs[i], &rc->err);
        if (r < 0)
            r = sl_error_wrap(&rc->err, r, "layer %s", l->digest);
        rc->ids[i] = rec.id;
    }
    for (size_t i = 0; r >= 0 && i < h->n_contents; i++) {
        r = sl_store_expect(x->store, h->contents[i].digest, h->contents[i].size, &rc->err);
        if (r < 0)
            r = sl_error_wrap(&rc->err, r, "content %s", h->contents[i].digest);
    }
    rc->r = r;
    rc->ms = (double)(now_ns() - t0) / 1e6;
    return NULL;
}

/* Waits for the recorder (once). Its error goes to *err (when err is not NULL). */
static int recorder_join(struct recorder *rc, sl_error_t *err)
{
    if (!rc->joined) {
        pthread_join(rc->thread, NULL);
        rc->joined = true;
    }
    if (rc->r < 0 && err && rc->err) {
        sl_error_free(err);
        *err = TAKE_PTR(rc->err);
    }
    sl_error_free(&rc->err);
    return rc->r;
}

/* The registration's gate (sl_pull_register_fn), run once: waits for the store's records, then
 * publishes the new layers on the fs, so a registered image never names a layer the fs does not
 * serve (a failure stops the pull before the image record). */
struct gate {
    struct recorder rc;
    struct sl_toc **fs_tocs; /* per target layer: the tree to publish (NULL: load it) */
    bool ran;
    int r;
    double ms_publish;
};

static int gate_run(struct gate *g, sl_error_t *err)
{
    if (g->ran)
        return g->r;
    g->ran = true;
    struct rx *x = g->rc.x;
    const struct sl_delta_header *h = x->h;
    int r = recorder_join(&g->rc, err);
    int64_t t0 = now_ns();
    for (uint32_t i = 0; r >= 0 && i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        if (l->held)
            continue; /* published by the recorder */
        struct sl_store_layer rec = {.id = g->rc.ids[i]};
        layer_record_from(&rec, l);
        r = publish(x->fs, &rec, TAKE_PTR(g->fs_tocs[i]), err);
        if (r < 0)
            r = sl_error_wrap(err, r, "layer %s: publish", l->digest);
    }
    g->ms_publish = (double)(now_ns() - t0) / 1e6;
    return g->r = r;
}

static int register_gate(void *ud, sl_error_t *err)
{
    return gate_run(ud, err);
}

/* The header arrived: check it, record and publish the new layers, register, report READY. */
static int on_header(struct rx *x)
{
    int64_t t_in = now_ns();
    struct sl_delta_header *h = NULL;
    int r = sl_delta_header_decode_v(x->header.data, x->header.len, x->version, &h, x->err);
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

    /* before anything is recorded: a collection (even --grace 0) keeps them from now on */
    x->pins = sl_xrealloc(x->pins, (x->n_pins + h->n_layers) * sizeof *x->pins);
    for (size_t i = 0; i < h->n_layers; i++) {
        sl_store_layer_pin(x->store, h->layers[i].digest);
        snprintf(x->pins[x->n_pins++], sizeof *x->pins, "%s", h->layers[i].digest);
    }

    int64_t t_decoded = now_ns();
    if ((r = check_toc_vouched(x)) < 0)
        return r;
    x->tocs = sl_xcalloc(h->n_layers ? h->n_layers : 1, sizeof(*x->tocs));
    _cleanup_free_ const struct sl_toc_entry **content_entry =
        sl_xcalloc(h->n_contents ? h->n_contents : 1, sizeof(*content_entry));
    _cleanup_free_ uint32_t *by_digest = NULL;
    if (h->version == SL_DELTA_VERSION_2) {
        by_digest = sl_xcalloc(h->n_contents + 1, sizeof(*by_digest));
        for (size_t i = 0; i < h->n_contents; i++)
            by_digest[i] = (uint32_t)i;
        qsort_r(by_digest, h->n_contents, sizeof(*by_digest), cmp_content_digest, h->contents);
    }
    for (uint32_t i = 0; i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        if (l->held) {
            x->st.layers_held++;
            continue;
        }
        r = sl_toc_load(tail_read_at, (void *)l, l->size, l->toc_digest, &x->tocs[i], x->err);
        if (r < 0)
            return sl_error_wrap(x->err, r, "layer %s: TOC", l->digest);
        if (by_digest)
            derive_files(x, i, x->tocs[i], by_digest, content_entry);
        else if ((r = check_files(x, i, x->tocs[i], content_entry)) < 0)
            return r;
        x->st.layers_new++;
    }
    if ((r = check_contents(x, content_entry)) < 0)
        return r;
    int64_t t_checked = now_ns();
    if ((r = emit(x, SL_PULL_HEADER)) < 0)
        return r;

    /* The store records the layers on a thread of its own while this one prepares the fs
     * trees and calls the registration; its gate (before the image record) waits for the
     * records and publishes the layers. */
    struct gate g = {
        .rc = {.x = x, .ids = sl_xcalloc(h->n_layers ? h->n_layers : 1, sizeof(int64_t))},
        .fs_tocs = sl_xcalloc(h->n_layers ? h->n_layers : 1, sizeof(*g.fs_tocs))};
    struct recorder *rc = &g.rc;
    if (pthread_create(&rc->thread, NULL, record_layers, rc) != 0) {
        record_layers(rc); /* no thread: record here, then go on */
        rc->joined = true;
    }
    for (uint32_t i = 0; x->fs && i < h->n_layers; i++) {
        const struct sl_delta_hlayer *l = &h->layers[i];
        char *dir = NULL;
        bool published = !l->held && sl_fs_layer_dir(x->fs, l->digest, &dir, NULL) >= 0;
        free(dir);
        if (l->held || published)
            continue; /* published by an earlier pull */
        if (sl_toc_load(tail_read_at, (void *)l, l->size, l->toc_digest, &g.fs_tocs[i], NULL) < 0)
            g.fs_tocs[i] = NULL; /* checked above: cannot fail; publish() loads it again */
    }
    int64_t t_trees = now_ns();
    r = 0;
    if (x->req->on_register) {
        r = x->req->on_register(x->req->register_ud, h, x->req->ns ? x->req->ns : "default",
                                register_gate, &g, x->err);
        if (r < 0 && !(g.ran && g.r < 0))
            r = sl_error_wrap(x->err, r, "register %s", h->reference);
    }
    int64_t t_registered = now_ns();
    if (r >= 0)
        r = gate_run(&g, x->err); /* no hook: record and publish now (done when it ran) */
    else
        recorder_join(rc, NULL);
    for (uint32_t i = 0; i < h->n_layers; i++)
        sl_toc_free(g.fs_tocs[i]);
    free(g.fs_tocs);
    free(rc->ids);
    if (r < 0)
        return r;
    log_info("pull %s: header %" PRIu64 " bytes: decode %.0f ms, TOCs %.0f ms; then trees %.0f ms, "
             "register %.0f ms (store %.0f ms meanwhile, publish %.0f ms in it)",
             x->req->ref, x->header_len, (t_decoded - t_in) / 1e6, (t_checked - t_decoded) / 1e6,
             (t_trees - t_checked) / 1e6, (t_registered - t_trees) / 1e6, rc->ms, g.ms_publish);
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
    if (r == -EBADMSG)
        x->bad_chunk = true;
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

/* Persists the resume point: every chunk below the returned offset is stored and verified
 * (a chunk buffered in part does not count). Best effort: a failure only costs a resume. */
static void checkpoint(struct rx *x, bool force)
{
    if (!x->key || !x->etag[0] || x->hdr_pending || !x->h || x->head_only)
        return;
    int64_t t = now_ns();
    if (!force && t - x->ckpt_t < CHECKPOINT_EVERY_NS)
        return;
    x->ckpt_t = t;
    uint64_t off = x->pos;
    if (x->cur < x->n_chunks && x->chunks[x->cur].poff < off)
        off = x->chunks[x->cur].poff;
    /* every layer of the answer, held ones too: collecting any of them voids the point */
    _cleanup_free_ char **layers = sl_xcalloc(x->h->n_layers + 1, sizeof(*layers));
    for (size_t i = 0; i < x->h->n_layers; i++)
        layers[i] = x->h->layers[i].digest;
    struct sl_store_resume rp = {.url = x->url,
                                 .body = x->body,
                                 .etag = x->etag,
                                 .head_len = x->st.head_bytes,
                                 .payload_off = off,
                                 .layers = layers,
                                 .n_layers = x->h->n_layers};
    _cleanup_error_ sl_error_t e = NULL;
    int r = sl_store_resume_put(x->store, x->key, &rp, &e);
    if (r < 0 && !x->ckpt_failed) {
        log_warn("pull %s: resume point not saved: %s", x->req->ref, sl_error_msg(e, r));
        x->ckpt_failed = true;
    }
}

static void *header_main(void *ud)
{
    struct rx *x = ud;
    x->hdr_r = on_header(x);
    atomic_store(&x->hdr_done, true);
    return NULL;
}

/* Runs the state machine over one piece of the body. */
static int feed(struct rx *x, const uint8_t *p, size_t len)
{
    const size_t total = len;
    int r = 0;
    x->st.bytes_received += len;
    if (x->body_off < x->high_water)
        x->st.bytes_resent += SL_MIN((uint64_t)len, x->high_water - x->body_off);
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
            r = sl_delta_prelude_parse_v(x->prelude, sizeof(x->prelude), &x->header_len,
                                         &x->payload_len, &x->version, x->err);
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
            x->state = RX_PAYLOAD;
            if (len == 0) { /* the piece ends with the header (sink cuts it so) */
                atomic_store(&x->hdr_done, false);
                if (pthread_create(&x->hdr_thread, NULL, header_main, x) == 0) {
                    x->hdr_pending = true;
                    break;
                }
            }
            r = on_header(x);
            sl_buf_free(&x->header);
            if (r >= 0)
                checkpoint(x, true);
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
    if (r < 0) {
        x->failed = r;
        x->high_water = SL_MAX(x->high_water, x->body_off + total); /* received all the same */
        return r;
    }
    x->body_off += total;
    x->high_water = SL_MAX(x->high_water, x->body_off);
    if (x->state == RX_PAYLOAD)
        checkpoint(x, false);
    return 0;
}

/* Joins the header's worker, then runs the body bytes that arrived meanwhile. */
static int header_finish(struct rx *x)
{
    pthread_join(x->hdr_thread, NULL);
    x->hdr_pending = false;
    sl_buf_free(&x->header);
    struct sl_buf e = x->early;
    sl_buf_init(&x->early, 0);
    int r = x->hdr_r;
    if (r < 0) {
        x->failed = r;
        x->high_water = SL_MAX(x->high_water, x->body_off + e.len); /* received all the same */
    } else {
        checkpoint(x, true);
        if (e.len > 0)
            r = feed(x, (const uint8_t *)e.data, e.len);
    }
    sl_buf_free(&e);
    return r;
}

/* curl's write callback. Pieces are cut at the end of the prelude and of the header, so the
 * header's worker starts at once and what follows is held until it is done. */
static int sink(void *ud, const void *data, size_t len)
{
    struct rx *x = ud;
    const uint8_t *p = data;
    while (len > 0) {
        if (x->hdr_pending) {
            if (!atomic_load(&x->hdr_done) && x->early.len + len <= MAX_EARLY_BYTES &&
                sl_buf_append(&x->early, p, len) >= 0)
                return 0;
            int r = header_finish(x);
            if (r < 0)
                return r;
            continue;
        }
        size_t n = len;
        if (x->state == RX_PRELUDE)
            n = SL_MIN(len, sizeof(x->prelude) - x->prelude_len);
        else if (x->state == RX_HEADER && x->header_len > x->header.len)
            n = (size_t)SL_MIN((uint64_t)len, x->header_len - x->header.len);
        int r = feed(x, p, n);
        if (r < 0)
            return r;
        p += n;
        len -= n;
    }
    return 0;
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

/* Frees what belongs to the current plan (header, trees, chunk list, buffered member). */
static void rx_clear_plan(struct rx *x)
{
    if (x->tocs && x->h)
        for (size_t i = 0; i < x->h->n_layers; i++)
            sl_toc_free(x->tocs[i]);
    free(x->tocs);
    x->tocs = NULL;
    sl_delta_header_free(x->h);
    x->h = NULL;
    sl_buf_free(&x->header);
    sl_buf_free(&x->early);
    free(x->chunks);
    x->chunks = NULL;
    free(x->chunks_left);
    x->chunks_left = NULL;
    free(x->member);
    x->member = NULL;
    x->member_len = 0;
    x->n_chunks = x->cur = 0;
    x->pos = x->body_off = x->high_water = 0;
    x->state = RX_PRELUDE;
    x->prelude_len = 0;
    x->header_len = x->payload_len = 0;
    x->etag[0] = 0;
    x->st.contents_done = x->st.contents_total = 0;
    x->st.traced_done = x->st.traced_total = 0;
    x->st.layers_total = x->st.layers_new = x->st.layers_held = 0;
    x->st.payload_bytes = x->st.payload_total = x->st.image_bytes = 0;
}

static void rx_clear(struct rx *x)
{
    rx_clear_plan(x);
    for (size_t i = 0; i < x->n_pins; i++)
        sl_store_layer_unpin(x->store, x->pins[i]);
    free(x->pins);
    free(x->key);
    free(x->url);
    free(x->body);
}

static void strv_free(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Contents of the current plan the store holds complete (caller frees). */
static void plan_complete_contents(struct rx *x, char ***ret, size_t *ret_n)
{
    char **v = NULL;
    size_t n = 0;
    for (size_t i = 0; x->h && i < x->h->n_contents && n < MAX_HELD_CONTENTS; i++) {
        const struct sl_delta_content *c = &x->h->contents[i];
        if (c->size == 0 || sl_store_content_state(x->store, c->digest) != SL_STORE_COMPLETE)
            continue;
        v = sl_xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = sl_xstrdup(c->digest);
    }
    *ret = v;
    *ret_n = n;
}

/* Builds the delta request into x->url / x->body: a GET naming the held layers, or, when the
 * node holds verified contents of layers it does not hold complete (an earlier pull broke, or
 * the plan changed under this one) and the proxy accepts them, a POST naming those too. */
static int build_request(struct rx *x, char **extra, size_t n_extra)
{
    const struct sl_pull_request *req = x->req;
    free(x->url);
    free(x->body);
    x->url = x->body = NULL;
    char **held = NULL, **contents = NULL;
    size_t n_held = 0, n_contents = 0;
    int r = held_layers(x->store, &held, &n_held, x->err);
    if (r >= 0 && !x->no_contents)
        r = sl_store_held_contents(x->store, MAX_HELD_CONTENTS, &contents, &n_contents, x->err);
    if (r >= 0 && !x->no_contents && n_extra) {
        /* completions of this very pull may not be committed to the database yet */
        contents = sl_xrealloc(contents, (n_contents + n_extra + 1) * sizeof(*contents));
        for (size_t i = 0; i < n_extra; i++)
            contents[n_contents++] = sl_xstrdup(extra[i]);
        qsort(contents, n_contents, sizeof(*contents), cmp_strp);
        size_t k = 0;
        for (size_t i = 0; i < n_contents; i++) {
            if (k && strcmp(contents[k - 1], contents[i]) == 0)
                free(contents[i]);
            else
                contents[k++] = contents[i];
        }
        n_contents = SL_MIN(k, (size_t)MAX_HELD_CONTENTS);
        for (size_t i = n_contents; i < k; i++)
            free(contents[i]);
    }
    if (r < 0) {
        strv_free(held, n_held);
        return sl_error_wrap(x->err, r, "delta request for %s", req->ref);
    }
    const char *platform = req->platform ? req->platform : sl_pull_host_platform();
    _cleanup_free_ char *base = sl_xasprintf("%s/starlight/delta", req->proxy_url);
    if (n_contents > 0) {
        json_t *o = json_object();
        json_object_set_new(o, "to", json_string(req->ref));
        json_object_set_new(o, "platform", json_string(platform));
        json_t *a = json_array();
        for (size_t i = 0; req->from && req->from[i]; i++)
            json_array_append_new(a, json_string(req->from[i]));
        json_object_set_new(o, "from", a);
        a = json_array();
        for (size_t i = 0; i < n_held; i++)
            json_array_append_new(a, json_string(held[i]));
        json_object_set_new(o, "layers", a);
        a = json_array();
        for (size_t i = 0; i < n_contents; i++)
            json_array_append_new(a, json_string(contents[i]));
        json_object_set_new(o, "contents", a);
        json_object_set_new(o, "insecure", json_boolean(req->insecure));
        x->body = sl_json_dump(o, NULL);
        json_decref(o);
        x->url = TAKE_PTR(base);
        log_info("pull %s: naming %zu verified contents of incomplete layers as held", req->ref,
                 n_contents);
    }
    strv_free(contents, n_contents);
    if (x->body) {
        strv_free(held, n_held);
        return 0;
    }
    _cleanup_free_ char *url = NULL;
    r = sl_http_url_add_query(base, "to", req->ref, &url);
    char *next = NULL;
#define ADDQ(k, v)                                                                                 \
    do {                                                                                           \
        if (r >= 0) {                                                                              \
            r = sl_http_url_add_query(url, k, v, &next);                                           \
            free(url);                                                                             \
            url = next;                                                                            \
        }                                                                                          \
    } while (0)
    ADDQ("platform", platform);
    if (req->insecure)
        ADDQ("insecure", "1");
    for (size_t i = 0; req->from && req->from[i]; i++)
        ADDQ("from", req->from[i]);
    for (size_t i = 0; i < n_held; i++)
        ADDQ("layer", held[i]);
#undef ADDQ
    strv_free(held, n_held);
    if (r < 0)
        return sl_error_wrap(x->err, r, "delta request for %s", req->ref);
    if (strlen(url) > 512 * 1024)
        return sl_error_make(x->err, E2BIG, "delta request for %s: URL too long", req->ref);
    x->url = TAKE_PTR(url);
    return 0;
}

/* Before the first byte of each 2xx answer: learn the ETag, and check that a Range answer
 * continues exactly where this receiver stands. A full answer to a Range request means the
 * plan changed: stop reading it (a new delta naming what is held follows). */
static int on_headers(void *ud, long status, const struct sl_http_headers *hs)
{
    struct rx *x = ud;
    const char *etag = sl_http_headers_get(hs, "ETag");
    bool ranged = x->etag[0] && (x->body_off > 0 || x->head_only);
    if (!ranged) {
        snprintf(x->etag, sizeof(x->etag), "%s",
                 etag && strlen(etag) < sizeof(x->etag) ? etag : "");
        return 0;
    }
    if (status != 206 || !etag || strcmp(etag, x->etag) != 0) {
        x->replan = true;
        return x->failed = sl_error_make(x->err, ESTALE,
                                         "delta answer %ld with ETag %s instead "
                                         "of %s",
                                         status, etag ? etag : "(none)", x->etag);
    }
    int64_t first = 0, last = 0, total = 0;
    const char *cr = sl_http_headers_get(hs, "Content-Range");
    if (!cr || sl_http_parse_content_range(cr, &first, &last, &total) < 0 ||
        (uint64_t)first != x->body_off ||
        (x->h && total >= 0 && (uint64_t)total != x->st.head_bytes + x->payload_len)) {
        x->replan = true; /* not the answer this receiver continues: start over */
        return x->failed = sl_error_make(
                   x->err, EPROTO, "delta: Range answer `%s` does not continue at byte %" PRIu64,
                   cr ? cr : "(no Content-Range)", x->body_off);
    }
    return 0;
}

/* After a head-only answer (resuming a pull of an earlier daemon run): continue after the
 * chunks the store already holds below the saved offset. */
static void skip_stored(struct rx *x, uint64_t off)
{
    while (x->cur < x->n_chunks) {
        const struct pchunk *c = &x->chunks[x->cur];
        if (c->poff + c->tc.compressed_size > off)
            break;
        const struct sl_delta_content *dc = &x->h->contents[c->content];
        struct sl_store_content *sc = NULL;
        if (sl_store_content_open(x->store, dc->digest, dc->size, &sc, NULL) < 0)
            break;
        bool have = sl_store_chunks_present(sc, &c->tc, 1);
        sl_store_content_unref(sc);
        if (!have)
            break;
        if (--x->chunks_left[c->content] == 0) {
            x->st.contents_done++;
            if (dc->traced)
                x->st.traced_done++;
        }
        x->cur++;
    }
    x->pos = x->cur < x->n_chunks ? x->chunks[x->cur].poff : x->payload_len;
    x->body_off = x->st.head_bytes + x->pos;
    x->high_water = SL_MAX(x->high_water, x->body_off);
    x->st.payload_bytes = x->pos;
    if (x->pos == x->payload_len)
        x->state = RX_DONE;
}

enum attempt_result { ATTEMPT_DONE, ATTEMPT_AGAIN };

/* One HTTP request of the pull. Returns ATTEMPT_DONE when the whole body arrived,
 * ATTEMPT_AGAIN when a head-only answer was handled, or a negative errno (x->replan,
 * x->bad_chunk tell the caller how to go on). */
static int attempt(struct rx *x)
{
    const struct sl_pull_request *req = x->req;
    x->failed = 0;
    x->replan = x->bad_chunk = false;
    struct sl_http_options o = {
        .low_speed_time_s = req->low_speed_time_s ? req->low_speed_time_s : 60, .retries = 2};
    struct sl_http_request hr;
    sl_http_request_init(&hr);
    hr.url = x->url;
    hr.authorization = req->proxy_auth;
    hr.sink = sink;
    hr.on_headers = on_headers;
    hr.sink_userdata = x;
    /* ask for version 2 (docs/protocol.md §3); a proxy without it answers version 1 */
    const char *hdrs[4] = {"Accept: " SL_DELTA_MEDIA_TYPE_V2 ", " SL_DELTA_MEDIA_TYPE_V1, NULL,
                           NULL, NULL};
    _cleanup_free_ char *ifr = NULL;
    size_t nh = 1;
    if (x->body) {
        hr.method = "POST";
        hr.body = x->body;
        hr.body_len = (int64_t)strlen(x->body);
        hdrs[nh++] = "Content-Type: application/json";
    }
    if (x->etag[0] && (x->body_off > 0 || x->head_only)) {
        hr.has_range = true;
        hr.range_first = (int64_t)x->body_off;
        hr.range_last = x->head_only ? (int64_t)x->st.head_bytes - 1 : -1;
        ifr = sl_xasprintf("If-Range: %s", x->etag);
        hdrs[nh++] = ifr;
    }
    hr.headers = nh ? hdrs : NULL;
    struct sl_http_response resp = {0};
    log_debug("pull %s: %s %s (from byte %" PRIu64 ")", req->ref, x->body ? "POST" : "GET", x->url,
              x->body_off);
    _cleanup_error_ sl_error_t herr = NULL;
    int r = sl_http_perform(&o, &hr, &resp, &herr);
    if (x->hdr_pending) { /* the answer ended (or broke) while the header was processed */
        int hr2 = header_finish(x);
        if (hr2 < 0 && r >= 0)
            r = hr2;
    }
    if (r < 0) {
        if (x->failed < 0 || x->replan) {
            r = x->failed < 0 ? x->failed : -ESTALE;
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
        if (status == 416 || status == 412)
            x->replan = true;
        r = sl_error_make(x->err, status_errno(status), "delta from %s: HTTP %ld %.*s",
                          req->proxy_url, status, (int)SL_MIN(resp.error_body.len, 512),
                          resp.error_body.data ? resp.error_body.data : "");
        sl_http_response_free(&resp);
        return r;
    }
    sl_http_response_free(&resp);
    if (x->head_only) {
        if (x->state != RX_PAYLOAD || !x->h)
            return sl_error_make(x->err, EPROTO, "delta from %s: head answer ended early",
                                 req->proxy_url);
        x->head_only = false;
        skip_stored(x, x->resume_off);
        if (x->st.traced_total > 0 && x->st.traced_done == x->st.traced_total &&
            (r = emit_startup(x)) < 0)
            return r;
        log_info("pull %s: resuming the interrupted pull at payload byte %" PRIu64 " of %" PRIu64,
                 req->ref, x->pos, x->payload_len);
        return ATTEMPT_AGAIN;
    }
    if (x->state != RX_DONE && !(x->state == RX_PAYLOAD && x->payload_len == 0 && x->h))
        return sl_error_make(x->err, EPROTO,
                             "delta from %s: body ended early (%" PRIu64 " of %" PRIu64
                             " payload bytes)",
                             req->proxy_url, x->pos, x->payload_len);
    return ATTEMPT_DONE;
}

/* Failures worth another request: the transport, a short body, a busy proxy. */
static bool resumable(int r)
{
    switch (-r) {
    case EIO:
    case EPROTO:
    case ECONNREFUSED:
    case ECONNRESET:
    case ECONNABORTED:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
    case EAGAIN:
    case EPIPE:
        return true;
    }
    return false;
}

static void backoff(unsigned n)
{
    unsigned ms = BACKOFF_FIRST_MS;
    for (unsigned i = 1; i < n && ms < BACKOFF_MAX_MS; i++)
        ms *= 2;
    ms = SL_MIN(ms, BACKOFF_MAX_MS);
    ms = ms / 2 + (unsigned)(now_ns() % (ms / 2 + 1)); /* jitter */
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int pull(struct rx *x)
{
    const struct sl_pull_request *req = x->req;
    if (!req->proxy_url || !*req->proxy_url)
        return sl_error_make(x->err, EINVAL, "no proxy configured");
    if (!req->ref || !*req->ref)
        return sl_error_make(x->err, EINVAL, "no image reference");
    x->key = sl_xasprintf("%s %s %s", req->proxy_url, req->ref,
                          req->platform ? req->platform : sl_pull_host_platform());
    int r;
    struct sl_store_resume rp = {0};
    if (sl_store_resume_get(x->store, x->key, &rp, NULL) >= 0 && rp.head_len > 0 &&
        rp.head_len >= SL_DELTA_PRELUDE_SIZE && strlen(rp.etag) < sizeof(x->etag)) {
        /* an earlier run of the daemon left this pull unfinished: ask for the same answer */
        x->url = TAKE_PTR(rp.url);
        x->body = TAKE_PTR(rp.body);
        snprintf(x->etag, sizeof(x->etag), "%s", rp.etag);
        x->st.head_bytes = rp.head_len;
        x->resume_off = rp.payload_off;
        x->high_water = rp.head_len + rp.payload_off;
        x->head_only = true;
        log_info("pull %s: an earlier run stopped at payload byte %" PRIu64 ", resuming (ETag %s)",
                 req->ref, rp.payload_off, x->etag);
    } else if ((r = build_request(x, NULL, 0)) < 0) {
        sl_store_resume_clear(&rp);
        return r;
    }
    sl_store_resume_clear(&rp);

    unsigned stalls = 0, attempts = 0, bad_chunks = 0;
    for (;;) {
        uint64_t before = x->st.bytes_received;
        if (++attempts > MAX_RESUMES)
            return sl_error_wrap(x->err, -EIO, "gave up after %u requests", MAX_RESUMES);
        r = attempt(x);
        if (r == ATTEMPT_DONE)
            break;
        if (r == ATTEMPT_AGAIN) {
            stalls = 0;
            continue;
        }
        const char *msg = sl_error_msg(*x->err, r);
        if (x->head_only && r != -ECANCELED && !resumable(r))
            x->replan = true; /* the saved request is no good any more (e.g. 404): start over */
        if (x->replan) {
            if (x->st.replans >= MAX_REPLANS)
                return sl_error_wrap(x->err, r, "the proxy's plan changed %u times", x->st.replans);
            x->st.replans++;
            log_info("pull %s: the proxy's plan changed (%s): new delta naming what is held",
                     req->ref, msg);
            sl_error_free(x->err);
            char **done = NULL;
            size_t n_done = 0;
            plan_complete_contents(x, &done, &n_done);
            rx_clear_plan(x);
            x->head_only = false;
            r = build_request(x, done, n_done);
            strv_free(done, n_done);
            if (r < 0)
                return r;
            continue;
        }
        if (r == -EINVAL && x->body && !x->no_contents && x->state == RX_PRELUDE &&
            x->st.bytes_received == before) {
            /* a proxy older than held contents refuses the key: ask without it */
            log_warn("pull %s: the proxy refused held contents (%s); asking without them", req->ref,
                     msg);
            sl_error_free(x->err);
            x->no_contents = true;
            if ((r = build_request(x, NULL, 0)) < 0)
                return r;
            continue;
        }
        if (x->bad_chunk) {
            if (++bad_chunks > MAX_BAD_CHUNKS)
                return sl_error_wrap(x->err, r, "chunks failed verification %u times", bad_chunks);
            /* nothing of the chunk was stored: fetch it again from its first byte */
            log_warn("pull %s: %s; fetching the chunk again", req->ref, msg);
            sl_error_free(x->err);
            free(x->member);
            x->member = NULL;
            x->member_len = 0;
            x->pos = x->chunks[x->cur].poff;
            x->body_off = x->st.head_bytes + x->pos;
            x->st.chunks_refetched++;
            continue;
        }
        /* before any answer the transport already retried: fail fast (callers such as the
         * remote snapshotter fall back); an answer that began is worth resuming */
        if (!resumable(r) || !x->etag[0])
            return r;
        if (x->st.bytes_received > before)
            stalls = 0;
        if (++stalls > MAX_STALLS)
            return sl_error_wrap(x->err, r, "no progress after %u attempts", MAX_STALLS);
        log_info("pull %s: %s; resuming at body byte %" PRIu64 " (attempt %u)", req->ref, msg,
                 x->body_off, stalls);
        sl_error_free(x->err);
        checkpoint(x, true);
        x->st.resumes++;
        if ((r = emit(x, SL_PULL_PROGRESS)) < 0)
            return r;
        backoff(stalls);
    }
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
    _cleanup_error_ sl_error_t e = NULL;
    if ((r = sl_store_resume_delete(x->store, x->key, &e)) < 0)
        log_warn("pull %s: %s", req->ref, sl_error_msg(e, r));
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
            r = publish(fs, &rec, NULL, &e);
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
