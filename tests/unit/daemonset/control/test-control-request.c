/* test-control-request.c — the control API's parsers (daemonset/control/request.h) without a
 * socket: request heads, query arguments, each JSON body kind and proxies.json, with the
 * messages their errors carry. */
#include "test.h"

#include "request.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY (1u << 20)

static int head(const char *s, struct sl_control_head *h, sl_error_t *err)
{
    return sl_control_parse_head(s, strlen(s), MAX_BODY, h, err);
}

/* Asserts that `r` failed with class `code` and a message containing `msg`. */
static void expect_err(int r, sl_error_t *err, int code, const char *msg)
{
    assert_int_equal(r, -code);
    const char *m = sl_error_msg(*err, r);
    if (!strstr(m, msg))
        fail_msg("error `%s` does not mention `%s`", m, msg);
    sl_error_free(err);
}

static void test_head(void **state)
{
    (void)state;
    sl_error_t err = NULL;
    struct sl_control_head h;
    assert_int_equal(
        head("POST /v1/pull?x=1 HTTP/1.1\r\nHost: l\r\ncontent-length:  12 \r\n\r\n", &h, &err), 0);
    assert_string_equal(h.method, "POST");
    assert_string_equal(h.target, "/v1/pull?x=1");
    assert_int_equal(h.content_length, 12);
    sl_control_head_clear(&h);
    assert_int_equal(head("GET / HTTP/1.0\r\n\r\n", &h, &err), 0);
    assert_int_equal(h.content_length, 0);
    sl_control_head_clear(&h);
    sl_control_head_clear(&h); /* twice is fine */

    expect_err(head("GET /v1/status\r\n\r\n", &h, &err), &err, EINVAL, "malformed request line");
    expect_err(head("GET  /v1/status HTTP/1.1\r\n\r\n", &h, &err), &err, EINVAL, "malformed");
    expect_err(head("GETTINGX /v1/status HTTP/1.1\r\n\r\n", &h, &err), &err, EINVAL, "method");
    expect_err(head("get /v1/status HTTP/1.1\r\n\r\n", &h, &err), &err, EINVAL, "method");
    expect_err(head("GET /v1/status HTTP/2.0\r\n\r\n", &h, &err), &err, EINVAL, "HTTP/1.0");
    expect_err(head("GET v1/status HTTP/1.1\r\n\r\n", &h, &err), &err, EINVAL, "start with /");
    expect_err(head("GET /v1/\x01 HTTP/1.1\r\n\r\n", &h, &err), &err, EINVAL, "control byte");
    expect_err(head("POST /v1/pull HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", &h, &err), &err, EINVAL,
               "Content-Length");
    expect_err(head("POST /v1/pull HTTP/1.1\r\nContent-Length: -1\r\n\r\n", &h, &err), &err, EINVAL,
               "Content-Length");
    expect_err(
        head("POST /v1/pull HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", &h, &err),
        &err, EINVAL, "conflicting");
    expect_err(
        head("POST /v1/pull HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", &h, &err),
        &err, EFBIG, "body over");
    expect_err(head("POST /v1/pull HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n", &h, &err), &err,
               EFBIG, "body over");
    expect_err(head("POST /v1/pull HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", &h, &err), &err,
               EINVAL, "chunked");
    expect_err(sl_control_parse_head("GET /\0 HTTP/1.1\r\n\r\n", 20, MAX_BODY, &h, &err), &err,
               EINVAL, "NUL");
    /* a target at the cap passes, one byte more does not */
    char big[SL_CONTROL_MAX_TARGET + 64];
    int n = snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\n\r\n", SL_CONTROL_MAX_TARGET - 1, 0);
    assert_int_equal(sl_control_parse_head(big, (size_t)n, MAX_BODY, &h, &err), 0);
    assert_int_equal(strlen(h.target), SL_CONTROL_MAX_TARGET);
    sl_control_head_clear(&h);
    n = snprintf(big, sizeof(big), "GET /%0*d HTTP/1.1\r\n\r\n", SL_CONTROL_MAX_TARGET, 0);
    expect_err(sl_control_parse_head(big, (size_t)n, MAX_BODY, &h, &err), &err, EINVAL,
               "target over");
}

static void test_query(void **state)
{
    (void)state;
    sl_error_t err = NULL;
    char *v = NULL;
    assert_int_equal(sl_control_query("/v1/ping", "proxy", &v, &err), 0);
    assert_null(v);
    assert_int_equal(
        sl_control_query("/v1/ping?xproxy=a&proxy=http%3A%2F%2Fh%3a1+x", "proxy", &v, &err), 1);
    assert_string_equal(v, "http://h:1 x");
    free(v);
    assert_int_equal(sl_control_query("/v1/ping?proxy", "proxy", &v, &err), 1);
    assert_string_equal(v, "");
    free(v);
    assert_int_equal(sl_control_query("/v1/ping?proxies=1", "proxy", &v, &err), 0);
    expect_err(sl_control_query("/v1/ping?proxy=a%2", "proxy", &v, &err), &err, EINVAL, "escape");
    expect_err(sl_control_query("/v1/ping?proxy=a%zz", "proxy", &v, &err), &err, EINVAL, "escape");
    expect_err(sl_control_query("/v1/ping?proxy=a%00b", "proxy", &v, &err), &err, EINVAL, "escape");
    expect_err(sl_control_query("/v1/ping?proxy=a&proxy=b", "proxy", &v, &err), &err, EINVAL,
               "more than once");
    assert_null(v);
}

