/* test-proxy-server — the starlight-proxy HTTP server (proxy/server/) against the fake core
 * (fake-core.c), driven over loopback with libcurl: routes and statuses, JSON errors, query
 * parsing, keep-alive, Range/If-Range, streaming under disconnects, 50 concurrent streams,
 * slow-client backpressure, auth (bcrypt htpasswd, bearer tokens, reload). */
#include "test.h"

#include "auth.h"
#include "buf.h"
#include "cleanup.h"
#include "fake-core.h"
#include "log.h"
#include "request.h"
#include "server.h"
#include "stream.h"

#include <arpa/inet.h>
#include <crypt.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>

/* ---- a server on a thread ---------------------------------------------------------------- */

struct running {
    struct sl_core *core;
    struct sl_server *srv;
    pthread_t thread;
    int port;
};

static struct running main_srv;

static void *loop_main(void *arg)
{
    struct running *r = arg;
    sl_server_run(r->srv);
    return NULL;
}

static void start_server_tls(struct running *r, const char *auth_file, int workers,
                             const char *cert, const char *key)
{
    struct sl_core_config cc = {0};
    assert_int_equal(sl_core_new(&cc, &r->core, NULL), 0);
    struct sl_server_config cfg = {
        .listen_addr = "127.0.0.1",
        .port = 0,
        .auth_file = auth_file,
        .tls_cert = cert,
        .tls_key = key,
        .open_health = true,
        .open_metrics = false,
        .workers = workers,
        .max_body = 64 * 1024,
        .idle_timeout_s = 10,
    };
    _cleanup_error_ sl_error_t err = NULL;
    int rc = sl_server_new(&cfg, r->core, &r->srv, &err);
    if (rc < 0)
        fail_msg("server: %s", sl_error_msg(err, rc));
    r->port = sl_server_port(r->srv);
    assert_true(r->port > 0);
    assert_int_equal(pthread_create(&r->thread, NULL, loop_main, r), 0);
}

static void start_server(struct running *r, const char *auth_file, int workers)
{
    start_server_tls(r, auth_file, workers, NULL, NULL);
}

static void stop_server(struct running *r)
{
    sl_server_stop(r->srv);
    pthread_join(r->thread, NULL);
    sl_server_free(r->srv);
    sl_core_free(r->core);
    memset(r, 0, sizeof(*r));
}

/* Waits up to `ms` for every request object of the server to be freed. */
static bool wait_idle(struct sl_server *srv, int ms)
{
    for (int i = 0; i < ms / 10; i++) {
        struct sl_server_stats st;
        sl_server_stats(srv, &st);
        if (st.live_requests == 0 && st.streams_in_flight == 0 &&
            fake_core_reads_in_progress() == 0 && fake_core_plans_live() == 0)
            return true;
        usleep(10000);
    }
    struct sl_server_stats st;
    sl_server_stats(srv, &st);
    print_message("not idle: %zu requests, %zu streams, %zu chunks queued, %d core reads\n",
                  st.live_requests, st.streams_in_flight, st.queued_chunks,
                  fake_core_reads_in_progress());
    return false;
}

/* ---- an HTTP client ---------------------------------------------------------------------- */

struct resp {
    long status;
    struct sl_buf body;
    struct sl_buf headers;
    CURLcode rc;
    long connects;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    return sl_buf_append(&r->body, p, size * n) < 0 ? 0 : size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
    struct resp *r = ud;
    (void)sl_buf_append(&r->headers, p, size * n);
    return size * n;
}

static CURL *shared_easy;

/* One request on the shared (keep-alive) handle. `hdrs` is NULL or NULL-terminated. */
static void do_req(int port, const char *method, const char *path, const char *const *hdrs,
                   const char *body, size_t body_len, struct resp *r)
{
    memset(r, 0, sizeof(*r));
    sl_buf_init(&r->body, 128u << 20);
    sl_buf_init(&r->headers, 1u << 20);
    CURL *c = shared_easy;
    curl_easy_reset(c);
    char url[512];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", port, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
    struct curl_slist *sl = NULL;
    for (size_t i = 0; hdrs && hdrs[i]; i++)
        sl = curl_slist_append(sl, hdrs[i]);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, sl);
    if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c, CURLOPT_POST, 1L);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(body ? body_len : 0));
    } else if (strcmp(method, "HEAD") == 0) {
        curl_easy_setopt(c, CURLOPT_NOBODY, 1L);
    } else if (strcmp(method, "GET") != 0) {
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    }
    r->rc = curl_easy_perform(c);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &r->connects);
    curl_slist_free_all(sl);
}

static void resp_free(struct resp *r)
{
    sl_buf_free(&r->body);
    sl_buf_free(&r->headers);
}

