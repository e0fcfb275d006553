#include "registry.h"
#include "auth.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"
#include "reference.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <time.h>

struct sl_registry {
    char *host;     /* as in references */
    char *base_url; /* scheme://api-host */
    char *user_agent;
    struct sl_http_options hopts;
    struct sl_auth_creds creds;
    bool have_creds;
    int64_t chunk_size, monolithic_max;
    struct sl_token_cache *tokens;

    pthread_mutex_t lock;       /* guards the fields below */
    enum sl_auth_scheme scheme; /* learnt from the first 401; SL_AUTH_OTHER = none yet */
    char *realm, *service;      /* Bearer challenge parameters */
};

int sl_registry_new(const char *host, const struct sl_registry_options *opts,
                    struct sl_registry **ret, sl_error_t *err)
{
    static const struct sl_registry_options defaults = {0};
    const struct sl_registry_options *o = opts ? opts : &defaults;
    if (!sl_ref_valid_domain(host))
        return sl_error_make(err, EINVAL, "registry host `%s`: invalid", host ? host : "");
    _cleanup_registry_ struct sl_registry *reg = sl_xcalloc(1, sizeof(*reg));
    pthread_mutex_init(&reg->lock, NULL);
    reg->tokens = sl_token_cache_new();
    reg->host = sl_xstrdup(host);
    reg->base_url =
        sl_xasprintf("%s://%s", o->insecure ? "http" : "https", sl_registry_api_host(host));
    reg->user_agent = o->user_agent ? sl_xstrdup(o->user_agent) : NULL;
    reg->hopts = (struct sl_http_options){
        .user_agent = reg->user_agent,
        .retries = o->retries,
        .backoff_ms = o->backoff_ms,
        .retry_after_max_ms = o->retry_after_max_ms,
        .tls_no_verify = o->tls_no_verify,
    };
    reg->chunk_size = o->chunk_size > 0 ? o->chunk_size : SL_REGISTRY_CHUNK_DEFAULT;
    reg->monolithic_max =
        o->monolithic_max > 0 ? o->monolithic_max : SL_REGISTRY_MONOLITHIC_DEFAULT;
    if (o->username) {
        reg->creds.username = sl_xstrdup(o->username);
        reg->creds.password = sl_xstrdup(o->password ? o->password : "");
        reg->have_creds = true;
    } else {
        int r = sl_auth_load_docker_config(o->docker_config, host, &reg->creds, err);
        if (r < 0)
            return sl_error_wrap(err, r, "registry `%s`", host);
        reg->have_creds = r > 0 && reg->creds.username && reg->creds.password;
    }
    *ret = TAKE_PTR(reg);
    return 0;
}

void sl_registry_free(struct sl_registry *reg)
{
    if (!reg)
        return;
    free(reg->host);
    free(reg->base_url);
    free(reg->user_agent);
    sl_auth_creds_free(&reg->creds);
    sl_token_cache_free(reg->tokens);
    free(reg->realm);
    free(reg->service);
    pthread_mutex_destroy(&reg->lock);
    free(reg);
}

const char *sl_registry_host(const struct sl_registry *reg)
{
    return reg->host;
}

/* ---- errors ---- */

static int status_class(long s)
{
    switch (s) {
    case 400:
        return EINVAL;
    case 401:
    case 403:
        return EACCES;
    case 404:
        return ENOENT;
    case 416:
        return ERANGE;
    case 429:
        return EAGAIN;
    default:
        return s >= 500 ? EIO : EPROTO;
    }
}