#define BODY(s) s, strlen(s)

static void test_pull(void **state)
{
    (void)state;
    sl_error_t err = NULL;
    struct sl_control_pull_req p;
    assert_int_equal(
        sl_control_parse_pull(BODY("{\"ref\":\"a/b:c\",\"namespace\":\"k8s.io\",\"insecure\":true,"
                                   "\"proxy\":\"p1\",\"platform\":\"linux/arm64\"}"),
                              &p, &err),
        0);
    assert_string_equal(p.ref, "a/b:c");
    assert_string_equal(p.ns, "k8s.io");
    assert_string_equal(p.proxy, "p1");
    assert_string_equal(p.platform, "linux/arm64");
    assert_true(p.insecure);
    sl_control_pull_req_clear(&p);
    assert_int_equal(sl_control_parse_pull(BODY("{\"ref\":\"x\"}"), &p, &err), 0);
    assert_null(p.ns);
    assert_null(p.proxy);
    assert_false(p.insecure);
    sl_control_pull_req_clear(&p);

    expect_err(sl_control_parse_pull(BODY("{not json"), &p, &err), &err, EINVAL, "invalid JSON");
    expect_err(sl_control_parse_pull(NULL, 0, &p, &err), &err, EINVAL, "invalid JSON");
    expect_err(sl_control_parse_pull(BODY("[1]"), &p, &err), &err, EINVAL, "not an object");
    expect_err(sl_control_parse_pull(BODY("{}"), &p, &err), &err, EINVAL, ".ref: missing");
    expect_err(sl_control_parse_pull(BODY("{\"ref\":\"\"}"), &p, &err), &err, EINVAL, "empty");
    expect_err(sl_control_parse_pull(BODY("{\"ref\":42}"), &p, &err), &err, EINVAL, ".ref");
    expect_err(sl_control_parse_pull(BODY("{\"ref\":\"a\",\"insecure\":\"yes\"}"), &p, &err), &err,
               EINVAL, ".insecure");
    expect_err(sl_control_parse_pull(BODY("{\"ref\":\"a\",\"namespace\":7}"), &p, &err), &err,
               EINVAL, ".namespace");
    expect_err(sl_control_parse_pull(BODY("{\"ref\":\"a\",\"ref\":\"b\"}"), &p, &err), &err, EINVAL,
               "duplicate");
    /* a NUL inside the body: the length counts, not the C string */
    expect_err(sl_control_parse_pull("{\"ref\":\"a\"}\0junk", 16, &p, &err), &err, EINVAL,
               "invalid JSON");
    assert_null(p.ref);
}

static void test_profile_and_small_bodies(void **state)
{
    (void)state;
    sl_error_t err = NULL;
    struct sl_control_profile pr;
    assert_int_equal(sl_control_parse_profile(BODY("{\"name\":\"p\",\"url\":\"https://h\","
                                                   "\"user\":\"u:pw\",\"token\":\"t\"}"),
                                              &pr, &err),
                     0);
    assert_string_equal(pr.name, "p");
    assert_string_equal(pr.url, "https://h");
    assert_string_equal(pr.user, "u:pw");
    assert_string_equal(pr.token, "t");
    sl_control_profile_clear(&pr);
    expect_err(sl_control_parse_profile(BODY("{\"name\":\"x\"}"), &pr, &err), &err, EINVAL,
               ".url: missing");
    expect_err(sl_control_parse_profile(BODY("{\"name\":\"a/b\",\"url\":\"http://h\"}"), &pr, &err),
               &err, EINVAL, ".name");
    expect_err(sl_control_parse_profile(BODY("{\"name\":\"\",\"url\":\"http://h\"}"), &pr, &err),
               &err, EINVAL, ".name");
    expect_err(
        sl_control_parse_profile(BODY("{\"name\":\"a\",\"url\":\"file:///etc\"}"), &pr, &err), &err,
        EINVAL, "http://");

    struct sl_control_optimizer_req o;
    assert_int_equal(
        sl_control_parse_optimizer(BODY("{\"enable\":true,\"group\":\"web\"}"), &o, &err), 0);
    assert_true(o.enable);
    assert_string_equal(o.group, "web");
    sl_control_optimizer_req_clear(&o);
    expect_err(sl_control_parse_optimizer(BODY("{\"group\":\"web\"}"), &o, &err), &err, EINVAL,
               "`enable`");
    expect_err(sl_control_parse_optimizer(BODY("{\"enable\":false,\"x\":1}"), &o, &err), &err,
               EINVAL, "unknown key `x`");

    char *proxy = NULL;
    assert_int_equal(sl_control_parse_report(NULL, 0, &proxy, &err), 0);
    assert_null(proxy);
    assert_int_equal(sl_control_parse_report(BODY("{\"proxy\":\"p\"}"), &proxy, &err), 0);
    assert_string_equal(proxy, "p");
    free(proxy);
    expect_err(sl_control_parse_report(BODY("{\"proxi\":\"p\"}"), &proxy, &err), &err, EINVAL,
               "unknown key");

    int64_t grace = 0;
    assert_int_equal(sl_control_parse_gc(NULL, 0, &grace, &err), 0);
    assert_int_equal(grace, -1);
    assert_int_equal(sl_control_parse_gc(BODY("{\"grace\":30}"), &grace, &err), 0);
    assert_int_equal(grace, 30);
    assert_int_equal(sl_control_parse_gc(BODY("{}"), &grace, &err), 0);
    assert_int_equal(grace, -1);
    expect_err(sl_control_parse_gc(BODY("{\"grace\":-1}"), &grace, &err), &err, EINVAL, ">= 0");
    expect_err(sl_control_parse_gc(BODY("{\"grace\":1.5}"), &grace, &err), &err, EINVAL, ">= 0");
    expect_err(sl_control_parse_gc(BODY("[30]"), &grace, &err), &err, EINVAL, "not an object");
}

