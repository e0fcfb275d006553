/* webhook.c — see webhook.h. The request life: loop (headers, body) → worker (decision) →
 * ready list + lws_cancel_service → loop (writeable: headers, body in pieces) → next
 * transaction or close. Requests are reference-counted between the connection and the job. */
#include "webhook.h"
#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "lws.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define HEADER_DATA_MAX 8192
#define WRITE_MAX       32768
#define IDLE_TIMEOUT_S  30
#define JSON_TYPE       "application/json"

enum route { R_UNKNOWN, R_MUTATE, R_MUTATE_NS, R_HEALTH, R_READY, R_METRICS };

struct req {
    atomic_int refs;
    struct sl_webhook *w;
    struct lws *wsi; /* loop only; NULL once closed */
    enum route route;
    bool post, metrics_side;
    struct sl_buf body;
    bool body_expected, dispatched, too_big;
    struct req *next; /* job queue or ready list */
    double t0;
    /* answer (written by whoever answers, before `ready`) */
    atomic_bool ready;
    int status;
    const char *ctype;
    struct sl_buf out;
    size_t out_off;
    bool headers_sent;
};

struct pss {
    struct req *req;
};

struct sl_webhook {
    struct sl_webhook_config cfg;
    char *listen_addr, *metrics_addr, *tls_cert, *tls_key;
    struct lws_context *ctx;
    struct lws_vhost *vh_hook, *vh_metrics;
    atomic_bool stop;
    /* certificate rotation: a thread stats the files, the loop reloads */
    pthread_t certwatch;
    bool certwatch_started;
    atomic_bool certs_changed;

    pthread_mutex_t lock; /* queue, ready list, loop_gone */
    pthread_cond_t cond;
    struct req *queue, **queue_tail;
    struct req *ready;
    bool workers_stop, loop_gone;
    pthread_t *threads;
    int n_threads;

