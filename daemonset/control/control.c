/* control.c — the control API server (control.h): a minimal HTTP/1.1 server on a unix socket,
 * one thread per connection (capped), every response closing its connection. */
#include "control.h"
#include "base64.h"
#include "buf.h"
#include "cleanup.h"
#include "http.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define IO_TIMEOUT_S 30
#define MAX_PROFILES 64
#define MAX_INFLIGHT 256

/* A pull in flight. Requests for the same (ref, platform, namespace, proxy) attach to it and
 * follow its events instead of starting a second stream; the last one out frees it. */
struct inflight {
    struct inflight *next, *prev;
    char *ref, *key;
    unsigned refs; /* the pulling connection + attached followers; under c->lock */
    /* under c->lock: */
    struct sl_pull_stats st;
    unsigned reached; /* bit per enum sl_pull_phase seen */
    uint64_t seq;     /* bumped at every event */
    bool done;
    int rc;
    char *error;
    pthread_cond_t changed;
};

struct sl_control {
    struct sl_control_options o;
    char *socket_path, *root, *default_proxy, *profiles_path;
    int lfd;
    int tcp_fd; /* --metrics-listen, or -1 */
    int stop_pipe[2];
    pthread_t accept_thread;
    bool accept_started;
    atomic_bool stopping;

    pthread_mutex_t lock; /* conns, inflight list, profiles file */
    pthread_cond_t idle;
    unsigned n_conns;
    struct inflight inflight; /* list head */
    unsigned n_inflight;

    struct { /* Prometheus families (NULL without options.metrics) */
        struct sl_metric *pulls, *fetched, *saved, *ready, *complete, *fs, *store, *parked,
            *parked_wait;
        struct sl_metric *layers, *layer_bytes;
        struct sl_metric *fallbacks;
    } mx;
};

struct conn {
    struct sl_control *c;
    int fd;
    char method[8];
    char *target; /* path + query */
    char *body;
    size_t body_len;
    bool head_sent;
    bool tcp; /* from --metrics-listen: /metrics only */
};

int sl_control_http_status(int r)
{
    switch (-r) {
    case ENOENT:
        return 404;
    case EINVAL:
    case E2BIG:
        return 400;
    case EACCES:
    case EPERM:
        return 403;
    case EAGAIN:
    case ECONNREFUSED:
    case EHOSTUNREACH:
    case ETIMEDOUT:
        return 503;
    case EFBIG:
        return 413;
    case EEXIST:
        return 409;
    case EBADMSG:
    case EPROTO:
        return 502; /* the proxy sent bytes that do not verify */
    default:
        return 500;
    }
}

static const char *reason(int status)
{
    switch (status) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    default:
        return "Internal Server Error";
    }
}

