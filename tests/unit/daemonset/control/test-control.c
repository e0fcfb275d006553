/* test-control.c — the daemon's control API on a temp unix socket, spoken to with common/http:
 * endpoints and methods, request parsing (bad JSON, missing or mistyped fields, oversized
 * bodies) and the JSON error answers ({status, code, error}), proxy profiles, a pull whose proxy
 * is unreachable ending with an error line, a second pull of an image in flight attaching to
 * the first (one request to the proxy, the same answer). */
#include "test.h"

#include "control.h"
#include "http.h"
#include "json.h"
#include "store.h"

#include <arpa/inet.h>
#include <ftw.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

struct fixture {
    char dir[64];
    char sock[96];
    struct sl_store *store;
    struct sl_control *ctl;
};

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/sl-test-ctl.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    snprintf(fx->sock, sizeof fx->sock, "%s/ctl.sock", fx->dir);
    char store_dir[128];
    snprintf(store_dir, sizeof store_dir, "%s/store", fx->dir);
    sl_error_t err = NULL;
    assert_int_equal(sl_store_open(store_dir, NULL, &fx->store, &err), 0);
    struct sl_control_options o = {
        .socket_path = fx->sock,
        .root = fx->dir,
        .default_proxy = "http://127.0.0.1:1",
        .store = fx->store,
    };
    assert_int_equal(sl_control_start(&o, &fx->ctl, &err), 0);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    sl_control_stop(fx->ctl);
    sl_store_free(fx->store);
    nftw(fx->dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

static bool transport_ok; /* call() returns a negative errno instead of failing */

/* Sends one request; returns the status and the body (2xx or error) as a string. */
static long call(struct fixture *fx, const char *method, const char *path, const char *body,
                 char **ret_body)
{
    struct sl_http_options ho = {.retries = -1};
    struct sl_http_request rq;
    sl_http_request_init(&rq);
    char url[256];
    snprintf(url, sizeof url, "http://localhost%s", path);
    rq.method = method;
    rq.url = url;
    rq.retries = 0;
    rq.unix_socket_path = fx->sock;
    const char *hdr[] = {"Content-Type: application/json", NULL};
    rq.headers = hdr;
    if (body) {
        rq.body = body;
        rq.body_len = (int64_t)strlen(body);
        rq.has_body = true;
    }
    struct sl_buf out = {.max = 4u << 20};
    rq.body_buf = &out;
    struct sl_http_response resp = {0};
    sl_error_t err = NULL;
    int r = sl_http_perform(&ho, &rq, &resp, &err);
    if (r < 0 && transport_ok) { /* the server may close before reading all of the body */
        *ret_body = strdup(sl_error_msg(err, r));
        sl_http_response_free(&resp);
        sl_buf_free(&out);
        sl_error_free(&err);
        return r;
    }
    if (r < 0)
        fail_msg("%s %s: %s", method, path, sl_error_msg(err, r));
    const struct sl_buf *b = resp.status >= 200 && resp.status < 300 ? &out : &resp.error_body;
    *ret_body = strndup(b->len ? (const char *)b->data : "", b->len);
    long st = resp.status;
    sl_http_response_free(&resp);
    sl_buf_free(&out);
    sl_error_free(&err);
    return st;
}

/* An error answer: the status and JSON {status, code, error} with code = status. */
static void expect_error(struct fixture *fx, const char *method, const char *path, const char *body,
                         long want)
{
    _cleanup_free_ char *b = NULL;
    long st = call(fx, method, path, body, &b);
    if (st != want)
        fail_msg("%s %s: HTTP %ld (want %ld): %s", method, path, st, want, b);
    json_error_t je;
    json_t *j = json_loads(b, 0, &je);
    assert_non_null(j);
    assert_int_equal(json_integer_value(json_object_get(j, "code")), want);
    assert_non_null(json_string_value(json_object_get(j, "status")));
    const char *msg = json_string_value(json_object_get(j, "error"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    json_decref(j);
}

static void test_endpoints(void **state)
{
    struct fixture *fx = *state;
    _cleanup_free_ char *v = NULL, *s = NULL;
    assert_int_equal(call(fx, "GET", "/v1/version", NULL, &v), 200);
    assert_non_null(strstr(v, "\"version\""));
    assert_int_equal(call(fx, "GET", "/v1/status", NULL, &s), 200);
    assert_non_null(strstr(s, "\"layers\":[]"));
    expect_error(fx, "GET", "/v1/nope", NULL, 404);
    expect_error(fx, "GET", "/../etc/passwd", NULL, 404);
    expect_error(fx, "DELETE", "/v1/status", NULL, 405);
    expect_error(fx, "GET", "/v1/pull", NULL, 405);
}

static void test_pull_bad_requests(void **state)
{
    struct fixture *fx = *state;
    expect_error(fx, "POST", "/v1/pull", "{not json", 400);
    expect_error(fx, "POST", "/v1/pull", "[1,2]", 400);
    expect_error(fx, "POST", "/v1/pull", "{\"bogus\":1}", 400);
    expect_error(fx, "POST", "/v1/pull", "{\"ref\":42}", 400);
    expect_error(fx, "POST", "/v1/pull", "{\"ref\":\"a/b:c\",\"insecure\":\"yes\"}", 400);
    expect_error(fx, "POST", "/v1/pull", "{\"ref\":\"a/b:c\",\"namespace\":7}", 400);
    expect_error(fx, "POST", "/v1/pull", "", 400);
    /* over SL_CONTROL_MAX_BODY */
    size_t n = SL_CONTROL_MAX_BODY + 10;
    char *big = malloc(n + 1);
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = 0;
    _cleanup_free_ char *b = NULL;
    transport_ok = true;
    long st = call(fx, "POST", "/v1/pull", big, &b);
    transport_ok = false;
    free(big);
    assert_true(st == 413 || st == 400 || st < 0); /* refused, or the connection closed */
    /* the server still answers */
    _cleanup_free_ char *v = NULL;
    assert_int_equal(call(fx, "GET", "/v1/version", NULL, &v), 200);
}

static void test_pull_unreachable_proxy(void **state)
{
    struct fixture *fx = *state;
    _cleanup_free_ char *b = NULL;
    long st = call(
        fx, "POST", "/v1/pull",
        "{\"ref\":\"127.0.0.1:1/x/y:z\",\"proxy\":\"http://127.0.0.1:1\",\"insecure\":true}", &b);
    /* either an error status, or a JSON-lines stream whose last line is the error */
    assert_true(st >= 400 || strstr(b, "\"phase\":\"error\"") != NULL);
    assert_non_null(strstr(b, "error"));
}

/* A fake proxy that holds each delta request until released, then answers 404. */
struct slow_proxy {
    int lfd, port;
    atomic_int accepts;
    atomic_bool release;
    pthread_t thr;
};

static void *slow_main(void *ud)
{
    struct slow_proxy *sp = ud;
    for (;;) {
        int c = accept(sp->lfd, NULL, NULL);
        if (c < 0)
            return NULL;
        atomic_fetch_add(&sp->accepts, 1);
        char buf[4096];
        (void)!read(c, buf, sizeof buf);
        while (!atomic_load(&sp->release))
            usleep(10000);
        static const char a[] = "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                                "Content-Length: 24\r\nConnection: close\r\n\r\n"
                                "{\"error\":\"unknown ref\"}";
        (void)!write(c, a, sizeof a - 1);
        close(c);
    }
}

struct pull_thread {
    struct fixture *fx;
    char body[256];
    long status;
    char *answer;
    pthread_t thr;
};

static void *pull_main(void *ud)
{
    struct pull_thread *pt = ud;
    pt->status = call(pt->fx, "POST", "/v1/pull", pt->body, &pt->answer);
    return NULL;
}

static void test_pull_attach(void **state)
{
    struct fixture *fx = *state;
    struct slow_proxy sp = {0};
    sp.lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(sp.lfd, (struct sockaddr *)&a, sizeof a), 0);
    socklen_t al = sizeof a;
    getsockname(sp.lfd, (struct sockaddr *)&a, &al);
    sp.port = ntohs(a.sin_port);
    assert_int_equal(listen(sp.lfd, 8), 0);
    assert_int_equal(pthread_create(&sp.thr, NULL, slow_main, &sp), 0);

    struct pull_thread p[3] = {{.fx = fx}, {.fx = fx}, {.fx = fx}};
    for (int i = 0; i < 3; i++)
        snprintf(p[i].body, sizeof p[i].body,
                 "{\"ref\":\"127.0.0.1:5/x:1\",\"proxy\":\"http://127.0.0.1:%d\"}", sp.port);
    assert_int_equal(pthread_create(&p[0].thr, NULL, pull_main, &p[0]), 0);
    for (int i = 0; i < 500 && atomic_load(&sp.accepts) == 0; i++)
        usleep(10000);
    assert_int_equal(atomic_load(&sp.accepts), 1);
    /* the same image again while the first pull waits: it attaches, no second request */
    assert_int_equal(pthread_create(&p[1].thr, NULL, pull_main, &p[1]), 0);
    usleep(300000);
    _cleanup_free_ char *st = NULL;
    assert_int_equal(call(fx, "GET", "/v1/status", NULL, &st), 200);
    assert_non_null(strstr(st, "127.0.0.1:5/x:1"));
    assert_int_equal(atomic_load(&sp.accepts), 1);
    atomic_store(&sp.release, true);
    pthread_join(p[0].thr, NULL);
    pthread_join(p[1].thr, NULL);
    assert_int_equal(atomic_load(&sp.accepts), 1);
    assert_int_equal(p[0].status, 404);
    assert_int_equal(p[1].status, 404); /* the follower gets the pull's outcome */
    assert_non_null(strstr(p[1].answer, "unknown ref"));
    /* a pull that ended is not attached to: the next request asks the proxy again */
    pull_main(&p[2]);
    assert_int_equal(p[2].status, 404);
    assert_int_equal(atomic_load(&sp.accepts), 2);
    for (int i = 0; i < 3; i++)
        free(p[i].answer);
    shutdown(sp.lfd, SHUT_RDWR);
    pthread_join(sp.thr, NULL);
    close(sp.lfd);
}

/* The whole of a small file, NUL-terminated. */
static char *read_file(const char *path)
{
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    char *buf = calloc(1, 65536);
    assert_non_null(buf);
    size_t n = fread(buf, 1, 65535, f);
    fclose(f);
    assert_true(n > 0);
    return buf;
}

static void test_proxies(void **state)
{
    struct fixture *fx = *state;
    expect_error(fx, "POST", "/v1/proxies", "{\"name\":\"x\"}", 400);
    expect_error(fx, "POST", "/v1/proxies", "{\"url\":\"http://127.0.0.1:2\"}", 400);
    _cleanup_free_ char *a = NULL, *l = NULL;
    long st = call(fx, "POST", "/v1/proxies",
                   "{\"name\":\"p1\",\"url\":\"http://127.0.0.1:2\",\"token\":\"secret-t\"}", &a);
    assert_true(st >= 200 && st < 300);
    assert_int_equal(call(fx, "GET", "/v1/proxies", NULL, &l), 200);
    assert_non_null(strstr(l, "p1"));
    assert_null(strstr(l, "secret-t")); /* credentials redacted */
    char pj[128];
    snprintf(pj, sizeof pj, "%s/proxies.json", fx->dir);
    struct stat stt;
    assert_int_equal(stat(pj, &stt), 0);
    assert_int_equal(stt.st_mode & 0777, 0600);
    /* the file holds what users added, not the "default" synthesized from --proxy */
    _cleanup_free_ char *doc = read_file(pj);
    assert_non_null(strstr(doc, "\"p1\""));
    if (strstr(doc, "default") || strstr(doc, "127.0.0.1:1\""))
        fail_msg("synthesized profile saved: %s", doc);
    assert_non_null(strstr(l, "\"default\""));

    /* so a daemon restarted with another --proxy uses it */
    sl_control_stop(fx->ctl);
    fx->ctl = NULL;
    sl_error_t err = NULL;
    struct sl_control_options o = {
        .socket_path = fx->sock,
        .root = fx->dir,
        .default_proxy = "http://127.0.0.1:3",
        .store = fx->store,
    };
    assert_int_equal(sl_control_start(&o, &fx->ctl, &err), 0);
    _cleanup_free_ char *l2 = NULL, *a2 = NULL, *l3 = NULL;
    assert_int_equal(call(fx, "GET", "/v1/proxies", NULL, &l2), 200);
    if (!strstr(l2, "\"http://127.0.0.1:3\"") || !strstr(l2, "p1"))
        fail_msg("after a new --proxy: %s", l2);

    /* a "default" the user adds is saved and overrides --proxy */
    st = call(fx, "POST", "/v1/proxies", "{\"name\":\"default\",\"url\":\"http://127.0.0.1:4\"}",
              &a2);
    assert_true(st >= 200 && st < 300);
    assert_int_equal(call(fx, "GET", "/v1/proxies", NULL, &l3), 200);
    if (!strstr(l3, "\"http://127.0.0.1:4\"") || strstr(l3, "127.0.0.1:3\""))
        fail_msg("user default: %s", l3);
    _cleanup_free_ char *doc2 = read_file(pj);
    assert_non_null(strstr(doc2, "127.0.0.1:4"));
}

/* Sends raw bytes (the first `split` bytes, then after a pause the rest, when split > 0) and
 * returns the status of the answer (0 when none). */
static int raw_call(struct fixture *fx, const char *req, size_t len, size_t split, char *ans,
                    size_t ans_size)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", fx->sock);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    if (split > 0 && split < len) {
        assert_int_equal(send(fd, req, split, MSG_NOSIGNAL), (ssize_t)split);
        usleep(100 * 1000); /* the server reads the head alone */
        req += split;
        len -= split;
    }
    assert_int_equal(send(fd, req, len, MSG_NOSIGNAL), (ssize_t)len);
    size_t got = 0;
    ssize_t n;
    while (got + 1 < ans_size && (n = recv(fd, ans + got, ans_size - 1 - got, 0)) > 0)
        got += (size_t)n;
    ans[got] = 0;
    close(fd);
    int status = 0;
    sscanf(ans, "HTTP/1.1 %d", &status);
    return status;
}

