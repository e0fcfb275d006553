/* client.c — requests to the Kubernetes API over common/http, Status → error chains, the
 * in-cluster token reload, paths and queries, Events. */
#include "k8s-internal.h"

#include "base64.h"
#include "buf.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#define EVENT_MEMORY 128

struct event_mem {
    char *key; /* uid|name + reason + message */
    char *ns, *name;
    int count;
};

struct sl_k8s_client {
    struct sl_k8s_config cfg;
    struct sl_http_options http;
    char *user_agent, *field_manager;
    char *basic; /* "Basic …" */

    pthread_mutex_t lock; /* token, events */
    char *token;          /* current bearer token (static or file) */
    int64_t token_read_ms;

    struct event_mem events[EVENT_MEMORY];
    size_t events_next;
};

int64_t sl_k8s_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

uint64_t sl_k8s_rand(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof(v), GRND_NONBLOCK) != sizeof(v))
        v = (uint64_t)time(NULL) ^ (uint64_t)(uintptr_t)&v ^ (uint64_t)sl_k8s_now_ms();
    return v;
}

void sl_k8s_sleep_ms(int64_t ms, const volatile int *cancel)
{
    while (ms > 0 && !(cancel && *cancel)) {
        int64_t step = ms > 100 ? 100 : ms;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = step * 1000000L};
        nanosleep(&ts, NULL);
        ms -= step;
    }
}

static int read_token_file(const char *path, char **ret, sl_error_t *err)
{
    char *t = NULL;
    int r = sl_k8s_read_file(path, 64 * 1024, &t, NULL, err);
    if (r < 0)
        return sl_error_wrap(err, r, "token file");
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == '\r' || t[n - 1] == ' '))
        t[--n] = 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)t[i] < 0x21 || (unsigned char)t[i] > 0x7e) {
            free(t);
            return sl_error_make(err, EINVAL, "token file %s: not a printable token", path);
        }
    *ret = t;
    return 0;
}

/* Re-reads the token file when `force` or older than SL_K8S_TOKEN_RELOAD_S. Keeps the old
 * token if the file cannot be read (kubelet rewrites it atomically, but be forgiving). */
static void token_refresh(struct sl_k8s_client *c, bool force)
{
    if (!c->cfg.token_file)
        return;
    pthread_mutex_lock(&c->lock);
    int64_t now = sl_k8s_now_ms();
    if (force || now - c->token_read_ms >= SL_K8S_TOKEN_RELOAD_S * 1000) {
        char *t = NULL;
        sl_error_t e = NULL;
        if (read_token_file(c->cfg.token_file, &t, &e) == 0) {
            free(c->token);
            c->token = t;
        } else {
            log_debug("k8s: %s", sl_error_msg(e, -EIO));
            sl_error_free(&e);
        }
        c->token_read_ms = now;
    }
    pthread_mutex_unlock(&c->lock);
}

static char *auth_value(struct sl_k8s_client *c)
{
    char *v = NULL;
    pthread_mutex_lock(&c->lock);
    if (c->token && c->token[0])
        v = sl_xasprintf("Bearer %s", c->token);
    else if (c->basic)
        v = sl_xstrdup(c->basic);
    pthread_mutex_unlock(&c->lock);
    return v;
}

static char *dupn(const char *s)
{
    return s ? sl_xstrdup(s) : NULL;
}

