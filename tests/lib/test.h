/* test.h — shared includes for cmocka unit tests. Each test file is one ctest executable;
 * exit code 77 means skipped. SL_TEST_DATA points at the tests/ folder of the source tree. */
#ifndef SL_TESTS_TEST_H
#define SL_TESTS_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>
#include <cmocka.h>

#define SL_TEST_SKIP 77

static inline const char *sl_test_data_dir(void)
{
    const char *d = getenv("SL_TEST_DATA");
    return d ? d : "tests";
}

#endif
