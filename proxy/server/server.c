/* server.c — libwebsockets glue, routes and handlers (server.h).
 *
 * Life of a request (one struct req per HTTP transaction, reference-counted):
 *   loop:   LWS_CALLBACK_HTTP → route, headers, query → [body callbacks] → submit job
 *   worker: auth → core call → response stored → publish (ready list + lws_cancel_service)
 *           → for a delta, keep filling the stream's bounded queue
 *   loop:   EVENT_WAIT_CANCELLED → lws_callback_on_writable → HTTP_WRITEABLE writes headers,
 *           then the body piece by piece; each consumed chunk may schedule another fill job
 *   loop:   transaction completed (keep-alive) or CLOSED_HTTP (cancel, release). */
#include "server.h"
#include "auth.h"
#include "cleanup.h"
#include "config.h"
#include "delta.h"
#include "json.h"
#include "log.h"
#include "lws.h"
#include "metrics.h"
#include "pool.h"
#include "request.h"
#include "stream.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#define HEADER_DATA_MAX  8192 /* request line + headers (lws rejects more) */
#define HEADER_POOL      256  /* connections parsing/holding headers at once */
#define RESP_HEADERS_MAX 4096
#define WRITE_MAX        SL_STREAM_CHUNK /* bytes per writeable callback: one stream chunk */
/* The most lws hands to one send(). lws's default is its 4 KiB service buffer, and it buffers
 * (copies) the rest of a larger write and sends it 4 KiB per POLLOUT: a 56 MB delta cost
 * ~14,000 send() calls and as many receiver wake-ups. One writeable callback's piece goes out
 * in one send() now; a send the socket takes only partly still leaves lws the remainder. */
#define TX_PACKET_MAX     (2 * WRITE_MAX)
#define JSON_CONTENT_TYPE "application/json"

struct sl_server {
    struct sl_server_config cfg;
    char *listen_addr, *tls_cert, *tls_key;
    struct sl_core *core;
    struct sl_auth *auth;
    struct sl_hook *hook; /* NULL: no conversion hook configured */
    struct sl_pool *pool;
    struct lws_context *ctx;
    struct lws_vhost *vhost;
    struct sl_metrics metrics;
    atomic_bool stop;

    pthread_mutex_t lock; /* ready list, live list, loop_gone */
    struct req *ready;
    struct req *live;
    size_t n_live;
    bool loop_gone;
};

struct req {
    atomic_int refs;
    struct sl_server *srv;
    struct req *live_prev, *live_next; /* srv->live, under srv->lock */
    struct req *ready_next;            /* srv->ready, under srv->lock */
    bool in_ready;

    /* input: written by the loop before the job is submitted */
    struct lws *wsi; /* loop only; NULL once the connection closed */
    enum sl_route route;
    unsigned method;
    struct sl_request_args args;
    char *authorization, *range, *if_range, *accept;
    char peer[64];
    struct sl_buf body;
    bool body_expected;
    bool dispatched;

    /* output: written by whoever responds, then published through `ready` */
    atomic_bool ready;
    int status;
    const char *content_type;
    struct sl_buf out;
    uint64_t content_length;
    char etag[80];
    char content_range[96];
    bool www_authenticate;
    bool allow;
    bool close_after; /* unread request body left: close after responding */
    struct sl_stream *stream;

    /* loop progress */
    bool headers_sent;
    size_t out_off;
    bool stream_counted;
    atomic_bool cancelled;
};

/* Per-connection data (lws allocates it). */
struct pss {
    struct req *req;
};

/* ---- requests ---------------------------------------------------------------------------- */

static struct req *req_new(struct sl_server *srv, struct lws *wsi)
{
    struct req *q = sl_xcalloc(1, sizeof(*q));
    atomic_init(&q->refs, 1);
    q->srv = srv;
    q->wsi = wsi;
    sl_buf_init(&q->body, srv->cfg.max_body);
    sl_buf_init(&q->out, 64u << 20);
    pthread_mutex_lock(&srv->lock);
    q->live_next = srv->live;
    if (srv->live)
        srv->live->live_prev = q;
    srv->live = q;
    srv->n_live++;
    pthread_mutex_unlock(&srv->lock);
    return q;
}

static struct req *req_ref(struct req *q)
{
    atomic_fetch_add(&q->refs, 1);
    return q;
}