int sl_registry_http_error(const struct sl_http_response *resp, const char *what, sl_error_t *err)
{
    _cleanup_buf_ struct sl_buf m;
    sl_buf_init(&m, 4096);
    (void)sl_buf_printf(&m, "HTTP %ld", resp->status);
    const struct sl_buf *b = &resp->error_body;
    json_auto_t *j = NULL;
    json_t *errs = NULL;
    bool described = false;
    if (b->len && sl_json_parse(b->data, b->len, SL_HTTP_ERROR_BODY_MAX, "errors", &j, NULL) == 0 &&
        json_is_object(j) && (errs = json_object_get(j, "errors")) && json_is_array(errs)) {
        size_t i;
        json_t *e;
        json_array_foreach(errs, i, e)
        {
            if (i >= 4)
                break;
            const char *code = json_string_value(json_object_get(e, "code"));
            const char *msg = json_string_value(json_object_get(e, "message"));
            json_t *detail = json_object_get(e, "detail");
            (void)sl_buf_printf(&m, "%s %s%s%.200s", i ? ";" : "", code ? code : "?",
                                msg ? ": " : "", msg ? msg : "");
            if (detail && !json_is_null(detail)) {
                _cleanup_free_ char *d = json_is_string(detail)
                                             ? sl_xstrdup(json_string_value(detail))
                                             : sl_json_dump(detail, NULL);
                (void)sl_buf_printf(&m, " (%.200s)", d);
            }
            described = true;
        }
    }
    if (!described && b->len) {
        size_t n = SL_MIN(b->len, 200);
        (void)sl_buf_puts(&m, ": ");
        for (size_t i = 0; i < n; i++) {
            char c = b->data[i];
            (void)sl_buf_append(&m, (c >= ' ' && c < 0x7f) ? &c : " ", 1);
        }
    }
    if (resp->status == 401) {
        const char *wa = sl_http_headers_get(&resp->headers, "WWW-Authenticate");
        if (wa)
            (void)sl_buf_printf(&m, " (%.300s)", wa);
    }
    if (resp->attempts > 1)
        (void)sl_buf_printf(&m, " (after %d attempts)", resp->attempts);
    /* The registry's strings end up in logs and terminals: no control bytes (newlines, ANSI
     * escapes) from it, C0 and DEL, nor C1 (U+0080-U+009F, UTF-8 C2 80-C2 9F: U+009B is a CSI
     * for some terminals). */
    for (size_t i = 0; i < m.len; i++) {
        unsigned char c = (unsigned char)m.data[i];
        if (c < 0x20 || c == 0x7f)
            m.data[i] = ' ';
        else if (c == 0xc2 && i + 1 < m.len && (unsigned char)m.data[i + 1] >= 0x80 &&
                 (unsigned char)m.data[i + 1] <= 0x9f)
            m.data[i] = m.data[i + 1] = ' ';
    }
    return sl_error_make(err, status_class(resp->status), "%s: %s", what, m.data);
}

static char *what_str(const struct sl_registry *reg, const char *op, const char *repo,
                      const char *reference)
{
    if (!reference)
        return sl_xasprintf("%s `%s/%s`", op, reg->host, repo);
    bool dig = strncmp(reference, "sha256:", 7) == 0;
    return sl_xasprintf("%s `%s/%s%s%s`", op, reg->host, repo, dig ? "@" : ":", reference);
}

/* ---- authenticated requests ---- */

static char *scopes_key(const char *realm, const char *service, const char *const *scopes, size_t n)
{
    _cleanup_buf_ struct sl_buf b;
    sl_buf_init(&b, 64 * 1024);
    (void)sl_buf_printf(&b, "%s|%s", realm, service ? service : "");
    for (size_t i = 0; i < n; i++)
        (void)sl_buf_printf(&b, "|%s", scopes[i]);
    return sl_buf_steal(&b, NULL);
}

/* Authorization value for the scopes, from what we know of the registry; NULL = none.
 * `refresh` skips the cache (the cached token was just rejected). */
static int auth_value(struct sl_registry *reg, const char *const *scopes, size_t n, bool refresh,
                      char **ret, sl_error_t *err)
{
    *ret = NULL;
    pthread_mutex_lock(&reg->lock);
    enum sl_auth_scheme scheme = reg->scheme;
    _cleanup_free_ char *realm = reg->realm ? sl_xstrdup(reg->realm) : NULL;
    _cleanup_free_ char *service = reg->service ? sl_xstrdup(reg->service) : NULL;
    pthread_mutex_unlock(&reg->lock);

    if (scheme == SL_AUTH_BASIC) {
        if (reg->have_creds)
            *ret = sl_auth_basic_header(&reg->creds);
        return 0;
    }
    if (scheme != SL_AUTH_BEARER || !realm)
        return 0;
    _cleanup_free_ char *key = scopes_key(realm, service, scopes, n);
    _cleanup_free_ char *tok = refresh ? NULL : sl_token_cache_get(reg->tokens, key);
    if (!tok) {
        struct sl_auth_param params[2] = {{(char *)"realm", realm}, {(char *)"service", service}};
        struct sl_auth_challenge ch = {
            .scheme = SL_AUTH_BEARER, .params = params, .n_params = service ? 2 : 1};
        int64_t expires = 0;
        int r = sl_auth_fetch_token(&reg->hopts, &ch, scopes, n,
                                    reg->have_creds ? &reg->creds : NULL, &tok, &expires, err);
        if (r < 0)
            return r;
        log_debug("registry %s: new token for %s (expires in %" PRId64 " s)", reg->host, key,
                  expires);
        sl_token_cache_put(reg->tokens, key, tok, expires);
    }
    *ret = sl_xasprintf("Bearer %s", tok);
    return 0;
}

