/* imagecheck.h — asks starlight-proxy whether it serves an image (is it a Starlight image?),
 * for the webhook. The question is the proxy's own delta request for the whole image
 * (GET /starlight/delta?to=REF&platform=P[&insecure=1], docs/protocol.md §2) limited with
 * `Range: bytes=0-31` to the 32-byte prelude: 200/206 = the proxy knows the image, 404 = it
 * does not; anything else (unreachable, timeout, 5xx) = cannot tell. Answers are cached (known
 * 10 min, unknown 1 min; failures are not cached) so a rollout of many replicas asks once.
 * Thread-safe. */
#ifndef SL_CONTROLLER_IMAGECHECK_H
#define SL_CONTROLLER_IMAGECHECK_H

#include "error.h"
#include "metrics.h"

#include <stdbool.h>
#include <stdint.h>

struct sl_imagecheck_options {
    const char *proxy_url;      /* base URL */
    const char *token;          /* Bearer token, or NULL */
    const char *platform;       /* "linux/amd64" */
    bool insecure;              /* insecure=1: the registry speaks plain HTTP */
    int64_t timeout_ms;         /* per question */
    struct sl_metrics *metrics; /* may be NULL */
};

struct sl_imagecheck;

struct sl_imagecheck *sl_imagecheck_new(const struct sl_imagecheck_options *o);
void sl_imagecheck_free(struct sl_imagecheck *c);

/* 1 the proxy serves `image`, 0 it does not, negative errno when it cannot tell (the failure
 * is logged once per call). Matches sl_mutate_image_fn. */
int sl_imagecheck_is_starlight(void *c, const char *image);

#endif