/* Value of a response header (case-insensitive name), copied into out; false when absent. */
static bool header(const struct resp *r, const char *name, char *out, size_t outlen)
{
    size_t nlen = strlen(name);
    for (const char *p = r->headers.data; p && *p;) {
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        if (len > nlen && strncasecmp(p, name, nlen) == 0 && p[nlen] == ':') {
            const char *v = p + nlen + 1;
            while (*v == ' ')
                v++;
            size_t vlen = (size_t)(p + len - v);
            while (vlen > 0 && (v[vlen - 1] == '\r' || v[vlen - 1] == ' '))
                vlen--;
            snprintf(out, outlen, "%.*s", (int)vlen, v);
            return true;
        }
        p = eol ? eol + 1 : p + len;
    }
    return false;
}

static void assert_json_error(const struct resp *r, long status, const char *needle)
{
    char ct[128], ver[64];
    assert_int_equal(r->status, status);
    assert_true(header(r, "content-type", ct, sizeof(ct)));
    assert_non_null(strstr(ct, "application/json"));
    assert_true(header(r, "starlight-version", ver, sizeof(ver)));
    json_error_t je;
    json_auto_t *j = json_loadb(r->body.data, r->body.len, 0, &je);
    if (!j)
        fail_msg("not JSON: %s", r->body.data);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), status);
    assert_string_equal(json_string_value(json_object_get(j, "status")),
                        sl_request_reason((int)status));
    const char *e = json_string_value(json_object_get(j, "error"));
    assert_non_null(e);
    if (needle && !strstr(e, needle))
        fail_msg("error `%s` lacks `%s`", e, needle);
}

static void check_body(const char *to, uint64_t start, const struct sl_buf *b)
{
    for (size_t i = 0; i < b->len; i++)
        if ((uint8_t)b->data[i] != fake_core_byte(to, start + i))
            fail_msg("%s: byte %zu (position %llu) differs", to, i,
                     (unsigned long long)(start + i));
}

/* ---- socket-free helpers ----------------------------------------------------------------- */

static void test_request_helpers(void **state)
{
    (void)state;
    uint64_t s, e;
    assert_int_equal(sl_request_parse_range("bytes=10-", 100, &s, &e), SL_RANGE_OK);
    assert_true(s == 10 && e == 100);
    assert_int_equal(sl_request_parse_range("bytes=10-19", 100, &s, &e), SL_RANGE_OK);
    assert_true(s == 10 && e == 20);
    assert_int_equal(sl_request_parse_range("bytes=10-1000", 100, &s, &e), SL_RANGE_OK);
    assert_true(s == 10 && e == 100);
    assert_int_equal(sl_request_parse_range("bytes=-30", 100, &s, &e), SL_RANGE_OK);
    assert_true(s == 70 && e == 100);
    assert_int_equal(sl_request_parse_range("bytes=-300", 100, &s, &e), SL_RANGE_OK);
    assert_true(s == 0 && e == 100);
    assert_int_equal(sl_request_parse_range("bytes=100-", 100, &s, &e), SL_RANGE_UNSATISFIABLE);
    assert_int_equal(sl_request_parse_range("bytes=-0", 100, &s, &e), SL_RANGE_UNSATISFIABLE);
    assert_int_equal(sl_request_parse_range("bytes=0-", 0, &s, &e), SL_RANGE_UNSATISFIABLE);
    assert_int_equal(sl_request_parse_range("bytes=5-1", 100, &s, &e), SL_RANGE_NONE);
    assert_int_equal(sl_request_parse_range("bytes=0-1,5-6", 100, &s, &e), SL_RANGE_NONE);
    assert_int_equal(sl_request_parse_range("items=0-1", 100, &s, &e), SL_RANGE_NONE);
    assert_int_equal(sl_request_parse_range("bytes=x-", 100, &s, &e), SL_RANGE_NONE);
    assert_int_equal(sl_request_parse_range("bytes=99999999999999999999-", 100, &s, &e),
                     SL_RANGE_NONE);
    assert_int_equal(sl_request_parse_range("bytes=-", 100, &s, &e), SL_RANGE_NONE);
    assert_true(sl_request_if_range_ok(NULL, "\"a\""));
    assert_true(sl_request_if_range_ok(" \"a\" ", "\"a\""));
    assert_false(sl_request_if_range_ok("\"b\"", "\"a\""));
    assert_false(sl_request_if_range_ok("W/\"a\"", "\"a\""));
    assert_false(sl_request_if_range_ok("Wed, 21 Oct 2015 07:28:00 GMT", "\"a\""));
#define V2 "application/vnd.starlight.delta.v2"
    assert_true(sl_request_accepts(V2, V2));
    assert_true(sl_request_accepts("application/json, " V2 " ;q=0.5", V2));
    assert_true(sl_request_accepts("Application/VND.starlight.delta.V2", V2));
    assert_false(sl_request_accepts(NULL, V2));
    assert_false(sl_request_accepts("", V2));
    assert_false(sl_request_accepts("*/*", V2));
    assert_false(sl_request_accepts("application/*", V2));
    assert_false(sl_request_accepts(V2 ";q=0", V2));
    assert_false(sl_request_accepts(V2 "; q=0.000", V2));
    assert_false(sl_request_accepts(V2 "x", V2));
    assert_false(sl_request_accepts("application/vnd.starlight.delta.v1", V2));
#undef V2

    assert_int_equal(sl_request_status_of_error(-EINVAL), 400);
    assert_int_equal(sl_request_status_of_error(-EACCES), 403);
    assert_int_equal(sl_request_status_of_error(-ENOENT), 404);
    assert_int_equal(sl_request_status_of_error(-EMEDIUMTYPE), 422);
    assert_int_equal(sl_request_status_of_error(-EAGAIN), 503);
    assert_int_equal(sl_request_status_of_error(-EIO), 500);

    struct sl_request_args a = {0};
    assert_int_equal(sl_request_args_add(&a, "from=x"), 0);
    assert_int_equal(sl_request_args_add(&a, "to=y=z"), 0);
    assert_int_equal(sl_request_args_add(&a, "from=w"), 0);
    assert_int_equal(sl_request_args_add(&a, "flag"), 0);
    const char *v = NULL;
    assert_int_equal(sl_request_args_one(&a, "to", &v, NULL), 1);
    assert_string_equal(v, "y=z");
    assert_int_equal(sl_request_args_one(&a, "from", &v, NULL), -EINVAL);
    assert_int_equal(sl_request_args_one(&a, "nope", &v, NULL), 0);
    const char **all = NULL;
    assert_int_equal(sl_request_args_all(&a, "from", &all), 2);
    assert_string_equal(all[0], "x");
    assert_string_equal(all[1], "w");
    free(all);
    static const char *const known[] = {"from", "to", NULL};
    assert_int_equal(sl_request_args_check(&a, known, NULL), -EINVAL);
    sl_request_args_free(&a);

    assert_true(sl_auth_consttime_eq("abc", 3, "abc", 3));
    assert_false(sl_auth_consttime_eq("abd", 3, "abc", 3));
    assert_false(sl_auth_consttime_eq("ab", 2, "abc", 3));
    assert_false(sl_auth_consttime_eq("abcd", 4, "abc", 3));
}

