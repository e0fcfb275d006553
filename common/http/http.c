#include "http.h"
#include "cleanup.h"
#include "log.h"

#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#ifndef SL_VERSION
#define SL_VERSION "0"
#endif

static pthread_once_t init_once = PTHREAD_ONCE_INIT;
static pthread_key_t handle_key;
static CURLcode init_rc = CURLE_OK;

/* Each thread keeps one easy handle so keep-alive connections are reused by that thread. A
 * sink that itself performs a request (re-entrancy) gets a temporary handle instead. */
static __thread CURL *tl_handle;
static __thread bool tl_busy;

static void handle_destroy(void *p)
{
    curl_easy_cleanup(p);
}

static void global_init(void)
{
    init_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
    pthread_key_create(&handle_key, handle_destroy);
}

static CURL *handle_acquire(bool *temporary)
{
    *temporary = false;
    if (tl_busy) {
        *temporary = true;
        return curl_easy_init();
    }
    if (!tl_handle) {
        tl_handle = curl_easy_init();
        if (!tl_handle)
            return NULL;
        pthread_setspecific(handle_key, tl_handle);
    }
    tl_busy = true;
    return tl_handle;
}

static void handle_release(CURL *h, bool temporary)
{
    if (temporary)
        curl_easy_cleanup(h);
    else
        tl_busy = false;
}

/* ---- headers ---- */

const char *sl_http_headers_get(const struct sl_http_headers *h, const char *name)
{
    for (size_t i = 0; i < h->n; i++)
        if (strcasecmp(h->v[i].name, name) == 0)
            return h->v[i].value;
    return NULL;
}

char *sl_http_headers_join(const struct sl_http_headers *h, const char *name)
{
    _cleanup_buf_ struct sl_buf b;
    sl_buf_init(&b, SL_HTTP_HEADERS_MAX);
    for (size_t i = 0; i < h->n; i++) {
        if (strcasecmp(h->v[i].name, name) != 0)
            continue;
        if (b.len)
            (void)sl_buf_puts(&b, ", ");
        (void)sl_buf_puts(&b, h->v[i].value);
    }
    if (!b.data)
        return NULL;
    return sl_buf_steal(&b, NULL);
}

void sl_http_headers_free(struct sl_http_headers *h)
{
    for (size_t i = 0; i < h->n; i++) {
        free(h->v[i].name);
        free(h->v[i].value);
    }
    free(h->v);
    h->v = NULL;
    h->n = 0;
}

void sl_http_response_free(struct sl_http_response *resp)
{
    if (!resp)
        return;
    sl_http_headers_free(&resp->headers);
    sl_buf_free(&resp->error_body);
    free(resp->url);
    resp->url = NULL;
}

int sl_http_sink_mem(void *userdata, const void *data, size_t len)
{
    struct sl_http_mem_sink *s = userdata;
    if (len > s->left)
        return -EIO;
    memcpy(s->p, data, len);
    s->p += len;
    s->left -= len;
    return 0;
}

int sl_http_sink_buf(void *userdata, const void *data, size_t len)
{
    return sl_buf_append(userdata, data, len);
}

/* ---- one attempt ---- */

struct xfer {
    const struct sl_http_request *req;
    struct sl_http_response *resp;
    CURL *h;
    size_t header_bytes;
    int64_t body_pos; /* request body read position */
    bool headers_seen;
    int cb_error; /* negative errno from sink/source/cap */
    bool stopped;
};

static size_t header_cb(char *p, size_t size, size_t n, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * n;
    x->header_bytes += len;
    if (x->header_bytes > SL_HTTP_HEADERS_MAX) {
        x->cb_error = -EFBIG;
        return 0;
    }
    /* A new status line (after 100 Continue or a redirect) starts a new header block. */
    if (len >= 5 && strncmp(p, "HTTP/", 5) == 0) {
        sl_http_headers_free(&x->resp->headers);
        return len;
    }
    const char *colon = memchr(p, ':', len);
    if (!colon)
        return len;
    size_t nl = (size_t)(colon - p);
    const char *v = colon + 1, *end = p + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
        end--;
    struct sl_http_headers *hs = &x->resp->headers;
    hs->v = sl_xrealloc(hs->v, (hs->n + 1) * sizeof(*hs->v));
    hs->v[hs->n].name = sl_xstrndup(p, nl);
    hs->v[hs->n].value = sl_xstrndup(v, (size_t)(end - v));
    hs->n++;
    return len;
}