/* Records the scheme the registry asked for. Returns true when a retry can succeed. */
static bool learn_challenge(struct sl_registry *reg, const struct sl_http_response *resp)
{
    _cleanup_free_ char *wa = sl_http_headers_join(&resp->headers, "WWW-Authenticate");
    struct sl_auth_challenges cs = {0};
    if (!wa || sl_auth_parse_challenges(wa, &cs, NULL) < 0)
        return false;
    bool ok = false;
    const struct sl_auth_challenge *c = sl_auth_find(&cs, SL_AUTH_BEARER);
    pthread_mutex_lock(&reg->lock);
    if (c && sl_auth_challenge_param(c, "realm")) {
        free(reg->realm);
        free(reg->service);
        reg->realm = sl_xstrdup(sl_auth_challenge_param(c, "realm"));
        const char *svc = sl_auth_challenge_param(c, "service");
        reg->service = svc ? sl_xstrdup(svc) : NULL;
        reg->scheme = SL_AUTH_BEARER;
        ok = true;
    } else if (sl_auth_find(&cs, SL_AUTH_BASIC)) {
        reg->scheme = SL_AUTH_BASIC;
        ok = reg->have_creds;
    }
    pthread_mutex_unlock(&reg->lock);
    sl_auth_challenges_free(&cs);
    return ok;
}

/* Performs req against the registry with authentication: known credentials are sent up
 * front; a 401 teaches the scheme (or refreshes a rejected token) and the request is sent
 * once more. `resp` is freed and refilled for the retry. */
static int reg_perform(struct sl_registry *reg, const char *const *scopes, size_t n_scopes,
                       struct sl_http_request *req, struct sl_http_response *resp, const char *what,
                       sl_error_t *err)
{
    _cleanup_free_ char *auth = NULL;
    int r = auth_value(reg, scopes, n_scopes, false, &auth, err);
    if (r < 0)
        return sl_error_wrap(err, r, "%s", what);
    for (int round = 0;; round++) {
        req->authorization = auth;
        r = sl_http_perform(&reg->hopts, req, resp, err);
        if (r < 0)
            return sl_error_wrap(err, r, "%s", what);
        if (resp->status != 401 || round > 0)
            return 0;
        bool had_auth = auth != NULL;
        if (!learn_challenge(reg, resp))
            return 0;
        free(auth);
        auth = NULL;
        r = auth_value(reg, scopes, n_scopes, had_auth, &auth, err);
        if (r < 0)
            return sl_error_wrap(err, r, "%s", what);
        if (!auth)
            return 0;
        sl_http_response_free(resp);
        *resp = (struct sl_http_response){0};
    }
}

static char *pull_scope(const char *repo)
{
    return sl_xasprintf("repository:%s:pull", repo);
}

static int check_repo(const char *repo, const char *what, sl_error_t *err)
{
    if (!sl_ref_valid_path(repo) || strlen(repo) > SL_REF_NAME_MAX)
        return sl_error_make(err, EINVAL, "%s: invalid repository name", what);
    return 0;
}

static int check_digest(const char *digest, const char *what, sl_error_t *err)
{
    if (!sl_digest_valid(digest))
        return sl_error_make(err, EINVAL, "%s: invalid digest `%.80s`", what, digest ? digest : "");
    return 0;
}

/* ---- ping ---- */

int sl_registry_ping(struct sl_registry *reg, sl_error_t *err)
{
    _cleanup_free_ char *url = sl_xasprintf("%s/v2/", reg->base_url);
    _cleanup_free_ char *what = sl_xasprintf("GET %s", url);
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.url = url;
    struct sl_http_response resp = {0};
    int r = reg_perform(reg, NULL, 0, &req, &resp, what, err);
    if (r >= 0 && resp.status != 200)
        r = sl_registry_http_error(&resp, what, err);
    sl_http_response_free(&resp);
    return r < 0 ? r : 0;
}

/* ---- manifests ---- */

void sl_registry_manifest_free(struct sl_registry_manifest *m)
{
    if (!m)
        return;
    free(m->data);
    free(m->content_type);
    sl_manifest_free(m->manifest);
    *m = (struct sl_registry_manifest){0};
}

static int check_reference(const char *reference, const char *what, sl_error_t *err)
{
    if (!reference || (!sl_ref_valid_tag(reference) && !sl_digest_valid(reference)))
        return sl_error_make(err, EINVAL, "%s: invalid tag or digest", what);
    return 0;
}