static void req_unref(struct req *q)
{
    if (!q || atomic_fetch_sub(&q->refs, 1) != 1)
        return;
    struct sl_server *srv = q->srv;
    pthread_mutex_lock(&srv->lock);
    if (q->live_prev)
        q->live_prev->live_next = q->live_next;
    else
        srv->live = q->live_next;
    if (q->live_next)
        q->live_next->live_prev = q->live_prev;
    srv->n_live--;
    pthread_mutex_unlock(&srv->lock);
    sl_stream_free(q->stream);
    sl_request_args_free(&q->args);
    free(q->authorization);
    free(q->range);
    free(q->if_range);
    free(q->accept);
    sl_buf_free(&q->body);
    sl_buf_free(&q->out);
    free(q);
}

static void req_unref_void(void *q)
{
    req_unref(q);
}

/* Any thread: queue q for a writeable callback and wake the loop. */
static void req_wake(struct req *q)
{
    struct sl_server *srv = q->srv;
    pthread_mutex_lock(&srv->lock);
    if (!srv->loop_gone) {
        if (!q->in_ready) {
            q->in_ready = true;
            q->ready_next = srv->ready;
            srv->ready = req_ref(q);
        }
        lws_cancel_service(srv->ctx);
    }
    pthread_mutex_unlock(&srv->lock);
}

static void stream_wake(void *ud)
{
    req_wake(ud);
}

/* Stores a JSON error envelope as the response. */
static void respond_error(struct req *q, int status, const char *msg)
{
    q->status = status;
    q->content_type = JSON_CONTENT_TYPE;
    sl_buf_reset(&q->out);
    (void)sl_request_error_envelope(&q->out, status, msg);
    q->content_length = q->out.len;
}

static void respond_json(struct req *q, int status, json_t *j)
{
    size_t n;
    _cleanup_free_ char *s = sl_json_dump(j, &n);
    q->status = status;
    q->content_type = JSON_CONTENT_TYPE;
    sl_buf_reset(&q->out);
    if (sl_buf_append(&q->out, s, n) < 0 || sl_buf_puts(&q->out, "\n") < 0) {
        respond_error(q, 500, "response too large");
        return;
    }
    q->content_length = q->out.len;
}

/* Maps a core failure through the one status table and logs server-side failures. */
static void respond_failure(struct req *q, int r, sl_error_t err)
{
    int status = sl_request_status_of_error(r);
    const char *msg = sl_error_msg(err, r);
    if (status >= 500)
        log_warn("%s %s: %d: %s", q->peer, sl_request_route_info(q->route)->path, status, msg);
    else
        log_debug("%s %s: %d: %s", q->peer, sl_request_route_info(q->route)->path, status, msg);
    respond_error(q, status, msg);
}

/* ---- handlers (worker threads) ----------------------------------------------------------- */

static void handle_root(struct req *q)
{
    q->status = 200;
    q->content_type = JSON_CONTENT_TYPE;
    (void)sl_request_envelope(&q->out, 200, "Starlight Proxy");
    q->content_length = q->out.len;
}

static void handle_health(struct req *q)
{
    _cleanup_error_ sl_error_t err = NULL;
    json_t *checks = NULL;
    int r = sl_core_health(q->srv->core, &checks, &err);
    if (!checks) {
        log_warn("health check: %s", sl_error_msg(err, r));
        return respond_error(q, 503, sl_error_msg(err, r < 0 ? r : -EIO));
    }
    /* docs/protocol.md: {"status":"OK","code":200,"database":"ok","registry":"ok"} */
    int status = r < 0 ? 503 : 200;
    json_auto_t *j = json_pack("{s:s, s:i}", "status", sl_request_reason(status), "code", status);
    json_object_update_missing(j, checks);
    json_decref(checks);
    respond_json(q, status, j);
}

static void handle_metrics(struct req *q)
{
    struct sl_server *srv = q->srv;
    q->status = 200;
    q->content_type = "text/plain; version=0.0.4; charset=utf-8";
    int r = sl_metrics_render(&srv->metrics, srv->cfg.workers, sl_pool_busy(srv->pool),
                              sl_pool_queued(srv->pool), &q->out);
    if (r >= 0 && srv->hook)
        r = sl_hook_metrics(srv->hook, &q->out);
    char *core = NULL;
    sl_core_metrics(srv->core, &core);
    if (r >= 0 && core)
        r = sl_buf_puts(&q->out, core);
    free(core);
    if (r < 0)
        respond_error(q, 500, "metrics too large");
    q->content_length = q->out.len;
}

static int flag_value(const char *v, bool *ret)
{
    /* The original treats any non-empty value as true; keep that, but let 0/false mean no. */
    *ret = v && *v && strcmp(v, "0") != 0 && strcasecmp(v, "false") != 0;
    return 0;
}