static int write_all(int fd, const void *p, size_t len)
{
    const char *s = p;
    while (len > 0) {
        ssize_t n = send(fd, s, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -errno;
        s += n;
        len -= (size_t)n;
    }
    return 0;
}

static void send_head(struct conn *k, int status, const char *ctype)
{
    char h[256];
    int n = snprintf(h, sizeof(h),
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nConnection: close\r\n"
                     "Cache-Control: no-store\r\n\r\n",
                     status, reason(status), ctype);
    write_all(k->fd, h, (size_t)n);
    k->head_sent = true;
}

/* Sends one JSON document (and a newline) as the whole response. Steals `j`. */
static void reply_json(struct conn *k, int status, json_t *j)
{
    size_t len = 0;
    _cleanup_free_ char *s = sl_json_dump(j, &len);
    json_decref(j);
    if (!k->head_sent)
        send_head(k, status, "application/json");
    write_all(k->fd, s, len);
    write_all(k->fd, "\n", 1);
}

static void reply_error(struct conn *k, int r, const char *msg)
{
    int status = sl_control_http_status(r);
    reply_json(k, status,
               json_pack("{s:s,s:i,s:s}", "status", reason(status), "code", status, "error", msg));
}

/* ------------------------------------------------------------------ proxy profiles */

/* ROOT/proxies.json (a missing file holds no profile), plus, when `with_default`, the --proxy
 * of the daemon as profile "default" unless the file defines one. The file holds only the
 * profiles users added: a synthesized "default" is never saved, so a later --proxy takes
 * effect. Under c->lock. A file that does not parse is an error naming it: it is never
 * silently replaced. */
static int profiles_load(struct sl_control *c, bool with_default, struct sl_control_profiles *ret,
                         sl_error_t *err)
{
    memset(ret, 0, sizeof(*ret));
    _cleanup_close_ int fd = open(c->profiles_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 && errno != ENOENT)
        return sl_error_make(err, errno, "open %s: %s", c->profiles_path, strerror(errno));
    if (fd >= 0) {
        _cleanup_buf_ struct sl_buf b;
        sl_buf_init(&b, SL_CONTROL_MAX_PROFILES_FILE + 1);
        for (;;) {
            char tmp[8192];
            ssize_t n = read(fd, tmp, sizeof(tmp));
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                return sl_error_make(err, errno, "read %s: %s", c->profiles_path, strerror(errno));
            if (n == 0)
                break;
            if (sl_buf_append(&b, tmp, (size_t)n) < 0)
                return sl_error_make(err, EFBIG, "%s: over %u bytes", c->profiles_path,
                                     SL_CONTROL_MAX_PROFILES_FILE);
        }
        int r = sl_control_parse_profiles(b.data ? b.data : "", b.len, ret, err);
        if (r < 0) /* the daemon's own file: a server-side error (500), not the caller's */
            return sl_error_wrap(err, -EIO, "%s (fix or remove the file)", c->profiles_path);
    }
    if (with_default && c->default_proxy && *c->default_proxy &&
        sl_control_profiles_find(ret, "default") < 0) {
        /* the --proxy profile comes first in listings */
        ret->v = sl_xrealloc(ret->v, (ret->n + 1) * sizeof(*ret->v));
        memmove(ret->v + 1, ret->v, ret->n * sizeof(*ret->v));
        ret->n++;
        ret->v[0] = (struct sl_control_profile){.name = sl_xstrdup("default"),
                                                .url = sl_xstrdup(c->default_proxy)};
    }
    return 0;
}

static int profiles_save(struct sl_control *c, const struct sl_control_profiles *profs,
                         sl_error_t *err)
{
    json_auto_t *doc = sl_control_profiles_json(profs);
    size_t len = 0;
    _cleanup_free_ char *s = sl_json_dump(doc, &len);
    _cleanup_free_ char *tmp = sl_xasprintf("%s.tmp", c->profiles_path);
    _cleanup_close_ int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return sl_error_make(err, errno, "create %s: %s", tmp, strerror(errno));
    for (size_t off = 0; off < len;) {
        ssize_t n = write(fd, s + off, len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return sl_error_make(err, EIO, "write %s: %s", tmp, strerror(errno));
        off += (size_t)n;
    }
    if (fsync(fd) < 0)
        return sl_error_make(err, EIO, "fsync %s: %s", tmp, strerror(errno));
    if (rename(tmp, c->profiles_path) < 0)
        return sl_error_make(err, errno, "rename %s: %s", tmp, strerror(errno));
    return 0;
}

/* Resolves "NAME" or "URL" (anything with "://") into a URL and an Authorization value. */
static int resolve_proxy(struct sl_control *c, const char *name, char **ret_url, char **ret_auth,
                         sl_error_t *err)
{
    *ret_url = *ret_auth = NULL;
    if (name && strstr(name, "://")) {
        *ret_url = sl_xstrdup(name);
        return 0;
    }
    if (!name || !*name)
        name = "default";
    struct sl_control_profiles profs;
    pthread_mutex_lock(&c->lock);
    int r = profiles_load(c, true, &profs, err);
    pthread_mutex_unlock(&c->lock);
    if (r < 0)
        return r;
    ssize_t at = sl_control_profiles_find(&profs, name);
    if (at < 0) {
        sl_control_profiles_clear(&profs);
        return sl_error_make(err, ENOENT,
                             "no proxy profile `%s` (add one with POST /v1/proxies, "
                             "or start the daemon with --proxy)",
                             name);
    }
    const struct sl_control_profile *p = &profs.v[at];
    *ret_url = sl_xstrdup(p->url);
    if (p->token && *p->token) {
        *ret_auth = sl_xasprintf("Bearer %s", p->token);
    } else if (p->user && *p->user) {
        _cleanup_free_ char *b = sl_base64_encode(p->user, strlen(p->user), NULL);
        *ret_auth = sl_xasprintf("Basic %s", b);
    }
    sl_control_profiles_clear(&profs);
    return 0;
}

static void handle_proxies_get(struct conn *k)
{
    _cleanup_error_ sl_error_t err = NULL;
    struct sl_control_profiles profs;
    pthread_mutex_lock(&k->c->lock);
    int r = profiles_load(k->c, true, &profs, &err);
    pthread_mutex_unlock(&k->c->lock);
    if (r < 0)
        return reply_error(k, r, sl_error_msg(err, r));
    json_t *out = json_array();
    for (size_t i = 0; i < profs.n; i++) {
        const struct sl_control_profile *v = &profs.v[i];
        json_t *p = json_pack("{s:s,s:s,s:b}", "name", v->name, "url", v->url, "credentials",
                              (v->user && *v->user) || (v->token && *v->token));
        if (v->user) {
            _cleanup_free_ char *uname = sl_xstrndup(v->user, strcspn(v->user, ":"));
            json_object_set_new(p, "user", json_string(uname));
        }
        json_array_append_new(out, p);
    }
    sl_control_profiles_clear(&profs);
    reply_json(k, 200, json_pack("{s:o}", "proxies", out));
}

static void handle_proxies_post(struct conn *k)
{
    _cleanup_error_ sl_error_t err = NULL;
    struct sl_control_profile in = {0};
    int r = sl_control_parse_profile(k->body, k->body_len, &in, &err);
    if (r >= 0) {
        struct sl_control_profiles profs;
        pthread_mutex_lock(&k->c->lock);
        r = profiles_load(k->c, false, &profs, &err); /* what the file holds */
        if (r >= 0)
            r = sl_control_profiles_put(&profs, &in, &err);
        if (r >= 0)
            r = profiles_save(k->c, &profs, &err);
        pthread_mutex_unlock(&k->c->lock);
        sl_control_profiles_clear(&profs);
    }
    if (r < 0)
        reply_error(k, r, sl_error_msg(err, r));
    else
        reply_json(k, 200, json_pack("{s:s,s:s}", "name", in.name, "url", in.url));
    sl_control_profile_clear(&in);
}

/* ------------------------------------------------------------------ ping */

static double mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static void handle_ping(struct conn *k)
{
    _cleanup_error_ sl_error_t err = NULL;
    _cleanup_free_ char *name = NULL, *url = NULL, *auth = NULL;
    int r = sl_control_query(k->target, "proxy", &name, &err);
    if (r >= 0)
        r = resolve_proxy(k->c, name, &url, &auth, &err);
    if (r < 0)
        return reply_error(k, r, sl_error_msg(err, r));
    _cleanup_free_ char *hc = sl_xasprintf("%s/health-check", url);
    struct sl_http_options o = {.retries = -1, .connect_timeout_s = 5, .timeout_s = 10};
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.url = hc;
    req.authorization = auth;
    struct sl_buf body;
    sl_buf_init(&body, 64 * 1024);
    req.body_buf = &body;
    struct sl_http_response resp = {0};
    double t = mono_ms();
    r = sl_http_perform(&o, &req, &resp, &err);
    double rtt = mono_ms() - t;
    if (r < 0) {
        reply_error(k, r, sl_error_msg(err, r));
    } else {
        json_t *pj = NULL;
        if (resp.status == 200)
            sl_json_parse(body.data ? body.data : "", body.len, 64 * 1024, "health-check", &pj,
                          NULL);
        json_t *out =
            json_pack("{s:s,s:i,s:f}", "proxy", url, "status", (int)resp.status, "rttMs", rtt);
        if (pj)
            json_object_set_new(out, "health", pj);
        reply_json(k, resp.status == 200 ? 200 : 503, out);
    }
    sl_buf_free(&body);
    sl_http_response_free(&resp);
}

/* ------------------------------------------------------------------ status */

static json_t *layer_json(struct sl_store *s, const char *digest)
{
    struct sl_store_layer rec = {0};
    json_t *o = json_pack("{s:s}", "digest", digest);
    if (sl_store_layer_get(s, digest, &rec, NULL) < 0)
        return o;
    json_object_set_new(o, "complete", json_boolean(rec.state == SL_STORE_LAYER_COMPLETE));
    json_object_set_new(o, "blobBytes", json_integer((json_int_t)rec.blob_size));
    struct sl_toc *toc = NULL;
    if (sl_store_layer_load_toc(&rec, &toc, NULL) >= 0) {
        /* file bytes of the layer's distinct contents, and those complete in the store */
        uint64_t total = 0, local = 0;
        size_t n = sl_toc_count(toc), files = 0;
        for (size_t i = 0; i < n; i++) {
            const struct sl_toc_entry *e = sl_toc_entry_at(toc, i);
            if (e->type != SL_TOC_REG || !e->has_digest)
                continue;
            files++;
            total += e->size;
            if (e->size == 0 || sl_store_content_state(s, e->digest) == SL_STORE_COMPLETE)
                local += e->size;
        }
        json_object_set_new(o, "files", json_integer((json_int_t)files));
        json_object_set_new(o, "bytesLocal", json_integer((json_int_t)local));
        json_object_set_new(o, "bytesTotal", json_integer((json_int_t)total));
        sl_toc_free(toc);
    }
    sl_store_layer_clear(&rec);
    return o;
}

static json_t *stats_json(const struct sl_pull_stats *s)
{
    json_t *o = json_pack(
        "{s:I,s:I,s:I,s:I,s:I,s:I,s:i,s:i,s:i}", "bytes", (json_int_t)s->bytes_received,
        "payloadBytes", (json_int_t)s->payload_bytes, "payloadTotal", (json_int_t)s->payload_total,
        "imageBytes", (json_int_t)s->image_bytes, "contentsDone", (json_int_t)s->contents_done,
        "contentsTotal", (json_int_t)s->contents_total, "layersTotal", (int)s->layers_total,
        "layersNew", (int)s->layers_new, "layersHeld", (int)s->layers_held);
    json_object_set_new(o, "headBytes", json_integer((json_int_t)s->head_bytes));
    json_object_set_new(o, "resumes", json_integer(s->resumes));
    json_object_set_new(o, "replans", json_integer(s->replans));
    json_object_set_new(o, "bytesResent", json_integer((json_int_t)s->bytes_resent));
    json_object_set_new(o, "chunksRefetched", json_integer(s->chunks_refetched));
    if (s->digest[0])
        json_object_set_new(o, "digest", json_string(s->digest));
    if (s->ms_ready >= 0)
        json_object_set_new(o, "readyMs", json_real(s->ms_ready));
    if (s->ms_complete >= 0)
        json_object_set_new(o, "completeMs", json_real(s->ms_complete));
    json_object_set_new(o, "tracedDone", json_integer((json_int_t)s->traced_done));
    json_object_set_new(o, "tracedTotal", json_integer((json_int_t)s->traced_total));
    if (s->ms_startup >= 0)
        json_object_set_new(o, "startupMs", json_real(s->ms_startup));
    return o;
}

static void handle_status(struct conn *k)
{
    struct sl_control *c = k->c;
    json_t *layers = json_array();
    char **all = NULL;
    size_t n = 0;
    if (sl_store_layer_list(c->o.store, &all, &n, NULL) >= 0) {
        for (size_t i = 0; i < n; i++) {
            json_array_append_new(layers, layer_json(c->o.store, all[i]));
            free(all[i]);
        }
        free(all);
    }
    json_t *pulls = json_array();
    pthread_mutex_lock(&c->lock);
    for (struct inflight *p = c->inflight.next; p != &c->inflight; p = p->next) {
        if (p->done)
            continue;
        json_t *o = stats_json(&p->st);
        json_object_set_new(o, "ref", json_string(p->ref));
        json_array_append_new(pulls, o);
    }
    pthread_mutex_unlock(&c->lock);
    struct sl_store_stats ss;
    sl_store_get_stats(c->o.store, &ss);
    json_t *store = json_pack(
        "{s:I,s:I,s:I,s:I,s:I}", "chunksStored", (json_int_t)ss.chunks_stored, "chunksRejected",
        (json_int_t)ss.chunks_rejected, "contentsCompleted", (json_int_t)ss.contents_completed,
        "readsParked", (json_int_t)ss.waiters_parked, "readsWoken", (json_int_t)ss.waiters_woken);
    reply_json(k, 200,
               json_pack("{s:s,s:o,s:o,s:o}", "version", SL_VERSION, "layers", layers, "pulls",
                         pulls, "store", store));
}

/* ------------------------------------------------------------------ pull */

struct pull_ctx {
    struct sl_control *c;
    struct inflight *inf;
    sl_pull_event_fn on_event; /* the puller's own view (HTTP lines, or sl_control_pull's) */
    void *event_ud;
};

/* Writes one progress line; < 0 when the client went away. */
static int send_line(struct conn *k, enum sl_pull_phase phase, const struct sl_pull_stats *s)
{
    if (!k->head_sent)
        send_head(k, 200, "application/x-ndjson");
    json_t *o = stats_json(s);
    json_object_set_new(o, "phase", json_string(sl_pull_phase_name(phase)));
    size_t len = 0;
    _cleanup_free_ char *line = sl_json_dump(o, &len);
    json_decref(o);
    int r = write_all(k->fd, line, len);
    return r < 0 ? r : write_all(k->fd, "\n", 1);
}

static int on_pull_event(void *ud, enum sl_pull_phase phase, const struct sl_pull_stats *s)
{
    struct pull_ctx *p = ud;
    struct sl_control *c = p->c;
    pthread_mutex_lock(&c->lock);
    p->inf->st = *s;
    p->inf->reached |= 1u << phase;
    p->inf->seq++;
    pthread_cond_broadcast(&p->inf->changed);
    pthread_mutex_unlock(&c->lock);
    if (atomic_load(&c->stopping))
        return -ECANCELED;
    return p->on_event ? p->on_event(p->event_ud, phase, s) : 0;
}

/* POST /v1/pull's view of its own pull. */
static int on_http_pull_event(void *ud, enum sl_pull_phase phase, const struct sl_pull_stats *s)
{
    /* A client that went away does not stop the pull: the node still wants the image. */
    (void)send_line(ud, phase, s);
    return 0;
}

/* Under c->lock. */
static void inflight_unref(struct sl_control *c, struct inflight *inf)
{
    if (--inf->refs > 0)
        return;
    inf->prev->next = inf->next;
    inf->next->prev = inf->prev;
    c->n_inflight--;
    pthread_cond_destroy(&inf->changed);
    free(inf->ref);
    free(inf->key);
    free(inf->error);
    free(inf);
}

/* A second request for an image being pulled: follow the pull in flight. Every phase it
 * reached is sent once, in order, with the pull's current counters; progress lines in between;
 * the last line is `complete` or `error`, as for the pulling client. */
static void follow_pull(struct conn *k, struct inflight *inf)
{
    static const enum sl_pull_phase order[] = {SL_PULL_HEADER, SL_PULL_READY, SL_PULL_STARTUP,
                                               SL_PULL_COMPLETE};
    struct sl_control *c = k->c;
    unsigned sent = 0;
    uint64_t seq = UINT64_MAX;
    log_info("pull %s: attached to the pull in flight", inf->ref);
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!inf->done && inf->seq == seq && !atomic_load(&c->stopping)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&inf->changed, &c->lock, &ts);
        }
        struct sl_pull_stats st = inf->st;
        unsigned reached = inf->reached;
        bool done = inf->done, stopping = atomic_load(&c->stopping);
        int rc = inf->rc;
        _cleanup_free_ char *msg = inf->error ? sl_xstrdup(inf->error) : NULL;
        bool fresh = inf->seq != seq;
        seq = inf->seq;
        pthread_mutex_unlock(&c->lock);

        int w = 0;
        bool milestone = false;
        for (size_t i = 0; i < SL_ELEMENTSOF(order) && w >= 0; i++) {
            unsigned bit = 1u << order[i];
            if ((reached & bit) && !(sent & bit)) {
                w = send_line(k, order[i], &st);
                sent |= bit;
                milestone = true;
            }
        }
        if (w >= 0 && fresh && !milestone && !done && (reached & (1u << SL_PULL_HEADER)))
            w = send_line(k, SL_PULL_PROGRESS, &st);
        if (done && rc < 0 && w >= 0) {
            if (!k->head_sent) {
                reply_error(k, rc, msg ? msg : "pull failed");
            } else {
                json_t *o = stats_json(&st);
                json_object_set_new(o, "phase", json_string("error"));
                json_object_set_new(o, "error", json_string(msg ? msg : "pull failed"));
                json_object_set_new(o, "code", json_integer(sl_control_http_status(rc)));
                reply_json(k, 200, o);
            }
        }
        pthread_mutex_lock(&c->lock);
        if (done || stopping || w < 0)
            break;
    }
    inflight_unref(c, inf);
    pthread_mutex_unlock(&c->lock);
}

