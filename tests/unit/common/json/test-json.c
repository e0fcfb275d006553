#include "test.h"

#include "json.h"

#include <string.h>

static void test_fields(void **state)
{
    const char *doc = "{\"a\":\"x\",\"n\":5,\"o\":{},\"l\":[1]}";
    json_t *j = NULL;
    sl_error_t err = NULL;
    assert_int_equal(sl_json_parse(doc, strlen(doc), 1024, "doc", &j, &err), 0);
    const char *s = NULL;
    int64_t n = 0;
    json_t *o = NULL;
    assert_int_equal(sl_json_get_str(j, "a", "", &s, &err), 0);
    assert_string_equal(s, "x");
    assert_int_equal(sl_json_get_i64(j, "n", "", &n, &err), 0);
    assert_int_equal(n, 5);
    assert_int_equal(sl_json_get_obj(j, "o", "", &o, &err), 0);
    assert_int_equal(sl_json_get_arr(j, "l", "", &o, &err), 0);
    assert_int_equal(sl_json_opt_str(j, "missing", "", &s, &err), 0);
    assert_int_equal(sl_json_opt_str(j, "a", "", &s, &err), 1);
    assert_int_equal(sl_json_get_str(j, "n", ".layers[2]", &s, &err), -EINVAL);
    assert_string_equal(err->msg, ".layers[2].n: expected a string");
    sl_error_free(&err);
    assert_int_equal(sl_json_get_i64(j, "zz", ".x", &n, &err), -EINVAL);
    assert_string_equal(err->msg, ".x.zz: missing");
    sl_error_free(&err);
    json_decref(j);
}

static void test_limits(void **state)
{
    json_t *j = NULL;
    sl_error_t err = NULL;
    assert_int_equal(sl_json_parse("{}", 2, 1, "m", &j, &err), -EFBIG);
    sl_error_free(&err);
    char deep[200];
    memset(deep, '[', 100);
    memset(deep + 100, ']', 100);
    assert_int_equal(sl_json_parse(deep, 200, 1000, "m", &j, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "nested deeper"));
    sl_error_free(&err);
    assert_int_equal(sl_json_parse("{\"a\":1,\"a\":2}", 13, 100, "m", &j, &err), -EINVAL);
    sl_error_free(&err);
    assert_int_equal(sl_json_parse("{\"a\":", 5, 100, "m", &j, &err), -EINVAL);
    assert_non_null(strstr(err->msg, "m: invalid JSON"));
    sl_error_free(&err);
}

/* Scalars dump too (jansson alone refuses them; a registry's `"detail": true` aborted). */
static void test_dump_scalars(void **state)
{
    (void)state;
    json_t *v[] = {json_true(), json_integer(7), json_string("x"), json_null()};
    const char *want[] = {"true", "7", "\"x\"", "null"};
    for (size_t i = 0; i < 4; i++) {
        size_t len = 0;
        char *s = sl_json_dump(v[i], &len);
        assert_string_equal(s, want[i]);
        assert_int_equal(len, strlen(want[i]));
        free(s);
        json_decref(v[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_dump_scalars),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