static void handle_notify(struct req *q)
{
    static const char *const known[] = {"ref", "insecure", NULL};
    _cleanup_error_ sl_error_t err = NULL;
    const char *ref = NULL, *insecure_s = NULL;
    int r = sl_request_args_check(&q->args, known, &err);
    if (r >= 0)
        r = sl_request_args_one(&q->args, "ref", &ref, &err);
    if (r >= 0 && (!ref || !*ref))
        r = sl_error_make(&err, EINVAL, "missing query parameter `ref`");
    if (r >= 0)
        r = sl_request_args_one(&q->args, "insecure", &insecure_s, &err);
    if (r < 0)
        return respond_failure(q, r, err);
    bool insecure;
    flag_value(insecure_s, &insecure);
    json_t *ret = NULL;
    r = sl_core_notify(q->srv->core, ref, insecure, &ret, &err);
    if (r < 0) {
        json_decref(ret);
        return respond_failure(q, r, err);
    }
    respond_json(q, 200, ret);
    json_decref(ret);
}

static void handle_prune(struct req *q)
{
    static const char *const known[] = {"insecure", "min-age", NULL};
    _cleanup_error_ sl_error_t err = NULL;
    const char *insecure_s = NULL, *age_s = NULL;
    int r = sl_request_args_check(&q->args, known, &err);
    if (r >= 0)
        r = sl_request_args_one(&q->args, "insecure", &insecure_s, &err);
    if (r >= 0)
        r = sl_request_args_one(&q->args, "min-age", &age_s, &err);
    int64_t age = -1;
    if (r >= 0 && age_s && (sl_parse_int(age_s, &age) < 0 || age < 0))
        r = sl_error_make(&err, EINVAL, "`min-age` must be a number of seconds >= 0");
    if (r < 0)
        return respond_failure(q, r, err);
    bool insecure;
    flag_value(insecure_s, &insecure);
    json_t *ret = NULL;
    r = sl_core_prune(q->srv->core, insecure, age, &ret, &err);
    if (r < 0)
        return respond_failure(q, r, err);
    respond_json(q, 200, ret);
    json_decref(ret);
}

static void handle_report(struct req *q)
{
    _cleanup_error_ sl_error_t err = NULL;
    if (q->body.len == 0)
        return respond_error(q, 400, "empty body: expected a trace report (docs/protocol.md)");
    json_t *ret = NULL;
    int r = sl_core_report(q->srv->core, q->body.data, q->body.len, &ret, &err);
    if (r < 0) {
        json_decref(ret);
        return respond_failure(q, r, err);
    }
    respond_json(q, 200, ret);
    json_decref(ret);
}

static void handle_hook(struct req *q)
{
    _cleanup_error_ sl_error_t err = NULL;
    if (!q->srv->hook)
        return respond_error(q, 404, "conversion hook not configured (--hook-repos)");
    if (q->body.len == 0)
        return respond_error(q, 400, "empty body: expected a registry or Harbor notification");
    json_t *ret = NULL;
    int r = sl_hook_submit(q->srv->hook, q->body.data, q->body.len, &ret, &err);
    if (r < 0)
        return respond_failure(q, r, err);
    respond_json(q, 200, ret);
    json_decref(ret);
}

