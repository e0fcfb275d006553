#include "auth.h"
#include "base64.h"
#include "cleanup.h"
#include "json.h"
#include "log.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>

/* ---- WWW-Authenticate ---- */

static bool is_tchar(char c)
{
    return isalnum((unsigned char)c) || (c && strchr("!#$%&'*+-.^_`|~", c));
}

static bool is_t68char(char c)
{
    return isalnum((unsigned char)c) || (c && strchr("-._~+/", c));
}

static void skip_ws(const char **p)
{
    while (**p == ' ' || **p == '\t')
        (*p)++;
}

static size_t token_len(const char *p)
{
    size_t n = 0;
    while (is_tchar(p[n]))
        n++;
    return n;
}

void sl_auth_challenges_free(struct sl_auth_challenges *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++) {
        for (size_t k = 0; k < c->v[i].n_params; k++) {
            free(c->v[i].params[k].name);
            free(c->v[i].params[k].value);
        }
        free(c->v[i].params);
        free(c->v[i].scheme_name);
    }
    free(c->v);
    c->v = NULL;
    c->n = 0;
}

/* Quoted string at *p (which points at the opening quote) into a new string. */
static int quoted(const char **p, char **ret)
{
    const char *s = *p + 1;
    _cleanup_free_ char *out = sl_xmalloc(strlen(s) + 1);
    size_t n = 0;
    for (;;) {
        if (*s == 0)
            return -EINVAL;
        if (*s == '"')
            break;
        if (*s == '\\') {
            s++;
            if (*s == 0)
                return -EINVAL;
        }
        out[n++] = *s++;
    }
    out[n] = 0;
    *p = s + 1;
    *ret = TAKE_PTR(out);
    return 0;
}

/* True when p starts a token68 credential that runs to the end of this challenge. */
static bool token68_at(const char *p, const char **end)
{
    const char *q = p;
    while (is_t68char(*q))
        q++;
    if (q == p)
        return false;
    while (*q == '=')
        q++;
    skip_ws(&q);
    if (*q && *q != ',')
        return false;
    *end = q;
    return true;
}

/* After a comma: is the next item a parameter of the current challenge (token '=' value) or
 * a new challenge (scheme)? */
static bool param_follows(const char *p)
{
    size_t n = token_len(p);
    if (n == 0)
        return false;
    p += n;
    skip_ws(&p);
    if (*p != '=')
        return false;
    p++;
    skip_ws(&p);
    return *p == '"' || is_tchar(*p);
}