static size_t write_cb(char *p, size_t size, size_t n, void *userdata)
{
    struct xfer *x = userdata;
    size_t len = size * n;
    long code = 0;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &code);
    if (code >= 200 && code < 300) {
        int r = 0;
        if (!x->headers_seen && x->req->on_headers) {
            x->headers_seen = true;
            r = x->req->on_headers(x->req->sink_userdata, code, &x->resp->headers);
            if (r < 0) {
                x->cb_error = r;
                return 0;
            }
        }
        if (x->req->sink)
            r = x->req->sink(x->req->sink_userdata, p, len);
        else if (x->req->body_buf)
            r = sl_buf_append(x->req->body_buf, p, len);
        if (r < 0) {
            x->cb_error = r;
            return 0;
        }
        x->resp->body_bytes += (int64_t)len;
        if (r == SL_HTTP_SINK_STOP) {
            x->stopped = true;
            return 0;
        }
        return len;
    }
    if (code >= 300 && code < 400)
        return len; /* redirect bodies are noise */
    size_t room = x->resp->error_body.max - x->resp->error_body.len;
    (void)sl_buf_append(&x->resp->error_body, p, SL_MIN(len, room));
    return len;
}

static size_t read_cb(char *buf, size_t size, size_t n, void *userdata)
{
    struct xfer *x = userdata;
    const struct sl_http_request *req = x->req;
    size_t want = size * n;
    int64_t left = req->body_len - x->body_pos;
    if (left <= 0)
        return 0;
    if ((int64_t)want > left)
        want = (size_t)left;
    ssize_t got;
    if (req->body) {
        memcpy(buf, (const char *)req->body + x->body_pos, want);
        got = (ssize_t)want;
    } else if (req->body_fd >= 0) {
        got = pread(req->body_fd, buf, want, req->body_offset + x->body_pos);
        if (got < 0)
            got = -errno;
        else if (got == 0)
            got = -EIO; /* file shorter than announced */
    } else if (req->body_source) {
        got = req->body_source(req->body_userdata, x->body_pos, buf, want);
        if (got == 0)
            got = -EIO;
    } else {
        return 0;
    }
    if (got < 0) {
        x->cb_error = (int)got;
        return CURL_READFUNC_ABORT;
    }
    x->body_pos += got;
    return (size_t)got;
}

/* Progress callback (called at least once a second, idle or not): aborts a cancelled
 * transfer. */
static int cancel_cb(void *p, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    return *(const volatile int *)p ? 1 : 0;
}

static int map_curl(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
        return -ECONNREFUSED;
    case CURLE_OPERATION_TIMEDOUT:
        return -ETIMEDOUT;
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return -EHOSTUNREACH;
    case CURLE_URL_MALFORMAT:
    case CURLE_UNSUPPORTED_PROTOCOL:
        return -EINVAL;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CACERT_BADFILE:
        return -EPROTO;
    default:
        return -EIO;
    }
}