static void handle_delta(struct req *q)
{
    struct sl_server *srv = q->srv;
    _cleanup_error_ sl_error_t err = NULL;
    json_auto_t *body_json = NULL;
    _cleanup_free_ const char **from = NULL;
    _cleanup_free_ const char **layers = NULL;
    struct sl_delta_request dr = {0};
    const char *insecure_s = NULL;
    int r;

    if (q->method == SL_METHOD_POST) {
        static const char *const known[] = {"insecure", NULL};
        r = sl_request_args_check(&q->args, known, &err);
        if (r >= 0 && q->body.len == 0)
            r = sl_error_make(&err, EINVAL, "empty body: expected a delta request");
        if (r >= 0)
            r = sl_delta_request_parse_json(q->body.data, q->body.len, &dr, &body_json, &err);
    } else {
        static const char *const known[] = {"to", "platform", "from", "layer", "insecure", NULL};
        r = sl_request_args_check(&q->args, known, &err);
        if (r >= 0)
            r = sl_request_args_one(&q->args, "to", &dr.to, &err);
        if (r >= 0)
            r = sl_request_args_one(&q->args, "platform", &dr.platform, &err);
        if (r >= 0) {
            dr.n_from = sl_request_args_all(&q->args, "from", &from);
            dr.from = from;
            dr.n_held_layers = sl_request_args_all(&q->args, "layer", &layers);
            dr.held_layers = layers;
            for (size_t i = 0; i < dr.n_from && r >= 0; i++)
                if (!*from[i])
                    r = sl_error_make(&err, EINVAL, "empty query parameter `from`");
            for (size_t i = 0; i < dr.n_held_layers && r >= 0; i++)
                if (!*layers[i])
                    r = sl_error_make(&err, EINVAL, "empty query parameter `layer`");
        }
    }
    if (r >= 0)
        r = sl_request_args_one(&q->args, "insecure", &insecure_s, &err);
    if (r >= 0 && (!dr.to || !*dr.to))
        r = sl_error_make(&err, EINVAL, "missing parameter `to`");
    if (r >= 0 && (!dr.platform || !*dr.platform))
        r = sl_error_make(&err, EINVAL, "missing parameter `platform`");
    if (r < 0)
        return respond_failure(q, r, err);
    if (insecure_s) {
        bool insecure;
        flag_value(insecure_s, &insecure);
        dr.insecure = dr.insecure || insecure;
    }

    /* the format: version 2 only to a worker that names it, else version 1 (its own ETag, so a
     * Range/If-Range of one version never gets bytes of the other) */
    dr.version = sl_request_accepts(q->accept, SL_DELTA_MEDIA_TYPE_V2) ? SL_DELTA_VERSION_2
                                                                       : SL_DELTA_VERSION;
    struct sl_delta *d = NULL;
    r = sl_core_delta_plan(srv->core, &dr, &d, &err);
    if (r < 0)
        return respond_failure(q, r, err);

    uint64_t start = 0, end = d->total_len;
    int status = 200;
    if (q->range && sl_request_if_range_ok(q->if_range, d->etag)) {
        switch (sl_request_parse_range(q->range, d->total_len, &start, &end)) {
        case SL_RANGE_NONE:
            start = 0;
            end = d->total_len;
            break;
        case SL_RANGE_OK:
            status = 206;
            snprintf(q->content_range, sizeof(q->content_range),
                     "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, start, end - 1, d->total_len);
            break;
        case SL_RANGE_UNSATISFIABLE:
            snprintf(q->content_range, sizeof(q->content_range), "bytes */%" PRIu64, d->total_len);
            snprintf(q->etag, sizeof(q->etag), "%s", d->etag);
            sl_delta_free(d);
            return respond_error(q, 416, "range not satisfiable");
        }
    }
    snprintf(q->etag, sizeof(q->etag), "%s", d->etag);
    atomic_fetch_add(&srv->metrics.delta_planned_bytes, d->total_len);
    atomic_fetch_add(&srv->metrics.delta_payload_bytes, d->payload_bytes);
    atomic_fetch_add(&srv->metrics.delta_saved_bytes, d->saved_bytes);
    struct sl_stream *s = NULL;
    r = sl_stream_new(srv->core, d, start, end, LWS_PRE, stream_wake, q, &s, &err);
    if (r < 0) {
        sl_delta_free(d);
        q->etag[0] = '\0';
        q->content_range[0] = '\0';
        return respond_failure(q, -EIO, err);
    }
    pthread_mutex_lock(&srv->lock); /* sl_server_stats walks streams from other threads */
    q->stream = s;
    pthread_mutex_unlock(&srv->lock);
    q->status = status;
    q->content_type =
        dr.version == SL_DELTA_VERSION_2 ? SL_DELTA_MEDIA_TYPE_V2 : SL_DELTA_MEDIA_TYPE_V1;
    q->content_length = end - start;
}

static bool needs_auth(const struct req *q)
{
    const struct sl_server *srv = q->srv;
    if (!srv->auth)
        return false;
    if (q->route == SL_ROUTE_HEALTH && srv->cfg.open_health)
        return false;
    if (q->route == SL_ROUTE_METRICS && srv->cfg.open_metrics)
        return false;
    return true;
}

static void publish(struct req *q)
{
    atomic_store_explicit(&q->ready, true, memory_order_release);
    req_wake(q);
}

/* Worker job: one request from auth to response; a delta goes on filling its stream. */
static void run_request(void *arg)
{
    struct req *q = arg;
    if (atomic_load(&q->cancelled)) {
        req_unref(q);
        return;
    }
    if (needs_auth(q) && !sl_auth_check(q->srv->auth, q->authorization)) {
        atomic_fetch_add(&q->srv->metrics.auth_failures, 1);
        q->www_authenticate = true;
        respond_error(q, 401, q->authorization ? "invalid credentials" : "authentication required");
    } else {
        switch (q->route) {
        case SL_ROUTE_ROOT:
            handle_root(q);
            break;
        case SL_ROUTE_HEALTH:
            handle_health(q);
            break;
        case SL_ROUTE_METRICS:
            handle_metrics(q);
            break;
        case SL_ROUTE_NOTIFY:
            handle_notify(q);
            break;
        case SL_ROUTE_REPORT:
            handle_report(q);
            break;
        case SL_ROUTE_DELTA:
            handle_delta(q);
            break;
        case SL_ROUTE_HOOK:
            handle_hook(q);
            break;
        case SL_ROUTE_PRUNE:
            handle_prune(q);
            break;
        default:
            respond_error(q, 404, "no such path");
        }
    }
    struct sl_stream *s = q->stream;
    publish(q);
    if (s) {
        _cleanup_error_ sl_error_t err = NULL;
        int r = sl_stream_fill(s, &err);
        if (r < 0 && r != -ECANCELED)
            log_warn("%s delta stream: %s", q->peer, sl_error_msg(err, r));
    }
    req_unref(q);
}

static void run_fill(void *arg)
{
    struct req *q = arg;
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_stream_fill(q->stream, &err);
    if (r < 0 && r != -ECANCELED)
        log_warn("%s delta stream: %s", q->peer, sl_error_msg(err, r));
    req_unref(q);
}

/* ---- event loop ------------------------------------------------------------------------- */

static char *hdr_dup(struct lws *wsi, enum lws_token_indexes h)
{
    int n = lws_hdr_total_length(wsi, h);
    if (n <= 0)
        return NULL;
    char *s = sl_xmalloc((size_t)n + 1);
    if (lws_hdr_copy(wsi, s, n + 1, h) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

/* Answers from the loop without a worker (404, 405, 413, 400 on unparsable input). */
static int respond_now(struct req *q, int status, const char *msg)
{
    respond_error(q, status, msg);
    q->close_after = q->body_expected;
    q->dispatched = true;
    atomic_store(&q->ready, true);
    lws_callback_on_writable(q->wsi);
    return 0;
}

static void dispatch(struct req *q)
{
    q->dispatched = true;
    lws_set_timeout(q->wsi, NO_PENDING_TIMEOUT, 0);
    sl_pool_submit(q->srv->pool, run_request, req_unref_void, req_ref(q));
}

static int on_http(struct sl_server *srv, struct lws *wsi, struct pss *pss, const char *uri)
{
    if (pss->req) { /* a previous transaction never completed: drop it */
        pss->req->wsi = NULL;
        req_unref(TAKE_PTR(pss->req));
    }
    struct req *q = pss->req = req_new(srv, wsi);
    if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0)
        q->method = SL_METHOD_GET;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0)
        q->method = SL_METHOD_POST;
    else if (lws_hdr_total_length(wsi, WSI_TOKEN_HEAD_URI) > 0)
        q->method = SL_METHOD_HEAD;
    else
        q->method = SL_METHOD_OTHER;
    q->route = sl_request_route(uri);
    lws_get_peer_simple(wsi, q->peer, sizeof(q->peer));
    q->authorization = hdr_dup(wsi, WSI_TOKEN_HTTP_AUTHORIZATION);
    q->range = hdr_dup(wsi, WSI_TOKEN_HTTP_RANGE);
    q->if_range = hdr_dup(wsi, WSI_TOKEN_HTTP_IF_RANGE);
    q->accept = hdr_dup(wsi, WSI_TOKEN_HTTP_ACCEPT);

    _cleanup_free_ char *cl = hdr_dup(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH);
    _cleanup_free_ char *te = hdr_dup(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING);
    uint64_t content_length = 0;
    if (cl) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(cl, &end, 10);
        if (errno || end == cl || *end || cl[0] == '-') {
            q->body_expected = true; /* lws may still expect a body: close after answering */
            return respond_now(q, 400, "malformed Content-Length");
        }
        content_length = v;
    }
    q->body_expected = content_length > 0 || te;
    if (te) /* libwebsockets 4.1 does not decode chunked request bodies */
        return respond_now(q, 411, "send the request body with a Content-Length");

    const struct sl_route_info *ri = sl_request_route_info(q->route);
    if (q->route == SL_ROUTE_UNKNOWN)
        return respond_now(q, 404, "no such path");
    if (!(ri->methods & q->method)) {
        q->allow = true;
        return respond_now(q, 405, "method not allowed");
    }
    if (content_length > srv->cfg.max_body)
        return respond_now(q, 413, "request body too large");

    int total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
    if (total > 0) {
        char frag[HEADER_DATA_MAX + 1];
        for (int i = 0;; i++) {
            int n = lws_hdr_copy_fragment(wsi, frag, sizeof(frag), WSI_TOKEN_HTTP_URI_ARGS, i);
            if (n < 0)
                break;
            if (n == 0)
                continue;
            if (sl_request_args_add(&q->args, frag) < 0)
                return respond_now(q, 400, "too many query parameters");
        }
    }
    if (q->body_expected)
        return 0; /* body callbacks follow; dispatched at completion */
    dispatch(q);
    return 0;
}

