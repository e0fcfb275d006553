/* plan.c — the delta planner's pure logic (plan.h). */
#include "plan.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

void sl_plan_result_free(struct sl_plan_result *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->n_contents; i++)
        free(r->contents[i].chunks);
    free(r->contents);
    free(r->source);
    free(r->content);
    memset(r, 0, sizeof(*r));
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool held(const struct sl_plan_input *in, const char *digest)
{
    return in->n_held_digests &&
           bsearch(&digest, in->held_digests, in->n_held_digests, sizeof(char *), cmp_str);
}

static int cmp_pos(const struct sl_plan_file *a, const struct sl_plan_file *b)
{
    if (a->layer != b->layer)
        return a->layer < b->layer ? -1 : 1;
    if (a->toc_index != b->toc_index)
        return a->toc_index < b->toc_index ? -1 : 1;
    return 0;
}

/* qsort has no context argument: the sorts below run on arrays of pointers. */
static int cmp_by_digest(const void *pa, const void *pb)
{
    const struct sl_plan_file *a = *(const struct sl_plan_file *const *)pa;
    const struct sl_plan_file *b = *(const struct sl_plan_file *const *)pb;
    int c = strcmp(a->digest, b->digest);
    return c ? c : cmp_pos(a, b);
}

struct by_digest {
    const char *d;
    uint32_t i;
};

static int cmp_by_digest_idx(const void *a, const void *b)
{
    return strcmp(((const struct by_digest *)a)->d, ((const struct by_digest *)b)->d);
}

struct cand {
    const struct sl_plan_file *first; /* first occurrence: lowest layer, earliest in TOC */
    bool traced;
    double rank;
    uint32_t index; /* content index before ordering */
};

static int cmp_cand(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    if (a->traced != b->traced)
        return a->traced ? -1 : 1;
    if (a->traced && a->rank != b->rank)
        return a->rank < b->rank ? -1 : 1;
    return cmp_pos(a->first, b->first);
}

static uint64_t compressed_bytes(const struct sl_plan_file *f)
{
    uint64_t n = 0;
    for (size_t k = 0; k < f->n_chunks; k++)
        n += f->chunks[k].compressed_size;
    return n;
}

static int check_file(const struct sl_plan_file *f, sl_error_t *err)
{
    uint64_t pos = 0;
    for (size_t k = 0; k < f->n_chunks; k++) {
        const struct sl_plan_chunk *c = &f->chunks[k];
        if (c->chunk_offset != pos || c->size == 0 || c->compressed_size == 0)
            return sl_error_make(err, EINVAL, "layer %" PRIu32 " `%s`: chunks do not tile the file",
                                 f->layer, f->path);
        pos += c->size;
    }
    if (pos != f->size)
        return sl_error_make(
            err, EINVAL, "layer %" PRIu32 " `%s`: chunks cover %" PRIu64 " of %" PRIu64 " bytes",
            f->layer, f->path, pos, f->size);
    return 0;
}

int sl_plan_compute(const struct sl_plan_input *in, struct sl_plan_result *ret, sl_error_t *err)
{
    struct sl_plan_result res = {0};
    size_t n = in->n_files;
    res.source = sl_xcalloc(n + 1, sizeof(*res.source));
    res.content = sl_xcalloc(n + 1, sizeof(*res.content));
    _cleanup_free_ const struct sl_plan_file **cands = sl_xcalloc(n + 1, sizeof(*cands));
    _cleanup_free_ struct cand *cs = NULL;
    _cleanup_free_ struct by_digest *byd = NULL;
    size_t nc = 0;
    int r = 0;
    for (size_t i = 0; i < n; i++) {
        const struct sl_plan_file *f = &in->files[i];
        if ((r = check_file(f, err)) < 0)
            goto fail;
        if (f->size == 0) {
            res.source[i] = SL_DELTA_FILE_EMPTY;
        } else if (held(in, f->digest)) {
            res.source[i] = SL_DELTA_FILE_HELD;
            res.saved_bytes += compressed_bytes(f);
        } else {
            res.source[i] = SL_DELTA_FILE_PAYLOAD;
            cands[nc++] = f;
        }
    }
    qsort(cands, nc, sizeof(*cands), cmp_by_digest);

    /* one content per digest */
    cs = sl_xcalloc(nc + 1, sizeof(*cs));
    size_t ncs = 0;
    for (size_t i = 0; i < nc; i++) {
        const struct sl_plan_file *f = cands[i];
        if (ncs && strcmp(cs[ncs - 1].first->digest, f->digest) == 0) {
            struct cand *c = &cs[ncs - 1];
            if (c->first->size != f->size) {
                r = sl_error_make(err, EINVAL, "content %s has sizes %" PRIu64 " and %" PRIu64,
                                  f->digest, c->first->size, f->size);
                goto fail;
            }
            if (f->traced && (!c->traced || f->rank < c->rank)) {
                c->traced = true;
                c->rank = f->rank;
            }
            res.saved_bytes += compressed_bytes(f);
            continue;
        }
        cs[ncs] =
            (struct cand){.first = f, .traced = f->traced, .rank = f->rank, .index = (uint32_t)ncs};
        ncs++;
    }
    qsort(cs, ncs, sizeof(*cs), cmp_cand);

    res.contents = sl_xcalloc(ncs + 1, sizeof(*res.contents));
    res.n_contents = ncs;
    uint64_t pos = 0;
    for (size_t i = 0; i < ncs; i++) {
        const struct sl_plan_file *f = cs[i].first;
        struct sl_delta_content *c = &res.contents[i];
        memcpy(c->digest, f->digest, sizeof(c->digest));
        c->size = f->size;
        c->layer = f->layer;
        c->traced = cs[i].traced;
        c->payload_offset = pos;
        c->chunks = sl_xcalloc(f->n_chunks, sizeof(*c->chunks));
        c->n_chunks = f->n_chunks;
        for (size_t k = 0; k < f->n_chunks; k++) {
            const struct sl_plan_chunk *pc = &f->chunks[k];
            c->chunks[k] = (struct sl_delta_chunk){
                .blob_offset = pc->blob_offset,
                .compressed_size = pc->compressed_size,
                .chunk_offset = pc->chunk_offset,
                .size = pc->size,
                .payload_offset = pos,
            };
            memcpy(c->chunks[k].digest, pc->digest, sizeof(pc->digest));
            pos += pc->compressed_size;
        }
        c->payload_length = pos - c->payload_offset;
    }
    res.payload_length = pos;

    /* files → content index: binary search over the contents sorted by digest */
    byd = sl_xcalloc(ncs + 1, sizeof(*byd));
    for (size_t i = 0; i < ncs; i++)
        byd[i] = (struct by_digest){res.contents[i].digest, (uint32_t)i};
    qsort(byd, ncs, sizeof(*byd), cmp_by_digest_idx);
    for (size_t i = 0; i < n; i++) {
        if (res.source[i] != SL_DELTA_FILE_PAYLOAD)
            continue;
        size_t lo = 0, hi = ncs;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            int c = strcmp(byd[mid].d, in->files[i].digest);
            if (c == 0) {
                lo = mid;
                break;
            }
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        res.content[i] = byd[lo].i;
    }
    *ret = res;
    return 0;
fail:
    sl_plan_result_free(&res);
    return r;
}

