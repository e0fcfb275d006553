/* stream.h — one delta response body in flight: a bounded queue of buffers between the
 * worker that reads the payload through the core and the event loop that writes it.
 *
 * Memory per stream is bounded: at most SL_STREAM_MIN_CHUNKS queued chunks of
 * SL_STREAM_CHUNK bytes plus the one being filled (512 KiB), whatever the client's speed —
 * except for the streams holding one of SL_STREAM_WIDE_SLOTS process-wide "wide window" slots
 * (taken at creation when one is free, given back when the stream ends), which may queue up to
 * SL_STREAM_WIDE_CHUNKS (4 MiB). So the total stays below N x 512 KiB + the wide slots' 8 MiB,
 * while a lone stream reads its payload in 4 MiB fills instead of 384 KiB ones (each fill is
 * a loop -> worker -> loop handoff, which on a busy machine costs a scheduling delay).
 * A worker never waits for the client: sl_stream_fill() reads only what fits in the window
 * and returns; the loop asks for the next fill (sl_stream_consume() returns true) once the
 * queue has drained to a third of the window. So a slow client holds memory, never a thread.
 * The head (prelude + header, in the shared plan's memory) does not go through the queue: the
 * loop copies it out one chunk at a time (one more chunk of memory, until the head is out),
 * while the first fill already reads the payload — so the first payload bytes, even from a
 * cold cache, are usually ready when the head is out.
 *
 * Ownership: the stream owns the plan (sl_delta_free at the end). Thread-safety: one worker
 * fills at a time (the fill_running protocol below guarantees it), the loop peeks/consumes,
 * and sl_stream_cancel() may be called from any thread; an internal mutex orders them. */
#ifndef SL_PROXY_STREAM_H
#define SL_PROXY_STREAM_H

#include "core.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_STREAM_CHUNK       (128u * 1024)
#define SL_STREAM_MIN_CHUNKS  3  /* queued chunks per stream (narrow window) */
#define SL_STREAM_WIDE_CHUNKS 32 /* queued chunks of a stream holding a wide slot */
#define SL_STREAM_WIDE_SLOTS  2  /* streams with a wide window at once, process-wide */

struct sl_stream;

/* Called (from the filling worker) after chunks were queued or the fill ended. */
typedef void (*sl_stream_wake_fn)(void *ud);

/* Serves body bytes [start, end) of plan `d` (taken over). Chunks get `headroom` writable
 * bytes before the data (libwebsockets wants LWS_PRE). The new stream counts as "fill
 * running": the creator calls sl_stream_fill() next. -EINVAL when the plan is inconsistent
 * (segments that do not tile the body). */
int sl_stream_new(struct sl_core *core, struct sl_delta *d, uint64_t start, uint64_t end,
                  size_t headroom, sl_stream_wake_fn wake, void *wake_ud, struct sl_stream **ret,
                  sl_error_t *err);
void sl_stream_free(struct sl_stream *s);

/* Worker side: reads until the window is full, the range is done, the stream is cancelled or
 * a read fails; then clears fill_running. Returns 0, -ECANCELED, or the read's error (also
 * kept for the loop: sl_stream_error). */
int sl_stream_fill(struct sl_stream *s, sl_error_t *err);

/* Loop side. Next bytes to write: a pointer with `headroom` writable bytes before it and
 * *len > 0, or NULL when nothing is queued. */
uint8_t *sl_stream_peek(struct sl_stream *s, size_t *len);
/* Marks n bytes (<= the peeked length) written. Returns true when the caller must submit a
 * fill job now (the flag is set for it). */
bool sl_stream_consume(struct sl_stream *s, size_t n);
/* Everything in [start, end) was handed to the loop (peek returned it and it was consumed). */
bool sl_stream_done(struct sl_stream *s);
/* Error class (negative) of a failed read, or 0. */
int sl_stream_error(struct sl_stream *s);
/* Stops the fill at the next sink call; any thread. */
void sl_stream_cancel(struct sl_stream *s);

struct sl_stream_stats {
    size_t queued_chunks;
    uint64_t filled; /* bytes read from the core and queued so far */
    uint64_t sent;   /* bytes consumed by the loop */
};
void sl_stream_stats(struct sl_stream *s, struct sl_stream_stats *ret);

#endif