/* ---- routes ------------------------------------------------------------------------------- */

static void test_routes(void **state)
{
    (void)state;
    int port = main_srv.port;
    struct resp r;
    char v[256];

    do_req(port, "GET", "/", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"message\":\"Starlight Proxy\""));
    assert_non_null(strstr(r.body.data, "\"status\":\"OK\""));
    assert_true(header(&r, "starlight-version", v, sizeof(v)));
    resp_free(&r);

    do_req(port, "POST", "/?t=2024-01-01T00:00:00Z", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);

    do_req(port, "GET", "/health-check", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"database\":\"ok\""));
    resp_free(&r);

    do_req(port, "HEAD", "/health-check", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, 0);
    resp_free(&r);

    fake_core_set_healthy(false);
    do_req(port, "GET", "/health-check", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body.data, "\"database\":\"connection refused\""));
    assert_non_null(strstr(r.body.data, "\"code\":503"));
    assert_true(header(&r, "retry-after", v, sizeof(v)));
    resp_free(&r);
    fake_core_set_healthy(true);

    do_req(port, "GET", "/nowhere", NULL, NULL, 0, &r);
    assert_json_error(&r, 404, "no such path");
    resp_free(&r);
    do_req(port, "GET", "/starlight/delta/", NULL, NULL, 0, &r);
    assert_json_error(&r, 404, NULL);
    resp_free(&r);

    do_req(port, "GET", "/starlight/notify?ref=x", NULL, NULL, 0, &r);
    assert_json_error(&r, 405, NULL);
    assert_true(header(&r, "allow", v, sizeof(v)));
    assert_string_equal(v, "POST");
    resp_free(&r);
    do_req(port, "DELETE", "/metrics", NULL, NULL, 0, &r);
    assert_json_error(&r, 405, NULL);
    resp_free(&r);

    /* notify: parameters, URL decoding and every error class */
    do_req(port, "POST", "/starlight/notify", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, "ref");
    resp_free(&r);
    do_req(port, "POST", "/starlight/notify?ref=a&ref=b", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, "more than once");
    resp_free(&r);
    do_req(port, "POST", "/starlight/notify?ref=a&colour=red", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, "colour");
    resp_free(&r);
    do_req(port, "POST", "/starlight/notify?ref=reg.io%2Fa%2Fb%3Atag%26x+y&insecure=1", NULL, NULL,
           0, &r);
    assert_int_equal(r.status, 200);
    assert_non_null(strstr(r.body.data, "\"requested-image\":\"reg.io/a/b:tag&x y\""));
    assert_non_null(strstr(r.body.data, "\"insecure\":true"));
    resp_free(&r);
    do_req(port, "POST", "/starlight/notify?ref=x&insecure=0", NULL, NULL, 0, &r);
    assert_non_null(strstr(r.body.data, "\"insecure\":false"));
    resp_free(&r);
    do_req(port, "POST", "/starlight/notify?ref=missing", NULL, NULL, 0, &r);
    assert_json_error(&r, 404, "not known");
    resp_free(&r);
    do_req(port, "POST", "/starlight/notify?ref=plain", NULL, NULL, 0, &r);
    assert_json_error(&r, 422, "convert");
    resp_free(&r);
    do_req(port, "POST", "/starlight/notify?ref=busy", NULL, NULL, 0, &r);
    assert_json_error(&r, 503, "connection refused");
    resp_free(&r);
    do_req(port, "POST", "/starlight/notify?ref=bad", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, NULL);
    resp_free(&r);

    /* report: JSON body, capped */
    do_req(port, "POST", "/starlight/report", NULL, "{\"groups\":[]}", 13, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    do_req(port, "POST", "/starlight/report", NULL, "{not json", 9, &r);
    assert_json_error(&r, 400, "report");
    resp_free(&r);
    do_req(port, "POST", "/starlight/report", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, "empty body");
    resp_free(&r);
    size_t big = 200 * 1024;
    _cleanup_free_ char *huge = sl_xmalloc(big);
    memset(huge, ' ', big);
    do_req(port, "POST", "/starlight/report", NULL, huge, big, &r);
    assert_int_equal(r.status, 413);
    resp_free(&r);

    /* delta parameters */
    do_req(port, "GET", "/starlight/delta?platform=linux/amd64", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, "`to`");
    resp_free(&r);
    do_req(port, "GET", "/starlight/delta?to=small", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, "`platform`");
    resp_free(&r);
    do_req(port, "GET", "/starlight/delta?to=small&to=big&platform=linux/amd64", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, "more than once");
    resp_free(&r);
    do_req(port, "GET", "/starlight/delta?to=small&platform=linux/amd64&from=", NULL, NULL, 0, &r);
    assert_json_error(&r, 400, "from");
    resp_free(&r);
    do_req(port, "GET", "/starlight/delta?to=small&platform=linux/amd64&disableSorting=true", NULL,
           NULL, 0, &r);
    assert_json_error(&r, 400, "disableSorting");
    resp_free(&r);
    do_req(port, "GET", "/starlight/delta?to=missing&platform=linux/amd64", NULL, NULL, 0, &r);
    assert_json_error(&r, 404, "not known");
    resp_free(&r);
    do_req(port, "GET", "/starlight/delta?to=busy&platform=linux/amd64", NULL, NULL, 0, &r);
    assert_json_error(&r, 503, NULL);
    resp_free(&r);
    do_req(port, "POST", "/starlight/delta", NULL, "[1,2", 4, &r);
    assert_json_error(&r, 400, "delta request");
    resp_free(&r);
    const char *chunked[] = {"Transfer-Encoding: chunked", NULL};
    do_req(port, "POST", "/starlight/report", chunked, "{}", 2, &r);
    assert_json_error(&r, 411, "Content-Length");
    resp_free(&r);
    const char *bad_cl[] = {"Content-Length: 12x", NULL};
    do_req(port, "GET", "/starlight/delta", bad_cl, NULL, 0, &r);
    assert_int_equal(r.status, 400);
    resp_free(&r);

    /* metrics count what happened, by route and status */
    do_req(port, "GET", "/metrics", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_true(header(&r, "content-type", v, sizeof(v)));
    assert_non_null(strstr(v, "text/plain"));
    assert_non_null(strstr(r.body.data,
                           "starlight_proxy_http_requests_total{route=\"notify\",code=\"422\"} 1"));
    assert_non_null(
        strstr(r.body.data, "starlight_proxy_http_requests_total{route=\"other\",code=\"404\"}"));
    assert_non_null(strstr(r.body.data, "starlight_proxy_delta_streams_in_flight 0"));
    assert_non_null(strstr(r.body.data, "starlight_fake_core_up 1"));
    resp_free(&r);
    assert_true(wait_idle(main_srv.srv, 2000));
}

static void test_keepalive(void **state)
{
    (void)state;
    struct resp r;
    do_req(main_srv.port, "GET", "/", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
    for (int i = 0; i < 5; i++) {
        do_req(main_srv.port, i % 2 ? "GET" : "POST", i % 2 ? "/health-check" : "/starlight/report",
               NULL, "{}", 2, &r);
        assert_int_equal(r.status, 200);
        assert_int_equal(r.connects, 0); /* reused the connection */
        resp_free(&r);
    }
    /* a streamed delta, then another request on the same connection */
    do_req(main_srv.port, "GET", "/starlight/delta?to=small&platform=linux/amd64", NULL, NULL, 0,
           &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.connects, 0);
    resp_free(&r);
    do_req(main_srv.port, "GET", "/", NULL, NULL, 0, &r);
    assert_int_equal(r.connects, 0);
    resp_free(&r);
}

static void test_delta_ranges(void **state)
{
    (void)state;
    int port = main_srv.port;
    const char *path = "/starlight/delta?to=small&platform=linux/amd64&from=a&from=b";
    uint64_t total = fake_core_total("small");
    struct resp full, r;
    char v[256], etag[128];

    do_req(port, "GET", path, NULL, NULL, 0, &full);
    assert_int_equal(full.status, 200);
    assert_int_equal(full.body.len, total);
    check_body("small", 0, &full.body);
    assert_true(header(&full, "etag", etag, sizeof(etag)));
    assert_string_equal(etag, "\"fake-small-2\"");
    assert_true(header(&full, "accept-ranges", v, sizeof(v)));
    assert_string_equal(v, "bytes");
    assert_true(header(&full, "content-type", v, sizeof(v)));
    assert_string_equal(v, "application/vnd.starlight.delta.v1");
    assert_true(header(&full, "starlight-version", v, sizeof(v)));

    /* Range from the middle = the tail of the full body */
    uint64_t mid = total / 2 + 3;
    char range[128];
    snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)mid);
    const char *h1[] = {range, NULL};
    do_req(port, "GET", path, h1, NULL, 0, &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body.len, total - mid);
    assert_memory_equal(r.body.data, full.body.data + mid, total - mid);
    assert_true(header(&r, "content-range", v, sizeof(v)));
    char want[128];
    snprintf(want, sizeof(want), "bytes %llu-%llu/%llu", (unsigned long long)mid,
             (unsigned long long)total - 1, (unsigned long long)total);
    assert_string_equal(v, want);
    resp_free(&r);

    /* bounded range crossing head and segments */
    const char *h2[] = {"Range: bytes=990-2999", NULL};
    do_req(port, "GET", path, h2, NULL, 0, &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body.len, 2010);
    assert_memory_equal(r.body.data, full.body.data + 990, 2010);
    resp_free(&r);

    /* If-Range with the ETag honours Range; another tag or a date gives the whole body */
    char ifr[200];
    snprintf(ifr, sizeof(ifr), "If-Range: %s", etag);
    const char *h3[] = {range, ifr, NULL};
    do_req(port, "GET", path, h3, NULL, 0, &r);
    assert_int_equal(r.status, 206);
    assert_int_equal(r.body.len, total - mid);
    resp_free(&r);
    const char *h4[] = {range, "If-Range: \"other\"", NULL};
    do_req(port, "GET", path, h4, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, total);
    assert_memory_equal(r.body.data, full.body.data, total);
    resp_free(&r);
    const char *h5[] = {range, "If-Range: Wed, 21 Oct 2015 07:28:00 GMT", NULL};
    do_req(port, "GET", path, h5, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);

    /* unsatisfiable */
    snprintf(range, sizeof(range), "Range: bytes=%llu-", (unsigned long long)total);
    const char *h6[] = {range, NULL};
    do_req(port, "GET", path, h6, NULL, 0, &r);
    assert_json_error(&r, 416, NULL);
    assert_true(header(&r, "content-range", v, sizeof(v)));
    snprintf(want, sizeof(want), "bytes */%llu", (unsigned long long)total);
    assert_string_equal(v, want);
    resp_free(&r);

    /* POST with a JSON body: same plan (no `from`: another ETag), same bytes */
    const char *json = "{\"to\":\"small\",\"platform\":\"linux/amd64\"}";
    do_req(port, "POST", "/starlight/delta", NULL, json, strlen(json), &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, total);
    assert_memory_equal(r.body.data, full.body.data, total);
    assert_true(header(&r, "etag", v, sizeof(v)));
    assert_string_equal(v, "\"fake-small-0\"");
    resp_free(&r);

    /* head only */
    do_req(port, "GET", "/starlight/delta?to=empty&platform=linux/amd64", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body.len, fake_core_total("empty"));
    check_body("empty", 0, &r.body);
    resp_free(&r);
    resp_free(&full);
    assert_true(wait_idle(main_srv.srv, 2000));
    assert_int_equal(fake_core_plans_live(), 0);
}

