/* stream.c — bounded producer/consumer queue for delta bodies (stream.h). */
#include "stream.h"
#include "cleanup.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

struct chunk {
    struct chunk *next;
    size_t len; /* data bytes */
    size_t off; /* bytes already consumed by the loop */
    uint8_t mem[];
};

/* Wide-window slots in use, process-wide (stream.h). */
static atomic_uint wide_in_use;

static bool wide_take(void)
{
    unsigned n = atomic_load(&wide_in_use);
    while (n < SL_STREAM_WIDE_SLOTS)
        if (atomic_compare_exchange_weak(&wide_in_use, &n, n + 1))
            return true;
    return false;
}

struct sl_stream {
    struct sl_core *core;
    struct sl_delta *d;
    size_t headroom;
    sl_stream_wake_fn wake;
    void *wake_ud;
    uint64_t start, end;
    bool wide;              /* holds a wide slot (fixed for the stream's life) */
    size_t max_chunks, low; /* window in chunks; refill when the queue drains to `low` */

    pthread_mutex_t lock;
    struct chunk *head, *tail; /* queued for the loop */
    size_t n_chunks;
    bool fill_running;
    bool cancelled;
    int error;
    uint64_t sent;       /* absolute response position consumed by the loop */
    uint64_t queued_end; /* absolute response position after the last queued byte */

    struct chunk *spare; /* one drained chunk kept for the next fill (under lock) */

    /* The head is the plan's memory (immutable, shared): the loop copies it piece by piece
     * into `stage` (headroom + SL_STREAM_CHUNK, freed once the head is out) and never waits
     * for a worker for it; meanwhile the first fill already reads the payload. Loop only. */
    uint64_t head_end; /* min(end, head_len): response bytes [start, head_end) come from there */
    uint8_t *stage;
    size_t stage_len, stage_off;

    /* owned by the filling worker (one at a time) */
    uint64_t fill_pos; /* absolute response position of the next byte to read */
    struct chunk *cur; /* being filled, not yet queued */
};

static struct chunk *chunk_new(struct sl_stream *s)
{
    pthread_mutex_lock(&s->lock);
    struct chunk *c = TAKE_PTR(s->spare);
    pthread_mutex_unlock(&s->lock);
    if (!c)
        c = sl_xmalloc(sizeof(*c) + s->headroom + SL_STREAM_CHUNK);
    c->next = NULL;
    c->len = 0;
    c->off = 0;
    return c;
}

static uint8_t *chunk_data(const struct sl_stream *s, struct chunk *c)
{
    return c->mem + s->headroom;
}

int sl_stream_new(struct sl_core *core, struct sl_delta *d, uint64_t start, uint64_t end,
                  size_t headroom, sl_stream_wake_fn wake, void *wake_ud, struct sl_stream **ret,
                  sl_error_t *err)
{
    /* The segments must tile the body after the head exactly; the loop and the range logic
     * rely on it, and a planner bug must not turn into a wrong body. */
    uint64_t pos = d->head_len;
    for (size_t i = 0; i < d->n_segments; i++) {
        const struct sl_delta_segment *g = &d->segments[i];
        if (g->response_offset != pos || g->layer >= d->n_layers || g->length == 0)
            return sl_error_make(err, EINVAL,
                                 "delta plan: segment %zu does not follow the "
                                 "previous one",
                                 i);
        pos += g->length;
    }
    if (pos != d->total_len || start > end || end > d->total_len)
        return sl_error_make(err, EINVAL, "delta plan: length %llu does not match its parts",
                             (unsigned long long)d->total_len);
    struct sl_stream *s = sl_xcalloc(1, sizeof(*s));
    s->core = core;
    s->d = d;
    s->headroom = headroom;
    s->wake = wake;
    s->wake_ud = wake_ud;
    s->start = start;
    s->end = end;
    s->sent = start;
    s->head_end = SL_MIN(end, (uint64_t)d->head_len);
    s->fill_pos = SL_MAX(start, s->head_end);
    s->queued_end = s->fill_pos;
    s->fill_running = true;
    /* A stream with only the head or a short body left does not need a wide window. */
    s->wide = end - s->fill_pos > (uint64_t)SL_STREAM_MIN_CHUNKS * SL_STREAM_CHUNK && wide_take();
    s->max_chunks = s->wide ? SL_STREAM_WIDE_CHUNKS : SL_STREAM_MIN_CHUNKS;
    s->low = s->max_chunks / 3;
    pthread_mutex_init(&s->lock, NULL);
    *ret = s;
    return 0;
}

void sl_stream_free(struct sl_stream *s)
{
    if (!s)
        return;
    while (s->head) {
        struct chunk *c = s->head;
        s->head = c->next;
        free(c);
    }
    free(s->cur);
    free(s->spare);
    free(s->stage);
    if (s->wide)
        atomic_fetch_sub(&wide_in_use, 1);
    sl_delta_free(s->d);
    pthread_mutex_destroy(&s->lock);
    free(s);
}

/* Queues the current chunk (if it holds data) and wakes the loop. */
static void push_cur(struct sl_stream *s)
{
    struct chunk *c = s->cur;
    if (!c || c->len == 0)
        return;
    s->cur = NULL;
    pthread_mutex_lock(&s->lock);
    if (s->tail)
        s->tail->next = c;
    else
        s->head = c;
    s->tail = c;
    s->n_chunks++;
    s->queued_end += c->len;
    pthread_mutex_unlock(&s->lock);
    s->wake(s->wake_ud);
}

struct sink_ctx {
    struct sl_stream *s;
    uint64_t left; /* bytes still expected from this read */
};