/* The identity of a pull: requests with the same key share one pull in flight. */
static char *pull_key(const char *ref, const char *platform, const char *ns, const char *url,
                      int insecure)
{
    return sl_xasprintf("%s\n%s\n%s\n%s\n%d", ref, platform ? platform : sl_pull_host_platform(),
                        ns && *ns ? ns : "default", url, insecure);
}

/* Finds the pull in flight with `key` (*ret_follow: attached to it, refs+1) or registers a new
 * one (the caller runs it with inflight_run). -EAGAIN when too many are in flight. */
static int inflight_get(struct sl_control *c, const char *ref, const char *key,
                        struct inflight **ret, bool *ret_follow, sl_error_t *err)
{
    pthread_mutex_lock(&c->lock);
    for (struct inflight *p = c->inflight.next; p != &c->inflight; p = p->next) {
        if (!p->done && strcmp(p->key, key) == 0) {
            p->refs++;
            pthread_mutex_unlock(&c->lock);
            *ret = p;
            *ret_follow = true;
            return 0;
        }
    }
    if (c->n_inflight >= MAX_INFLIGHT) {
        pthread_mutex_unlock(&c->lock);
        return sl_error_make(err, EAGAIN, "too many pulls in flight");
    }
    struct inflight *inf = sl_xcalloc(1, sizeof(*inf));
    inf->ref = sl_xstrdup(ref);
    inf->key = sl_xstrdup(key);
    inf->refs = 1;
    pthread_cond_init(&inf->changed, NULL);
    inf->next = &c->inflight;
    inf->prev = c->inflight.prev;
    c->inflight.prev->next = inf;
    c->inflight.prev = inf;
    c->n_inflight++;
    pthread_mutex_unlock(&c->lock);
    *ret = inf;
    *ret_follow = false;
    return 0;
}

