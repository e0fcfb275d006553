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
        size_t n = 99;
        char *out = sl_base64_encode(plain[i], strlen(plain[i]), &n);
        assert_string_equal(out, enc[i]);
        assert_int_equal(n, strlen(enc[i]));
        free(out);
        uint8_t *dec = NULL;
        assert_int_equal(sl_base64_decode(enc[i], strlen(enc[i]), &dec, &n), 0);
        assert_int_equal(n, strlen(plain[i]));
        assert_memory_equal(dec, plain[i], n);
        assert_int_equal(dec[n], 0);
        free(dec);
    }
}

static void test_unpadded(void **state)
{
    uint8_t *dec = NULL;
    size_t n = 0;
    assert_int_equal(sl_base64_decode("Zm8", 3, &dec, &n), 0);
    assert_int_equal(n, 2);
    assert_memory_equal(dec, "fo", 2);
    free(dec);
}

static void test_binary_roundtrip(void **state)
{
    uint8_t in[256];
    for (int i = 0; i < 256; i++)
        in[i] = (uint8_t)(255 - i);
    for (size_t n = 0; n <= 256; n += 17) {
        size_t k = 0, m = 0;
        char *enc = sl_base64_encode(in, n, &k);
        uint8_t *dec = NULL;
        assert_int_equal(sl_base64_decode(enc, k, &dec, &m), 0);
        assert_int_equal(m, n);
        assert_memory_equal(dec, in, n);
        free(enc);
        free(dec);
    }
}

static void test_malformed(void **state)
{
    static const char *const bad[] = {"Zg=",      "Zg=a",  "Z===", "Zh==", "Zm9=", "Zg==Zg==",
                                      "Zm9v!A==", "Zm 9v", "=AAA", "Z",    "Zm9vY"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t *dec = NULL;
        size_t n = 0;
        assert_int_equal(sl_base64_decode(bad[i], strlen(bad[i]), &dec, &n), -EINVAL);
        assert_null(dec);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_unpadded),
        cmocka_unit_test(test_binary_roundtrip),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