int sl_auth_parse_challenges(const char *header, struct sl_auth_challenges *ret, sl_error_t *err)
{
    struct sl_auth_challenges c = {0};
    const char *p = header;
    int r = 0;
    *ret = (struct sl_auth_challenges){0};
    if (!header)
        return sl_error_make(err, EINVAL, "WWW-Authenticate: missing");
    if (strlen(header) > SL_AUTH_HEADER_MAX)
        return sl_error_make(err, EINVAL, "WWW-Authenticate: longer than %d bytes",
                             SL_AUTH_HEADER_MAX);
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (!*p)
            break;
        size_t n = token_len(p);
        if (n == 0) {
            r = sl_error_make(err, EINVAL, "WWW-Authenticate: expected a scheme at offset %zu",
                              (size_t)(p - header));
            goto fail;
        }
        if (c.n >= SL_AUTH_MAX_CHALLENGES) {
            r = sl_error_make(err, EINVAL, "WWW-Authenticate: more than %d challenges",
                              SL_AUTH_MAX_CHALLENGES);
            goto fail;
        }
        c.v = sl_xrealloc(c.v, (c.n + 1) * sizeof(*c.v));
        struct sl_auth_challenge *ch = &c.v[c.n++];
        *ch = (struct sl_auth_challenge){0};
        ch->scheme_name = sl_xstrndup(p, n);
        if (strcasecmp(ch->scheme_name, "basic") == 0)
            ch->scheme = SL_AUTH_BASIC;
        else if (strcasecmp(ch->scheme_name, "bearer") == 0)
            ch->scheme = SL_AUTH_BEARER;
        p += n;
        if (*p && *p != ' ' && *p != '\t' && *p != ',') {
            r = sl_error_make(err, EINVAL, "WWW-Authenticate: bad character after scheme `%s`",
                              ch->scheme_name);
            goto fail;
        }
        skip_ws(&p);
        const char *t68end;
        if (token68_at(p, &t68end)) {
            p = t68end; /* token68 credentials are not used by registries: skip */
            continue;
        }
        bool first = true;
        for (;;) {
            skip_ws(&p);
            if (!*p)
                break;
            if (*p == ',') {
                while (*p == ',' || *p == ' ' || *p == '\t')
                    p++;
                if (!*p || !param_follows(p))
                    break; /* next challenge */
            } else if (!first) {
                r = sl_error_make(err, EINVAL, "WWW-Authenticate: expected `,` at offset %zu",
                                  (size_t)(p - header));
                goto fail;
            }
            first = false;
            size_t kn = token_len(p);
            if (kn == 0) {
                r = sl_error_make(err, EINVAL,
                                  "WWW-Authenticate: expected a parameter at offset %zu",
                                  (size_t)(p - header));
                goto fail;
            }
            _cleanup_free_ char *name = sl_xstrndup(p, kn), *value = NULL;
            for (char *q = name; *q; q++)
                *q = (char)tolower((unsigned char)*q);
            p += kn;
            skip_ws(&p);
            if (*p != '=') {
                r = sl_error_make(err, EINVAL, "WWW-Authenticate: parameter `%s` without value",
                                  name);
                goto fail;
            }
            p++;
            skip_ws(&p);
            if (*p == '"') {
                if (quoted(&p, &value) < 0) {
                    r = sl_error_make(
                        err, EINVAL, "WWW-Authenticate: unterminated quoted string for `%s`", name);
                    goto fail;
                }
            } else {
                size_t vn = token_len(p);
                if (vn == 0) {
                    r = sl_error_make(err, EINVAL, "WWW-Authenticate: empty value for `%s`", name);
                    goto fail;
                }
                value = sl_xstrndup(p, vn);
                p += vn;
            }
            if (ch->n_params >= SL_AUTH_MAX_PARAMS) {
                r = sl_error_make(err, EINVAL, "WWW-Authenticate: more than %d parameters",
                                  SL_AUTH_MAX_PARAMS);
                goto fail;
            }
            ch->params = sl_xrealloc(ch->params, (ch->n_params + 1) * sizeof(*ch->params));
            ch->params[ch->n_params].name = TAKE_PTR(name);
            ch->params[ch->n_params].value = TAKE_PTR(value);
            ch->n_params++;
        }
    }
    if (c.n == 0)
        return sl_error_make(err, EINVAL, "WWW-Authenticate: no challenge");
    *ret = c;
    return 0;
fail:
    sl_auth_challenges_free(&c);
    return r;
}

const char *sl_auth_challenge_param(const struct sl_auth_challenge *c, const char *name)
{
    for (size_t i = 0; i < c->n_params; i++)
        if (strcasecmp(c->params[i].name, name) == 0)
            return c->params[i].value;
    return NULL;
}

const struct sl_auth_challenge *sl_auth_find(const struct sl_auth_challenges *c,
                                             enum sl_auth_scheme scheme)
{
    for (size_t i = 0; i < c->n; i++)
        if (c->v[i].scheme == scheme)
            return &c->v[i];
    return NULL;
}

/* ---- Docker config.json ---- */

void sl_auth_creds_free(struct sl_auth_creds *c)
{
    if (!c)
        return;
    free(c->username);
    if (c->password)
        explicit_bzero(c->password, strlen(c->password));
    free(c->password);
    free(c->identity_token);
    *c = (struct sl_auth_creds){0};
}