/* Checks REPO and REFERENCE, then performs REQ (method and body set by the caller) on the
 * manifest URL with the manifest Accept header and a pull scope. */
static int manifest_perform(struct sl_registry *reg, const char *repo, const char *reference,
                            const char *what, struct sl_http_request *req,
                            struct sl_http_response *resp, sl_error_t *err)
{
    int r;
    if ((r = check_repo(repo, what, err)) < 0 || (r = check_reference(reference, what, err)) < 0)
        return r;
    _cleanup_free_ char *url =
        sl_xasprintf("%s/v2/%s/manifests/%s", reg->base_url, repo, reference);
    _cleanup_free_ char *scope = pull_scope(repo);
    const char *scopes[] = {scope};
    static const char *const headers[] = {"Accept: " SL_MANIFEST_ACCEPT, NULL};
    req->url = url;
    req->headers = headers;
    r = reg_perform(reg, scopes, 1, req, resp, what, err);
    req->url = NULL;
    return r;
}

int sl_registry_get_manifest(struct sl_registry *reg, const char *repo, const char *reference,
                             struct sl_registry_manifest *ret, sl_error_t *err)
{
    *ret = (struct sl_registry_manifest){0};
    _cleanup_free_ char *what = what_str(reg, "GET manifest", repo, reference);
    _cleanup_buf_ struct sl_buf body;
    sl_buf_init(&body, SL_MANIFEST_MAX_BYTES);
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.body_buf = &body;
    struct sl_http_response resp = {0};
    int r = manifest_perform(reg, repo, reference, what, &req, &resp, err);
    if (r == -EFBIG)
        r = sl_error_make(err, EFBIG, "%s: manifest larger than %d bytes", what,
                          SL_MANIFEST_MAX_BYTES);
    if (r >= 0 && resp.status != 200)
        r = sl_registry_http_error(&resp, what, err);
    if (r < 0) {
        sl_http_response_free(&resp);
        return r;
    }
    char dig[SL_DIGEST_STR_LEN];
    sl_sha256_str(body.data ? body.data : "", body.len, dig);
    const char *dcd = sl_http_headers_get(&resp.headers, "Docker-Content-Digest");
    const char *ct = sl_http_headers_get(&resp.headers, "Content-Type");
    if (sl_digest_valid(reference) && strcmp(reference, dig) != 0)
        r = sl_error_make(err, EBADMSG, "%s: served bytes have digest %s", what, dig);
    else if (dcd && sl_digest_valid(dcd) && strcmp(dcd, dig) != 0)
        r = sl_error_make(err, EBADMSG, "%s: Docker-Content-Digest %s but the bytes hash to %s",
                          what, dcd, dig);
    if (r >= 0) {
        ret->content_type = ct ? sl_xstrdup(ct) : NULL;
        r = sl_manifest_parse(body.data ? body.data : "", body.len, ct, &ret->manifest, err);
        if (r < 0)
            r = sl_error_wrap(err, r, "%s", what);
    }
    sl_http_response_free(&resp);
    if (r < 0) {
        sl_registry_manifest_free(ret);
        return r;
    }
    ret->media_type = ret->manifest->media_type;
    memcpy(ret->digest, dig, SL_DIGEST_STR_LEN);
    ret->data = sl_buf_steal(&body, &ret->len);
    if (!ret->data)
        ret->data = sl_xstrdup("");
    return 0;
}

int sl_registry_put_manifest(struct sl_registry *reg, const char *repo, const char *reference,
                             const void *data, size_t len, const char *media_type,
                             char ret_digest[SL_DIGEST_STR_LEN], sl_error_t *err)
{
    _cleanup_free_ char *what = what_str(reg, "PUT manifest", repo, reference);
    int r;
    if ((r = check_repo(repo, what, err)) < 0 || (r = check_reference(reference, what, err)) < 0)
        return r;
    if (!media_type || !*media_type || strchr(media_type, '\n') || strchr(media_type, '\r'))
        return sl_error_make(err, EINVAL, "%s: invalid media type", what);
    char dig[SL_DIGEST_STR_LEN];
    sl_sha256_str(data, len, dig);
    if (sl_digest_valid(reference) && strcmp(reference, dig) != 0)
        return sl_error_make(err, EINVAL, "%s: the manifest bytes have digest %s", what, dig);
    _cleanup_free_ char *url =
        sl_xasprintf("%s/v2/%s/manifests/%s", reg->base_url, repo, reference);
    _cleanup_free_ char *ct = sl_xasprintf("Content-Type: %s", media_type);
    _cleanup_free_ char *scope = sl_xasprintf("repository:%s:pull,push", repo);
    const char *scopes[] = {scope};
    const char *headers[] = {ct, NULL};
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.method = "PUT";
    req.url = url;
    req.headers = headers;
    req.body = data;
    req.body_len = (int64_t)len;
    req.has_body = true;
    struct sl_http_response resp = {0};
    r = reg_perform(reg, scopes, 1, &req, &resp, what, err);
    if (r >= 0 && resp.status != 201 && resp.status != 200)
        r = sl_registry_http_error(&resp, what, err);
    if (r >= 0) {
        const char *dcd = sl_http_headers_get(&resp.headers, "Docker-Content-Digest");
        if (dcd && sl_digest_valid(dcd) && strcmp(dcd, dig) != 0)
            r = sl_error_make(err, EBADMSG, "%s: registry stored digest %s, expected %s", what, dcd,
                              dig);
    }
    sl_http_response_free(&resp);
    if (r < 0)
        return r;
    if (ret_digest)
        memcpy(ret_digest, dig, SL_DIGEST_STR_LEN);
    return 0;
}