static bool curl_retryable(CURLcode c)
{
    switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static bool status_retryable(long s)
{
    return s == 429 || s == 408 || (s >= 500 && s <= 599 && s != 501 && s != 505);
}

static bool method_sends_body(const char *m)
{
    return strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0 || strcmp(m, "PATCH") == 0;
}

#define SETOPT(h, opt, val)                                                                        \
    do {                                                                                           \
        if (curl_easy_setopt(h, opt, val) != CURLE_OK)                                             \
            return sl_error_make(err, EINVAL, "%s %s: cannot set " #opt, method, url);             \
    } while (0)

static void slist_freep(struct curl_slist **l)
{
    curl_slist_free_all(*l);
}

/* Runs one attempt against `url`. Returns 0 with resp filled, or a negative errno; *ret_cc gets
 * the curl result for the retry decision. */
static int attempt(CURL *h, const struct sl_http_options *o, const struct sl_http_request *req,
                   const char *url, const char *method, bool send_body, const char *auth,
                   struct sl_http_response *resp, CURLcode *ret_cc, sl_error_t *err)
{
    char errbuf[CURL_ERROR_SIZE] = "";
    _cleanup_(slist_freep) struct curl_slist *hl = NULL;
    _cleanup_free_ char *ua = NULL, *authh = NULL;
    struct xfer x = {.req = req, .resp = resp, .h = h};
    char range[64];

    curl_easy_reset(h);
    SETOPT(h, CURLOPT_URL, url);
    if (req->unix_socket_path)
        SETOPT(h, CURLOPT_UNIX_SOCKET_PATH, req->unix_socket_path);
    SETOPT(h, CURLOPT_PROTOCOLS_STR, "http,https");
    SETOPT(h, CURLOPT_NOSIGNAL, 1L);
    SETOPT(h, CURLOPT_FOLLOWLOCATION, 0L);
    SETOPT(h, CURLOPT_ERRORBUFFER, errbuf);
    SETOPT(h, CURLOPT_CONNECTTIMEOUT, (long)(o->connect_timeout_s ? o->connect_timeout_s : 10));
    SETOPT(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    SETOPT(h, CURLOPT_LOW_SPEED_TIME, (long)(o->low_speed_time_s ? o->low_speed_time_s : 30));
    if (o->timeout_s)
        SETOPT(h, CURLOPT_TIMEOUT, (long)o->timeout_s);
    ua = o->user_agent ? sl_xstrdup(o->user_agent) : sl_xasprintf("starlight-c/%s", SL_VERSION);
    SETOPT(h, CURLOPT_USERAGENT, ua);
    SETOPT(h, CURLOPT_SSL_VERIFYPEER, o->tls_no_verify ? 0L : 1L);
    SETOPT(h, CURLOPT_SSL_VERIFYHOST, o->tls_no_verify ? 0L : 2L);
    if (o->ca_file)
        SETOPT(h, CURLOPT_CAINFO, o->ca_file);
    if (o->ca_pem) {
        struct curl_blob b = {.data = (void *)o->ca_pem, .len = strlen(o->ca_pem)};
        SETOPT(h, CURLOPT_CAINFO_BLOB, &b);
    }
    if (o->client_cert_file)
        SETOPT(h, CURLOPT_SSLCERT, o->client_cert_file);
    if (o->client_cert_pem) {
        struct curl_blob b = {.data = (void *)o->client_cert_pem,
                              .len = strlen(o->client_cert_pem)};
        SETOPT(h, CURLOPT_SSLCERT_BLOB, &b);
        SETOPT(h, CURLOPT_SSLCERTTYPE, "PEM");
    }
    if (o->client_key_file)
        SETOPT(h, CURLOPT_SSLKEY, o->client_key_file);
    if (o->client_key_pem) {
        struct curl_blob b = {.data = (void *)o->client_key_pem, .len = strlen(o->client_key_pem)};
        SETOPT(h, CURLOPT_SSLKEY_BLOB, &b);
        SETOPT(h, CURLOPT_SSLKEYTYPE, "PEM");
    }
    if (req->cancel) {
        SETOPT(h, CURLOPT_XFERINFOFUNCTION, cancel_cb);
        SETOPT(h, CURLOPT_XFERINFODATA, (void *)req->cancel);
        SETOPT(h, CURLOPT_NOPROGRESS, 0L);
    }
    SETOPT(h, CURLOPT_HEADERFUNCTION, header_cb);
    SETOPT(h, CURLOPT_HEADERDATA, &x);
    SETOPT(h, CURLOPT_WRITEFUNCTION, write_cb);
    SETOPT(h, CURLOPT_WRITEDATA, &x);

    if (strcmp(method, "HEAD") == 0) {
        SETOPT(h, CURLOPT_NOBODY, 1L);
    } else if (send_body) {
        SETOPT(h, CURLOPT_UPLOAD, 1L);
        SETOPT(h, CURLOPT_INFILESIZE_LARGE, (curl_off_t)req->body_len);
        SETOPT(h, CURLOPT_READFUNCTION, read_cb);
        SETOPT(h, CURLOPT_READDATA, &x);
        SETOPT(h, CURLOPT_CUSTOMREQUEST, method);
    } else if (strcmp(method, "GET") != 0) {
        SETOPT(h, CURLOPT_CUSTOMREQUEST, method);
    }
    if (req->has_range) {
        if (req->range_last >= 0)
            snprintf(range, sizeof(range), "%" PRId64 "-%" PRId64, req->range_first,
                     req->range_last);
        else
            snprintf(range, sizeof(range), "%" PRId64 "-", req->range_first);
        SETOPT(h, CURLOPT_RANGE, range);
    }
    if (req->recv_buffer)
        SETOPT(h, CURLOPT_BUFFERSIZE, (long)SL_MIN(req->recv_buffer, (size_t)512 * 1024));
    for (const char *const *p = req->headers; p && *p; p++)
        hl = curl_slist_append(hl, *p);
    if (auth) {
        authh = sl_xasprintf("Authorization: %s", auth);
        hl = curl_slist_append(hl, authh);
    }
    hl = curl_slist_append(hl, "Expect:"); /* no 100-continue round trip */
    SETOPT(h, CURLOPT_HTTPHEADER, hl);

    sl_http_headers_free(&resp->headers);
    sl_buf_free(&resp->error_body);
    sl_buf_init(&resp->error_body, SL_HTTP_ERROR_BODY_MAX);
    resp->status = 0;

    CURLcode cc = curl_easy_perform(h);
    *ret_cc = cc;
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &resp->status);
    if (x.stopped) {
        resp->stopped = true;
        *ret_cc = CURLE_OK;
        return 0;
    }
    if (x.cb_error < 0) {
        *ret_cc = CURLE_ABORTED_BY_CALLBACK; /* never retried */
        if (x.cb_error == -EFBIG)
            return sl_error_make(err, EFBIG, "%s %s: response larger than its limit", method, url);
        return sl_error_make(err, -x.cb_error, "%s %s: %s", method, url, strerror(-x.cb_error));
    }
    /* An error answer whose body was cut short is still an answer (the registry sends 416
     * with the blob's Content-Length and no body). */
    if (cc == CURLE_PARTIAL_FILE && resp->status >= 300) {
        *ret_cc = CURLE_OK;
        return 0;
    }
    if (cc == CURLE_ABORTED_BY_CALLBACK && req->cancel && *req->cancel)
        return sl_error_make(err, ECANCELED, "%s %s: cancelled", method, url);
    if (cc != CURLE_OK)
        return sl_error_make(err, -map_curl(cc), "%s %s: %s", method, url,
                             errbuf[0] ? errbuf : curl_easy_strerror(cc));
    return 0;
}

static uint64_t rand_u64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
        v = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&v;
    return v;
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

/* Backoff for attempt k (0-based): base·2^k capped, "equal jitter" (half fixed, half random),
 * so concurrent clients spread out but never retry instantly. */
static int64_t backoff_ms(const struct sl_http_options *o, int k)
{
    int64_t base = o->backoff_ms ? o->backoff_ms : 200;
    int64_t cap = o->backoff_max_ms ? o->backoff_max_ms : 5000;
    int64_t d = base;
    for (int i = 0; i < k && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    return d / 2 + (int64_t)(rand_u64() % (uint64_t)(d / 2 + 1));
}

static int perform_retrying(CURL *h, const struct sl_http_options *o,
                            const struct sl_http_request *req, const char *url, const char *method,
                            bool send_body, const char *auth, struct sl_http_response *resp,
                            sl_error_t *err)
{
    int retries = req->retries >= 0 ? req->retries
                  : o->retries > 0  ? o->retries
                  : o->retries < 0  ? 0
                                    : SL_HTTP_DEFAULT_RETRIES;
    size_t buf_start = req->body_buf ? req->body_buf->len : 0;
    int64_t ra_cap = o->retry_after_max_ms ? o->retry_after_max_ms : SL_HTTP_RETRY_AFTER_CAP;
    for (int k = 0;; k++) {
        CURLcode cc = CURLE_OK;
        if (req->body_buf) {
            req->body_buf->len = buf_start;
            if (req->body_buf->data)
                req->body_buf->data[buf_start] = 0;
        }
        resp->body_bytes = 0;
        int r = attempt(h, o, req, url, method, send_body, auth, resp, &cc, err);
        resp->attempts = k + 1;
        bool last = k >= retries;
        /* Bytes already handed to a sink cannot be taken back: no retry then. */
        bool delivered = resp->body_bytes > 0 && req->sink;
        if (r < 0) {
            if (last || delivered || !curl_retryable(cc)) {
                if (k > 0)
                    sl_error_wrap(err, r, "after %d attempts", k + 1);
                return r;
            }
            int64_t d = backoff_ms(o, k);
            log_debug("%s %s: %s; retrying in %" PRId64 " ms", method, url, sl_error_msg(*err, r),
                      d);
            sl_error_free(err);
            sleep_ms(d);
            continue;
        }
        if (last || delivered || !status_retryable(resp->status))
            return 0;
        int64_t d = backoff_ms(o, k);
        const char *ra = sl_http_headers_get(&resp->headers, "Retry-After");
        int64_t ra_ms;
        if (ra && sl_http_parse_retry_after(ra, &ra_ms) == 0)
            d = SL_MIN(SL_MAX(ra_ms, d / 2), ra_cap);
        log_debug("%s %s: HTTP %ld; retrying in %" PRId64 " ms", method, url, resp->status, d);
        sleep_ms(d);
    }
}

int sl_http_perform(const struct sl_http_options *opts, const struct sl_http_request *req,
                    struct sl_http_response *resp, sl_error_t *err)
{
    static const struct sl_http_options defaults = {0};
    const struct sl_http_options *o = opts ? opts : &defaults;
    pthread_once(&init_once, global_init);
    if (init_rc != CURLE_OK)
        return sl_error_make(err, EIO, "curl_global_init: %s", curl_easy_strerror(init_rc));
    if (!req->url)
        return sl_error_make(err, EINVAL, "HTTP request without URL");

    const char *method = req->method ? req->method : "GET";
    bool send_body = req->has_body || req->body || req->body_fd >= 0 || req->body_source ||
                     method_sends_body(method);
    _cleanup_free_ char *url = sl_xstrdup(req->url), *origin = NULL, *cur_method = NULL;
    int r = sl_http_url_origin(url, &origin);
    if (r < 0)
        return sl_error_make(err, EINVAL, "%s %s: invalid URL", method, url);
    cur_method = sl_xstrdup(method);

    bool temporary;
    CURL *h = handle_acquire(&temporary);
    if (!h)
        return sl_error_make(err, ENOMEM, "curl_easy_init failed");

    for (int redirects = 0;; redirects++) {
        _cleanup_free_ char *cur_origin = NULL;
        if (sl_http_url_origin(url, &cur_origin) < 0) {
            r = sl_error_make(err, EINVAL, "%s %s: invalid URL", cur_method, url);
            break;
        }
        /* Credentials stay with the origin that asked for them. */
        const char *auth = strcmp(cur_origin, origin) == 0 ? req->authorization : NULL;
        r = perform_retrying(h, o, req, url, cur_method, send_body, auth, resp, err);
        if (r < 0)
            break;
        long s = resp->status;
        bool redirect = s == 301 || s == 302 || s == 303 || s == 307 || s == 308;
        const char *loc = sl_http_headers_get(&resp->headers, "Location");
        if (req->no_redirect || !redirect || !loc)
            break;
        if (redirects >= SL_HTTP_MAX_REDIRECTS) {
            r = sl_error_make(err, ELOOP, "%s %s: more than %d redirects", method, req->url,
                              SL_HTTP_MAX_REDIRECTS);
            break;
        }
        _cleanup_free_ char *next = NULL;
        if (sl_http_url_resolve(url, loc, &next) < 0) {
            r = sl_error_make(err, EINVAL, "%s %s: bad redirect Location `%s`", cur_method, url,
                              loc);
            break;
        }
        if (s == 303 || ((s == 301 || s == 302) && strcmp(cur_method, "POST") == 0)) {
            free(cur_method);
            cur_method = sl_xstrdup("GET");
            send_body = false;
        }
        log_debug("%s %s: HTTP %ld redirect to %s", cur_method, url, s, next);
        free(url);
        url = TAKE_PTR(next);
    }
    handle_release(h, temporary);
    free(resp->url);
    resp->url = TAKE_PTR(url);
    return r;
}

/* ---- header value parsers ---- */

static int parse_i64(const char **p, int64_t *ret)
{
    const char *s = *p;
    if (!isdigit((unsigned char)*s))
        return -EINVAL;
    int64_t v = 0;
    while (isdigit((unsigned char)*s)) {
        if (v > (INT64_MAX - 9) / 10)
            return -EINVAL;
        v = v * 10 + (*s - '0');
        s++;
    }
    *p = s;
    *ret = v;
    return 0;
}

int sl_http_parse_content_range(const char *v, int64_t *first, int64_t *last, int64_t *total)
{
    if (!v || strncasecmp(v, "bytes", 5) != 0)
        return -EINVAL;
    const char *p = v + 5;
    if (*p != ' ' && *p != '=')
        return -EINVAL;
    while (*p == ' ' || *p == '=')
        p++;
    int64_t a, b, t = -1;
    if (parse_i64(&p, &a) < 0 || *p++ != '-' || parse_i64(&p, &b) < 0 || *p++ != '/')
        return -EINVAL;
    if (*p == '*')
        p++;
    else if (parse_i64(&p, &t) < 0)
        return -EINVAL;
    if (*p != 0 || b < a || (t >= 0 && b >= t))
        return -EINVAL;
    *first = a;
    *last = b;
    *total = t;
    return 0;
}

int sl_http_parse_range(const char *v, int64_t size, int64_t *first, int64_t *last)
{
    if (!v || strncasecmp(v, "bytes=", 6) != 0)
        return -EINVAL;
    const char *p = v + 6;
    while (*p == ' ')
        p++;
    int64_t a = -1, b = -1;
    if (*p == '-') {
        p++;
        if (parse_i64(&p, &b) < 0)
            return -EINVAL;
        while (*p == ' ')
            p++;
        if (*p)
            return -EINVAL;
        if (b == 0 || size <= 0)
            return -ERANGE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return 0;
    }
    if (parse_i64(&p, &a) < 0 || *p++ != '-')
        return -EINVAL;
    if (isdigit((unsigned char)*p) && parse_i64(&p, &b) < 0)
        return -EINVAL;
    while (*p == ' ')
        p++;
    if (*p)
        return -EINVAL; /* several ranges or junk */
    if (b >= 0 && b < a)
        return -EINVAL;
    if (a >= size)
        return -ERANGE;
    *first = a;
    *last = b < 0 || b >= size ? size - 1 : b;
    return 0;
}

int sl_http_parse_retry_after(const char *v, int64_t *ret_ms)
{
    if (!v)
        return -EINVAL;
    while (*v == ' ')
        v++;
    if (isdigit((unsigned char)*v)) {
        int64_t s;
        const char *p = v;
        if (parse_i64(&p, &s) < 0)
            return -EINVAL;
        while (*p == ' ')
            p++;
        if (*p)
            return -EINVAL;
        *ret_ms = s > INT64_MAX / 1000 ? INT64_MAX : s * 1000;
        return 0;
    }
    time_t t = curl_getdate(v, NULL);
    if (t == (time_t)-1)
        return -EINVAL;
    time_t now = time(NULL);
    int64_t d = t > now ? (int64_t)(t - now) : 0; /* a date far ahead must not overflow */
    *ret_ms = d > INT64_MAX / 1000 ? INT64_MAX : d * 1000;
    return 0;
}

/* ---- URLs ---- */

static void urlp(CURLU **u)
{
    curl_url_cleanup(*u);
}

int sl_http_url_resolve(const char *base, const char *ref, char **ret)
{
    _cleanup_(urlp) CURLU *u = curl_url();
    char *out = NULL;
    if (!u)
        return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, base, 0) != CURLUE_OK)
        return -EINVAL;
    if (curl_url_set(u, CURLUPART_URL, ref, 0) != CURLUE_OK)
        return -EINVAL;
    if (curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
        return -EINVAL;
    *ret = sl_xstrdup(out);
    curl_free(out);
    return 0;
}

int sl_http_url_add_query(const char *url, const char *key, const char *value, char **ret)
{
    _cleanup_(urlp) CURLU *u = curl_url();
    _cleanup_free_ char *kv = NULL;
    char *out = NULL;
    if (!u)
        return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK)
        return -EINVAL;
    kv = sl_xasprintf("%s=%s", key, value);
    if (curl_url_set(u, CURLUPART_QUERY, kv, CURLU_APPENDQUERY | CURLU_URLENCODE) != CURLUE_OK)
        return -EINVAL;
    if (curl_url_get(u, CURLUPART_URL, &out, 0) != CURLUE_OK)
        return -EINVAL;
    *ret = sl_xstrdup(out);
    curl_free(out);
    return 0;
}

int sl_http_url_origin(const char *url, char **ret)
{
    _cleanup_(urlp) CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;
    int r = -EINVAL;
    if (!u)
        return -ENOMEM;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        for (char *c = host; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        *ret = sl_xasprintf("%s://%s:%s", scheme, host, port);
        r = 0;
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    return r;
}

char *sl_http_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    if (!e)
        abort();
    char *out = sl_xstrdup(e);
    curl_free(e);
    return out;
}