int sl_k8s_client_new(const struct sl_k8s_config *cfg, const struct sl_k8s_client_options *opts,
                      struct sl_k8s_client **ret, sl_error_t *err)
{
    struct sl_k8s_client_options o = opts ? *opts : (struct sl_k8s_client_options){0};
    if (!cfg->server || !cfg->server[0])
        return sl_error_make(err, EINVAL, "Kubernetes client: no server");
    struct sl_k8s_client *c = sl_xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    c->cfg = (struct sl_k8s_config){
        .server = dupn(cfg->server),
        .namespace = sl_xstrdup(cfg->namespace ? cfg->namespace : "default"),
        .ca_file = dupn(cfg->ca_file),
        .ca_pem = dupn(cfg->ca_pem),
        .insecure = cfg->insecure,
        .token = dupn(cfg->token),
        .token_file = dupn(cfg->token_file),
        .client_cert_file = dupn(cfg->client_cert_file),
        .client_cert_pem = dupn(cfg->client_cert_pem),
        .client_key_file = dupn(cfg->client_key_file),
        .client_key_pem = dupn(cfg->client_key_pem),
        .username = dupn(cfg->username),
        .password = dupn(cfg->password),
        .source = dupn(cfg->source ? cfg->source : "explicit"),
    };
    c->user_agent =
        o.user_agent ? sl_xstrdup(o.user_agent) : sl_xasprintf("starlight-c/%s", SL_VERSION);
    c->field_manager = sl_xstrdup(o.field_manager ? o.field_manager : SL_K8S_FIELD_MANAGER);
    c->http = (struct sl_http_options){
        .user_agent = c->user_agent,
        .retries = o.retries,
        .timeout_s = o.timeout_s ? o.timeout_s : 30,
        .tls_no_verify = c->cfg.insecure,
        .ca_file = c->cfg.ca_file,
        .ca_pem = c->cfg.ca_pem,
        .client_cert_file = c->cfg.client_cert_file,
        .client_cert_pem = c->cfg.client_cert_pem,
        .client_key_file = c->cfg.client_key_file,
        .client_key_pem = c->cfg.client_key_pem,
    };
    if (c->cfg.token)
        c->token = sl_xstrdup(c->cfg.token);
    if (c->cfg.username) {
        _cleanup_free_ char *up = sl_xasprintf("%s:%s", c->cfg.username, c->cfg.password);
        _cleanup_free_ char *b = sl_base64_encode(up, strlen(up), NULL);
        c->basic = sl_xasprintf("Basic %s", b);
    }
    if (c->cfg.token_file && !c->token) {
        int r = read_token_file(c->cfg.token_file, &c->token, err);
        if (r < 0) {
            sl_k8s_client_free(c);
            return r;
        }
        c->token_read_ms = sl_k8s_now_ms();
    }
    *ret = c;
    return 0;
}

void sl_k8s_client_free(struct sl_k8s_client *c)
{
    if (!c)
        return;
    sl_k8s_config_free(&c->cfg);
    free(c->user_agent);
    free(c->field_manager);
    free(c->basic);
    free(c->token);
    for (size_t i = 0; i < EVENT_MEMORY; i++) {
        free(c->events[i].key);
        free(c->events[i].ns);
        free(c->events[i].name);
    }
    pthread_mutex_destroy(&c->lock);
    free(c);
}

const char *sl_k8s_client_namespace(const struct sl_k8s_client *c)
{
    return c->cfg.namespace;
}

const char *sl_k8s_client_server(const struct sl_k8s_client *c)
{
    return c->cfg.server;
}

/* ---- paths ---------------------------------------------------------------------------------- */

char *sl_k8s_path(const char *api_version, const char *ns, const char *resource, const char *name,
                  const char *sub)
{
    struct sl_buf b;
    sl_buf_init(&b, 64 * 1024);
    if (strchr(api_version, '/'))
        sl_buf_printf(&b, "/apis/%s", api_version);
    else
        sl_buf_printf(&b, "/api/%s", api_version);
    if (ns && ns[0]) {
        _cleanup_free_ char *e = sl_http_escape(ns);
        sl_buf_printf(&b, "/namespaces/%s", e);
    }
    sl_buf_printf(&b, "/%s", resource);
    if (name && name[0]) {
        _cleanup_free_ char *e = sl_http_escape(name);
        sl_buf_printf(&b, "/%s", e);
        if (sub && sub[0])
            sl_buf_printf(&b, "/%s", sub);
    }
    return sl_buf_steal(&b, NULL);
}

