#include "proxyclient.h"
#include "base64.h"
#include "buf.h"
#include "cleanup.h"
#include "http.h"
#include "json.h"

#include <string.h>

#define PROXY_BODY_MAX (1u << 20)

static int status_class(long status)
{
    switch (status) {
    case 400:
        return EINVAL;
    case 401:
    case 403:
        return EACCES;
    case 404:
        return ENOENT;
    case 422:
        return EMEDIUMTYPE;
    case 503:
        return EAGAIN;
    default:
        return EIO;
    }
}

/* The proxy's error message from a JSON envelope, or the raw body. */
static const char *error_text(const struct sl_buf *body, json_t **keep)
{
    if (!body->data || !body->len)
        return "(empty answer)";
    if (sl_json_parse(body->data, body->len, PROXY_BODY_MAX, "answer", keep, NULL) >= 0) {
        const char *e = json_string_value(json_object_get(*keep, "error"));
        if (e)
            return e;
    }
    return body->data;
}

int sl_proxy_notify(const struct sl_proxy_target *p, const char *ref, bool insecure, json_t **ret,
                    sl_error_t *err)
{
    _cleanup_free_ char *esc = sl_http_escape(ref);
    size_t ul = strlen(p->url);
    _cleanup_free_ char *url = sl_xasprintf("%.*s/starlight/notify?ref=%s%s",
                                            (int)(ul && p->url[ul - 1] == '/' ? ul - 1 : ul),
                                            p->url, esc, insecure ? "&insecure=1" : "");
    _cleanup_free_ char *auth = NULL;
    if (p->token && *p->token) {
        auth = sl_xasprintf("Bearer %s", p->token);
    } else if (p->user && *p->user) {
        _cleanup_free_ char *b = sl_base64_encode(p->user, strlen(p->user), NULL);
        auth = sl_xasprintf("Basic %s", b);
    }
    struct sl_buf body;
    sl_buf_init(&body, PROXY_BODY_MAX);
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.method = "POST";
    req.url = url;
    req.authorization = auth;
    req.has_body = true;
    req.body_buf = &body;
    struct sl_http_response resp = {0};
    int r = sl_http_perform(NULL, &req, &resp, err);
    if (r < 0) {
        r = sl_error_wrap(err, r, "notify proxy `%s`", p->url);
        goto out;
    }
    if (resp.status != 200) {
        json_auto_t *j = NULL;
        r = sl_error_make(err, status_class(resp.status), "notify proxy `%s`: HTTP %ld: %s", p->url,
                          resp.status, error_text(&resp.error_body, &j));
        goto out;
    }
    r = sl_json_parse(body.data ? body.data : "", body.len, PROXY_BODY_MAX, "notify answer", ret,
                      err);
out:
    sl_http_response_free(&resp);
    sl_buf_free(&body);
    return r;
}
