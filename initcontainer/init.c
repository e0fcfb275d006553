/* init.c — see init.h. */
#include "init.h"
#include "cleanup.h"
#include "daemonclient.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#define PROGRESS_EVERY_MS 1000        /* progress lines at most once a second per image */
#define STOP_READING      (-EALREADY) /* on_line: the image is warm, hang up */

struct follow {
    const struct sl_init_options *o;
    const char *image;
    FILE *out;
    bool startup, complete;
    int64_t last_progress;
    char *error; /* the daemon's `error` line */
};

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static uint64_t u(const json_t *o, const char *k)
{
    json_int_t v = json_integer_value(json_object_get(o, k));
    return v > 0 ? (uint64_t)v : 0;
}

static int on_line(void *ud, json_t *line)
{
    struct follow *f = ud;
    const char *phase = json_string_value(json_object_get(line, "phase"));
    if (!phase)
        return 0;
    if (strcmp(phase, "error") == 0) {
        const char *e = json_string_value(json_object_get(line, "error"));
        free(f->error);
        f->error = sl_xstrdup(e ? e : "pull failed");
        return 0;
    }
    int64_t now = mono_ms();
    if (strcmp(phase, "progress") == 0) {
        if (now - f->last_progress < PROGRESS_EVERY_MS)
            return 0;
    }
    f->last_progress = now;
    fprintf(f->out,
            "%s %s bytes=%" PRIu64 " payload=%" PRIu64 "/%" PRIu64 " contents=%" PRIu64 "/%" PRIu64
            " traced=%" PRIu64 "/%" PRIu64 "\n",
            f->image, phase, u(line, "bytes"), u(line, "payloadBytes"), u(line, "payloadTotal"),
            u(line, "contentsDone"), u(line, "contentsTotal"), u(line, "tracedDone"),
            u(line, "tracedTotal"));
    fflush(f->out);
    if (strcmp(phase, "startup") == 0) {
        f->startup = true;
        return STOP_READING;
    }
    if (strcmp(phase, "complete") == 0) /* a daemon without the startup phase */
        f->complete = true;
    return 0;
}

/* One image. Returns 0 when warm, or a negative errno with *err set. */
static int warm(const struct sl_init_options *o, const char *image, int64_t deadline,
                sl_error_t *err)
{
    int64_t left = deadline - mono_ms();
    if (left <= 0)
        return sl_error_make(err, ETIMEDOUT, "%s: no time left", image);
    json_t *req =
        json_pack("{s:s,s:s,s:b}", "ref", image, "namespace", o->ns, "insecure", o->insecure);
    if (o->proxy && *o->proxy)
        json_object_set_new(req, "proxy", json_string(o->proxy));
    struct follow f = {.o = o, .image = image, .out = o->out};
    unsigned secs = (unsigned)((left + 999) / 1000);
    int r = sl_daemon_stream_timeout(o->socket, "POST", "/v1/pull", req, secs, on_line, &f, err);
    json_decref(req);
    if (r == STOP_READING || (r >= 0 && (f.startup || f.complete))) {
        sl_error_free(err);
        r = 0;
    } else if (r >= 0) {
        r = sl_error_make(err, f.error ? EIO : EPROTO, "%s: %s", image,
                          f.error ? f.error
                                  : "the daemon's stream ended before the startup set "
                                    "was local");
    } else {
        r = sl_error_wrap(err, r, "%s", image);
    }
    free(f.error);
    return r;
}

enum sl_init_outcome sl_init_run(const struct sl_init_options *o, sl_error_t *err)
{
    int64_t t0 = mono_ms(), deadline = t0 + o->timeout_ms;
    enum sl_init_outcome res = SL_INIT_READY;
    {
        /* Is anyone there? A missing daemon is the one case that stops everything at once. */
        _cleanup_error_ sl_error_t e = NULL;
        json_t *v = NULL;
        int r = sl_daemon_call(o->socket, "GET", "/v1/version", NULL, &v, &e);
        json_decref(v);
        if (r < 0) {
            if (err && !*err)
                *err = TAKE_PTR(e);
            return SL_INIT_NO_DAEMON;
        }
    }
    for (size_t i = 0; i < o->n_images; i++) {
        const char *image = o->images[i];
        bool dup = false;
        for (size_t j = 0; j < i; j++)
            dup = dup || strcmp(o->images[j], image) == 0;
        if (dup)
            continue;
        int64_t t = mono_ms();
        _cleanup_error_ sl_error_t e = NULL;
        int r = warm(o, image, deadline, &e);
        if (r >= 0) {
            fprintf(o->out, "%s ready %.1fs\n", image, (double)(mono_ms() - t) / 1e3);
            fflush(o->out);
            continue;
        }
        log_warn("%s", sl_error_msg(e, r));
        if (r == -ETIMEDOUT) {
            if (err && !*err)
                *err = TAKE_PTR(e);
            return SL_INIT_TIMEOUT;
        }
        if (err && !*err)
            *err = TAKE_PTR(e);
        res = SL_INIT_FAILED;
    }
    return res;
}

const char *sl_init_outcome_name(enum sl_init_outcome r)
{
    switch (r) {
    case SL_INIT_READY:
        return "ready";
    case SL_INIT_NO_DAEMON:
        return "daemon not reachable";
    case SL_INIT_TIMEOUT:
        return "timed out";
    case SL_INIT_FAILED:
        return "failed";
    }
    return "?";
}