char *sl_k8s_query(const char *const *kv)
{
    struct sl_buf b;
    sl_buf_init(&b, 64 * 1024);
    sl_buf_puts(&b, "");
    for (size_t i = 0; kv && kv[i]; i += 2) {
        if (!kv[i + 1] || !kv[i + 1][0])
            continue;
        _cleanup_free_ char *k = sl_http_escape(kv[i]), *v = sl_http_escape(kv[i + 1]);
        sl_buf_printf(&b, "%s%s=%s", b.len ? "&" : "", k, v);
    }
    char *s = sl_buf_steal(&b, NULL);
    return s ? s : sl_xstrdup("");
}

/* ---- status → error ---------------------------------------------------------------------- */

int sl_k8s_status_error(long status, const char *method, const char *path, const char *body,
                        size_t len, sl_error_t *err)
{
    json_t *j = NULL;
    const char *reason = NULL, *message = NULL;
    if (body && len && sl_json_parse(body, len, SL_HTTP_ERROR_BODY_MAX, "Status", &j, NULL) == 0 &&
        json_is_object(j)) {
        const json_t *r = json_object_get(j, "reason"), *m = json_object_get(j, "message");
        reason = json_is_string(r) ? json_string_value(r) : NULL;
        message = json_is_string(m) ? json_string_value(m) : NULL;
    }
    int code;
    switch (status) {
    case 400:
    case 422:
        code = EINVAL;
        break;
    case 401:
        code = EACCES;
        break;
    case 403:
        code = EPERM;
        break;
    case 404:
        code = ENOENT;
        break;
    case 409:
        code = reason && strcmp(reason, "AlreadyExists") == 0 ? EEXIST : ESTALE;
        break;
    case 410:
        code = ETIME;
        break;
    case 415:
        code = EPROTONOSUPPORT;
        break;
    case 429:
        code = EAGAIN;
        break;
    default:
        code = EIO;
    }
    char snippet[201] = "";
    if (!message && body && len) {
        size_t n = SL_MIN(len, sizeof(snippet) - 1);
        for (size_t i = 0; i < n; i++)
            snippet[i] = (body[i] >= 0x20 && body[i] < 0x7f) ? body[i] : '.';
        snippet[n] = 0;
        message = snippet;
    }
    int r =
        sl_error_make(err, code, "%s %s: HTTP %ld%s%s%s%s", method, path, status, reason ? " " : "",
                      reason ? reason : "", message ? ": " : "", message ? message : "");
    json_decref(j);
    return r;
}

/* ---- requests ------------------------------------------------------------------------------ */

struct call {
    const char *method, *path, *query, *content_type;
    const char *body;
    size_t body_len;
    bool watch;
    unsigned idle_timeout_s;
    sl_http_sink_fn sink;
    void *ud;
    const volatile int *cancel;
    struct sl_buf *out;
};