/* ---- blob reads ---- */

int sl_registry_head_manifest(struct sl_registry *reg, const char *repo, const char *reference,
                              sl_error_t *err)
{
    _cleanup_free_ char *what = what_str(reg, "HEAD manifest", repo, reference);
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.method = "HEAD";
    struct sl_http_response resp = {0};
    int r = manifest_perform(reg, repo, reference, what, &req, &resp, err);
    if (r >= 0) {
        if (resp.status == 200)
            r = 1;
        else if (resp.status == 404)
            r = 0;
        else if (resp.status == 405 || resp.status == 501)
            r = sl_error_make(err, EOPNOTSUPP, "%s: the registry refuses HEAD (HTTP %ld)", what,
                              resp.status);
        else
            r = sl_registry_http_error(&resp, what, err);
    }
    sl_http_response_free(&resp);
    return r;
}

int sl_registry_head_blob(struct sl_registry *reg, const char *repo, const char *digest,
                          int64_t *ret_size, sl_error_t *err)
{
    _cleanup_free_ char *what = what_str(reg, "HEAD blob", repo, digest);
    int r;
    if ((r = check_repo(repo, what, err)) < 0 || (r = check_digest(digest, what, err)) < 0)
        return r;
    _cleanup_free_ char *url = sl_xasprintf("%s/v2/%s/blobs/%s", reg->base_url, repo, digest);
    _cleanup_free_ char *scope = pull_scope(repo);
    const char *scopes[] = {scope};
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.method = "HEAD";
    req.url = url;
    struct sl_http_response resp = {0};
    r = reg_perform(reg, scopes, 1, &req, &resp, what, err);
    if (r >= 0) {
        if (resp.status == 200) {
            const char *cl = sl_http_headers_get(&resp.headers, "Content-Length");
            if (ret_size)
                *ret_size = cl ? strtoll(cl, NULL, 10) : -1;
            r = 1;
        } else if (resp.status == 404) {
            r = 0;
        } else {
            r = sl_registry_http_error(&resp, what, err);
        }
    }
    sl_http_response_free(&resp);
    return r;
}

/* Forwards bytes [skip, skip+remaining) of what arrives to the user's sink, hashing them. */
struct window {
    sl_http_sink_fn sink;
    void *userdata;
    struct sl_sha256 *hash; /* NULL for ranges */
    int64_t want_first;     /* absolute offset of the first wanted byte */
    int64_t next;           /* absolute offset of the next wanted byte */
    int64_t end;            /* absolute end (exclusive); -1 = open */
    int64_t pos;            /* absolute offset of the next arriving byte */
    int bad_range;          /* a 206 that does not start where asked */
};

static int window_headers(void *userdata, long status, const struct sl_http_headers *h)
{
    struct window *w = userdata;
    if (status == 206) {
        int64_t a, b, t;
        const char *cr = sl_http_headers_get(h, "Content-Range");
        if (!cr || sl_http_parse_content_range(cr, &a, &b, &t) < 0 || a > w->next) {
            w->bad_range = 1;
            return -EPROTO;
        }
        w->pos = a;
    } else {
        w->pos = 0; /* Range ignored: the whole blob comes again */
    }
    return 0;
}