/* A 64 MiB stream, checked byte by byte as it arrives (not buffered). */
struct verify {
    const char *to;
    uint64_t pos;
    bool bad;
    uint64_t abort_after; /* 0 = never */
};

static size_t on_verify(char *p, size_t size, size_t n, void *ud)
{
    struct verify *v = ud;
    for (size_t i = 0; i < size * n; i++)
        if ((uint8_t)p[i] != fake_core_byte(v->to, v->pos + i))
            v->bad = true;
    v->pos += size * n;
    if (v->abort_after && v->pos >= v->abort_after)
        return 0; /* curl aborts: the client goes away mid-stream */
    return size * n;
}

static CURL *verify_easy(int port, const char *to, struct verify *v)
{
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/starlight/delta?to=%s&platform=linux/amd64",
             port, to);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_verify);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, v);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 120L);
    return c;
}

static void test_big_stream(void **state)
{
    (void)state;
    struct verify v = {.to = "big"};
    CURL *c = verify_easy(main_srv.port, "big", &v);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    assert_int_equal(status, 200);
    assert_int_equal(v.pos, fake_core_total("big"));
    assert_false(v.bad);
    assert_true(wait_idle(main_srv.srv, 2000));
}

static void test_disconnect_midstream(void **state)
{
    (void)state;
    uint64_t before = fake_core_bytes_read();
    uint64_t cancelled = fake_core_reads_cancelled();
    struct verify v = {.to = "slow", .abort_after = 512 * 1024};
    CURL *c = verify_easy(main_srv.port, "slow", &v);
    assert_int_equal(curl_easy_perform(c), CURLE_WRITE_ERROR);
    curl_easy_cleanup(c);
    assert_false(v.bad);
    /* the worker notices and stops; every object is freed (ASan/LSan checks the rest) */
    assert_true(wait_idle(main_srv.srv, 5000));
    assert_int_equal(fake_core_plans_live(), 0);
    uint64_t read = fake_core_bytes_read() - before;
    assert_true(read < 8u << 20); /* far from the 64 MiB of the whole body */
    assert_true(fake_core_reads_cancelled() >= cancelled);
    /* and the server still serves */
    struct resp r;
    do_req(main_srv.port, "GET", "/", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    resp_free(&r);
}

static void test_failed_read_midstream(void **state)
{
    (void)state;
    struct verify v = {.to = "fail"};
    CURL *c = verify_easy(main_srv.port, "fail", &v);
    CURLcode rc = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    /* headers were out (200): the cut connection (short body) is the error signal */
    assert_int_equal(status, 200);
    assert_true(rc == CURLE_PARTIAL_FILE || rc == CURLE_RECV_ERROR);
    assert_true(v.pos >= 1u << 20 && v.pos < fake_core_total("fail"));
    assert_false(v.bad);
    assert_true(wait_idle(main_srv.srv, 2000));
}

/* What n streams may queue at most: a narrow window each, and the wide-window slots. */
#define STREAM_CHUNKS_BOUND(n)                                                                     \
    ((size_t)(n)*SL_STREAM_MIN_CHUNKS +                                                            \
     (size_t)SL_STREAM_WIDE_SLOTS * (SL_STREAM_WIDE_CHUNKS - SL_STREAM_MIN_CHUNKS))

static void test_concurrent_streams(void **state)
{
    (void)state;
    enum { N = 50 };
    CURLM *m = curl_multi_init();
    CURL *easy[N];
    struct verify v[N];
    for (int i = 0; i < N; i++) {
        v[i] = (struct verify){.to = "medium"};
        easy[i] = verify_easy(main_srv.port, "medium", &v[i]);
        curl_multi_add_handle(m, easy[i]);
    }
    int running = 1;
    time_t t0 = time(NULL);
    size_t peak_chunks = 0, peak_streams = 0;
    while (running && time(NULL) - t0 < 120) {
        curl_multi_perform(m, &running);
        struct sl_server_stats st;
        sl_server_stats(main_srv.srv, &st);
        peak_chunks = SL_MAX(peak_chunks, st.queued_chunks);
        peak_streams = SL_MAX(peak_streams, st.streams_in_flight);
        if (running)
            curl_multi_poll(m, NULL, 0, 100, NULL);
    }
    int ok = 0;
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(m, &left)))
        if (msg->msg == CURLMSG_DONE && msg->data.result == CURLE_OK)
            ok++;
    for (int i = 0; i < N; i++) {
        long status = 0;
        curl_easy_getinfo(easy[i], CURLINFO_RESPONSE_CODE, &status);
        assert_int_equal(status, 200);
        assert_int_equal(v[i].pos, fake_core_total("medium"));
        assert_false(v[i].bad);
        curl_multi_remove_handle(m, easy[i]);
        curl_easy_cleanup(easy[i]);
    }
    curl_multi_cleanup(m);
    print_message("50 streams: peak %zu in flight, peak %zu chunks queued (%zu KiB)\n",
                  peak_streams, peak_chunks, peak_chunks * SL_STREAM_CHUNK / 1024);
    assert_true(peak_chunks <= STREAM_CHUNKS_BOUND(N));
    assert_int_equal(ok, N);
    assert_true(wait_idle(main_srv.srv, 2000));
}

