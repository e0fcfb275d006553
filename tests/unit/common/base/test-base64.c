#include "test.h"

#include "base64.h"

#include <string.h>

static void test_vectors(void **state)
{
    /* RFC 4648 §10 */
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const enc[] = {"",         "Zg==",     "Zm8=",    "Zm9v",
                                      "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (size_t i = 0; i < 7; i++) {
        char out[16];
        uint8_t dec[16];
        assert_int_equal(sl_base64_encode(plain[i], strlen(plain[i]), out), strlen(enc[i]));
        assert_string_equal(out, enc[i]);
        int64_t n = sl_base64_decode(enc[i], strlen(enc[i]), dec);
        assert_int_equal(n, (int64_t)strlen(plain[i]));
        assert_memory_equal(dec, plain[i], (size_t)n);
    }
}

static void test_binary_roundtrip(void **state)
{
    uint8_t in[256], dec[256];
    char enc[SL_BASE64_ENCODED_SIZE(256)];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= 256; n += 17) {
        size_t k = sl_base64_encode(in, n, enc);
        assert_int_equal(sl_base64_decode(enc, k, dec), (int64_t)n);
        assert_memory_equal(dec, in, n);
    }
}

static void test_malformed(void **state)
{
    uint8_t out[16];
    static const char *const bad[] = {
        "Zg=", "Zg=a", "Z===", "Zh==", "Zm9=", "Zg==Zg==", "Zm9v!A==", "Zm 9v", "=AAA"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sl_base64_decode(bad[i], strlen(bad[i]), out), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_binary_roundtrip),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