static void test_profiles_file(void **state)
{
    (void)state;
    sl_error_t err = NULL;
    struct sl_control_profiles ps;
    const char *doc = "{\"proxies\":[{\"name\":\"default\",\"url\":\"http://a\"},"
                      "{\"name\":\"b\",\"url\":\"https://b\",\"token\":\"t\"}]}";
    assert_int_equal(sl_control_parse_profiles(BODY(doc), &ps, &err), 0);
    assert_int_equal(ps.n, 2);
    assert_int_equal(sl_control_profiles_find(&ps, "b"), 1);
    assert_int_equal(sl_control_profiles_find(&ps, "c"), -1);
    /* put replaces by name, then adds */
    struct sl_control_profile c = {.name = "b", .url = "http://b2"};
    assert_int_equal(sl_control_profiles_put(&ps, &c, &err), 0);
    assert_int_equal(ps.n, 2);
    assert_string_equal(ps.v[1].url, "http://b2");
    assert_null(ps.v[1].token);
    c.name = "c";
    assert_int_equal(sl_control_profiles_put(&ps, &c, &err), 0);
    assert_int_equal(ps.n, 3);
    /* the document reads back to the same profiles */
    json_t *j = sl_control_profiles_json(&ps);
    char *text = json_dumps(j, 0);
    json_decref(j);
    struct sl_control_profiles back;
    assert_int_equal(sl_control_parse_profiles(BODY(text), &back, &err), 0);
    free(text);
    assert_int_equal(back.n, 3);
    assert_string_equal(back.v[2].name, "c");
    sl_control_profiles_clear(&back);
    /* the cap */
    for (int i = 0; ps.n < SL_CONTROL_MAX_PROFILES; i++) {
        char name[16];
        snprintf(name, sizeof(name), "n%d", i);
        c.name = name;
        assert_int_equal(sl_control_profiles_put(&ps, &c, &err), 0);
    }
    c.name = "one-more";
    expect_err(sl_control_profiles_put(&ps, &c, &err), &err, EFBIG, "at most");
    c.name = "b"; /* replacing still works at the cap */
    assert_int_equal(sl_control_profiles_put(&ps, &c, &err), 0);
    sl_control_profiles_clear(&ps);
    sl_control_profiles_clear(&ps);

    expect_err(sl_control_parse_profiles(BODY("{"), &ps, &err), &err, EINVAL,
               "proxies.json: invalid JSON");
    expect_err(sl_control_parse_profiles(BODY("{}"), &ps, &err), &err, EINVAL, ".proxies: missing");
    expect_err(sl_control_parse_profiles(BODY("{\"proxies\":[{\"name\":\"a\",\"url\":\"http://a\"},"
                                              "{\"name\":\"a\",\"url\":\"http://b\"}]}"),
                                         &ps, &err),
               &err, EINVAL, ".proxies[1].name: `a` is defined twice");
    expect_err(
        sl_control_parse_profiles(BODY("{\"proxies\":[{\"name\":\"a\",\"url\":7}]}"), &ps, &err),
        &err, EINVAL, ".proxies[0].url");
    expect_err(sl_control_parse_profiles(BODY("{\"proxies\":[1]}"), &ps, &err), &err, EINVAL,
               ".proxies[0]");
    assert_int_equal(ps.n, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head),          cmocka_unit_test(test_query),
        cmocka_unit_test(test_pull),          cmocka_unit_test(test_profile_and_small_bodies),
        cmocka_unit_test(test_profiles_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