static long rss_kib(void)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/status", "re");
    char line[256];
    long v = -1;
    while (f && fgets(line, sizeof(line), f))
        if (sscanf(line, "VmRSS: %ld", &v) == 1)
            break;
    return v;
}

/* Clients that send a request and then read nothing: the proxy must hold a bounded window
 * per stream, not the payload. */
static void test_slow_client_backpressure(void **state)
{
    (void)state;
    enum { N = 8 };
    int fds[N];
    long rss0 = rss_kib();
    uint64_t before = fake_core_bytes_read();
    for (int i = 0; i < N; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(fds[i] >= 0);
        int small = 16 * 1024;
        setsockopt(fds[i], SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)main_srv.port)};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        assert_int_equal(connect(fds[i], (struct sockaddr *)&sa, sizeof(sa)), 0);
        const char *req = "GET /starlight/delta?to=big&platform=linux/amd64 HTTP/1.1\r\n"
                          "Host: x\r\n\r\n";
        assert_int_equal(write(fds[i], req, strlen(req)), (ssize_t)strlen(req));
    }
    sleep(2);
    struct sl_server_stats st;
    sl_server_stats(main_srv.srv, &st);
    uint64_t read = fake_core_bytes_read() - before;
    long rss1 = rss_kib();
    print_message("backpressure: %d stalled streams, %llu KiB read from the core, %zu chunks "
                  "queued, RSS %+ld KiB\n",
                  N, (unsigned long long)(read >> 10), st.queued_chunks, rss1 - rss0);
    assert_int_equal(st.streams_in_flight, N);
    assert_true(st.queued_chunks <= STREAM_CHUNKS_BOUND(N));
    /* per stream: the window (~1.1 MiB) + kernel socket buffers (a few MiB on loopback) */
    assert_true(read < (uint64_t)N * (8u << 20));
    assert_true(read < (uint64_t)N * fake_core_total("big") / 4);
    assert_true(rss1 - rss0 < N * 4 * 1024);
    for (int i = 0; i < N; i++)
        close(fds[i]);
    assert_true(wait_idle(main_srv.srv, 5000));
    assert_int_equal(fake_core_plans_live(), 0);
}

