/* daemonclient.c — see daemonclient.h. */
#include "daemonclient.h"
#include "buf.h"
#include "cleanup.h"
#include "json.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_ANSWER (16u << 20)
#define MAX_LINE   (1u << 20)

struct lines {
    struct sl_buf line;
    int (*on_line)(void *ud, json_t *line);
    void *ud;
    int r;
};

static int line_sink(void *ud, const void *data, size_t len)
{
    struct lines *l = ud;
    const char *p = data;
    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t n = nl ? (size_t)(nl - p) : len;
        if (sl_buf_append(&l->line, p, n) < 0)
            return -EFBIG;
        p += n;
        len -= n;
        if (!nl)
            break;
        p++;
        len--;
        json_t *j = NULL;
        if (l->line.len &&
            sl_json_parse(l->line.data, l->line.len, MAX_LINE, "progress line", &j, NULL) >= 0) {
            int r = l->on_line(l->ud, j);
            json_decref(j);
            if (r < 0) {
                l->r = r;
                return r;
            }
        }
        sl_buf_reset(&l->line);
    }
    return 0;
}

static int status_class(long s)
{
    switch (s) {
    case 400:
        return EINVAL;
    case 403:
        return EACCES;
    case 404:
        return ENOENT;
    case 503:
        return EAGAIN;
    default:
        return EIO;
    }
}

static int perform(const char *socket, const char *method, const char *path, const json_t *body,
                   unsigned timeout_s, struct sl_buf *buf, struct lines *lines, sl_error_t *err)
{
    _cleanup_free_ char *url = sl_xasprintf("http://localhost%s", path);
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    static const char *const json_hdr[] = {"Content-Type: application/json", NULL};
    struct sl_http_options o = {
        .retries = -1, .low_speed_time_s = 600, .connect_timeout_s = 5, .timeout_s = timeout_s};
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.method = method;
    req.url = url;
    req.unix_socket_path = socket;
    req.retries = 0;
    if (body) {
        data = sl_json_dump(body, &len);
        req.body = data;
        req.body_len = (int64_t)len;
        req.has_body = true;
        req.headers = json_hdr;
    }
    if (lines) {
        req.sink = line_sink;
        req.sink_userdata = lines;
    } else {
        req.body_buf = buf;
    }
    /* curl reports a missing socket as a failed TCP connect to localhost:80: say what is wrong */
    struct stat st;
    if (stat(socket, &st) < 0) {
        int e = errno;
        return sl_error_make(err, e, "starlight-daemon socket %s: %s (is it running?)", socket,
                             strerror(e));
    }
    if (!S_ISSOCK(st.st_mode))
        return sl_error_make(err, ENOTSOCK, "starlight-daemon socket %s: not a socket", socket);
    struct sl_http_response resp = {0};
    int r = sl_http_perform(&o, &req, &resp, err);
    if (r < 0) {
        if (lines && lines->r < 0)
            r = lines->r;
        else if (r == -ECONNREFUSED || r == -ENOENT || r == -EIO)
            r = sl_error_wrap(err, r, "starlight-daemon at %s (is it running?)", socket);
        sl_http_response_free(&resp);
        return r;
    }
    if (resp.status < 200 || resp.status > 299) {
        json_t *j = NULL;
        const char *msg = NULL;
        if (resp.error_body.len && sl_json_parse(resp.error_body.data, resp.error_body.len,
                                                 SL_HTTP_ERROR_BODY_MAX, "error", &j, NULL) >= 0)
            msg = json_string_value(json_object_get(j, "error"));
        r = sl_error_make(err, status_class(resp.status), "%s %s: HTTP %ld: %s", method, path,
                          resp.status, msg ? msg : "(no message)");
        json_decref(j);
    }
    sl_http_response_free(&resp);
    return r;
}

int sl_daemon_call(const char *socket, const char *method, const char *path, const json_t *body,
                   json_t **ret, sl_error_t *err)
{
    _cleanup_buf_ struct sl_buf b;
    sl_buf_init(&b, MAX_ANSWER);
    int r = perform(socket, method, path, body, 0, &b, NULL, err);
    if (r < 0)
        return r;
    return sl_json_parse(b.data ? b.data : "", b.len, MAX_ANSWER, "daemon answer", ret, err);
}

int sl_daemon_stream(const char *socket, const char *method, const char *path, const json_t *body,
                     int (*on_line)(void *ud, json_t *line), void *ud, sl_error_t *err)
{
    return sl_daemon_stream_timeout(socket, method, path, body, 0, on_line, ud, err);
}

int sl_daemon_stream_timeout(const char *socket, const char *method, const char *path,
                             const json_t *body, unsigned timeout_s,
                             int (*on_line)(void *ud, json_t *line), void *ud, sl_error_t *err)
{
    struct lines l = {.on_line = on_line, .ud = ud};
    sl_buf_init(&l.line, MAX_LINE);
    int r = perform(socket, method, path, body, timeout_s, NULL, &l, err);
    if (r >= 0 && l.line.len) {
        json_t *j = NULL;
        if (sl_json_parse(l.line.data, l.line.len, MAX_LINE, "progress line", &j, NULL) >= 0) {
            r = on_line(ud, j);
            json_decref(j);
        }
    }
    sl_buf_free(&l.line);
    return r;
}
