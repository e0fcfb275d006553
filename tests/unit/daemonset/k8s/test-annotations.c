/* test-annotations.c — the node watcher's Node annotation parsers (daemonset/k8s/annotations.h):
 * prewarm entries, those already prewarmed dropped, bad entries skipped, the entry cap. */
#include "test.h"

#include "annotations.h"
#include "cleanup.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void test_prewarm(void **state)
{
    (void)state;
    struct sl_nodewatch_prewarm *v = NULL;
    size_t n = 0, skipped = 0;
    sl_error_t err = NULL;
    const char *pw =
        "[{\"to\":\"r/a:2\",\"from\":\"r/a:1\"},{\"to\":\"r/b:2\",\"from\":\"bad ref\"},"
        "{\"to\":\"r/c:2\"},{\"to\":\"\"},{\"from\":\"r/x:1\"},7,{\"to\":\"a b\"}]";
    assert_int_equal(sl_nodewatch_parse_prewarm(pw, "[\"r/c:2\",5]", &v, &n, &skipped, &err), 0);
    assert_int_equal(n, 2);
    assert_int_equal(skipped, 4);
    assert_string_equal(v[0].to, "r/a:2");
    assert_string_equal(v[0].from, "r/a:1");
    assert_string_equal(v[1].to, "r/b:2");
    assert_null(v[1].from); /* not a valid reference: no hint */
    sl_nodewatch_prewarm_free(v, n);
    /* a malformed `prewarmed` counts as empty */
    assert_int_equal(sl_nodewatch_parse_prewarm(pw, "{oops", &v, &n, &skipped, &err), 0);
    assert_int_equal(n, 3);
    sl_nodewatch_prewarm_free(v, n);
    assert_int_equal(sl_nodewatch_parse_prewarm("[]", NULL, &v, &n, &skipped, &err), 0);
    assert_int_equal(n, 0);
    sl_nodewatch_prewarm_free(v, n);

    assert_int_equal(sl_nodewatch_parse_prewarm("{\"to\":\"x\"}", NULL, &v, &n, &skipped, &err),
                     -EINVAL);
    assert_non_null(strstr(sl_error_msg(err, -EINVAL), "prewarm: not a JSON list"));
    sl_error_free(&err);
    assert_int_equal(sl_nodewatch_parse_prewarm("[", NULL, &v, &n, &skipped, &err), -EINVAL);
    assert_non_null(strstr(sl_error_msg(err, -EINVAL), "starlight-c.dev/prewarm: invalid JSON"));
    sl_error_free(&err);
    assert_null(v);

    /* only the first SL_NODEWATCH_MAX_PREWARM entries count */
    char big[8192] = "[";
    for (int i = 0; i < SL_NODEWATCH_MAX_PREWARM + 5; i++) {
        char e[64];
        snprintf(e, sizeof(e), "%s{\"to\":\"r/i:%d\"}", i ? "," : "", i);
        strcat(big, e);
    }
    strcat(big, "]");
    assert_int_equal(sl_nodewatch_parse_prewarm(big, NULL, &v, &n, &skipped, &err), 0);
    assert_int_equal(n, SL_NODEWATCH_MAX_PREWARM);
    sl_nodewatch_prewarm_free(v, n);
}

static void test_ref_valid(void **state)
{
    (void)state;
    assert_true(sl_nodewatch_ref_valid("docker.io/library/redis:7"));
    assert_false(sl_nodewatch_ref_valid(NULL));
    assert_false(sl_nodewatch_ref_valid(""));
    assert_false(sl_nodewatch_ref_valid("a\tb"));
    assert_false(sl_nodewatch_ref_valid("caf\xc3\xa9"));
    char big[SL_NODEWATCH_MAX_REF + 2];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    assert_false(sl_nodewatch_ref_valid(big));
    big[sizeof(big) - 2] = 0;
    assert_true(sl_nodewatch_ref_valid(big));
}

static void test_duration(void **state)
{
    (void)state;
    static const struct {
        const char *s;
        int64_t ms; /* -1: refused */
    } cases[] = {
        {"30s", 30000},
        {"1m30s", 90000},
        {"1.5h", -1},
        {"0.5h", 1800000},
        {"250ms", 250},
        {"1h", 3600000},
        {"1h1ms", -1},
        {"", -1},
        {"5", -1},
        {"5x", -1},
        {"-1s", -1},
        {" 5s", -1},
        {"+5s", -1},
        {"0x10s", -1},
        {"infs", -1},
        {"nans", -1},
        {"1e3s", -1},
        {"1m111111111111111111111111113s", -1},
        {"99999999999999999999999999999999s", -1},
        {"..s", -1},
    };
    for (size_t i = 0; i < SL_ELEMENTSOF(cases); i++) {
        int64_t ms = -7;
        int r = sl_nodewatch_parse_duration_ms(cases[i].s, &ms);
        if (cases[i].ms < 0 ? r != -EINVAL : (r != 0 || ms != cases[i].ms))
            fail_msg("`%s`: r=%d ms=%lld", cases[i].s, r, (long long)ms);
    }
    assert_int_equal(sl_nodewatch_parse_duration_ms(NULL, NULL), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_prewarm),
        cmocka_unit_test(test_ref_valid),
        cmocka_unit_test(test_duration),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