/* Runs the pull registered by inflight_get (req: what to pull; the event and registration
 * hooks are set here), then publishes its end to followers and drops the reference. */
static int inflight_run(struct sl_control *c, struct pull_ctx *pc, struct sl_pull_request *req,
                        struct sl_pull_stats *ret_st, sl_error_t *err)
{
    struct inflight *inf = pc->inf;
    struct sl_pull_stats st;
    req->on_event = on_pull_event;
    req->event_ud = pc;
    req->on_register = c->o.on_register;
    req->register_ud = c->o.register_ud;
    log_info("pull %s from %s", req->ref, req->proxy_url);
    int r = sl_pull_run(c->o.store, c->o.fs, req, &st, err);
    if (r < 0)
        log_error("%s", sl_error_msg(*err, r));
    sl_metric_add(c->mx.pulls, r < 0 ? "result=\"error\"" : "result=\"ok\"", 1);
    sl_metric_add(c->mx.fetched, NULL, (double)st.bytes_received);
    if (r >= 0 && st.image_bytes > st.bytes_received)
        sl_metric_add(c->mx.saved, NULL, (double)(st.image_bytes - st.bytes_received));
    if (st.ms_ready >= 0)
        sl_metric_observe(c->mx.ready, NULL, st.ms_ready / 1000.0);
    if (r >= 0 && st.ms_complete >= 0)
        sl_metric_observe(c->mx.complete, NULL, st.ms_complete / 1000.0);
    if (r >= 0) {
        log_info("pull %s: %" PRIu64 " bytes (payload %" PRIu64 "), header after %.0f ms, "
                 "ready after %.0f ms, complete after %.0f ms",
                 req->ref, st.bytes_received, st.payload_bytes, st.ms_header, st.ms_ready,
                 st.ms_complete);
    }
    pthread_mutex_lock(&c->lock);
    inf->st = st;
    inf->done = true;
    inf->rc = r;
    if (r < 0)
        inf->error = sl_xstrdup(sl_error_msg(*err, r));
    pthread_cond_broadcast(&inf->changed);
    inflight_unref(c, inf);
    pthread_mutex_unlock(&c->lock);
    *ret_st = st;
    return r;
}