static int do_call(struct sl_k8s_client *c, const struct call *k, long *ret_status, sl_error_t *err)
{
    _cleanup_free_ char *url = NULL;
    if (k->query && k->query[0])
        url = sl_xasprintf("%s%s?%s", c->cfg.server, k->path, k->query);
    else
        url = sl_xasprintf("%s%s", c->cfg.server, k->path);
    _cleanup_free_ char *ct = NULL;
    const char *headers[4] = {"Accept: application/json", NULL, NULL, NULL};
    if (k->body) {
        ct = sl_xasprintf("Content-Type: %s",
                          k->content_type ? k->content_type : "application/json");
        headers[1] = ct;
    }
    struct sl_http_options o = c->http;
    if (k->watch) {
        o.timeout_s = 0;
        o.low_speed_time_s = k->idle_timeout_s;
    }
    token_refresh(c, false);
    for (int attempt = 0;; attempt++) {
        _cleanup_free_ char *auth = auth_value(c);
        struct sl_http_request req;
        sl_http_request_init(&req);
        req.method = k->method;
        req.url = url;
        req.headers = headers;
        req.authorization = auth;
        if (k->body) {
            req.body = k->body;
            req.body_len = (int64_t)k->body_len;
            req.has_body = true;
        }
        /* writes are retried by the server-side semantics we rely on (409/Conflict), not by
         * transport replays that could duplicate a POST */
        if (strcmp(k->method, "POST") == 0)
            req.retries = 0;
        if (k->watch)
            req.retries = 0;
        req.sink = k->sink;
        req.sink_userdata = k->ud;
        req.body_buf = k->sink ? NULL : k->out;
        req.cancel = k->cancel;
        req.no_redirect = true;
        struct sl_http_response resp = {0};
        int r = sl_http_perform(&o, &req, &resp, err);
        if (ret_status)
            *ret_status = resp.status;
        if (r < 0) {
            sl_http_response_free(&resp);
            return r;
        }
        if (resp.status == 401 && attempt == 0 && c->cfg.token_file) {
            /* a bound token expired: read the file again and retry once */
            sl_http_response_free(&resp);
            token_refresh(c, true);
            if (k->out)
                sl_buf_reset(k->out);
            continue;
        }
        if (resp.status < 200 || resp.status >= 300) {
            r = sl_k8s_status_error(resp.status, k->method, k->path, resp.error_body.data,
                                    resp.error_body.len, err);
            sl_http_response_free(&resp);
            return r;
        }
        sl_http_response_free(&resp);
        return 0;
    }
}

int sl_k8s_request(struct sl_k8s_client *c, const char *method, const char *path, const char *query,
                   const char *content_type, const char *body, size_t body_len, json_t **ret,
                   sl_error_t *err)
{
    struct sl_buf out;
    sl_buf_init(&out, SL_K8S_BODY_MAX);
    struct call k = {.method = method,
                     .path = path,
                     .query = query,
                     .content_type = content_type,
                     .body = body,
                     .body_len = body_len,
                     .out = &out};
    int r = do_call(c, &k, NULL, err);
    if (r >= 0 && ret) {
        *ret = NULL;
        if (out.len > 0)
            r = sl_json_parse(out.data, out.len, SL_K8S_BODY_MAX, path, ret, err);
    }
    sl_buf_free(&out);
    return r;
}

int sl_k8s_stream(struct sl_k8s_client *c, const char *path, const char *query,
                  unsigned idle_timeout_s, sl_http_sink_fn sink, void *ud,
                  const volatile int *cancel, long *ret_status, sl_error_t *err)
{
    struct call k = {.method = "GET",
                     .path = path,
                     .query = query,
                     .watch = true,
                     .idle_timeout_s = idle_timeout_s,
                     .sink = sink,
                     .ud = ud,
                     .cancel = cancel};
    return do_call(c, &k, ret_status, err);
}

int sl_k8s_get(struct sl_k8s_client *c, const char *path, json_t **ret, sl_error_t *err)
{
    return sl_k8s_request(c, "GET", path, NULL, NULL, NULL, 0, ret, err);
}

static char *with_field_manager(struct sl_k8s_client *c)
{
    const char *kv[] = {"fieldManager", c->field_manager, NULL};
    return sl_k8s_query(kv);
}

static const char *list_kind(const json_t *list)
{
    const char *k = json_string_value(json_object_get(list, "kind"));
    static __thread char buf[128];
    if (!k)
        return NULL;
    size_t n = strlen(k);
    if (n > 4 && n < sizeof(buf) && strcmp(k + n - 4, "List") == 0) {
        memcpy(buf, k, n - 4);
        buf[n - 4] = 0;
        return buf;
    }
    return NULL;
}

