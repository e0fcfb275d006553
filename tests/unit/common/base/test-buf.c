#include "test.h"

#include "buf.h"

#include <errno.h>
#include <string.h>

static void test_cap(void **state)
{
    struct sl_buf b;
    sl_buf_init(&b, 10);
    assert_int_equal(sl_buf_append(&b, "12345", 5), 0);
    assert_int_equal(sl_buf_append(&b, "67890", 5), 0);
    assert_int_equal(sl_buf_append(&b, "x", 1), -EFBIG);
    assert_int_equal(b.len, 10);
    assert_string_equal(b.data, "1234567890");
    assert_int_equal(sl_buf_printf(&b, "%d", 1), -EFBIG);
    sl_buf_free(&b);
}

static void test_overflow_size(void **state)
{
    struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    assert_int_equal(sl_buf_append(&b, "a", 1), 0);
    assert_int_equal(sl_buf_reserve(&b, SIZE_MAX, NULL), -EFBIG);
    sl_buf_free(&b);
}

static void test_json_string(void **state)
{
    struct sl_buf b;
    sl_buf_init(&b, 100);
    assert_int_equal(sl_buf_json_string(&b, "a\"b\\c\n\x01"), 0);
    assert_string_equal(b.data, "\"a\\\"b\\\\c\\n\\u0001\"");
    size_t n;
    char *s = sl_buf_steal(&b, &n);
    assert_int_equal(n, strlen(s));
    assert_null(b.data);
    free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cap),
        cmocka_unit_test(test_overflow_size),
        cmocka_unit_test(test_json_string),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