/* ---- auth --------------------------------------------------------------------------------- */

static char *bcrypt(const char *pass)
{
    char salt[CRYPT_GENSALT_OUTPUT_SIZE];
    assert_non_null(crypt_gensalt_rn("$2b$", 5, NULL, 0, salt, sizeof(salt)));
    struct crypt_data *cd = sl_xcalloc(1, sizeof(*cd));
    char *h = sl_xstrdup(crypt_r(pass, salt, cd));
    free(cd);
    return h;
}

static void write_file(const char *path, const char *text)
{
    _cleanup_fclose_ FILE *f = fopen(path, "we");
    assert_non_null(f);
    fputs(text, f);
}

static long status_with(int port, const char *path, const char *auth)
{
    struct resp r;
    const char *h[] = {auth, NULL};
    do_req(port, "GET", path, auth ? h : NULL, NULL, 0, &r);
    long s = r.status;
    if (s == 401) {
        char v[256];
        assert_true(header(&r, "www-authenticate", v, sizeof(v)));
        assert_non_null(strstr(r.headers.data, "Basic realm=\"starlight\""));
        assert_non_null(strstr(r.headers.data, "Bearer realm=\"starlight\""));
        assert_json_error(&r, 401, NULL);
    }
    resp_free(&r);
    return s;
}