char *sl_auth_basic_header(const struct sl_auth_creds *c)
{
    _cleanup_free_ char *up =
        sl_xasprintf("%s:%s", c->username ? c->username : "", c->password ? c->password : "");
    _cleanup_free_ char *enc = sl_base64_encode(up, strlen(up), NULL);
    explicit_bzero(up, strlen(up));
    return sl_xasprintf("Basic %s", enc);
}

static bool is_hub(const char *h)
{
    return strcmp(h, "docker.io") == 0 || strcmp(h, "index.docker.io") == 0 ||
           strcmp(h, "registry-1.docker.io") == 0;
}

/* config.json keys may be URLs ("https://index.docker.io/v1/"): compare host[:port] only. */
static bool key_matches(const char *key, const char *host, bool exact)
{
    if (exact)
        return strcmp(key, host) == 0;
    if (strncmp(key, "https://", 8) == 0)
        key += 8;
    else if (strncmp(key, "http://", 7) == 0)
        key += 7;
    size_t n = strcspn(key, "/");
    _cleanup_free_ char *k = sl_xstrndup(key, n);
    if (strcmp(k, host) == 0)
        return true;
    return is_hub(k) && is_hub(host);
}

static int entry_creds(const json_t *e, const char *key, struct sl_auth_creds *ret, sl_error_t *err)
{
    if (!json_is_object(e))
        return sl_error_make(err, EINVAL, "docker config: .auths[\"%s\"]: expected an object", key);
    const char *auth = NULL, *user = NULL, *pass = NULL, *idt = NULL;
    json_t *v;
    if ((v = json_object_get(e, "auth")) && json_is_string(v))
        auth = json_string_value(v);
    if ((v = json_object_get(e, "username")) && json_is_string(v))
        user = json_string_value(v);
    if ((v = json_object_get(e, "password")) && json_is_string(v))
        pass = json_string_value(v);
    if ((v = json_object_get(e, "identitytoken")) && json_is_string(v))
        idt = json_string_value(v);
    if (auth && *auth) {
        _cleanup_free_ char *dec = NULL;
        size_t n = 0;
        if (sl_base64_decode(auth, strlen(auth), (uint8_t **)&dec, &n) < 0 || memchr(dec, 0, n))
            return sl_error_make(err, EINVAL, "docker config: .auths[\"%s\"].auth: bad base64",
                                 key);
        char *colon = strchr(dec, ':');
        if (!colon) {
            explicit_bzero(dec, n);
            return sl_error_make(err, EINVAL,
                                 "docker config: .auths[\"%s\"].auth: expected user:password", key);
        }
        ret->username = sl_xstrndup(dec, (size_t)(colon - dec));
        ret->password = sl_xstrdup(colon + 1);
        explicit_bzero(dec, n);
    } else if (user && pass) {
        ret->username = sl_xstrdup(user);
        ret->password = sl_xstrdup(pass);
    } else if (!idt) {
        return 0; /* e.g. an entry managed by a credential helper */
    }
    if (idt)
        ret->identity_token = sl_xstrdup(idt);
    return 1;
}

int sl_auth_parse_docker_config(const char *data, size_t len, const char *host,
                                struct sl_auth_creds *ret, sl_error_t *err)
{
    json_auto_t *j = NULL;
    *ret = (struct sl_auth_creds){0};
    int r = sl_json_parse(data, len, SL_DOCKER_CONFIG_MAX, "docker config", &j, err);
    if (r < 0)
        return r;
    if (!json_is_object(j))
        return sl_error_make(err, EINVAL, "docker config: expected a JSON object");
    json_t *auths = json_object_get(j, "auths");
    if (!auths || json_is_null(auths))
        return 0;
    if (!json_is_object(auths))
        return sl_error_make(err, EINVAL, "docker config: .auths: expected an object");
    for (int pass = 0; pass < 2; pass++) {
        const char *k;
        json_t *e;
        json_object_foreach(auths, k, e)
        {
            if (!key_matches(k, host, pass == 0))
                continue;
            r = entry_creds(e, k, ret, err);
            if (r != 0)
                return r;
        }
    }
    return 0;
}