/* Request heads and bodies the parsers refuse, sent as raw bytes: a NUL inside a body (its
 * length counts, not the C string), malformed heads. */
static void test_raw_requests(void **state)
{
    struct fixture *fx = *state;
    char ans[4096];
    static const char nul_body[] = "POST /v1/pull HTTP/1.1\r\nContent-Length: 16\r\n\r\n"
                                   "{\"ref\":\"a\"}\0junk";
    assert_int_equal(
        raw_call(fx, nul_body, sizeof(nul_body) - 1, sizeof(nul_body) - 17, ans, sizeof ans), 400);
    if (!strstr(ans, "invalid JSON"))
        fail_msg("%s", ans);
    static const char *const bad[] = {
        "GET /v1/version\r\n\r\n",
        "GET v1/version HTTP/1.1\r\n\r\n",
        "get /v1/version HTTP/1.1\r\n\r\n",
        "POST /v1/gc HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "POST /v1/gc HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
        "POST /v1/gc HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(bad); i++) {
        int st = raw_call(fx, bad[i], strlen(bad[i]), 0, ans, sizeof ans);
        if (st != 400)
            fail_msg("`%s`: HTTP %d (want 400): %s", bad[i], st, ans);
    }
    static const char big[] = "POST /v1/gc HTTP/1.1\r\nContent-Length: 9999999999\r\n\r\n";
    assert_int_equal(raw_call(fx, big, strlen(big), 0, ans, sizeof ans), 413);
    /* the query of /v1/ping: a bad escape is the caller's error */
    expect_error(fx, "GET", "/v1/ping?proxy=%zz", NULL, 400);
}

