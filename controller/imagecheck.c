/* imagecheck.c — see imagecheck.h. */
#include "imagecheck.h"
#include "cleanup.h"
#include "http.h"
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CACHE_MAX     1024
#define TTL_KNOWN_S   600
#define TTL_UNKNOWN_S 60

struct entry {
    char *image;
    bool known;
    time_t expires;
};

struct sl_imagecheck {
    struct sl_imagecheck_options o;
    char *proxy_url, *token, *platform, *auth;
    pthread_mutex_t lock;
    struct entry cache[CACHE_MAX];
    size_t n, next; /* filled slots; next slot to overwrite when full */
    struct sl_metric *asked;
};

struct sl_imagecheck *sl_imagecheck_new(const struct sl_imagecheck_options *o)
{
    struct sl_imagecheck *c = sl_xcalloc(1, sizeof(*c));
    c->o = *o;
    c->o.proxy_url = c->proxy_url = sl_xstrdup(o->proxy_url);
    while (c->proxy_url[0] && c->proxy_url[strlen(c->proxy_url) - 1] == '/')
        c->proxy_url[strlen(c->proxy_url) - 1] = 0;
    c->o.platform = c->platform = sl_xstrdup(o->platform ? o->platform : "linux/amd64");
    if (o->token && *o->token)
        c->auth = sl_xasprintf("Bearer %s", o->token);
    c->o.token = NULL;
    pthread_mutex_init(&c->lock, NULL);
    c->asked = o->metrics
                   ? sl_metrics_counter(o->metrics, "starlight_webhook_proxy_questions_total",
                                        "Questions to the proxy by answer (starlight, "
                                        "other, error)")
                   : NULL;
    if (c->asked) {
        sl_metric_add(c->asked, "answer=\"starlight\"", 0);
        sl_metric_add(c->asked, "answer=\"other\"", 0);
        sl_metric_add(c->asked, "answer=\"error\"", 0);
    }
    return c;
}

void sl_imagecheck_free(struct sl_imagecheck *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->cache[i].image);
    pthread_mutex_destroy(&c->lock);
    free(c->proxy_url);
    free(c->platform);
    free(c->auth);
    free(c);
}

static int cached(struct sl_imagecheck *c, const char *image)
{
    time_t now = time(NULL);
    int r = -1;
    pthread_mutex_lock(&c->lock);
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->cache[i].image, image) == 0 && c->cache[i].expires > now) {
            r = c->cache[i].known;
            break;
        }
    pthread_mutex_unlock(&c->lock);
    return r;
}

static void remember(struct sl_imagecheck *c, const char *image, bool known)
{
    time_t exp = time(NULL) + (known ? TTL_KNOWN_S : TTL_UNKNOWN_S);
    pthread_mutex_lock(&c->lock);
    size_t i = 0;
    while (i < c->n && strcmp(c->cache[i].image, image) != 0)
        i++;
    if (i == c->n) {
        if (c->n < CACHE_MAX) {
            c->n++;
        } else {
            i = c->next;
            c->next = (c->next + 1) % CACHE_MAX;
            free(c->cache[i].image);
        }
        c->cache[i].image = sl_xstrdup(image);
    }
    c->cache[i].known = known;
    c->cache[i].expires = exp;
    pthread_mutex_unlock(&c->lock);
}

/* Keeps nothing: the status says it all; stops after the prelude should the proxy ignore Range. */
static int sink_prelude(void *ud, const void *data, size_t len)
{
    size_t *got = ud;
    (void)data;
    *got += len;
    return *got >= 32 ? SL_HTTP_SINK_STOP : 0;
}

int sl_imagecheck_is_starlight(void *ud, const char *image)
{
    struct sl_imagecheck *c = ud;
    int r = cached(c, image);
    if (r >= 0)
        return r;
    _cleanup_free_ char *base = sl_xasprintf("%s/starlight/delta", c->proxy_url);
    _cleanup_free_ char *u1 = NULL, *u2 = NULL, *url = NULL;
    r = sl_http_url_add_query(base, "to", image, &u1);
    if (r >= 0)
        r = sl_http_url_add_query(u1, "platform", c->platform, &u2);
    if (r >= 0 && c->o.insecure)
        r = sl_http_url_add_query(u2, "insecure", "1", &url);
    else if (r >= 0)
        url = TAKE_PTR(u2);
    if (r < 0)
        return r;
    unsigned secs = (unsigned)((c->o.timeout_ms + 999) / 1000);
    struct sl_http_options ho = {.retries = -1, .connect_timeout_s = secs, .timeout_s = secs};
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.url = url;
    req.authorization = c->auth;
    req.has_range = true;
    req.range_first = 0;
    req.range_last = 31;
    req.retries = 0;
    size_t got = 0;
    req.sink = sink_prelude;
    req.sink_userdata = &got;
    struct sl_http_response resp = {0};
    _cleanup_error_ sl_error_t err = NULL;
    r = sl_http_perform(&ho, &req, &resp, &err);
    long status = resp.status;
    sl_http_response_free(&resp);
    if (r < 0) {
        log_warn("proxy %s unreachable while checking %s: %s", c->proxy_url, image,
                 sl_error_msg(err, r));
        sl_metric_add(c->asked, "answer=\"error\"", 1);
        return r;
    }
    if (r >= 0 && (status == 200 || status == 206)) {
        sl_metric_add(c->asked, "answer=\"starlight\"", 1);
        remember(c, image, true);
        return 1;
    }
    if (r >= 0 && status == 404) {
        sl_metric_add(c->asked, "answer=\"other\"", 1);
        remember(c, image, false);
        return 0;
    }
    log_warn("proxy %s could not tell whether it serves %s: HTTP %ld", c->proxy_url, image, status);
    sl_metric_add(c->asked, "answer=\"error\"", 1);
    return -EIO;
}