static void handle_pull(struct conn *k)
{
    struct sl_control *c = k->c;
    _cleanup_error_ sl_error_t err = NULL;
    struct sl_control_pull_req in = {0};
    _cleanup_free_ char *url = NULL, *auth = NULL;
    int r = sl_control_parse_pull(k->body, k->body_len, &in, &err);
    if (r >= 0)
        r = resolve_proxy(c, in.proxy, &url, &auth, &err);
    if (r < 0) {
        reply_error(k, r, sl_error_msg(err, r));
        sl_control_pull_req_clear(&in);
        return;
    }
    const char *ref = in.ref, *platform = in.platform, *ns = in.ns;
    bool insecure = in.insecure;

    _cleanup_free_ char *key = pull_key(ref, platform, ns, url, insecure);
    struct inflight *inf = NULL;
    bool follow = false;
    r = inflight_get(c, ref, key, &inf, &follow, &err);
    if (r < 0) {
        sl_control_pull_req_clear(&in);
        return reply_error(k, r, sl_error_msg(err, r));
    }
    if (follow) {
        follow_pull(k, inf);
        sl_control_pull_req_clear(&in);
        return;
    }
    struct pull_ctx pc = {.c = c, .inf = inf, .on_event = on_http_pull_event, .event_ud = k};
    struct sl_pull_request req = {
        .proxy_url = url,
        .proxy_auth = auth,
        .ref = ref,
        .platform = platform,
        .ns = ns,
        .insecure = insecure,
    };
    struct sl_pull_stats st;
    r = inflight_run(c, &pc, &req, &st, &err);
    if (r < 0) {
        if (!k->head_sent) {
            reply_error(k, r, sl_error_msg(err, r));
        } else {
            json_t *o = stats_json(&st);
            json_object_set_new(o, "phase", json_string("error"));
            json_object_set_new(o, "error", json_string(sl_error_msg(err, r)));
            json_object_set_new(o, "code", json_integer(sl_control_http_status(r)));
            reply_json(k, 200, o);
        }
    }
    sl_control_pull_req_clear(&in);
}

int sl_control_proxy(struct sl_control *c, const char *name, char **ret_url, char **ret_auth,
                     sl_error_t *err)
{
    return resolve_proxy(c, name, ret_url, ret_auth, err);
}

int sl_control_pull(struct sl_control *c, const struct sl_control_pull *p,
                    struct sl_pull_stats *ret_stats, sl_error_t *err)
{
    struct sl_pull_stats st;
    memset(&st, 0, sizeof(st));
    st.ms_header = st.ms_ready = st.ms_complete = -1;
    if (ret_stats)
        *ret_stats = st;
    _cleanup_free_ char *url = NULL, *auth = NULL;
    int r = resolve_proxy(c, p->proxy, &url, &auth, err);
    if (r < 0)
        return r;
    _cleanup_free_ char *key = pull_key(p->ref, p->platform, p->ns, url, p->insecure);
    struct inflight *inf = NULL;
    bool follow = false;
    r = inflight_get(c, p->ref, key, &inf, &follow, err);
    if (r < 0)
        return r;
    if (follow) { /* the same pull is running: wait for its end */
        log_info("pull %s: attached to the pull in flight", inf->ref);
        pthread_mutex_lock(&c->lock);
        while (!inf->done && !atomic_load(&c->stopping)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&inf->changed, &c->lock, &ts);
        }
        st = inf->st;
        r = !inf->done ? sl_error_make(err, ECANCELED, "pull %s: stopping", p->ref)
            : inf->rc < 0
                ? sl_error_make(err, -inf->rc, "%s", inf->error ? inf->error : "pull failed")
                : 0;
        inflight_unref(c, inf);
        pthread_mutex_unlock(&c->lock);
        if (ret_stats)
            *ret_stats = st;
        return r;
    }
    struct pull_ctx pc = {.c = c, .inf = inf, .on_event = p->on_event, .event_ud = p->event_ud};
    struct sl_pull_request req = {
        .proxy_url = url,
        .proxy_auth = auth,
        .ref = p->ref,
        .platform = p->platform,
        .ns = p->ns,
        .insecure = p->insecure,
        .from = p->from,
    };
    r = inflight_run(c, &pc, &req, &st, err);
    if (ret_stats)
        *ret_stats = st;
    return r;
}

/* ------------------------------------------------------------------ connections */