    struct sl_metric *m_reviews, *m_seconds, *m_reloads;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static struct req *req_new(struct sl_webhook *w, struct lws *wsi)
{
    struct req *q = sl_xcalloc(1, sizeof(*q));
    atomic_init(&q->refs, 1);
    q->w = w;
    q->wsi = wsi;
    q->t0 = now_s();
    sl_buf_init(&q->body, SL_REVIEW_MAX);
    sl_buf_init(&q->out, 16u << 20);
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
    sl_buf_free(&q->body);
    sl_buf_free(&q->out);
    free(q);
}

static void set_answer(struct req *q, int status, const char *ctype, const char *data, size_t n)
{
    q->status = status;
    q->ctype = ctype;
    sl_buf_reset(&q->out);
    if (sl_buf_append(&q->out, data, n) < 0) {
        sl_buf_reset(&q->out);
        q->status = 500;
        q->ctype = JSON_TYPE;
        (void)sl_buf_puts(&q->out, "{\"error\":\"response too large\"}\n");
    }
}

static void set_json(struct req *q, int status, json_t *j)
{
    size_t n = 0;
    _cleanup_free_ char *s = sl_json_dump(j, &n);
    json_decref(j);
    set_answer(q, status, JSON_TYPE, s, n);
    (void)sl_buf_puts(&q->out, "\n");
}

static void set_error(struct req *q, int status, const char *msg)
{
    set_json(q, status, json_pack("{s:i,s:s}", "code", status, "error", msg));
}

/* Any thread: the answer is set; have the loop write it. */
static void publish(struct req *q)
{
    struct sl_webhook *w = q->w;
    atomic_store_explicit(&q->ready, true, memory_order_release);
    pthread_mutex_lock(&w->lock);
    if (!w->loop_gone) {
        q->next = w->ready;
        w->ready = req_ref(q);
        lws_cancel_service(w->ctx);
    }
    pthread_mutex_unlock(&w->lock);
}

/* ---- worker side ------------------------------------------------------------------------ */

static void review(struct req *q)
{
    struct sl_webhook *w = q->w;
    struct sl_mutate_options mo = w->cfg.mutate;
    mo.namespace_opted_in = q->route == R_MUTATE_NS;
    _cleanup_error_ sl_error_t err = NULL;
    json_t *parsed = NULL;
    int r = sl_json_parse(q->body.data ? (const char *)q->body.data : "", q->body.len,
                          SL_REVIEW_MAX, "AdmissionReview", &parsed, &err);
    /* The namespace's label, when the API can tell and nothing else opted the pod in. */
    const json_t *rq = json_object_get(parsed, "request");
    const char *ann = json_string_value(json_object_get(
        json_object_get(json_object_get(json_object_get(rq, "object"), "metadata"), "annotations"),
        SL_ANN_PROVISION));
    if (r >= 0 && !ann && !mo.namespace_opted_in && w->cfg.namespace_opted_in) {
        const char *ns = json_string_value(json_object_get(rq, "namespace"));
        if (ns && w->cfg.namespace_opted_in(w->cfg.namespace_ud, ns) > 0)
            mo.namespace_opted_in = true;
    }
    json_t *answer = NULL;
    enum sl_mutate_result res = SL_MUTATE_NOT_POD;
    if (r >= 0)
        r = sl_mutate_review(parsed, &mo, &answer, &res, &err);
    if (r < 0) {
        const char *msg = sl_error_msg(err, r);
        log_warn("webhook: malformed AdmissionReview (%zu bytes): %s", q->body.len, msg);
        sl_metric_add(w->m_reviews, "result=\"bad-request\"", 1);
        set_error(q, 400, msg);
    } else {
        const json_t *req = json_object_get(parsed, "request");
        const char *ns = json_string_value(json_object_get(req, "namespace"));
        const json_t *meta = json_object_get(json_object_get(req, "object"), "metadata");
        const char *name = json_string_value(json_object_get(meta, "name"));
        if (!name)
            name = json_string_value(json_object_get(meta, "generateName"));
        const char *kv[] = {"pod", name, "namespace", ns, NULL};
        sl_log_kv(res == SL_MUTATE_PATCHED   ? SL_LOG_INFO
                  : res == SL_MUTATE_UNKNOWN ? SL_LOG_WARN
                                             : SL_LOG_DEBUG,
                  kv, "webhook: %s/%s: %s", ns ? ns : "-", name ? name : "-",
                  sl_mutate_result_name(res));
        char labels[64];
        snprintf(labels, sizeof(labels), "result=\"%s\"", sl_mutate_result_name(res));
        sl_metric_add(w->m_reviews, labels, 1);
        set_json(q, 200, answer);
    }
    json_decref(parsed);
    sl_metric_observe(w->m_seconds, NULL, now_s() - q->t0);
}

static void *worker_main(void *arg)
{
    struct sl_webhook *w = arg;
    pthread_mutex_lock(&w->lock);
    for (;;) {
        while (!w->queue && !w->workers_stop)
            pthread_cond_wait(&w->cond, &w->lock);
        if (!w->queue)
            break;
        struct req *q = w->queue;
        w->queue = q->next;
        if (!w->queue)
            w->queue_tail = &w->queue;
        pthread_mutex_unlock(&w->lock);
        review(q);
        publish(q);
        req_unref(q);
        pthread_mutex_lock(&w->lock);
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void submit(struct req *q)
{
    struct sl_webhook *w = q->w;
    q->dispatched = true;
    pthread_mutex_lock(&w->lock);
    q->next = NULL;
    *w->queue_tail = req_ref(q);
    w->queue_tail = &q->next;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

/* ---- loop side -------------------------------------------------------------------------- */

static void answer_now(struct req *q)
{
    q->dispatched = true;
    atomic_store(&q->ready, true);
    lws_callback_on_writable(q->wsi);
}

static void answer_simple(struct req *q)
{
    struct sl_webhook *w = q->w;
    switch (q->route) {
    case R_HEALTH:
        set_answer(q, 200, "text/plain", "ok\n", 3);
        break;
    case R_READY: {
        const char *s = w->cfg.status ? w->cfg.status(w->cfg.status_ud) : NULL;
        _cleanup_free_ char *t = sl_xasprintf("ok%s%s\n", s ? " " : "", s ? s : "");
        set_answer(q, 200, "text/plain", t, strlen(t));
        break;
    }
    case R_METRICS: {
        struct sl_buf b;
        sl_buf_init(&b, 8u << 20);
        if (w->cfg.metrics && sl_metrics_render(w->cfg.metrics, &b) >= 0)
            set_answer(q, 200, SL_METRICS_CONTENT_TYPE, (const char *)b.data, b.len);
        else
            set_error(q, 500, "metrics unavailable");
        sl_buf_free(&b);
        break;
    }
    default:
        set_error(q, 404, "no such path");
    }
    answer_now(q);
}

static enum route route_of(const char *uri, bool metrics_side)
{
    if (!metrics_side && strcmp(uri, "/mutate") == 0)
        return R_MUTATE;
    if (!metrics_side && strcmp(uri, "/mutate-namespace") == 0)
        return R_MUTATE_NS;
    if (strcmp(uri, "/healthz") == 0 || strcmp(uri, "/livez") == 0)
        return R_HEALTH;
    if (strcmp(uri, "/readyz") == 0)
        return R_READY;
    if (metrics_side && strcmp(uri, "/metrics") == 0)
        return R_METRICS;
    return R_UNKNOWN;
}

static int on_http(struct sl_webhook *w, struct lws *wsi, struct pss *pss, const char *uri)
{
    if (pss->req) {
        pss->req->wsi = NULL;
        req_unref(TAKE_PTR(pss->req));
    }
    struct req *q = pss->req = req_new(w, wsi);
    q->metrics_side = lws_get_vhost(wsi) == w->vh_metrics;
    q->post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
    bool get = lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) > 0;
    q->route = route_of(uri ? uri : "", q->metrics_side);
    char cl[32] = "";
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0)
        lws_hdr_copy(wsi, cl, sizeof(cl), WSI_TOKEN_HTTP_CONTENT_LENGTH);
    unsigned long long len = strtoull(cl, NULL, 10);
    q->body_expected = len > 0 || lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0;
    if (q->route == R_UNKNOWN) {
        set_error(q, 404, "no such path");
        answer_now(q);
        return 0;
    }
    bool mutate = q->route == R_MUTATE || q->route == R_MUTATE_NS;
    if ((mutate && !q->post) || (!mutate && !get)) {
        set_error(q, 405, mutate ? "POST an AdmissionReview" : "GET only");
        answer_now(q);
        return 0;
    }
    if (!mutate) {
        answer_simple(q);
        return 0;
    }
    if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) > 0) {
        set_error(q, 411, "send the AdmissionReview with a Content-Length");
        answer_now(q);
        return 0;
    }
    if (len > SL_REVIEW_MAX) {
        log_warn("webhook: AdmissionReview of %llu bytes refused (over %u)", len, SL_REVIEW_MAX);
        sl_metric_add(w->m_reviews, "result=\"bad-request\"", 1);
        set_error(q, 413, "AdmissionReview too large");
        answer_now(q);
        return 0;
    }
    if (!q->body_expected)
        submit(q); /* empty body: the worker answers 400 */
    return 0;
}