static int on_body(struct pss *pss, const void *in, size_t len)
{
    struct req *q = pss->req;
    if (!q || q->dispatched)
        return 0;
    if (sl_buf_append(&q->body, in, len) < 0)
        return respond_now(q, 413, "request body too large");
    return 0;
}

static int on_body_done(struct pss *pss)
{
    struct req *q = pss->req;
    if (!q || q->dispatched)
        return 0;
    q->body_expected = false; /* all read: keep-alive is safe */
    dispatch(q);
    return 0;
}

static void count_stream_end(struct sl_server *srv, struct req *q)
{
    if (q->stream_counted) {
        q->stream_counted = false;
        atomic_fetch_sub(&srv->metrics.streams_in_flight, 1);
    }
}

/* The response is out: next transaction (keep-alive) or close. */
static int finish(struct sl_server *srv, struct lws *wsi, struct pss *pss)
{
    struct req *q = TAKE_PTR(pss->req);
    bool close = q->close_after;
    count_stream_end(srv, q);
    q->wsi = NULL;
    req_unref(q);
    if (close)
        return -1;
    if (lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static int write_headers(struct sl_server *srv, struct lws *wsi, struct req *q)
{
    uint8_t buf[LWS_PRE + RESP_HEADERS_MAX];
    uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
    char etag_hdr[sizeof(q->etag)];

    if (lws_add_http_common_headers(wsi, (unsigned)q->status, q->content_type, q->content_length,
                                    &p, end))
        return -1;
#define ADD(name, value)                                                                           \
    do {                                                                                           \
        if (lws_add_http_header_by_name(wsi, (const uint8_t *)(name), (const uint8_t *)(value),    \
                                        (int)strlen(value), &p, end))                              \
            return -1;                                                                             \
    } while (0)
    ADD("starlight-version:", SL_VERSION);
    if (q->etag[0]) {
        snprintf(etag_hdr, sizeof(etag_hdr), "%s", q->etag);
        ADD("etag:", etag_hdr);
    }
    if (q->stream || q->status == 416)
        ADD("accept-ranges:", "bytes");
    if (q->content_range[0])
        ADD("content-range:", q->content_range);
    if (q->www_authenticate) {
        ADD("www-authenticate:", "Basic realm=\"starlight\", charset=\"UTF-8\"");
        ADD("www-authenticate:", "Bearer realm=\"starlight\"");
    }
    if (q->allow)
        ADD("allow:", sl_request_route_info(q->route)->allow);
    if (q->content_type && strcmp(q->content_type, SL_DELTA_MEDIA_TYPE_V1) != 0 &&
        strcmp(q->content_type, SL_DELTA_MEDIA_TYPE_V2) != 0)
        ADD("cache-control:", "no-store");
    if (q->status == 503)
        ADD("retry-after:", "5");
    if (q->close_after)
        ADD("connection:", "close");
#undef ADD
    if (lws_finalize_write_http_header(wsi, start, &p, end))
        return -1;
    sl_metrics_request(&srv->metrics, q->route, q->status);
    if (q->stream) {
        q->stream_counted = true;
        atomic_fetch_add(&srv->metrics.streams_in_flight, 1);
        atomic_fetch_add(&srv->metrics.streams_started, 1);
    }
    log_debug("%s %s %d %" PRIu64, q->peer, sl_request_route_info(q->route)->name, q->status,
              q->content_length);
    return 0;
}

static int write_stream(struct sl_server *srv, struct lws *wsi, struct pss *pss)
{
    struct req *q = pss->req;
    size_t n = 0;
    uint8_t *data = sl_stream_peek(q->stream, &n);
    if (!data) {
        if (sl_stream_done(q->stream))
            return finish(srv, wsi, pss);
        if (sl_stream_error(q->stream) < 0) {
            /* Headers are out; cutting the connection is the only honest signal left (the
             * client sees fewer bytes than Content-Length and resumes with Range). */
            atomic_fetch_add(&srv->metrics.streams_failed, 1);
            return -1;
        }
        return 0; /* the filling worker wakes us */
    }
    n = SL_MIN(n, WRITE_MAX);
    struct sl_stream_stats st;
    sl_stream_stats(q->stream, &st);
    bool last = st.sent + n == q->content_length;
    if (lws_write(wsi, data, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0)
        return -1;
    atomic_fetch_add(&srv->metrics.delta_sent_bytes, n);
    if (sl_stream_consume(q->stream, n))
        sl_pool_submit(srv->pool, run_fill, req_unref_void, req_ref(q));
    lws_set_timeout(wsi, PENDING_TIMEOUT_HTTP_CONTENT, srv->cfg.idle_timeout_s);
    if (last) {
        atomic_fetch_add(&srv->metrics.streams_completed, 1);
        return finish(srv, wsi, pss);
    }
    lws_callback_on_writable(wsi);
    return 0;
}

static int on_writeable(struct sl_server *srv, struct lws *wsi, struct pss *pss)
{
    struct req *q = pss->req;
    if (!q || !atomic_load_explicit(&q->ready, memory_order_acquire))
        return 0;
    if (!q->headers_sent) {
        if (write_headers(srv, wsi, q) < 0)
            return -1;
        q->headers_sent = true;
        if (q->method == SL_METHOD_HEAD || q->content_length == 0)
            return finish(srv, wsi, pss);
        lws_callback_on_writable(wsi);
        return 0;
    }
    if (q->stream)
        return write_stream(srv, wsi, pss);
    size_t n = SL_MIN(q->out.len - q->out_off, (size_t)WRITE_MAX);
    bool last = q->out_off + n == q->out.len;
    /* lws wants LWS_PRE writable bytes before the data: copy the piece after a gap. */
    uint8_t buf[LWS_PRE + WRITE_MAX];
    memcpy(buf + LWS_PRE, q->out.data + q->out_off, n);
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0)
        return -1;
    q->out_off += n;
    if (last)
        return finish(srv, wsi, pss);
    lws_callback_on_writable(wsi);
    return 0;
}

static void on_closed(struct sl_server *srv, struct pss *pss)
{
    struct req *q = TAKE_PTR(pss->req);
    if (!q)
        return;
    q->wsi = NULL;
    atomic_store(&q->cancelled, true);
    if (q->stream) {
        sl_stream_cancel(q->stream);
        if (q->stream_counted)
            atomic_fetch_add(&srv->metrics.streams_aborted, 1);
    }
    count_stream_end(srv, q);
    req_unref(q);
}

static void on_wait_cancelled(struct sl_server *srv)
{
    pthread_mutex_lock(&srv->lock);
    struct req *list = srv->ready;
    srv->ready = NULL;
    pthread_mutex_unlock(&srv->lock);
    while (list) {
        struct req *q = list;
        /* Read the link before clearing in_ready: from then on a worker may put q on the
         * (new) ready list again, which rewrites ready_next. A wake that finds in_ready still
         * set is not lost: q is looked at right below, after what that worker published. */
        list = q->ready_next;
        pthread_mutex_lock(&srv->lock);
        q->in_ready = false;
        pthread_mutex_unlock(&srv->lock);
        if (q->wsi)
            lws_callback_on_writable(q->wsi);
        req_unref(q);
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct sl_server *srv = lws_context_user(lws_get_context(wsi));
    struct pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(srv, wsi, pss, in);
    case LWS_CALLBACK_HTTP_BODY:
        return on_body(pss, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return on_body_done(pss);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        if (!pss)
            return 0;
        return on_writeable(srv, wsi, pss);
    case LWS_CALLBACK_HTTP_BIND_PROTOCOL:
        atomic_fetch_add(&srv->metrics.connections, 1);
        return 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
        atomic_fetch_sub(&srv->metrics.connections, 1);
        if (pss)
            on_closed(srv, pss);
        return 0;
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss)
            on_closed(srv, pss);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return 1; /* no websockets here */
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (srv)
            on_wait_cancelled(srv);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"http", callback, sizeof(struct pss), 0, 0, NULL, TX_PACKET_MAX},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

/* ---- public API --------------------------------------------------------------------------- */

int sl_server_new(const struct sl_server_config *cfg, struct sl_core *core, struct sl_server **ret,
                  sl_error_t *err)
{
    if (cfg->workers < 1 || cfg->max_body == 0 || cfg->idle_timeout_s < 1)
        return sl_error_make(err, EINVAL,
                             "server: workers, max body and idle timeout must be "
                             "positive");
    if (!!cfg->tls_cert != !!cfg->tls_key)
        return sl_error_make(err, EINVAL, "server: TLS needs both a certificate and a key");
    struct sl_server *srv = sl_xcalloc(1, sizeof(*srv));
    srv->cfg = *cfg;
    srv->core = core;
    pthread_mutex_init(&srv->lock, NULL);
#define DUP(f) (srv->cfg.f = srv->f = cfg->f ? sl_xstrdup(cfg->f) : NULL)
    DUP(listen_addr);
    DUP(tls_cert);
    DUP(tls_key);
#undef DUP
    srv->cfg.auth_file = NULL; /* only used at start */
    int r = 0;
    if (cfg->auth_file) {
        r = sl_auth_new(cfg->auth_file, &srv->auth, err);
        if (r >= 0) {
            size_t users, tokens;
            sl_auth_counts(srv->auth, &users, &tokens);
            log_info("authentication on: %zu users, %zu tokens from `%s`", users, tokens,
                     cfg->auth_file);
        }
    }
    if (r >= 0 && cfg->hook.n_repos > 0) {
        r = sl_hook_new(&cfg->hook, core, &srv->hook, err);
        if (r >= 0)
            log_info("conversion hook on: %zu repository patterns, target tag suffix `%s`",
                     cfg->hook.n_repos, cfg->hook.suffix);
    }
    srv->cfg.hook = (struct sl_hook_config){0}; /* copied by the hook */
    if (r >= 0)
        r = sl_pool_new((size_t)cfg->workers, &srv->pool, err);
    if (r < 0) {
        sl_server_free(srv);
        return r;
    }

    sl_lws_log_setup();
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    sl_lws_listen_info(&info, "starlight", srv->listen_addr, cfg->port, protocols,
                       cfg->idle_timeout_s, srv->tls_cert, srv->tls_key);
    info.user = srv;
    info.server_string = "starlight-proxy";
    info.max_http_header_data = HEADER_DATA_MAX;
    info.max_http_header_pool = HEADER_POOL;
    srv->ctx = lws_create_context(&info);
    if (!srv->ctx) {
        sl_server_free(srv);
        return sl_error_make(err, EIO,
                             "listen on %s:%d%s failed (address in use, or unusable "
                             "TLS files?)",
                             cfg->listen_addr ? cfg->listen_addr : "*", cfg->port,
                             cfg->tls_cert ? " with TLS" : "");
    }
    sl_lws_started();
    srv->vhost = lws_get_vhost_by_name(srv->ctx, "starlight");
    if (!srv->vhost || lws_get_vhost_listen_port(srv->vhost) <= 0) {
        sl_server_free(srv);
        return sl_error_make(err, EADDRINUSE, "listen on %s:%d failed",
                             cfg->listen_addr ? cfg->listen_addr : "*", cfg->port);
    }
    *ret = srv;
    return 0;
}

int sl_server_port(struct sl_server *srv)
{
    return lws_get_vhost_listen_port(srv->vhost);
}

int sl_server_run(struct sl_server *srv)
{
    return sl_lws_run(srv->ctx, &srv->stop);
}

void sl_server_stop(struct sl_server *srv)
{
    sl_lws_stop(srv->ctx, &srv->stop);
}

void sl_server_free(struct sl_server *srv)
{
    if (!srv)
        return;
    /* Cancel every stream so running fills return at their next sink call. */
    pthread_mutex_lock(&srv->lock);
    for (struct req *q = srv->live; q; q = q->live_next) {
        atomic_store(&q->cancelled, true);
        if (q->stream)
            sl_stream_cancel(q->stream);
    }
    pthread_mutex_unlock(&srv->lock);
    sl_pool_free(TAKE_PTR(srv->pool));
    sl_hook_free(TAKE_PTR(srv->hook));
    if (srv->ctx)
        lws_context_destroy(TAKE_PTR(srv->ctx));
    pthread_mutex_lock(&srv->lock);
    srv->loop_gone = true;
    struct req *list = TAKE_PTR(srv->ready);
    pthread_mutex_unlock(&srv->lock);
    while (list) {
        struct req *q = list;
        list = q->ready_next;
        req_unref(q);
    }
    if (srv->n_live)
        log_warn("server: %zu requests still referenced at exit", srv->n_live);
    sl_auth_free(srv->auth);
    pthread_mutex_destroy(&srv->lock);
    free(srv->listen_addr);
    free(srv->tls_cert);
    free(srv->tls_key);
    free(srv);
}

void sl_server_stats(struct sl_server *srv, struct sl_server_stats *ret)
{
    memset(ret, 0, sizeof(*ret));
    pthread_mutex_lock(&srv->lock);
    ret->live_requests = srv->n_live;
    for (struct req *q = srv->live; q; q = q->live_next)
        if (q->stream) {
            struct sl_stream_stats st;
            sl_stream_stats(q->stream, &st);
            ret->queued_chunks += st.queued_chunks;
        }
    pthread_mutex_unlock(&srv->lock);
    ret->streams_in_flight = (size_t)atomic_load(&srv->metrics.streams_in_flight);
    ret->delta_sent_bytes = atomic_load(&srv->metrics.delta_sent_bytes);
}