static int window_sink(void *userdata, const void *data, size_t len)
{
    struct window *w = userdata;
    const char *p = data;
    int64_t n = (int64_t)len;
    if (w->pos < w->next) { /* bytes before what we still need */
        int64_t drop = SL_MIN(n, w->next - w->pos);
        p += drop;
        n -= drop;
        w->pos += drop;
    }
    if (w->end >= 0 && n > w->end - w->next)
        n = w->end - w->next;
    if (n > 0) {
        if (w->hash)
            sl_sha256_update(w->hash, p, (size_t)n);
        int r = w->sink(w->userdata, p, (size_t)n);
        if (r < 0)
            return r;
        w->next += n;
        w->pos += n;
        if (r == SL_HTTP_SINK_STOP)
            return r;
    }
    if (w->end >= 0 && w->next >= w->end)
        return SL_HTTP_SINK_STOP;
    return 0;
}

/* GETs [w->next, w->end) into the window, resuming with Range after a broken connection. */
static int fetch_window(struct sl_registry *reg, const char *repo, const char *digest,
                        struct window *w, const char *what, sl_error_t *err)
{
    _cleanup_free_ char *url = sl_xasprintf("%s/v2/%s/blobs/%s", reg->base_url, repo, digest);
    _cleanup_free_ char *scope = pull_scope(repo);
    const char *scopes[] = {scope};
    int resumes = reg->hopts.retries > 0   ? reg->hopts.retries
                  : reg->hopts.retries < 0 ? 0
                                           : SL_HTTP_DEFAULT_RETRIES;
    for (int k = 0;; k++) {
        struct sl_http_request req;
        sl_http_request_init(&req);
        req.url = url;
        req.sink = window_sink;
        req.on_headers = window_headers;
        req.sink_userdata = w;
        req.recv_buffer = 256 * 1024; /* blobs are bulk: fewer, bigger sink calls */
        if (w->next > 0 || w->end >= 0) {
            req.has_range = true;
            req.range_first = w->next;
            req.range_last = w->end >= 0 ? w->end - 1 : -1;
        }
        int64_t before = w->next;
        struct sl_http_response resp = {0};
        int r = reg_perform(reg, scopes, 1, &req, &resp, what, err);
        if (r >= 0 && resp.status != 200 && resp.status != 206)
            r = sl_registry_http_error(&resp, what, err);
        sl_http_response_free(&resp);
        if (r >= 0)
            return 0;
        bool progressed = w->next > before;
        if (w->bad_range || !progressed || k >= resumes || r == -EBADMSG || r == -ENOENT ||
            r == -EACCES)
            return r;
        log_debug("%s: connection lost at byte %" PRId64 ", resuming", what, w->next);
        sl_error_free(err);
    }
}

int sl_registry_get_blob(struct sl_registry *reg, const char *repo, const char *digest,
                         sl_http_sink_fn sink, void *userdata, sl_error_t *err)
{
    _cleanup_free_ char *what = what_str(reg, "GET blob", repo, digest);
    int r;
    if ((r = check_repo(repo, what, err)) < 0 || (r = check_digest(digest, what, err)) < 0)
        return r;
    struct sl_sha256 h;
    sl_sha256_init(&h);
    struct window w = {.sink = sink, .userdata = userdata, .hash = &h, .end = -1};
    r = fetch_window(reg, repo, digest, &w, what, err);
    if (r < 0) {
        sl_sha256_done(&h);
        return r;
    }
    char got[SL_DIGEST_STR_LEN];
    sl_sha256_final(&h, got);
    if (strcmp(got, digest) != 0)
        return sl_error_make(err, EBADMSG, "%s: received %" PRId64 " bytes with digest %s", what,
                             w.next, got);
    return 0;
}

int sl_registry_get_blob_buf(struct sl_registry *reg, const char *repo, const char *digest,
                             size_t max, char **ret, size_t *ret_len, sl_error_t *err)
{
    _cleanup_buf_ struct sl_buf b;
    sl_buf_init(&b, max);
    int r = sl_registry_get_blob(reg, repo, digest, sl_http_sink_buf, &b, err);
    if (r == -EFBIG) {
        _cleanup_free_ char *what = what_str(reg, "GET blob", repo, digest);
        return sl_error_make(err, EFBIG, "%s: larger than %zu bytes", what, max);
    }
    if (r < 0)
        return r;
    *ret = sl_buf_steal(&b, ret_len);
    if (!*ret)
        *ret = sl_xstrdup("");
    return 0;
}