int sl_k8s_list(struct sl_k8s_client *c, const char *path, const char *query, json_t **ret_items,
                char **ret_rv, sl_error_t *err)
{
    json_t *items = json_array();
    _cleanup_free_ char *cont = NULL, *rv = NULL;
    bool restarted = false;
    for (int pages = 0;; pages++) {
        if (pages > 100000) {
            json_decref(items);
            return sl_error_make(err, ELOOP, "LIST %s: too many pages", path);
        }
        struct sl_buf q;
        sl_buf_init(&q, 1024 * 1024);
        if (query && query[0])
            sl_buf_printf(&q, "%s&", query);
        sl_buf_puts(&q, "limit=500");
        if (cont) {
            _cleanup_free_ char *e = sl_http_escape(cont);
            sl_buf_printf(&q, "&continue=%s", e);
        }
        json_t *page = NULL;
        int r = sl_k8s_request(c, "GET", path, q.data, NULL, NULL, 0, &page, err);
        sl_buf_free(&q);
        if (r == -ETIME && cont && !restarted) {
            /* continue token expired: start the list over once */
            sl_error_free(err);
            json_array_clear(items);
            free(cont);
            cont = NULL;
            restarted = true;
            continue;
        }
        if (r < 0) {
            json_decref(items);
            return r;
        }
        json_t *arr = json_object_get(page, "items"), *md = json_object_get(page, "metadata");
        if (!json_is_object(page) || !(json_is_array(arr) || json_is_null(arr) || !arr)) {
            json_decref(page);
            json_decref(items);
            return sl_error_make(err, EINVAL, "LIST %s: answer is not a list", path);
        }
        const char *kind = list_kind(page);
        const char *apiv = json_string_value(json_object_get(page, "apiVersion"));
        size_t i;
        json_t *it;
        json_array_foreach(arr, i, it)
        {
            if (!json_is_object(it))
                continue;
            if (kind && !json_object_get(it, "kind"))
                json_object_set_new(it, "kind", json_string(kind));
            if (apiv && !json_object_get(it, "apiVersion"))
                json_object_set_new(it, "apiVersion", json_string(apiv));
            json_array_append(items, it);
        }
        free(rv);
        rv = dupn(json_string_value(json_object_get(md, "resourceVersion")));
        free(cont);
        cont = NULL;
        const char *cn = json_string_value(json_object_get(md, "continue"));
        if (cn && cn[0])
            cont = sl_xstrdup(cn);
        json_decref(page);
        if (!cont)
            break;
    }
    *ret_items = items;
    if (ret_rv)
        *ret_rv = TAKE_PTR(rv);
    return 0;
}

static int send_obj(struct sl_k8s_client *c, const char *method, const char *path,
                    const char *content_type, const char *body, json_t **ret, sl_error_t *err)
{
    _cleanup_free_ char *q = with_field_manager(c);
    return sl_k8s_request(c, method, path, q, content_type, body, strlen(body), ret, err);
}

int sl_k8s_create(struct sl_k8s_client *c, const char *path, const json_t *obj, json_t **ret,
                  sl_error_t *err)
{
    _cleanup_free_ char *body = sl_json_dump(obj, NULL);
    return send_obj(c, "POST", path, NULL, body, ret, err);
}

int sl_k8s_update(struct sl_k8s_client *c, const char *path, const json_t *obj, json_t **ret,
                  sl_error_t *err)
{
    _cleanup_free_ char *body = sl_json_dump(obj, NULL);
    return send_obj(c, "PUT", path, NULL, body, ret, err);
}

int sl_k8s_patch(struct sl_k8s_client *c, const char *path, enum sl_k8s_patch_type type,
                 const char *patch, json_t **ret, sl_error_t *err)
{
    static const char *const ct[] = {
        [SL_K8S_PATCH_MERGE] = "application/merge-patch+json",
        [SL_K8S_PATCH_JSON] = "application/json-patch+json",
        [SL_K8S_PATCH_STRATEGIC] = "application/strategic-merge-patch+json",
    };
    if ((unsigned)type >= SL_ELEMENTSOF(ct))
        return sl_error_make(err, EINVAL, "PATCH %s: unknown patch type", path);
    return send_obj(c, "PATCH", path, ct[type], patch, ret, err);
}

int sl_k8s_delete(struct sl_k8s_client *c, const char *path, sl_error_t *err)
{
    static const char body[] = "{\"kind\":\"DeleteOptions\",\"apiVersion\":\"v1\","
                               "\"propagationPolicy\":\"Background\"}";
    return sl_k8s_request(c, "DELETE", path, NULL, NULL, body, sizeof(body) - 1, NULL, err);
}