static void test_auth(void **state)
{
    (void)state;
    char dir[] = "/tmp/sl-proxy-auth-XXXXXX";
    assert_non_null(mkdtemp(dir));
    _cleanup_free_ char *path = sl_xasprintf("%s/htpasswd", dir);
    _cleanup_free_ char *h = bcrypt("s3cret");
    _cleanup_free_ char *text = sl_xasprintf("# users\nalice:%s\n\ntoken:tok-123\n", h);
    write_file(path, text);

    struct running rs = {0};
    start_server(&rs, path, 2);
    int port = rs.port;
    /* alice:s3cret, alice:wrong, bob:s3cret */
    const char *good = "Authorization: Basic YWxpY2U6czNjcmV0";
    const char *wrong = "Authorization: Basic YWxpY2U6d3Jvbmc=";
    const char *bob = "Authorization: Basic Ym9iOnMzY3JldA==";
    assert_int_equal(status_with(port, "/", NULL), 401);
    assert_int_equal(status_with(port, "/", good), 200);
    assert_int_equal(status_with(port, "/", good), 200); /* cached verification */
    assert_int_equal(status_with(port, "/", wrong), 401);
    assert_int_equal(status_with(port, "/", bob), 401);
    assert_int_equal(status_with(port, "/", "Authorization: Basic !!!"), 401);
    assert_int_equal(status_with(port, "/", "Authorization: Bearer tok-123"), 200);
    assert_int_equal(status_with(port, "/", "Authorization: Bearer tok-1234"), 401);
    assert_int_equal(status_with(port, "/", "Authorization: Bearer "), 401);
    assert_int_equal(status_with(port, "/", "Authorization: Digest x"), 401);
    assert_int_equal(status_with(port, "/starlight/delta?to=small&platform=linux/amd64", NULL),
                     401);
    assert_int_equal(status_with(port, "/starlight/delta?to=small&platform=linux/amd64",
                                 "Authorization: Bearer tok-123"),
                     200);
    /* open health, closed metrics (as configured) */
    assert_int_equal(status_with(port, "/health-check", NULL), 200);
    assert_int_equal(status_with(port, "/metrics", NULL), 401);
    assert_int_equal(status_with(port, "/metrics", good), 200);

    /* reload: bob appears, the token goes away */
    _cleanup_free_ char *hb = bcrypt("s3cret");
    _cleanup_free_ char *text2 = sl_xasprintf("bob:%s\n", hb);
    sleep(1); /* a new mtime even on coarse clocks */
    write_file(path, text2);
    assert_int_equal(status_with(port, "/", bob), 200);
    assert_int_equal(status_with(port, "/", good), 401);
    assert_int_equal(status_with(port, "/", "Authorization: Bearer tok-123"), 401);

    /* a broken file keeps the previous entries */
    sleep(1);
    write_file(path, "bob:not-a-hash\n");
    assert_int_equal(status_with(port, "/", bob), 200);

    /* a line made by htpasswd -B ($2y$), when the tool is installed */
    if (access("/usr/bin/htpasswd", X_OK) == 0) {
        _cleanup_free_ char *cmd =
            sl_xasprintf("htpasswd -B -b -C 5 -c %s/ht carol pw-carol 2>/dev/null", dir);
        if (system(cmd) == 0) {
            _cleanup_free_ char *ht = sl_xasprintf("%s/ht", dir);
            _cleanup_free_ char *mv = sl_xasprintf("sleep 1; cp %s %s", ht, path);
            assert_int_equal(system(mv), 0);
            /* carol:pw-carol */
            assert_int_equal(status_with(port, "/", "Authorization: Basic Y2Fyb2w6cHctY2Fyb2w="),
                             200);
            unlink(ht);
        }
    }
    assert_true(wait_idle(rs.srv, 2000));
    stop_server(&rs);

    /* a file with a bad hash is refused at start */
    write_file(path, "dave:plaintext\n");
    struct sl_auth *a = NULL;
    _cleanup_error_ sl_error_t err = NULL;
    assert_int_equal(sl_auth_new(path, &a, &err), -EINVAL);
    assert_non_null(strstr(sl_error_msg(err, -EINVAL), ":1:"));
    unlink(path);
    rmdir(dir);
}

