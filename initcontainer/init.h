/* init.h — starlight-init's work: warm the pod's images through the node daemon and wait until
 * each image's startup set is local (docs/kubernetes.md §3, docs/protocol.md §4).
 *
 * For each image in order, one POST /v1/pull on the daemon's control socket; the answer's JSON
 * lines are printed as progress lines (image, phase, bytes) and the image counts as warm at
 * the `startup` phase (its traced prefix stored, or the whole image when untraced). The daemon
 * keeps pulling the rest after we hang up. One deadline covers every image.
 *
 * Thread-safety: none needed (one call per process). */
#ifndef SL_INIT_INIT_H
#define SL_INIT_INIT_H

#include "config.h"
#include "error.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

struct sl_init_options {
    const char *socket; /* daemon control socket */
    const char *const *images;
    size_t n_images;
    const char *ns;     /* containerd namespace ("k8s.io") */
    const char *proxy;  /* profile name or URL, or NULL for the daemon's default */
    bool insecure;      /* the proxy reaches the registry over plain HTTP */
    int64_t timeout_ms; /* for all images together */
    FILE *out;          /* progress lines */
};

enum sl_init_outcome {
    SL_INIT_READY,     /* every image's startup set is local */
    SL_INIT_NO_DAEMON, /* the socket does not answer */
    SL_INIT_TIMEOUT,   /* the deadline passed first */
    SL_INIT_FAILED,    /* the daemon refused or failed at least one image */
};

/* Runs the warm-up. Returns the outcome; *err (optional) carries the first failure's message.
 * Never fails otherwise. */
enum sl_init_outcome sl_init_run(const struct sl_init_options *o, sl_error_t *err);

const char *sl_init_outcome_name(enum sl_init_outcome r);

#endif