/* ---- object helpers ------------------------------------------------------------------------ */

const char *sl_k8s_meta_str(const json_t *obj, const char *key)
{
    const json_t *md = json_object_get(obj, "metadata");
    return json_string_value(json_object_get(md, key));
}

static const char *meta_map(const json_t *obj, const char *map, const char *key)
{
    const json_t *md = json_object_get(obj, "metadata");
    return json_string_value(json_object_get(json_object_get(md, map), key));
}

const char *sl_k8s_label(const json_t *obj, const char *key)
{
    return meta_map(obj, "labels", key);
}

const char *sl_k8s_annotation(const json_t *obj, const char *key)
{
    return meta_map(obj, "annotations", key);
}

size_t sl_k8s_utf8_cut(const char *s, size_t n)
{
    size_t j = n;
    while (j > 0 && n - j < 3 && ((unsigned char)s[j - 1] & 0xC0) == 0x80)
        j--; /* back over continuation bytes to the lead byte */
    if (j == 0)
        return n;
    unsigned char lead = (unsigned char)s[j - 1];
    size_t need = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return n - (j - 1) < need ? j - 1 : n;
}

void sl_k8s_time(long long t_us, bool micro, char *buf, size_t len)
{
    if (t_us == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        t_us = (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
    }
    time_t s = (time_t)(t_us / 1000000);
    struct tm tm;
    gmtime_r(&s, &tm);
    char base[32];
    strftime(base, sizeof(base), "%Y-%m-%dT%H:%M:%S", &tm);
    if (micro)
        snprintf(buf, len, "%s.%06lldZ", base, t_us % 1000000);
    else
        snprintf(buf, len, "%sZ", base);
}

int sl_k8s_time_parse(const char *s, long long *ret_us)
{
    struct tm tm = {0};
    const char *p = s ? strptime(s, "%Y-%m-%dT%H:%M:%S", &tm) : NULL;
    if (!p)
        return -EINVAL;
    long long us = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        while (*p >= '0' && *p <= '9') {
            if (digits < 6) {
                us = us * 10 + (*p - '0');
                digits++;
            }
            p++;
        }
        if (digits == 0)
            return -EINVAL;
        while (digits++ < 6)
            us *= 10;
    }
    long long off = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        int hh, mm;
        if (sscanf(p + 1, "%2d:%2d", &hh, &mm) != 2)
            return -EINVAL;
        off = (hh * 3600LL + mm * 60LL) * (*p == '+' ? 1 : -1);
        p += 6;
    } else {
        return -EINVAL;
    }
    if (*p)
        return -EINVAL;
    time_t t = timegm(&tm);
    *ret_us = ((long long)t - off) * 1000000 + us;
    return 0;
}

/* ---- Events ------------------------------------------------------------------------------ */

