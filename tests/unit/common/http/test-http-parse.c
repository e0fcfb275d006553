#include "test.h"

#include "http.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

static void test_content_range(void **state)
{
    int64_t a, b, t;
    assert_int_equal(sl_http_parse_content_range("bytes 0-99/1000", &a, &b, &t), 0);
    assert_int_equal(a, 0);
    assert_int_equal(b, 99);
    assert_int_equal(t, 1000);
    assert_int_equal(sl_http_parse_content_range("bytes 5-5/*", &a, &b, &t), 0);
    assert_int_equal(t, -1);
    const char *bad[] = {"bytes 9-5/10",
                         "bytes 0-10/10",
                         "bytes */10",
                         "items 0-1/2",
                         "bytes 0-1",
                         "bytes -1-2/3",
                         "bytes 0-1/2x",
                         "",
                         "bytes 99999999999999999999-1/2"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sl_http_parse_content_range(bad[i], &a, &b, &t), -EINVAL);
    assert_int_equal(sl_http_parse_content_range(NULL, &a, &b, &t), -EINVAL);
}

static void test_range(void **state)
{
    int64_t a, b;
    assert_int_equal(sl_http_parse_range("bytes=0-99", 1000, &a, &b), 0);
    assert_int_equal(a, 0);
    assert_int_equal(b, 99);
    assert_int_equal(sl_http_parse_range("bytes=900-", 1000, &a, &b), 0);
    assert_int_equal(b, 999);
    assert_int_equal(sl_http_parse_range("bytes=900-5000", 1000, &a, &b), 0);
    assert_int_equal(b, 999);
    assert_int_equal(sl_http_parse_range("bytes=-100", 1000, &a, &b), 0);
    assert_int_equal(a, 900);
    assert_int_equal(b, 999);
    assert_int_equal(sl_http_parse_range("bytes=-5000", 1000, &a, &b), 0);
    assert_int_equal(a, 0);
    assert_int_equal(sl_http_parse_range("bytes=1000-", 1000, &a, &b), -ERANGE);
    assert_int_equal(sl_http_parse_range("bytes=-0", 1000, &a, &b), -ERANGE);
    assert_int_equal(sl_http_parse_range("bytes=0-1,5-6", 1000, &a, &b), -EINVAL);
    assert_int_equal(sl_http_parse_range("bytes=5-1", 1000, &a, &b), -EINVAL);
    assert_int_equal(sl_http_parse_range("bits=0-1", 1000, &a, &b), -EINVAL);
    assert_int_equal(sl_http_parse_range("bytes=x-1", 1000, &a, &b), -EINVAL);
}

static void test_retry_after(void **state)
{
    int64_t ms;
    assert_int_equal(sl_http_parse_retry_after("3", &ms), 0);
    assert_int_equal(ms, 3000);
    assert_int_equal(sl_http_parse_retry_after(" 0 ", &ms), 0);
    assert_int_equal(ms, 0);
    assert_int_equal(sl_http_parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", &ms), 0);
    assert_int_equal(ms, 0); /* in the past */
    char date[64];
    time_t t = time(NULL) + 120;
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_int_equal(sl_http_parse_retry_after(date, &ms), 0);
    assert_true(ms >= 110000 && ms <= 121000);
    assert_int_equal(sl_http_parse_retry_after("soon", &ms), -EINVAL);
    assert_int_equal(sl_http_parse_retry_after("5s", &ms), -EINVAL);
}

static void test_urls(void **state)
{
    char *u = NULL;
    assert_int_equal(sl_http_url_resolve("http://127.0.0.1:5000/v2/a/blobs/uploads/",
                                         "/v2/a/blobs/uploads/x?_state=abc", &u),
                     0);
    assert_string_equal(u, "http://127.0.0.1:5000/v2/a/blobs/uploads/x?_state=abc");
    free(u);
    assert_int_equal(sl_http_url_resolve("http://a/x", "https://b:9/y", &u), 0);
    assert_string_equal(u, "https://b:9/y");
    free(u);
    assert_int_equal(sl_http_url_add_query("http://h/p?_state=a", "digest", "sha256:00", &u), 0);
    assert_string_equal(u, "http://h/p?_state=a&digest=sha256%3a00");
    free(u);
    assert_int_equal(sl_http_url_origin("HTTP://Example.COM/x", &u), 0);
    assert_string_equal(u, "http://example.com:80");
    free(u);
    assert_int_equal(sl_http_url_origin("https://h:8443/x", &u), 0);
    assert_string_equal(u, "https://h:8443");
    free(u);
    assert_int_equal(sl_http_url_origin("not a url", &u), -EINVAL);
    u = sl_http_escape("repository:a/b:pull,push");
    assert_string_equal(u, "repository%3Aa%2Fb%3Apull%2Cpush");
    free(u);
}

static void test_headers(void **state)
{
    struct sl_http_header v[] = {{"WWW-Authenticate", "Basic realm=x"},
                                 {"content-type", "a"},
                                 {"www-authenticate", "Bearer realm=y"}};
    struct sl_http_headers h = {.v = v, .n = 3};
    assert_string_equal(sl_http_headers_get(&h, "Content-Type"), "a");
    assert_null(sl_http_headers_get(&h, "Location"));
    char *j = sl_http_headers_join(&h, "WWW-Authenticate");
    assert_string_equal(j, "Basic realm=x, Bearer realm=y");
    free(j);
    assert_null(sl_http_headers_join(&h, "X"));
}

static void test_refused(void **state)
{
    /* Nothing listens on port 1 of loopback: a transport error, retried, then reported. */
    struct sl_http_options o = {.retries = 1, .backoff_ms = 10};
    struct sl_http_request req;
    sl_http_request_init(&req);
    req.url = "http://127.0.0.1:1/v2/";
    struct sl_http_response resp = {0};
    sl_error_t err = NULL;
    int r = sl_http_perform(&o, &req, &resp, &err);
    assert_int_equal(r, -ECONNREFUSED);
    assert_non_null(strstr(err->msg, "after 2 attempts"));
    assert_int_equal(resp.attempts, 2);
    sl_error_free(&err);
    sl_http_response_free(&resp);
    req.url = "ftp://127.0.0.1:1/";
    resp = (struct sl_http_response){0};
    assert_int_equal(sl_http_perform(&o, &req, &resp, NULL), -EINVAL);
    sl_http_response_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_range), cmocka_unit_test(test_range),
        cmocka_unit_test(test_retry_after),   cmocka_unit_test(test_urls),
        cmocka_unit_test(test_headers),       cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