static int on_body(struct pss *pss, const void *in, size_t len)
{
    struct req *q = pss->req;
    if (!q || q->dispatched)
        return 0;
    if (sl_buf_append(&q->body, in, len) < 0) {
        set_error(q, 413, "AdmissionReview too large");
        answer_now(q);
    }
    return 0;
}

static int on_body_done(struct pss *pss)
{
    struct req *q = pss->req;
    if (!q || q->dispatched)
        return 0;
    q->body_expected = false;
    submit(q);
    return 0;
}

static int finish(struct lws *wsi, struct pss *pss)
{
    struct req *q = TAKE_PTR(pss->req);
    bool close = q->body_expected; /* unread body left: do not reuse the connection */
    q->wsi = NULL;
    req_unref(q);
    if (close || lws_http_transaction_completed(wsi))
        return -1;
    return 0;
}

static int on_writeable(struct lws *wsi, struct pss *pss)
{
    struct req *q = pss->req;
    if (!q || !atomic_load_explicit(&q->ready, memory_order_acquire))
        return 0;
    if (!q->headers_sent) {
        uint8_t buf[LWS_PRE + 2048];
        uint8_t *start = buf + LWS_PRE, *p = start, *end = buf + sizeof(buf) - 1;
        if (lws_add_http_common_headers(wsi, (unsigned)q->status, q->ctype, q->out.len, &p, end))
            return -1;
        if (lws_add_http_header_by_name(
                wsi, (const uint8_t *)"cache-control:", (const uint8_t *)"no-store", 8, &p, end))
            return -1;
        if (q->body_expected && lws_add_http_header_by_name(wsi, (const uint8_t *)"connection:",
                                                            (const uint8_t *)"close", 5, &p, end))
            return -1;
        if (lws_finalize_write_http_header(wsi, start, &p, end))
            return -1;
        q->headers_sent = true;
        if (q->out.len == 0)
            return finish(wsi, pss);
        lws_callback_on_writable(wsi);
        return 0;
    }
    size_t n = SL_MIN(q->out.len - q->out_off, (size_t)WRITE_MAX);
    bool last = q->out_off + n == q->out.len;
    uint8_t buf[LWS_PRE + WRITE_MAX];
    memcpy(buf + LWS_PRE, q->out.data + q->out_off, n);
    if (lws_write(wsi, buf + LWS_PRE, n, last ? LWS_WRITE_HTTP_FINAL : LWS_WRITE_HTTP) < 0)
        return -1;
    q->out_off += n;
    if (last)
        return finish(wsi, pss);
    lws_callback_on_writable(wsi);
    return 0;
}

