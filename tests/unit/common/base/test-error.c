#include "test.h"

#include "cleanup.h"
#include "error.h"

#include <string.h>

static int inner(sl_error_t *err)
{
    return sl_error_make(err, EACCES, "GET manifest `%s`: HTTP 401", "redis:7");
}

static int outer(sl_error_t *err)
{
    int r = inner(err);
    if (r < 0)
        return sl_error_wrap(err, r, "pull `%s`", "redis:7");
    return 0;
}

static void test_chain(void **state)
{
    sl_error_t err = NULL;
    int r = outer(&err);
    assert_int_equal(r, -EACCES);
    assert_non_null(err);
    assert_int_equal(err->code, EACCES);
    assert_string_equal(err->msg, "pull `redis:7`: GET manifest `redis:7`: HTTP 401");
    sl_error_free(&err);
    assert_null(err);
}

static void test_null_err(void **state)
{
    assert_int_equal(outer(NULL), -EACCES);
    assert_string_equal(sl_error_msg(NULL, -ENOENT), strerror(ENOENT));
}

static void test_wrap_without_detail(void **state)
{
    _cleanup_error_ sl_error_t err = NULL;
    int r = sl_error_wrap(&err, -ENOENT, "open `%s`", "x");
    assert_int_equal(r, -ENOENT);
    assert_string_equal(err->msg, "open `x`: No such file or directory");
}

static void test_take_ptr(void **state)
{
    _cleanup_free_ char *p = sl_xstrdup("abc");
    char *q = TAKE_PTR(p);
    assert_null(p);
    assert_string_equal(q, "abc");
    free(q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chain),
        cmocka_unit_test(test_null_err),
        cmocka_unit_test(test_wrap_without_detail),
        cmocka_unit_test(test_take_ptr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
