#include "test.h"

#include "digest.h"

static void test_known(void **state)
{
    char d[SL_DIGEST_STR_LEN];
    sl_sha256_str("", 0, d);
    assert_string_equal(d,
                        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    struct sl_sha256 s;
    sl_sha256_init(&s);
    sl_sha256_update(&s, "a", 1);
    sl_sha256_update(&s, "bc", 2);
    sl_sha256_final(&s, d);
    assert_string_equal(d,
                        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    assert_true(sl_digest_valid(d));
}

static void test_valid(void **state)
{
    assert_false(sl_digest_valid(NULL));
    assert_false(sl_digest_valid("sha256:abc"));
    assert_false(
        sl_digest_valid("sha256:BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD"));
    assert_false(
        sl_digest_valid("sha512:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    assert_false(sl_digest_valid(
        "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_known),
        cmocka_unit_test(test_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