static void on_closed(struct pss *pss)
{
    struct req *q = TAKE_PTR(pss->req);
    if (!q)
        return;
    q->wsi = NULL;
    req_unref(q);
}

#define CERT_POLL_S 5

static void cert_stamp(const char *path, char *buf, size_t len)
{
    struct stat st;
    if (stat(path, &st) < 0)
        snprintf(buf, len, "-");
    else
        snprintf(buf, len, "%lu:%lld:%lld.%09ld", (unsigned long)st.st_ino, (long long)st.st_size,
                 (long long)st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

/* Watches --tls-cert/--tls-key (a mounted Secret changes in place when cert-manager rotates
 * it: the files are replaced through a symlink swap, so inode and mtime change). */
static void *certwatch_main(void *arg)
{
    struct sl_webhook *w = arg;
    char c0[96], k0[96], c1[96], k1[96];
    cert_stamp(w->tls_cert, c0, sizeof(c0));
    cert_stamp(w->tls_key, k0, sizeof(k0));
    while (!atomic_load(&w->stop)) {
        for (int i = 0; i < CERT_POLL_S * 10 && !atomic_load(&w->stop); i++)
            usleep(100000);
        cert_stamp(w->tls_cert, c1, sizeof(c1));
        cert_stamp(w->tls_key, k1, sizeof(k1));
        if (strcmp(c0, c1) != 0 || strcmp(k0, k1) != 0) {
            memcpy(c0, c1, sizeof(c0));
            memcpy(k0, k1, sizeof(k0));
            atomic_store(&w->certs_changed, true);
            lws_cancel_service(w->ctx);
        }
    }
    return NULL;
}

static char *slurp(const char *path, size_t *ret_len)
{
    FILE *f = fopen(path, "re");
    if (!f)
        return NULL;
    struct sl_buf b;
    sl_buf_init(&b, 1u << 20);
    char tmp[4096];
    size_t n;
    bool ok = true;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        ok = ok && sl_buf_append(&b, tmp, n) >= 0;
    fclose(f);
    if (!ok || b.len == 0) {
        sl_buf_free(&b);
        return NULL;
    }
    (void)sl_buf_append(&b, "", 1);
    *ret_len = b.len - 1;
    return (char *)b.data;
}

/* Loop thread: loads the rotated certificate into the webhook vhost (new connections use it). */
static void reload_certs(struct sl_webhook *w)
{
    size_t cl = 0, kl = 0;
    _cleanup_free_ char *cert = slurp(w->tls_cert, &cl);
    _cleanup_free_ char *key = slurp(w->tls_key, &kl);
    if (!cert || !key) {
        log_warn("webhook: %s or %s unreadable after a change; keeping the current certificate",
                 w->tls_cert, w->tls_key);
        sl_metric_add(w->m_reloads, "result=\"failure\"", 1);
        return;
    }
    if (lws_tls_cert_updated(w->ctx, w->tls_cert, w->tls_key, cert, cl, key, kl) != 0) {
        log_warn("webhook: reloading the certificate failed; keeping the current one");
        sl_metric_add(w->m_reloads, "result=\"failure\"", 1);
    } else {
        log_info("webhook: certificate reloaded from %s", w->tls_cert);
        sl_metric_add(w->m_reloads, "result=\"success\"", 1);
    }
}

static void on_wait_cancelled(struct sl_webhook *w)
{
    if (atomic_exchange(&w->certs_changed, false))
        reload_certs(w);
    pthread_mutex_lock(&w->lock);
    struct req *list = w->ready;
    w->ready = NULL;
    pthread_mutex_unlock(&w->lock);
    while (list) {
        struct req *q = list;
        list = q->next;
        if (q->wsi)
            lws_callback_on_writable(q->wsi);
        req_unref(q);
    }
}

static int callback(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                    size_t len)
{
    struct lws_context *ctx = lws_get_context(wsi);
    struct sl_webhook *w = ctx ? lws_context_user(ctx) : NULL;
    struct pss *pss = user;
    switch (reason) {
    case LWS_CALLBACK_HTTP:
        return on_http(w, wsi, pss, in);
    case LWS_CALLBACK_HTTP_BODY:
        return on_body(pss, in, len);
    case LWS_CALLBACK_HTTP_BODY_COMPLETION:
        return on_body_done(pss);
    case LWS_CALLBACK_HTTP_WRITEABLE:
        return pss ? on_writeable(wsi, pss) : 0;
    case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
    case LWS_CALLBACK_CLOSED_HTTP:
        if (pss)
            on_closed(pss);
        return 0;
    case LWS_CALLBACK_HTTP_CONFIRM_UPGRADE:
        return 1;
    case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
        if (w)
            on_wait_cancelled(w);
        return 0;
    default:
        break;
    }
    return lws_callback_http_dummy(wsi, reason, user, in, len);
}

static const struct lws_protocols protocols[] = {
    {"http", callback, sizeof(struct pss), 0, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static struct lws_vhost *vhost(struct sl_webhook *w, const char *name, const char *addr, int port,
                               bool tls)
{
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    sl_lws_listen_info(&info, name, addr, port, protocols, IDLE_TIMEOUT_S, tls ? w->tls_cert : NULL,
                       w->tls_key);
    return lws_create_vhost(w->ctx, &info);
}

int sl_webhook_new(const struct sl_webhook_config *cfg, struct sl_webhook **ret, sl_error_t *err)
{
    if (!cfg->tls_cert || !cfg->tls_key)
        return sl_error_make(err, EINVAL, "webhook: TLS certificate and key required");
    struct sl_webhook *w = sl_xcalloc(1, sizeof(*w));
    w->cfg = *cfg;
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
    w->queue_tail = &w->queue;
    w->listen_addr = cfg->listen_addr ? sl_xstrdup(cfg->listen_addr) : NULL;
    w->metrics_addr = cfg->metrics_addr ? sl_xstrdup(cfg->metrics_addr) : NULL;
    w->tls_cert = sl_xstrdup(cfg->tls_cert);
    w->tls_key = sl_xstrdup(cfg->tls_key);
    if (cfg->metrics) {
        static const double secs[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2.5, 5};
        w->m_reviews = sl_metrics_counter(cfg->metrics, "starlight_webhook_reviews_total",
                                          "AdmissionReviews answered, by result");
        w->m_seconds =
            sl_metrics_histogram(cfg->metrics, "starlight_webhook_review_seconds",
                                 "Time to answer an AdmissionReview", secs, SL_ELEMENTSOF(secs));
        w->m_reloads = sl_metrics_counter(cfg->metrics, "starlight_webhook_cert_reloads_total",
                                          "Serving certificate reloads after the files changed, "
                                          "by result (success, failure: the old one is kept)");
        sl_metric_add(w->m_reloads, "result=\"success\"", 0);
        sl_metric_add(w->m_reloads, "result=\"failure\"", 0);
        sl_metric_add(w->m_reviews, "result=\"patched\"", 0);
        sl_metric_add(w->m_reviews, "result=\"bad-request\"", 0);
    }

    sl_lws_log_setup();
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof(info));
    info.options = LWS_SERVER_OPTION_EXPLICIT_VHOSTS | LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.user = w;
    info.max_http_header_data = HEADER_DATA_MAX;
    info.max_http_header_pool = 64;
    info.server_string = "starlight-controller";
    w->ctx = lws_create_context(&info);
    if (!w->ctx) {
        sl_webhook_free(w);
        return sl_error_make(err, EIO, "webhook: cannot create the libwebsockets context");
    }
    w->vh_hook = vhost(w, "webhook", w->listen_addr, cfg->port, true);
    if (!w->vh_hook || lws_get_vhost_listen_port(w->vh_hook) <= 0) {
        sl_webhook_free(w);
        return sl_error_make(err, EIO,
                             "webhook: listen on %s:%d with TLS (%s, %s) failed: address in "
                             "use or unusable certificate/key",
                             cfg->listen_addr ? cfg->listen_addr : "*", cfg->port, cfg->tls_cert,
                             cfg->tls_key);
    }
    if (cfg->metrics_port >= 0) {
        w->vh_metrics = vhost(w, "metrics", w->metrics_addr, cfg->metrics_port, false);
        if (!w->vh_metrics || lws_get_vhost_listen_port(w->vh_metrics) <= 0) {
            sl_webhook_free(w);
            return sl_error_make(err, EADDRINUSE, "metrics: listen on %s:%d failed",
                                 cfg->metrics_addr ? cfg->metrics_addr : "*", cfg->metrics_port);
        }
    }
    sl_lws_started();
    w->n_threads = cfg->workers > 0 ? cfg->workers : 1;
    w->threads = sl_xcalloc((size_t)w->n_threads, sizeof(pthread_t));
    for (int i = 0; i < w->n_threads; i++)
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            w->n_threads = i;
            sl_webhook_free(w);
            return sl_error_make(err, EAGAIN, "webhook: cannot start worker threads");
        }
    if (pthread_create(&w->certwatch, NULL, certwatch_main, w) == 0)
        w->certwatch_started = true;
    *ret = w;
    return 0;
}

int sl_webhook_port(struct sl_webhook *w)
{
    return lws_get_vhost_listen_port(w->vh_hook);
}

int sl_webhook_metrics_port(struct sl_webhook *w)
{
    return w->vh_metrics ? lws_get_vhost_listen_port(w->vh_metrics) : -1;
}

int sl_webhook_run(struct sl_webhook *w)
{
    return sl_lws_run(w->ctx, &w->stop);
}

void sl_webhook_stop(struct sl_webhook *w)
{
    sl_lws_stop(w->ctx, &w->stop);
}

void sl_webhook_free(struct sl_webhook *w)
{
    if (!w)
        return;
    atomic_store(&w->stop, true);
    if (w->certwatch_started)
        pthread_join(w->certwatch, NULL);
    pthread_mutex_lock(&w->lock);
    w->workers_stop = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->lock);
    for (int i = 0; i < w->n_threads; i++)
        pthread_join(w->threads[i], NULL);
    free(w->threads);
    pthread_mutex_lock(&w->lock);
    w->loop_gone = true;
    struct req *list = w->ready;
    w->ready = NULL;
    pthread_mutex_unlock(&w->lock);
    while (list) {
        struct req *q = list;
        list = q->next;
        req_unref(q);
    }
    if (w->ctx)
        lws_context_destroy(w->ctx);
    pthread_mutex_destroy(&w->lock);
    pthread_cond_destroy(&w->cond);
    free(w->listen_addr);
    free(w->metrics_addr);
    free(w->tls_cert);
    free(w->tls_key);
    free(w);
}