/* ---- TLS ------------------------------------------------------------------------------------ */

static void test_tls(void **state)
{
    (void)state;
    if (access("/usr/bin/openssl", X_OK) != 0) {
        print_message("no openssl CLI: TLS test skipped\n");
        return;
    }
    char dir[] = "/tmp/sl-proxy-tls-XXXXXX";
    assert_non_null(mkdtemp(dir));
    _cleanup_free_ char *cmd =
        sl_xasprintf("openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
                     "-keyout %s/key.pem -out %s/cert.pem >/dev/null 2>&1",
                     dir, dir);
    assert_int_equal(system(cmd), 0);
    _cleanup_free_ char *cert = sl_xasprintf("%s/cert.pem", dir);
    _cleanup_free_ char *key = sl_xasprintf("%s/key.pem", dir);
    struct running rs = {0};
    start_server_tls(&rs, NULL, 2, cert, key);

    struct verify v = {.to = "small"};
    CURL *c = curl_easy_init();
    char url[256];
    snprintf(url, sizeof(url), "https://127.0.0.1:%d/starlight/delta?to=small&platform=x/y",
             rs.port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, cert);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_verify);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &v);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    assert_int_equal(status, 200);
    assert_int_equal(v.pos, fake_core_total("small"));
    assert_false(v.bad);
    /* plain HTTP to the TLS port does not get an answer */
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/", rs.port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 5L);
    assert_int_not_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    assert_true(wait_idle(rs.srv, 2000));
    stop_server(&rs);
    unlink(cert);
    unlink(key);
    rmdir(dir);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    shared_easy = curl_easy_init();
    start_server(&main_srv, NULL, 4);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    stop_server(&main_srv);
    curl_easy_cleanup(shared_easy);
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    if (getenv("SL_TEST_DEBUG"))
        sl_log_setup("test-proxy-server", SL_LOG_TEXT, SL_LOG_DEBUG);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_helpers),
        cmocka_unit_test(test_routes),
        cmocka_unit_test(test_keepalive),
        cmocka_unit_test(test_delta_ranges),
        cmocka_unit_test(test_big_stream),
        cmocka_unit_test(test_disconnect_midstream),
        cmocka_unit_test(test_failed_read_midstream),
        cmocka_unit_test(test_concurrent_streams),
        cmocka_unit_test(test_slow_client_backpressure),
        cmocka_unit_test(test_auth),
        cmocka_unit_test(test_tls),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