/* A proxies.json that does not parse is reported (naming the file), never silently replaced. */
static void test_proxies_file_corrupt(void **state)
{
    struct fixture *fx = *state;
    char pj[128];
    snprintf(pj, sizeof pj, "%s/proxies.json", fx->dir);
    FILE *f = fopen(pj, "w");
    assert_non_null(f);
    fputs("{\"proxies\":[{\"name\":\"a\",\"url\":7}]}", f);
    fclose(f);
    _cleanup_free_ char *l = NULL;
    assert_int_equal(call(fx, "GET", "/v1/proxies", NULL, &l), 500);
    assert_non_null(strstr(l, "proxies.json"));
    assert_non_null(strstr(l, ".proxies[0].url"));
    expect_error(fx, "POST", "/v1/proxies", "{\"name\":\"b\",\"url\":\"http://127.0.0.1:2\"}", 500);
    f = fopen(pj, "r");
    char buf[256] = {0};
    assert_true(fread(buf, 1, sizeof buf - 1, f) > 0);
    fclose(f);
    assert_non_null(strstr(buf, "\"url\":7")); /* left as it was */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_endpoints, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_bad_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_unreachable_proxy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxies, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pull_attach, setup, teardown),
        cmocka_unit_test_setup_teardown(test_raw_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_proxies_file_corrupt, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