int sl_k8s_event_record(struct sl_k8s_client *c, const struct sl_k8s_event *ev, sl_error_t *err)
{
    if (!ev->ns || !ev->name || !ev->reason || !ev->kind)
        return sl_error_make(err, EINVAL, "event: namespace, name, kind and reason are required");
    char now[40];
    sl_k8s_time(0, false, now, sizeof(now));
    char msg[1025]; /* at most 1024 bytes, cut at a UTF-8 character boundary */
    const char *text = ev->message ? ev->message : "";
    size_t mlen = sl_k8s_utf8_cut(text, strnlen(text, sizeof(msg) - 1));
    snprintf(msg, sizeof(msg), "%.*s", (int)mlen, text);
    _cleanup_free_ char *key = sl_xasprintf("%s/%s|%s|%s|%s", ev->ns, ev->uid ? ev->uid : ev->name,
                                            ev->reason, ev->type ? ev->type : "Normal", msg);
    /* a repeat: bump the count of the Event we made */
    pthread_mutex_lock(&c->lock);
    struct event_mem *m = NULL;
    for (size_t i = 0; i < EVENT_MEMORY; i++)
        if (c->events[i].key && strcmp(c->events[i].key, key) == 0)
            m = &c->events[i];
    _cleanup_free_ char *m_ns = m ? sl_xstrdup(m->ns) : NULL,
                        *m_name = m ? sl_xstrdup(m->name) : NULL;
    int count = m ? ++m->count : 1;
    pthread_mutex_unlock(&c->lock);
    if (m_name) {
        _cleanup_free_ char *path = sl_k8s_path("v1", m_ns, "events", m_name, NULL);
        _cleanup_free_ char *patch =
            sl_xasprintf("{\"count\":%d,\"lastTimestamp\":\"%s\"}", count, now);
        sl_error_t e = NULL;
        int r = sl_k8s_patch(c, path, SL_K8S_PATCH_MERGE, patch, NULL, &e);
        if (r != -ENOENT) {
            if (r < 0 && err)
                *err = e;
            else
                sl_error_free(&e);
            return r;
        }
        sl_error_free(&e); /* garbage-collected meanwhile: create a new one */
        count = 1;
    }
    json_t *o = json_object();
    json_t *md = json_object();
    char *name = sl_xasprintf("%s.%016" PRIx64, ev->name, sl_k8s_rand());
    json_object_set_new(md, "name", json_string(name));
    json_object_set_new(md, "namespace", json_string(ev->ns));
    if (ev->annotation_key && ev->annotation_value)
        json_object_set_new(md, "annotations",
                            json_pack("{s:s}", ev->annotation_key, ev->annotation_value));
    json_object_set_new(o, "apiVersion", json_string("v1"));
    json_object_set_new(o, "kind", json_string("Event"));
    json_object_set_new(o, "metadata", md);
    json_t *io = json_object();
    json_object_set_new(io, "apiVersion", json_string(ev->api_version ? ev->api_version : "v1"));
    json_object_set_new(io, "kind", json_string(ev->kind));
    json_object_set_new(io, "namespace", json_string(ev->ns));
    json_object_set_new(io, "name", json_string(ev->name));
    if (ev->uid)
        json_object_set_new(io, "uid", json_string(ev->uid));
    json_object_set_new(o, "involvedObject", io);
    json_object_set_new(o, "reason", json_string(ev->reason));
    json_object_set_new(o, "message", json_string(msg));
    json_object_set_new(o, "type", json_string(ev->type ? ev->type : "Normal"));
    json_t *src = json_object();
    json_object_set_new(src, "component", json_string(ev->component ? ev->component : "starlight"));
    if (ev->host)
        json_object_set_new(src, "host", json_string(ev->host));
    json_object_set_new(o, "source", src);
    json_object_set_new(o, "firstTimestamp", json_string(now));
    json_object_set_new(o, "lastTimestamp", json_string(now));
    json_object_set_new(o, "count", json_integer(count));
    _cleanup_free_ char *path = sl_k8s_path("v1", ev->ns, "events", NULL, NULL);
    int r = sl_k8s_create(c, path, o, NULL, err);
    json_decref(o);
    if (r < 0) {
        free(name);
        return sl_error_wrap(err, r, "record event %s on %s/%s", ev->reason, ev->ns, ev->name);
    }
    pthread_mutex_lock(&c->lock);
    struct event_mem *slot = NULL;
    for (size_t i = 0; i < EVENT_MEMORY; i++)
        if (c->events[i].key && strcmp(c->events[i].key, key) == 0)
            slot = &c->events[i];
    if (!slot) {
        slot = &c->events[c->events_next];
        c->events_next = (c->events_next + 1) % EVENT_MEMORY;
        free(slot->key);
        slot->key = TAKE_PTR(key);
    }
    free(slot->ns);
    free(slot->name);
    slot->ns = sl_xstrdup(ev->ns);
    slot->name = name;
    slot->count = 1;
    pthread_mutex_unlock(&c->lock);
    return 0;
}