int sl_registry_get_blob_range(struct sl_registry *reg, const char *repo, const char *digest,
                               int64_t offset, int64_t length, sl_http_sink_fn sink, void *userdata,
                               sl_error_t *err)
{
    _cleanup_free_ char *what = what_str(reg, "GET blob", repo, digest);
    int r;
    if ((r = check_repo(repo, what, err)) < 0 || (r = check_digest(digest, what, err)) < 0)
        return r;
    if (offset < 0 || length <= 0 || offset > INT64_MAX - length)
        return sl_error_make(err, EINVAL, "%s: bad range %" PRId64 "+%" PRId64, what, offset,
                             length);
    struct window w = {.sink = sink,
                       .userdata = userdata,
                       .want_first = offset,
                       .next = offset,
                       .end = offset + length};
    r = fetch_window(reg, repo, digest, &w, what, err);
    if (r < 0) {
        if (w.bad_range)
            return sl_error_make(err, EPROTO, "%s: 206 answer does not start at byte %" PRId64,
                                 what, w.next);
        return r;
    }
    if (w.next != w.end)
        return sl_error_make(err, ERANGE,
                             "%s: range %" PRId64 "+%" PRId64 ": blob ended after %" PRId64
                             " bytes of it",
                             what, offset, length, w.next - offset);
    return 0;
}

/* ---- blob uploads ---- */

static int location_of(const struct sl_http_response *resp, const char *base, char **ret,
                       const char *what, sl_error_t *err)
{
    const char *loc = sl_http_headers_get(&resp->headers, "Location");
    if (!loc || !*loc)
        return sl_error_make(err, EPROTO, "%s: HTTP %ld without Location", what, resp->status);
    if (sl_http_url_resolve(base, loc, ret) < 0)
        return sl_error_make(err, EPROTO, "%s: bad Location `%.200s`", what, loc);
    return 0;
}

static void fill_body(struct sl_http_request *req, const struct sl_blob_source *src, int64_t off,
                      int64_t n)
{
    if (src->fd >= 0) {
        req->body_fd = src->fd;
        req->body_offset = src->offset + off;
    } else {
        req->body = (const char *)src->data + off;
    }
    req->body_len = n;
    req->has_body = true;
}

/* Where the registry says the upload stands: Range "0-N" → N+1 bytes stored. */
static int upload_status(struct sl_registry *reg, const char *const *scopes, const char *loc,
                         int64_t *ret_committed, char **ret_loc, const char *what, sl_error_t *err)
{
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.url = loc;
    struct sl_http_response resp = {0};
    int r = reg_perform(reg, scopes, 1, &req, &resp, what, err);
    if (r >= 0 && resp.status != 204)
        r = sl_registry_http_error(&resp, what, err);
    if (r >= 0) {
        const char *range = sl_http_headers_get(&resp.headers, "Range");
        int64_t a = 0, b = -1;
        if (range && sscanf(range, "%" SCNd64 "-%" SCNd64, &a, &b) == 2 && a == 0)
            *ret_committed = b + 1;
        else
            *ret_committed = 0;
        r = location_of(&resp, loc, ret_loc, what, err);
    }
    sl_http_response_free(&resp);
    return r;
}

static int upload_chunked(struct sl_registry *reg, const char *const *scopes, char **loc,
                          const struct sl_blob_source *src, const char *what, sl_error_t *err)
{
    int64_t off = 0;
    int failures = 0;
    int max_failures = reg->hopts.retries > 0   ? reg->hopts.retries
                       : reg->hopts.retries < 0 ? 0
                                                : SL_HTTP_DEFAULT_RETRIES;
    while (off < src->size) {
        int64_t n = SL_MIN(reg->chunk_size, src->size - off);
        char cr[80];
        snprintf(cr, sizeof(cr), "Content-Range: %" PRId64 "-%" PRId64, off, off + n - 1);
        const char *headers[] = {cr, "Content-Type: application/octet-stream", NULL};
        struct sl_http_request req;
        sl_http_request_init(&req);
        req.method = "PATCH";
        req.url = *loc;
        req.headers = headers;
        req.retries = 0; /* a failed PATCH may have stored part: ask, then resume */
        fill_body(&req, src, off, n);
        struct sl_http_response resp = {0};
        int r = reg_perform(reg, scopes, 1, &req, &resp, what, err);
        bool transient = r == -EIO || r == -ETIMEDOUT || r == -ECONNREFUSED ||
                         (r >= 0 && (resp.status >= 500 || resp.status == 429));
        if (r >= 0 && resp.status == 202) {
            char *next = NULL;
            r = location_of(&resp, *loc, &next, what, err);
            sl_http_response_free(&resp);
            if (r < 0)
                return r;
            free(*loc);
            *loc = next;
            off += n;
            continue;
        }
        if (!transient || failures >= max_failures) {
            if (r >= 0)
                r = sl_registry_http_error(&resp, what, err);
            sl_http_response_free(&resp);
            return r;
        }
        sl_http_response_free(&resp);
        sl_error_free(err);
        failures++;
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200000000L * failures};
        nanosleep(&ts, NULL);
        char *next = NULL;
        int64_t committed = 0;
        r = upload_status(reg, scopes, *loc, &committed, &next, what, err);
        if (r < 0)
            return r;
        free(*loc);
        *loc = next;
        if (committed > src->size)
            return sl_error_make(err, EPROTO, "%s: registry holds %" PRId64 " bytes of %" PRId64,
                                 what, committed, src->size);
        log_debug("%s: chunk failed, resuming at byte %" PRId64, what, committed);
        off = committed;
    }
    return 0;
}

