#include "test.h"

#include "json.h"
#include "log.h"

#include <string.h>
#include <unistd.h>

static char *capture(enum sl_log_format fmt)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    sl_log_setup("test", fmt, SL_LOG_INFO);
    sl_log_set_fd(p[1]);
    const char *kv[] = {"image", "redis:7", "digest", NULL, NULL};
    sl_log_kv(SL_LOG_WARN, kv, "hello \"%s\"", "world");
    log_debug("not shown");
    sl_log_set_fd(2);
    close(p[1]);
    static char buf[4096];
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    assert_true(n > 0);
    buf[n] = 0;
    return buf;
}

static void test_text(void **state)
{
    char *s = capture(SL_LOG_TEXT);
    assert_non_null(strstr(s, "warn  test: hello \"world\" image=redis:7\n"));
    assert_null(strstr(s, "not shown"));
}

static void test_json(void **state)
{
    char *s = capture(SL_LOG_JSON);
    json_t *j = NULL;
    assert_int_equal(sl_json_parse(s, strlen(s), 4096, "log", &j, NULL), 0);
    assert_string_equal(json_string_value(json_object_get(j, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(j, "component")), "test");
    assert_string_equal(json_string_value(json_object_get(j, "msg")), "hello \"world\"");
    assert_string_equal(json_string_value(json_object_get(j, "image")), "redis:7");
    assert_null(json_object_get(j, "digest"));
    assert_non_null(json_object_get(j, "ts"));
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text),
        cmocka_unit_test(test_json),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