int sl_auth_load_docker_config(const char *path, const char *host, struct sl_auth_creds *ret,
                               sl_error_t *err)
{
    _cleanup_free_ char *p = NULL;
    *ret = (struct sl_auth_creds){0};
    bool explicit_path = path != NULL;
    if (path) {
        p = sl_xstrdup(path);
    } else if (getenv("DOCKER_CONFIG") && *getenv("DOCKER_CONFIG")) {
        p = sl_xasprintf("%s/config.json", getenv("DOCKER_CONFIG"));
    } else if (getenv("HOME") && *getenv("HOME")) {
        p = sl_xasprintf("%s/.docker/config.json", getenv("HOME"));
    } else {
        return 0;
    }
    _cleanup_close_ int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT && !explicit_path)
            return 0;
        return sl_error_make(err, errno, "docker config `%s`: %s", p, strerror(errno));
    }
    _cleanup_buf_ struct sl_buf b;
    sl_buf_init(&b, SL_DOCKER_CONFIG_MAX);
    for (;;) {
        char chunk[8192];
        ssize_t n = read(fd, chunk, sizeof(chunk));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return sl_error_make(err, errno, "docker config `%s`: %s", p, strerror(errno));
        if (n == 0)
            break;
        if (sl_buf_append(&b, chunk, (size_t)n) < 0)
            return sl_error_make(err, EFBIG, "docker config `%s`: larger than %d bytes", p,
                                 SL_DOCKER_CONFIG_MAX);
    }
    int r = sl_auth_parse_docker_config(b.data ? b.data : "", b.len, host, ret, err);
    if (r < 0)
        return sl_error_wrap(err, r, "%s", p);
    log_debug("docker config %s: %s credentials for %s", p, r > 0 ? "found" : "no", host);
    return r;
}

/* ---- tokens ---- */

int sl_auth_parse_token_response(const char *data, size_t len, char **ret_token,
                                 int64_t *ret_expires_in, sl_error_t *err)
{
    json_auto_t *j = NULL;
    int r = sl_json_parse(data, len, SL_AUTH_TOKEN_MAX, "token response", &j, err);
    if (r < 0)
        return r;
    if (!json_is_object(j))
        return sl_error_make(err, EINVAL, "token response: expected a JSON object");
    const char *tok = NULL, *atok = NULL;
    int64_t exp = 60;
    if ((r = sl_json_opt_str(j, "token", "", &tok, err)) < 0 ||
        (r = sl_json_opt_str(j, "access_token", "", &atok, err)) < 0 ||
        (r = sl_json_opt_i64(j, "expires_in", "", &exp, err)) < 0)
        return sl_error_wrap(err, r, "token response");
    if (!tok || !*tok)
        tok = atok;
    if (!tok || !*tok)
        return sl_error_make(err, EINVAL, "token response: neither `token` nor `access_token`");
    for (const char *q = tok; *q; q++)
        if ((unsigned char)*q <= ' ' || *q == 0x7f)
            return sl_error_make(err, EINVAL, "token response: token has control characters");
    if (exp <= 0)
        exp = 60;
    *ret_token = sl_xstrdup(tok);
    *ret_expires_in = exp;
    return 0;
}