int sl_registry_push_blob(struct sl_registry *reg, const char *repo, const char *digest,
                          const struct sl_blob_source *src, const char *mount_from, sl_error_t *err)
{
    _cleanup_free_ char *what = what_str(reg, "push blob", repo, digest);
    int r;
    if ((r = check_repo(repo, what, err)) < 0 || (r = check_digest(digest, what, err)) < 0)
        return r;
    if (mount_from && (r = check_repo(mount_from, what, err)) < 0)
        return r;
    if (!src || src->size < 0 || (src->fd < 0 && !src->data && src->size > 0))
        return sl_error_make(err, EINVAL, "%s: no source", what);

    int64_t have = -1;
    r = sl_registry_head_blob(reg, repo, digest, &have, err);
    if (r < 0)
        return r;
    if (r > 0)
        return SL_PUSH_EXISTS;

    _cleanup_free_ char *push_scope = sl_xasprintf("repository:%s:pull,push", repo);
    _cleanup_free_ char *from_scope = mount_from ? pull_scope(mount_from) : NULL;
    const char *scopes[] = {push_scope, from_scope};
    size_t n_scopes = mount_from ? 2 : 1;

    _cleanup_free_ char *url = sl_xasprintf("%s/v2/%s/blobs/uploads/", reg->base_url, repo);
    if (mount_from) {
        char *u1 = NULL, *u2 = NULL;
        if (sl_http_url_add_query(url, "mount", digest, &u1) < 0 ||
            sl_http_url_add_query(u1, "from", mount_from, &u2) < 0) {
            free(u1);
            return sl_error_make(err, EINVAL, "%s: cannot build mount URL", what);
        }
        free(u1);
        free(url);
        url = u2;
    }
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.method = "POST";
    req.url = url;
    req.has_body = true;
    struct sl_http_response resp = {0};
    r = reg_perform(reg, scopes, n_scopes, &req, &resp, what, err);
    if (r >= 0 && resp.status == 201 && mount_from) {
        sl_http_response_free(&resp);
        log_debug("%s: mounted from %s", what, mount_from);
        return SL_PUSH_MOUNTED;
    }
    if (r >= 0 && resp.status != 202)
        r = sl_registry_http_error(&resp, what, err);
    _cleanup_free_ char *loc = NULL;
    if (r >= 0)
        r = location_of(&resp, resp.url ? resp.url : url, &loc, what, err);
    sl_http_response_free(&resp);
    if (r < 0)
        return r;

    if (src->size > reg->monolithic_max) {
        r = upload_chunked(reg, scopes, &loc, src, what, err);
        if (r < 0)
            return r;
    }
    _cleanup_free_ char *put_url = NULL;
    if (sl_http_url_add_query(loc, "digest", digest, &put_url) < 0)
        return sl_error_make(err, EPROTO, "%s: bad upload Location `%.200s`", what, loc);
    const char *headers[] = {"Content-Type: application/octet-stream", NULL};
    sl_http_request_init(&req);
    req.method = "PUT";
    req.url = put_url;
    req.headers = headers;
    if (src->size <= reg->monolithic_max)
        fill_body(&req, src, 0, src->size);
    else
        req.has_body = true; /* empty closing PUT */
    resp = (struct sl_http_response){0};
    r = reg_perform(reg, scopes, 1, &req, &resp, what, err);
    if (r >= 0 && resp.status != 201)
        r = sl_registry_http_error(&resp, what, err);
    if (r >= 0) {
        const char *dcd = sl_http_headers_get(&resp.headers, "Docker-Content-Digest");
        if (dcd && sl_digest_valid(dcd) && strcmp(dcd, digest) != 0)
            r = sl_error_make(err, EBADMSG, "%s: registry computed digest %s", what, dcd);
    }
    sl_http_response_free(&resp);
    return r < 0 ? r : SL_PUSH_UPLOADED;
}