static int sink(void *ud, const void *data, size_t len)
{
    struct sink_ctx *k = ud;
    struct sl_stream *s = k->s;
    pthread_mutex_lock(&s->lock);
    bool stop = s->cancelled;
    pthread_mutex_unlock(&s->lock);
    if (stop)
        return -ECANCELED;
    if (len > k->left)
        return -EIO; /* the core returned more than asked: never send it */
    const uint8_t *p = data;
    while (len > 0) {
        if (!s->cur)
            s->cur = chunk_new(s);
        size_t n = SL_MIN(len, SL_STREAM_CHUNK - s->cur->len);
        memcpy(chunk_data(s, s->cur) + s->cur->len, p, n);
        s->cur->len += n;
        p += n;
        len -= n;
        k->left -= n;
        s->fill_pos += n;
        if (s->cur->len == SL_STREAM_CHUNK)
            push_cur(s);
    }
    return 0;
}

int sl_stream_fill(struct sl_stream *s, sl_error_t *err)
{
    const struct sl_delta *d = s->d;
    int r = 0;
    for (;;) {
        pthread_mutex_lock(&s->lock);
        size_t queued = s->n_chunks;
        bool cancelled = s->cancelled;
        pthread_mutex_unlock(&s->lock);
        if (cancelled) {
            r = -ECANCELED;
            break;
        }
        if (s->fill_pos >= s->end || queued >= s->max_chunks)
            break;
        /* The window: what fits in the free chunk slots. The loop only ever shrinks the
         * queue meanwhile, so reading this much never overshoots the bound. */
        uint64_t window =
            (uint64_t)(s->max_chunks - queued) * SL_STREAM_CHUNK - (s->cur ? s->cur->len : 0);
        uint64_t want = SL_MIN(window, s->end - s->fill_pos);
        /* the whole window at once: the core coalesces the segments it spans */
        struct sink_ctx k = {s, want};
        r = sl_core_read_payload(s->core, d, s->fill_pos, want, sink, &k, err);
        if (r >= 0 && k.left != 0)
            r = sl_error_make(err, EIO, "delta payload at %llu: read ended %llu bytes early",
                              (unsigned long long)s->fill_pos, (unsigned long long)k.left);
        if (r < 0)
            break;
        /* A starving loop gets a partial chunk at once (first byte early); otherwise chunks
         * go out full. */
        pthread_mutex_lock(&s->lock);
        bool starving = s->n_chunks == 0;
        pthread_mutex_unlock(&s->lock);
        if (starving || s->fill_pos >= s->end)
            push_cur(s);
    }
    pthread_mutex_lock(&s->lock);
    if (r < 0 && !s->cancelled)
        s->error = r;
    s->fill_running = false;
    pthread_mutex_unlock(&s->lock);
    s->wake(s->wake_ud);
    return r;
}

uint8_t *sl_stream_peek(struct sl_stream *s, size_t *len)
{
    if (s->sent < s->head_end) { /* only the loop moves `sent` while in the head */
        if (s->stage_off == s->stage_len) {
            if (!s->stage)
                s->stage = sl_xmalloc(s->headroom + SL_STREAM_CHUNK);
            s->stage_len = (size_t)SL_MIN((uint64_t)SL_STREAM_CHUNK, s->head_end - s->sent);
            s->stage_off = 0;
            memcpy(s->stage + s->headroom, s->d->head + s->sent, s->stage_len);
        }
        *len = s->stage_len - s->stage_off;
        return s->stage + s->headroom + s->stage_off;
    }
    pthread_mutex_lock(&s->lock);
    struct chunk *c = s->head;
    pthread_mutex_unlock(&s->lock);
    if (!c)
        return NULL;
    /* Only the loop removes chunks, so c stays valid after unlocking. */
    *len = c->len - c->off;
    return chunk_data(s, c) + c->off;
}

bool sl_stream_consume(struct sl_stream *s, size_t n)
{
    bool fill = false;
    struct chunk *done = NULL;
    uint8_t *stage = NULL;
    pthread_mutex_lock(&s->lock);
    struct chunk *c = s->sent < s->head_end ? NULL : s->head;
    if (s->sent < s->head_end) {
        s->stage_off += n;
        s->sent += n;
        if (s->sent >= s->head_end) /* the head is out: the stage is not needed again */
            stage = TAKE_PTR(s->stage);
    } else if (c) {
        c->off += n;
        s->sent += n;
        if (c->off == c->len) {
            s->head = c->next;
            if (!s->head)
                s->tail = NULL;
            s->n_chunks--;
            if (s->spare) /* recycled: no malloc/free per chunk */
                done = c;
            else
                s->spare = c;
        }
    }
    if (!s->fill_running && !s->cancelled && s->error == 0 && s->queued_end < s->end &&
        s->n_chunks <= s->low) {
        s->fill_running = true;
        fill = true;
    }
    pthread_mutex_unlock(&s->lock);
    free(done);
    free(stage);
    return fill;
}

bool sl_stream_done(struct sl_stream *s)
{
    pthread_mutex_lock(&s->lock);
    bool done = s->sent >= s->end;
    pthread_mutex_unlock(&s->lock);
    return done;
}

int sl_stream_error(struct sl_stream *s)
{
    pthread_mutex_lock(&s->lock);
    int r = s->error;
    pthread_mutex_unlock(&s->lock);
    return r;
}

void sl_stream_cancel(struct sl_stream *s)
{
    pthread_mutex_lock(&s->lock);
    s->cancelled = true;
    pthread_mutex_unlock(&s->lock);
}

void sl_stream_stats(struct sl_stream *s, struct sl_stream_stats *ret)
{
    pthread_mutex_lock(&s->lock);
    ret->queued_chunks = s->n_chunks;
    ret->sent = s->sent - s->start;
    ret->filled = s->queued_end - s->start;
    pthread_mutex_unlock(&s->lock);
}
