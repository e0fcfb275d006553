#include "test.h"

#include "reference.h"

#include <string.h>

#define D64 "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

static const struct {
    const char *in;
    const char *domain, *path, *tag, *digest, *full;
} good[] = {
    {"redis", "docker.io", "library/redis", "latest", NULL, "docker.io/library/redis:latest"},
    {"redis:7.0", "docker.io", "library/redis", "7.0", NULL, "docker.io/library/redis:7.0"},
    {"library/redis", "docker.io", "library/redis", "latest", NULL, NULL},
    {"docker.io/redis", "docker.io", "library/redis", "latest", NULL, NULL},
    {"index.docker.io/user/app:v1", "docker.io", "user/app", "v1", NULL, NULL},
    {"user/app", "docker.io", "user/app", "latest", NULL, NULL},
    {"localhost/app", "localhost", "app", "latest", NULL, "localhost/app:latest"},
    {"localhost:5000/a/b:tag", "localhost:5000", "a/b", "tag", NULL, NULL},
    {"127.0.0.1:5000/app:v1", "127.0.0.1:5000", "app", "v1", NULL, "127.0.0.1:5000/app:v1"},
    {"host:5000/a/b/c:tag", "host:5000", "a/b/c", "tag", NULL, NULL},
    {"registry.example.com/ns/app", "registry.example.com", "ns/app", "latest", NULL, NULL},
    {"Example.COM/app", "Example.COM", "app", "latest", NULL, NULL},
    {"UpperHost/app", "UpperHost", "app", "latest", NULL, NULL},
    {"[::1]:5000/app", "[::1]:5000", "app", "latest", NULL, NULL},
    {"redis@" D64, "docker.io", "library/redis", NULL, D64, "docker.io/library/redis@" D64},
    {"redis:7@" D64, "docker.io", "library/redis", "7", D64, "docker.io/library/redis:7@" D64},
    {"host:5000/app@" D64, "host:5000", "app", NULL, D64, NULL},
    {"a-b.c-d/e__f/g--h", "a-b.c-d", "e__f/g--h", "latest", NULL, NULL},
    {"app:_tag.with-Caps_", "docker.io", "library/app", "_tag.with-Caps_", NULL, NULL},
    {"x0.y-z", "docker.io", "library/x0.y-z", "latest", NULL, NULL},
};

static const char *const bad[] = {
    "",
    "Redis",            /* uppercase repository */
    "user/Repo",        /* uppercase path (first element lowercase → path) */
    "redis:",           /* empty tag */
    "redis:-tag",       /* tag must start with [A-Za-z0-9_] */
    "redis:a/b",        /* '/' in tag */
    "redis@sha256:abc", /* short digest */
    "redis@md5:0123456789abcdef0123456789abcdef", /* unsupported algorithm */
    "redis@sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", /* 64 hex name */
    "a..b",
    "a___b",
    "a_-b",
    "-app",
    "app-",
    "host:5000/",
    "host:port/app",
    "-host.com/app",
    "host-.com/app",
    "host..com/app",
    "/app",
    "app//x",
    "app:tag@",
    "app@",
    "app name",
    "app:tag:tag2",
};

static void test_good(void **state)
{
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct sl_image_ref r;
        sl_error_t err = NULL;
        int rc = sl_image_ref_parse(good[i].in, &r, &err);
        if (rc < 0)
            fail_msg("%s: %s", good[i].in, sl_error_msg(err, rc));
        assert_string_equal(r.domain, good[i].domain);
        assert_string_equal(r.path, good[i].path);
        if (good[i].tag)
            assert_string_equal(r.tag, good[i].tag);
        else
            assert_null(r.tag);
        if (good[i].digest)
            assert_string_equal(r.digest, good[i].digest);
        else
            assert_null(r.digest);
        if (good[i].full) {
            char *s = sl_image_ref_str(&r);
            assert_string_equal(s, good[i].full);
            free(s);
        }
        /* The normalised form parses to itself. */
        char *s = sl_image_ref_str(&r);
        struct sl_image_ref r2;
        assert_int_equal(sl_image_ref_parse(s, &r2, NULL), 0);
        char *s2 = sl_image_ref_str(&r2);
        assert_string_equal(s, s2);
        free(s);
        free(s2);
        sl_image_ref_free(&r2);
        sl_image_ref_free(&r);
    }
}

static void test_bad(void **state)
{
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct sl_image_ref r;
        sl_error_t err = NULL;
        int rc = sl_image_ref_parse(bad[i], &r, &err);
        if (rc != -EINVAL)
            fail_msg("`%s` parsed (rc %d)", bad[i], rc);
        assert_non_null(err);
        assert_non_null(strstr(err->msg, "image reference"));
        assert_null(r.domain);
        sl_error_free(&err);
    }
}

static void test_messages_and_helpers(void **state)
{
    struct sl_image_ref r;
    sl_error_t err = NULL;
    assert_int_equal(sl_image_ref_parse("Redis", &r, &err), -EINVAL);
    assert_string_equal(err->msg,
                        "image reference `Redis`: invalid reference format: repository name "
                        "must be lowercase");
    sl_error_free(&err);

    char longname[300];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = 0;
    assert_int_equal(sl_image_ref_parse(longname, &r, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "255"));
    sl_error_free(&err);

    char longtag[200] = "app:";
    memset(longtag + 4, 't', 129);
    longtag[133] = 0;
    assert_int_equal(sl_image_ref_parse(longtag, &r, &err), -EINVAL);
    sl_error_free(&err);

    assert_int_equal(sl_image_ref_parse("redis:7@" D64, &r, NULL), 0);
    assert_string_equal(sl_image_ref_reference(&r), D64);
    char *name = sl_image_ref_name(&r);
    assert_string_equal(name, "docker.io/library/redis");
    free(name);
    assert_string_equal(sl_registry_api_host(r.domain), "registry-1.docker.io");
    struct sl_image_ref c;
    sl_image_ref_copy(&r, &c);
    assert_string_equal(c.tag, "7");
    sl_image_ref_free(&c);
    sl_image_ref_free(&r);
    sl_image_ref_free(&r); /* idempotent */
    assert_string_equal(sl_registry_api_host("127.0.0.1:5000"), "127.0.0.1:5000");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good),
        cmocka_unit_test(test_bad),
        cmocka_unit_test(test_messages_and_helpers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
