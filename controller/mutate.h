/* mutate.h — the admission decision and JSONPatch for one AdmissionReview v1 (docs/kubernetes.md
 * §2), as pure functions on JSON: no I/O except through the image-check callback.
 *
 * A Pod is opted in by its annotation `starlight-c.dev/provision: "true"`, or by its namespace
 * (the caller says so: --opt-in-namespaces, the /mutate-namespace path, or the namespace's
 * label) unless the annotation says "false". An opted-in Pod gets, in one JSONPatch: the label
 * `starlight-c.dev/provision: "true"`, the annotation `starlight-c.dev/images` (the Starlight
 * images of its app containers, in order, without repeats), `starlight-init` as the first
 * initContainer and the hostPath volume `starlight-run`. Nothing else changes. A Pod that
 * already has an initContainer named starlight-init, a Pod none of whose images the proxy
 * serves, and every request that is not a Pod CREATE are allowed without a patch.
 *
 * Hostile input: the review is parsed with caps (sl_json); envelope errors (not an
 * AdmissionReview v1, no request, no uid) are -EINVAL with a message naming the field; odd pod
 * fields (a container without a string image, ...) are skipped, never trusted as paths.
 * Thread-safe (no shared state). */
#ifndef SL_CONTROLLER_MUTATE_H
#define SL_CONTROLLER_MUTATE_H

#include "error.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define SL_ANN_PREFIX    "starlight-c.dev/"
#define SL_ANN_PROVISION SL_ANN_PREFIX "provision"
#define SL_ANN_IMAGES    SL_ANN_PREFIX "images"
#define SL_INIT_NAME     "starlight-init"
#define SL_INIT_VOLUME   "starlight-run"
#define SL_INIT_RUN_DIR  "/run/starlight"
#define SL_INIT_SOCKET   SL_INIT_RUN_DIR "/starlight-daemon.sock"
#define SL_REVIEW_MAX    (8u << 20) /* AdmissionReview bytes accepted */

/* Does the proxy serve `image`? Returns 1 yes, 0 no, or a negative errno when it cannot tell
 * (unreachable, timeout): the Pod is then let through unchanged. */
typedef int (*sl_mutate_image_fn)(void *ud, const char *image);

struct sl_mutate_options {
    const char *init_image;
    bool init_insecure;           /* add --insecure to starlight-init's args */
    const char *const *opt_in_ns; /* namespaces whose every Pod is opted in */
    size_t n_opt_in_ns;
    bool namespace_opted_in;         /* the caller knows the namespace opted in */
    sl_mutate_image_fn is_starlight; /* NULL: every image counts as a Starlight image */
    void *is_starlight_ud;
};

enum sl_mutate_result {
    SL_MUTATE_PATCHED,      /* allowed with a patch */
    SL_MUTATE_NOT_POD,      /* not a Pod CREATE: allowed as is */
    SL_MUTATE_NOT_OPTED,    /* not opted in */
    SL_MUTATE_INJECTED,     /* already has starlight-init */
    SL_MUTATE_NO_STARLIGHT, /* no image the proxy serves */
    SL_MUTATE_UNKNOWN,      /* the proxy could not answer: allowed as is */
};

const char *sl_mutate_result_name(enum sl_mutate_result r);

/* The JSONPatch (an array, new reference) that opts `pod` in with `images` (n > 0). */
json_t *sl_mutate_pod_patch(const json_t *pod, const char *const *images, size_t n,
                            const struct sl_mutate_options *o);

/* Decides on a parsed review; *ret_review is the AdmissionReview answer (new reference),
 * *ret_result what happened, *ret_note (borrowed static text or NULL) a detail for the log.
 * -EINVAL (with a message) for a malformed envelope. */
int sl_mutate_review(const json_t *review, const struct sl_mutate_options *o, json_t **ret_review,
                     enum sl_mutate_result *ret_result, sl_error_t *err);

/* The same from bytes (capped parse). */
int sl_mutate_review_bytes(const char *data, size_t len, const struct sl_mutate_options *o,
                           json_t **ret_review, enum sl_mutate_result *ret_result, sl_error_t *err);

/* Applies a JSONPatch of add operations (the subset sl_mutate_pod_patch emits: add to an
 * object key, to an array index or "-") to `doc` in place; for tests and the fuzzer.
 * -EINVAL when a path does not resolve. */
int sl_jsonpatch_apply_adds(json_t *doc, const json_t *patch, sl_error_t *err);

#endif
