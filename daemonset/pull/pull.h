/* pull.h — the delta receiver: one streaming request to a starlight-proxy per pull
 * (docs/protocol.md §2 `/starlight/delta`, §3 the body), written into the store as it arrives.
 *
 * A pull names every layer the node holds complete (the store's layer records), then:
 *   1. decodes the prelude and header as soon as they arrive (common/delta), on a worker
 *      thread while the HTTP sink keeps reading the answer (payload bytes that arrive
 *      meanwhile are held in memory, bounded, and stored after the header);
 *   2. for each target layer the node lacks: rebuilds its TOC from the header's tocTail
 *      (checked against tocDigest), cross-checks the header's file list and contents against
 *      that TOC (paths, sizes, digests, chunk lists: a header that lies is refused);
 *   3. records the new layers in the store (one transaction per layer: record, references,
 *      every content expected) on a thread of its own while the pulling thread builds the fs
 *      trees and calls the registration hook (containerd), whose gate waits for those records
 *      and publishes the layers on the fs before the image record; then reports READY: the
 *      image is usable now, reads of missing chunks park in the fs. The plan's layers stay
 *      pinned in the store (the collector keeps them) until the pull ends;
 *   4. streams the payload: each chunk's raw gzip member goes from the HTTP sink straight into
 *      sl_store_put_chunk (verified there; copied only when it straddles two network reads),
 *      waking parked reads; a chunk that fails verification aborts the pull (-EBADMSG);
 *   5. refreshes the new layers' records (complete) and reports COMPLETE.
 * Resume (docs/protocol.md §2, docs/architecture.md): when the answer breaks (transport error,
 * short body, 5xx) the pull asks again with `Range: bytes=<consumed>-` and `If-Range: <ETag>`
 * and the state machine goes on where it stopped (bounded retries with backoff). A chunk that
 * fails verification is fetched again from its first byte (at most 3 times per pull). A 200,
 * another ETag or a wrong Content-Range means the plan changed: a new delta names the held
 * layers and the verified contents of incomplete layers (POST `contents`), so nothing verified
 * is sent again. The resume point (request, ETag, head length, payload offset below which
 * every chunk is stored) is kept in the store at most once a second; the next sl_pull_run of
 * the same proxy, reference and platform (e.g. after a daemon restart) asks for the head with
 * If-Range and continues after the chunks the store holds.
 * Nothing is created from header or TOC names: the store names files by digest, the fs serves
 * trees from memory.
 *
 * Errors: negative errno + sl_error_t: -EINVAL/-EFBIG/-EBADMSG hostile or corrupt input,
 * -EPROTO short body, the HTTP classes (-ECONNREFUSED, …), -ENOENT (proxy 404), -EACCES,
 * -EAGAIN (proxy 503), -ECANCELED (the event callback asked to stop).
 * Thread-safety: any number of pulls may run at once on different threads over the same store
 * and fs (both are thread-safe); one struct sl_pull_request per call. */
#ifndef SL_DAEMON_PULL_H
#define SL_DAEMON_PULL_H

#include "delta.h"
#include "error.h"
#include "fs.h"
#include "store.h"

#include <stdbool.h>
#include <stdint.h>

enum sl_pull_phase {
    SL_PULL_HEADER,   /* header decoded: totals known */
    SL_PULL_READY,    /* layers published (and registered): containers may start */
    SL_PULL_PROGRESS, /* payload bytes arriving (rate-limited: ~5 per second) */
    SL_PULL_COMPLETE, /* every content stored and verified */
    SL_PULL_STARTUP,  /* the startup set is local: every traced (ranked) content of the plan is
                       * stored; once per pull, after READY; for a plan without traced contents
                       * (untraced image, or its traced files already held) right before
                       * COMPLETE */
};

/* Counters of one pull; a copy is handed to the event callback. */
struct sl_pull_stats {
    char digest[SL_DIGEST_STR_LEN]; /* manifest digest (after HEADER) */
    uint64_t bytes_received;        /* body bytes: prelude + header + payload so far */
    uint64_t head_bytes;            /* 32 + header length */
    uint64_t payload_bytes;         /* payload bytes received */
    uint64_t payload_total;         /* payload length announced */
    uint64_t image_bytes;           /* sum of the target's blob sizes (what a plain pull fetches) */
    uint64_t contents_done, contents_total;
    uint64_t chunks_stored, chunks_duplicate;
    uint64_t bytes_resent;     /* body bytes received a second time (resumes, refetches) */
    uint32_t resumes;          /* requests continuing a broken answer (Range + If-Range) */
    uint32_t replans;          /* new deltas because the proxy's plan changed meanwhile */
    uint32_t chunks_refetched; /* chunks fetched again after failing verification */
    uint32_t layers_total, layers_new, layers_held;
    uint64_t traced_done, traced_total;                  /* traced contents stored / planned */
    double ms_header, ms_ready, ms_complete, ms_startup; /* since the request started; < 0 =
                                                          * not yet */
};

/* Called on the pulling thread, or for HEADER, READY (and a STARTUP right after it) on the
 * header's worker, never two at a time. Return 0 to go on, a negative errno to abort the pull. */
typedef int (*sl_pull_event_fn)(void *ud, enum sl_pull_phase phase, const struct sl_pull_stats *s);

/* Registration of the pulled image (containerd): called on the header's worker once the header is
 * checked, while another thread records the new layers in the store, before READY. The hook
 * must call gate(gate_ud, err) before it makes the image visible (containerd's image record)
 * and give up when that fails: the gate waits until the layers are recorded (committed and
 * synced) and publishes them on the fs, so a registered image never names layers the store
 * could lose in a crash (power loss included) nor layers the fs does not serve. Returns 0 or a
 * negative errno (the pull fails). */
typedef int (*sl_pull_register_fn)(void *ud, const struct sl_delta_header *h, const char *ns,
                                   int (*gate)(void *gate_ud, sl_error_t *err), void *gate_ud,
                                   sl_error_t *err);

struct sl_pull_request {
    const char *proxy_url;   /* base URL, e.g. "http://127.0.0.1:8090" */
    const char *proxy_auth;  /* Authorization value for the proxy, or NULL */
    const char *ref;         /* target image reference */
    const char *platform;    /* "os/arch[/variant]"; NULL = the host's */
    const char *ns;          /* containerd namespace for the registration ("default" if NULL) */
    bool insecure;           /* the proxy reaches the registry over plain HTTP */
    const char *const *from; /* optional images held (NULL-terminated), sent as from= */
    sl_pull_event_fn on_event;
    void *event_ud;
    sl_pull_register_fn on_register; /* NULL: no registration */
    void *register_ud;
    unsigned low_speed_time_s; /* abort a stalled stream after this; 0 = 60 s */
};

/* Runs one pull into `store` (layers published on `fs`, which may be NULL for tests). Fills
 * *ret_stats (optional) in every case. */
int sl_pull_run(struct sl_store *store, struct sl_fs *fs, const struct sl_pull_request *req,
                struct sl_pull_stats *ret_stats, sl_error_t *err);

/* Publishes every layer the store records on `fs` (daemon start-up; slots = record ids so inode
 * numbers survive restarts). Layers whose TOC fails to load are skipped with a warning.
 * Returns the number published or a negative errno when the store cannot be listed. */
int sl_pull_publish_known(struct sl_store *store, struct sl_fs *fs, sl_error_t *err);

/* The host's platform as "linux/<arch>". */
const char *sl_pull_host_platform(void);

const char *sl_pull_phase_name(enum sl_pull_phase p);

#endif