static int read_request(struct conn *k, sl_error_t *err)
{
    _cleanup_buf_ struct sl_buf b;
    sl_buf_init(&b, SL_CONTROL_MAX_HEAD + SL_CONTROL_MAX_BODY);
    char *end = NULL;
    while (!(end = b.len ? strstr(b.data, "\r\n\r\n") : NULL)) {
        if (b.len > SL_CONTROL_MAX_HEAD)
            return sl_error_make(err, EFBIG, "request head over %u bytes", SL_CONTROL_MAX_HEAD);
        char tmp[4096];
        ssize_t n = recv(k->fd, tmp, sizeof(tmp), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return sl_error_make(err, EPROTO, "connection closed before the request head");
        if (memchr(tmp, 0, (size_t)n))
            return sl_error_make(err, EINVAL, "NUL byte in request");
        if (sl_buf_append(&b, tmp, (size_t)n) < 0)
            return sl_error_make(err, EFBIG, "request too large");
    }
    size_t head_len = (size_t)(end - b.data) + 4;
    struct sl_control_head h;
    int r = sl_control_parse_head(b.data, head_len, SL_CONTROL_MAX_BODY, &h, err);
    if (r < 0)
        return r;
    memcpy(k->method, h.method, sizeof(k->method));
    k->target = TAKE_PTR(h.target);
    uint64_t clen = h.content_length;
    while (b.len - head_len < clen) {
        char tmp[4096];
        ssize_t n = recv(k->fd, tmp, SL_MIN(sizeof(tmp), clen - (b.len - head_len)), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return sl_error_make(err, EPROTO, "connection closed in the body");
        if (sl_buf_append(&b, tmp, (size_t)n) < 0)
            return sl_error_make(err, EFBIG, "request too large");
    }
    /* a copy of exactly clen bytes: the body may hold NUL bytes (the parsers take lengths) */
    k->body_len = (size_t)clen;
    k->body = sl_xmalloc(k->body_len + 1);
    memcpy(k->body, b.data + head_len, k->body_len);
    k->body[k->body_len] = 0;
    return 0;
}

/* ------------------------------------------------------------------ traces (trace.h) */

static void handle_optimizer(struct conn *k)
{
    _cleanup_error_ sl_error_t err = NULL;
    if (!k->c->o.trace)
        return reply_error(k, -ENOENT, "this daemon records no traces");
    struct sl_control_optimizer_req in = {0};
    int r = sl_control_parse_optimizer(k->body, k->body_len, &in, &err);
    int finished = 0;
    if (r >= 0)
        r = sl_trace_set_optimizer(k->c->o.trace, in.enable, in.group, &finished, &err);
    if (r < 0) {
        sl_control_optimizer_req_clear(&in);
        return reply_error(k, r, sl_error_msg(err, r));
    }
    const char *group =
        in.enable ? (in.group && *in.group ? in.group : SL_TRACE_DEFAULT_GROUP) : "";
    log_info("optimizer %s%s%s (%d traces finished)", in.enable ? "on" : "off",
             in.enable ? ", group " : "", group, finished);
    reply_json(
        k, 200,
        json_pack("{s:b,s:s,s:i}", "enabled", in.enable, "group", group, "finished", finished));
    sl_control_optimizer_req_clear(&in);
}

static void handle_traces(struct conn *k)
{
    _cleanup_error_ sl_error_t err = NULL;
    if (!k->c->o.trace)
        return reply_error(k, -ENOENT, "this daemon records no traces");
    json_t *doc = NULL;
    int r = sl_trace_list(k->c->o.trace, &doc, &err);
    if (r < 0)
        return reply_error(k, r, sl_error_msg(err, r));
    reply_json(k, 200, doc);
}

static void handle_report(struct conn *k)
{
    _cleanup_error_ sl_error_t err = NULL;
    if (!k->c->o.trace)
        return reply_error(k, -ENOENT, "this daemon records no traces");
    _cleanup_free_ char *proxy = NULL;
    int r = sl_control_parse_report(k->body, k->body_len, &proxy, &err);
    _cleanup_free_ char *url = NULL, *auth = NULL;
    if (r >= 0)
        r = resolve_proxy(k->c, proxy, &url, &auth, &err);
    struct sl_trace_report_result res = {0};
    if (r >= 0)
        r = sl_trace_report(k->c->o.trace, url, auth, &res, &err);
    if (r < 0) {
        log_warn("report: %s (the traces are kept)", sl_error_msg(err, r));
        json_decref(res.reply);
        return reply_error(k, r, sl_error_msg(err, r));
    }
    log_info("report to %s: %d traces in %d groups, %d accesses, %d dropped", url, res.traces,
             res.groups, res.accesses, res.skipped);
    json_t *out = json_pack("{s:s,s:i,s:i,s:i,s:i,s:i}", "proxy", url, "groups", res.groups,
                            "images", res.images, "traces", res.traces, "accesses", res.accesses,
                            "dropped", res.skipped);
    if (res.reply)
        json_object_set_new(out, "answer", res.reply);
    reply_json(k, 200, out);
}

static void handle_gc(struct conn *k)
{
    _cleanup_error_ sl_error_t err = NULL;
    if (!k->c->o.gc)
        return reply_error(k, -ENOENT, "this daemon has no garbage collector");
    int64_t grace = -1;
    int r = sl_control_parse_gc(k->body, k->body_len, &grace, &err);
    _cleanup_free_ char *text = NULL;
    if (r >= 0)
        r = k->c->o.gc(k->c->o.gc_ud, grace, &text, &err);
    json_t *out = r >= 0 ? json_loads(text, 0, NULL) : NULL;
    if (r >= 0 && !out)
        r = sl_error_make(&err, EIO, "gc: bad report");
    if (r < 0)
        return reply_error(k, r, sl_error_msg(err, r));
    reply_json(k, 200, out);
}

static bool path_is(const char *target, const char *path)
{
    size_t n = strlen(path);
    return strncmp(target, path, n) == 0 && (target[n] == 0 || target[n] == '?');
}

static void handle_metrics(struct conn *k)
{
    struct sl_buf b;
    sl_buf_init(&b, 4u << 20);
    if (sl_metrics_render(k->c->o.metrics, &b) < 0) {
        sl_buf_free(&b);
        reply_error(k, -EFBIG, "metrics too large");
        return;
    }
    send_head(k, 200, SL_METRICS_CONTENT_TYPE);
    write_all(k->fd, b.data ? b.data : "", b.len);
    sl_buf_free(&b);
}

/* Scrape-time gauges from the store and the fs. */
static void collect(void *ud, struct sl_metrics *m)
{
    (void)m;
    struct sl_control *c = ud;
    struct sl_store_stats ss;
    sl_store_get_stats(c->o.store, &ss);
    sl_metric_set(c->mx.store, "event=\"chunk_stored\"", (double)ss.chunks_stored);
    sl_metric_set(c->mx.store, "event=\"chunk_duplicate\"", (double)ss.chunks_duplicate);
    sl_metric_set(c->mx.store, "event=\"chunk_rejected\"", (double)ss.chunks_rejected);
    sl_metric_set(c->mx.store, "event=\"content_completed\"", (double)ss.contents_completed);
    sl_metric_set(c->mx.store, "event=\"waiter_parked\"", (double)ss.waiters_parked);
    /* Store size from the layer records (no TOC loads: scrapes stay cheap). */
    char **all = NULL;
    size_t n = 0;
    uint64_t complete = 0, partial = 0, bytes = 0;
    if (sl_store_layer_list(c->o.store, &all, &n, NULL) >= 0) {
        for (size_t i = 0; i < n; i++) {
            struct sl_store_layer rec = {0};
            if (sl_store_layer_get(c->o.store, all[i], &rec, NULL) >= 0) {
                if (rec.state == SL_STORE_LAYER_COMPLETE)
                    complete++;
                else
                    partial++;
                bytes += rec.blob_size;
                sl_store_layer_clear(&rec);
            }
            free(all[i]);
        }
        free(all);
    }
    sl_metric_set(c->mx.layers, "state=\"complete\"", (double)complete);
    sl_metric_set(c->mx.layers, "state=\"partial\"", (double)partial);
    sl_metric_set(c->mx.layer_bytes, NULL, (double)bytes);
    if (c->o.fs) {
        struct sl_fs_stats fs;
        sl_fs_get_stats(c->o.fs, &fs);
        sl_metric_set(c->mx.fs, "op=\"open\"", (double)fs.opens);
        sl_metric_set(c->mx.fs, "op=\"read\"", (double)fs.reads);
        sl_metric_set(c->mx.fs, "op=\"read_parked\"", (double)fs.reads_parked);
        sl_metric_set(c->mx.parked, NULL, (double)fs.parked_now);
        sl_metric_set(c->mx.parked_wait, NULL, (double)fs.parked_wait_ns / 1e9);
    }
}

static void metrics_setup(struct sl_control *c)
{
    struct sl_metrics *m = c->o.metrics;
    if (!m)
        return;
    static const double secs[] = {0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300};
    c->mx.pulls = sl_metrics_counter(m, "starlight_pulls_total", "Pulls by result");
    c->mx.fetched = sl_metrics_counter(m, "starlight_pull_bytes_fetched_total",
                                       "Bytes received from proxies (delta streams)");
    c->mx.saved = sl_metrics_counter(m, "starlight_pull_bytes_saved_total",
                                     "Image bytes a plain pull would have fetched that the "
                                     "delta skipped (contents already held)");
    c->mx.ready = sl_metrics_histogram(m, "starlight_pull_ready_seconds",
                                       "Time from request to layers published (ready)", secs,
                                       SL_ELEMENTSOF(secs));
    c->mx.complete = sl_metrics_histogram(m, "starlight_pull_complete_seconds",
                                          "Time from request to every content stored", secs,
                                          SL_ELEMENTSOF(secs));
    c->mx.fs = sl_metrics_counter(m, "starlight_fs_operations_total", "FUSE operations");
    c->mx.parked =
        sl_metrics_gauge(m, "starlight_fs_reads_parked", "FUSE reads waiting for their chunk now");
    c->mx.parked_wait = sl_metrics_counter(
        m, "starlight_fs_parked_wait_seconds_total",
        "Time parked reads waited for their chunks (with op=read_parked: the mean wait)");
    c->mx.store = sl_metrics_counter(m, "starlight_store_events_total",
                                     "Store events (chunks stored/duplicate/rejected, "
                                     "contents completed, reads parked)");
    c->mx.layers = sl_metrics_gauge(m, "starlight_store_layers", "Layers in the store");
    c->mx.layer_bytes = sl_metrics_gauge(m, "starlight_store_layer_bytes",
                                         "Compressed size of the layers in the store");
    c->mx.fallbacks = sl_metrics_counter(m, "starlight_fallbacks_total",
                                         "Pulls that fell back to a normal unpack");
    sl_metric_add(c->mx.fallbacks, NULL, 0);
    sl_metric_add(c->mx.pulls, "result=\"ok\"", 0);
    sl_metric_add(c->mx.pulls, "result=\"error\"", 0);
    sl_metric_add(c->mx.fetched, NULL, 0);
    sl_metric_add(c->mx.saved, NULL, 0);
    sl_metrics_on_collect(m, collect, c);
}

static void dispatch(struct conn *k)
{
    bool get = strcmp(k->method, "GET") == 0, post = strcmp(k->method, "POST") == 0;
    const char *t = k->target;
    if (k->tcp) {
        if (path_is(t, "/metrics") && get)
            handle_metrics(k);
        else
            reply_error(k, -ENOENT, "only GET /metrics is served here");
    } else if (path_is(t, "/v1/pull") && post)
        handle_pull(k);
    else if (path_is(t, "/v1/status") && get)
        handle_status(k);
    else if (path_is(t, "/v1/ping") && get)
        handle_ping(k);
    else if (path_is(t, "/v1/proxies") && get)
        handle_proxies_get(k);
    else if (path_is(t, "/v1/proxies") && post)
        handle_proxies_post(k);
    else if (path_is(t, "/v1/optimizer") && post)
        handle_optimizer(k);
    else if (path_is(t, "/v1/report") && post)
        handle_report(k);
    else if (path_is(t, "/v1/traces") && get)
        handle_traces(k);
    else if (path_is(t, "/v1/gc") && post)
        handle_gc(k);
    else if (path_is(t, "/metrics") && get && k->c->o.metrics)
        handle_metrics(k);
    else if (path_is(t, "/v1/version") && get)
        reply_json(k, 200, json_pack("{s:s}", "version", SL_VERSION));
    else if (path_is(t, "/v1/pull") || path_is(t, "/v1/status") || path_is(t, "/v1/ping") ||
             path_is(t, "/v1/proxies") || path_is(t, "/v1/version") ||
             path_is(t, "/v1/optimizer") || path_is(t, "/v1/report") || path_is(t, "/v1/traces") ||
             path_is(t, "/v1/gc"))
        reply_json(k, 405,
                   json_pack("{s:s,s:i,s:s}", "status", reason(405), "code", 405, "error",
                             "method not allowed"));
    else
        reply_error(k, -ENOENT, "no such endpoint");
}

static void *conn_main(void *arg)
{
    struct conn *k = arg;
    struct sl_control *c = k->c;
    struct timeval tv = {.tv_sec = IO_TIMEOUT_S};
    setsockopt(k->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(k->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    _cleanup_error_ sl_error_t err = NULL;
    int r = read_request(k, &err);
    if (r < 0)
        reply_error(k, r, sl_error_msg(err, r));
    else
        dispatch(k);
    shutdown(k->fd, SHUT_WR);
    close(k->fd);
    free(k->target);
    free(k->body);
    free(k);
    pthread_mutex_lock(&c->lock);
    if (--c->n_conns == 0)
        pthread_cond_broadcast(&c->idle);
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

static void *accept_main(void *arg)
{
    struct sl_control *c = arg;
    for (;;) {
        struct pollfd p[3] = {{.fd = c->lfd, .events = POLLIN},
                              {.fd = c->stop_pipe[0], .events = POLLIN},
                              {.fd = c->tcp_fd, .events = POLLIN}};
        if (poll(p, c->tcp_fd >= 0 ? 3 : 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents || atomic_load(&c->stopping))
            break;
        bool tcp = c->tcp_fd >= 0 && (p[2].revents & POLLIN) && !(p[0].revents & POLLIN);
        int fd = accept4(tcp ? c->tcp_fd : c->lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&c->lock);
        bool full = c->n_conns >= SL_CONTROL_MAX_CONN;
        if (!full)
            c->n_conns++;
        pthread_mutex_unlock(&c->lock);
        if (full) {
            static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: "
                                       "application/json\r\nConnection: close\r\n\r\n"
                                       "{\"status\":\"Service Unavailable\",\"code\":503,"
                                       "\"error\":\"too many connections\"}\n";
            write_all(fd, busy, sizeof(busy) - 1);
            close(fd);
            continue;
        }
        struct conn *k = sl_xcalloc(1, sizeof(*k));
        k->c = c;
        k->fd = fd;
        k->tcp = tcp;
        pthread_t t;
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&t, &at, conn_main, k) != 0) {
            close(fd);
            free(k);
            pthread_mutex_lock(&c->lock);
            c->n_conns--;
            pthread_mutex_unlock(&c->lock);
        }
        pthread_attr_destroy(&at);
    }
    return NULL;
}

/* Binds "ADDR:PORT" ("[ADDR]:PORT" for IPv6; numeric only) for the metrics endpoint. */
static int listen_tcp(const char *spec, int *ret_fd, sl_error_t *err)
{
    _cleanup_free_ char *host = sl_xstrdup(spec);
    char *colon = strrchr(host, ':');
    if (!colon || colon == host || !colon[1])
        return sl_error_make(err, EINVAL, "metrics listen address `%s`: expected ADDR:PORT", spec);
    *colon = 0;
    const char *port = colon + 1, *h = host;
    if (host[0] == '[' && colon[-1] == ']') {
        colon[-1] = 0;
        h = host + 1;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE};
    struct addrinfo *ai = NULL;
    int g = getaddrinfo(h, port, &hints, &ai);
    if (g != 0)
        return sl_error_make(err, EINVAL, "metrics listen address `%s`: %s", spec, gai_strerror(g));
    _cleanup_close_ int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    int r = 0;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 16) < 0)
        r = sl_error_make(err, errno, "metrics listen on %s: %s", spec, strerror(errno));
    freeaddrinfo(ai);
    if (r < 0)
        return r;
    *ret_fd = TAKE_FD(fd);
    return 0;
}

int sl_control_start(const struct sl_control_options *o, struct sl_control **ret, sl_error_t *err)
{
    if (!o->socket_path || !*o->socket_path || !o->store || !o->root)
        return sl_error_make(err, EINVAL, "control: socket path, root and store are required");
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(o->socket_path) >= sizeof(sa.sun_path))
        return sl_error_make(err, ENAMETOOLONG, "control socket path too long: %s", o->socket_path);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", o->socket_path);
    _cleanup_free_ char *dir = sl_xstrdup(o->socket_path);
    char *slash = strrchr(dir, '/');
    if (slash && slash != dir) {
        *slash = 0;
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return sl_error_make(err, errno, "create %s: %s", dir, strerror(errno));
    }
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return sl_error_make(err, errno, "socket: %s", strerror(errno));
    struct stat stt;
    if (lstat(o->socket_path, &stt) == 0 && S_ISSOCK(stt.st_mode))
        unlink(o->socket_path);
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0)
        return sl_error_make(err, errno, "bind %s: %s", o->socket_path, strerror(errno));
    chmod(o->socket_path, 0660);
    if (listen(fd, 64) < 0)
        return sl_error_make(err, errno, "listen %s: %s", o->socket_path, strerror(errno));

    _cleanup_close_ int tfd = -EBADF;
    if (o->metrics_listen && *o->metrics_listen) {
        int r = listen_tcp(o->metrics_listen, &tfd, err);
        if (r < 0)
            return r;
    }

    struct sl_control *c = sl_xcalloc(1, sizeof(*c));
    c->o = *o;
    c->tcp_fd = TAKE_FD(tfd);
    metrics_setup(c);
    c->socket_path = sl_xstrdup(o->socket_path);
    c->root = sl_xstrdup(o->root);
    c->default_proxy = o->default_proxy ? sl_xstrdup(o->default_proxy) : NULL;
    c->profiles_path = sl_xasprintf("%s/proxies.json", o->root);
    c->inflight.next = c->inflight.prev = &c->inflight;
    pthread_mutex_init(&c->lock, NULL);
    pthread_cond_init(&c->idle, NULL);
    if (pipe2(c->stop_pipe, O_CLOEXEC) < 0) {
        int e = errno;
        sl_control_stop(c);
        return sl_error_make(err, e, "pipe: %s", strerror(e));
    }
    c->lfd = TAKE_FD(fd);
    if (pthread_create(&c->accept_thread, NULL, accept_main, c) != 0) {
        sl_control_stop(c);
        return sl_error_make(err, EAGAIN, "control: cannot start a thread");
    }
    c->accept_started = true;
    *ret = c;
    return 0;
}

void sl_control_stop(struct sl_control *c)
{
    if (!c)
        return;
    atomic_store(&c->stopping, true);
    if (c->accept_started) {
        (void)!write(c->stop_pipe[1], "x", 1);
        pthread_join(c->accept_thread, NULL);
    }
    /* Connection threads end on their own: pulls stop at their next event (-ECANCELED), other
     * requests are short. */
    pthread_mutex_lock(&c->lock);
    while (c->n_conns > 0)
        pthread_cond_wait(&c->idle, &c->lock);
    pthread_mutex_unlock(&c->lock);
    if (c->lfd > 0)
        close(c->lfd);
    if (c->tcp_fd >= 0)
        close(c->tcp_fd);
    if (c->stop_pipe[0] > 0) {
        close(c->stop_pipe[0]);
        close(c->stop_pipe[1]);
    }
    unlink(c->socket_path);
    pthread_mutex_destroy(&c->lock);
    pthread_cond_destroy(&c->idle);
    free(c->socket_path);
    free(c->root);
    free(c->default_proxy);
    free(c->profiles_path);
    free(c);
}