void sl_plan_segments(const struct sl_delta_content *contents, size_t n_contents,
                      const uint32_t *layer_map, uint64_t head_len, struct sl_delta_segment **ret,
                      size_t *ret_n)
{
    size_t cap = 16, n = 0;
    struct sl_delta_segment *segs = sl_xmalloc(cap * sizeof(*segs));
    uint64_t resp = head_len;
    for (size_t i = 0; i < n_contents; i++) {
        const struct sl_delta_content *c = &contents[i];
        uint32_t layer = layer_map[c->layer];
        for (size_t k = 0; k < c->n_chunks; k++) {
            const struct sl_delta_chunk *ch = &c->chunks[k];
            if (n && segs[n - 1].layer == layer &&
                segs[n - 1].blob_offset + segs[n - 1].length == ch->blob_offset) {
                segs[n - 1].length += ch->compressed_size;
            } else {
                if (n == cap) {
                    cap *= 2;
                    segs = sl_xrealloc(segs, cap * sizeof(*segs));
                }
                segs[n++] = (struct sl_delta_segment){.layer = layer,
                                                      .blob_offset = ch->blob_offset,
                                                      .length = ch->compressed_size,
                                                      .response_offset = resp};
            }
            resp += ch->compressed_size;
        }
    }
    *ret = segs;
    *ret_n = n;
}

size_t sl_plan_read_run(const struct sl_delta_segment *segs, size_t n_segments, size_t first,
                        uint64_t pos, uint64_t len, uint64_t gap_max, uint64_t *ret_blob_off,
                        uint64_t *ret_blob_end, uint64_t *ret_want)
{
    const struct sl_delta_segment *s = &segs[first];
    uint64_t skip = pos - s->response_offset;
    uint64_t want = SL_MIN(len, s->length - skip);
    uint64_t blob_end = s->blob_offset + skip + want;
    size_t j = first;
    while (want < len && j + 1 < n_segments) {
        const struct sl_delta_segment *a = &segs[j], *b = &segs[j + 1];
        if (b->layer != a->layer || b->blob_offset < a->blob_offset + a->length ||
            b->blob_offset - (a->blob_offset + a->length) > gap_max)
            break;
        uint64_t n = SL_MIN(len - want, b->length);
        want += n;
        blob_end = b->blob_offset + n;
        j++;
    }
    *ret_blob_off = s->blob_offset + skip;
    *ret_blob_end = blob_end;
    *ret_want = want;
    return j;
}

void sl_plan_gap_filter_init(struct sl_plan_gap_filter *g, const struct sl_delta_segment *first,
                             uint64_t blob_off, uint64_t want, sl_http_sink_fn sink, void *ud)
{
    *g = (struct sl_plan_gap_filter){first, 0, blob_off, want, sink, ud};
}

int sl_plan_gap_filter_write(void *ud, const void *data, size_t len)
{
    struct sl_plan_gap_filter *g = ud;
    const uint8_t *p = data;
    while (len > 0) {
        if (g->left == 0)
            return -EIO; /* more than the read covers */
        const struct sl_delta_segment *s = &g->segs[g->k];
        uint64_t end = s->blob_offset + s->length;
        if (g->pos >= end) {
            g->k++;
            continue;
        }
        if (g->pos < s->blob_offset) { /* a gap */
            uint64_t n = SL_MIN((uint64_t)len, s->blob_offset - g->pos);
            p += n;
            len -= (size_t)n;
            g->pos += n;
            continue;
        }
        size_t n = (size_t)SL_MIN(SL_MIN((uint64_t)len, end - g->pos), g->left);
        int r = g->sink(g->ud, p, n);
        if (r < 0)
            return r;
        p += n;
        len -= n;
        g->pos += n;
        g->left -= n;
        if (r == SL_HTTP_SINK_STOP)
            return r;
    }
    return 0;
}