int sl_auth_fetch_token(const struct sl_http_options *hopts, const struct sl_auth_challenge *c,
                        const char *const *scopes, size_t n_scopes,
                        const struct sl_auth_creds *creds, char **ret_token,
                        int64_t *ret_expires_in, sl_error_t *err)
{
    const char *realm = sl_auth_challenge_param(c, "realm");
    const char *service = sl_auth_challenge_param(c, "service");
    if (!realm || (strncmp(realm, "https://", 8) != 0 && strncmp(realm, "http://", 7) != 0))
        return sl_error_make(err, EPROTO, "Bearer challenge without an http(s) realm");
    _cleanup_free_ char *url = sl_xstrdup(realm);
    if (service) {
        char *next = NULL;
        if (sl_http_url_add_query(url, "service", service, &next) < 0)
            return sl_error_make(err, EPROTO, "token realm `%s`: bad URL", realm);
        free(url);
        url = next;
    }
    for (size_t i = 0; i < n_scopes; i++) {
        char *next = NULL;
        if (sl_http_url_add_query(url, "scope", scopes[i], &next) < 0)
            return sl_error_make(err, EPROTO, "token realm `%s`: bad URL", realm);
        free(url);
        url = next;
    }
    _cleanup_free_ char *basic = NULL;
    if (creds && creds->username && creds->password)
        basic = sl_auth_basic_header(creds);

    _cleanup_buf_ struct sl_buf body;
    sl_buf_init(&body, SL_AUTH_TOKEN_MAX);
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.url = url;
    req.authorization = basic;
    req.body_buf = &body;
    struct sl_http_response resp = {0};
    int r = sl_http_perform(hopts, &req, &resp, err);
    if (r < 0) {
        sl_http_response_free(&resp);
        return sl_error_wrap(err, r, "token from %s", realm);
    }
    long st = resp.status;
    sl_http_response_free(&resp);
    if (st == 401 || st == 403)
        return sl_error_make(err, EACCES, "token from %s: HTTP %ld (%s)", realm, st,
                             basic ? "credentials rejected" : "anonymous access denied");
    if (st != 200)
        return sl_error_make(err, EPROTO, "token from %s: HTTP %ld", realm, st);
    r = sl_auth_parse_token_response(body.data ? body.data : "", body.len, ret_token,
                                     ret_expires_in, err);
    if (r < 0)
        return sl_error_wrap(err, -EPROTO, "token from %s", realm);
    return 0;
}

/* ---- token cache ---- */

#define TOKEN_CACHE_MAX 128

struct token_entry {
    char *key;
    char *token;
    int64_t expires; /* CLOCK_MONOTONIC seconds */
};

struct sl_token_cache {
    pthread_mutex_t lock;
    struct token_entry e[TOKEN_CACHE_MAX];
    size_t n;
};

static int64_t now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec;
}

struct sl_token_cache *sl_token_cache_new(void)
{
    struct sl_token_cache *c = sl_xcalloc(1, sizeof(*c));
    pthread_mutex_init(&c->lock, NULL);
    return c;
}

static void entry_clear(struct token_entry *e)
{
    free(e->key);
    if (e->token)
        explicit_bzero(e->token, strlen(e->token));
    free(e->token);
    *e = (struct token_entry){0};
}

void sl_token_cache_free(struct sl_token_cache *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        entry_clear(&c->e[i]);
    pthread_mutex_destroy(&c->lock);
    free(c);
}

char *sl_token_cache_get(struct sl_token_cache *c, const char *key)
{
    char *tok = NULL;
    int64_t now = now_s();
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].key, key) == 0 && c->e[i].expires > now) {
            tok = sl_xstrdup(c->e[i].token);
            break;
        }
    pthread_mutex_unlock(&c->lock);
    return tok;
}

void sl_token_cache_put(struct sl_token_cache *c, const char *key, const char *token,
                        int64_t expires_in)
{
    int64_t now = now_s();
    /* Renew a little early so a token never expires between the check and the request. */
    int64_t life = expires_in - SL_MIN(expires_in / 4, 30);
    pthread_mutex_lock(&c->lock);
    size_t slot = c->n;
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->e[i].key, key) == 0 || c->e[i].expires <= now) {
            slot = i;
            break;
        }
    if (slot == TOKEN_CACHE_MAX) {
        slot = 0; /* full of live tokens: replace the one expiring first */
        for (size_t i = 1; i < c->n; i++)
            if (c->e[i].expires < c->e[slot].expires)
                slot = i;
    }
    if (slot < c->n)
        entry_clear(&c->e[slot]);
    else
        c->n++;
    c->e[slot].key = sl_xstrdup(key);
    c->e[slot].token = sl_xstrdup(token);
    c->e[slot].expires = now + life;
    pthread_mutex_unlock(&c->lock);
}
