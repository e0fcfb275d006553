/* Unit tests of common/base/metrics.c: the Prometheus text exposition (HELP/TYPE, labels,
 * cumulative histogram buckets, +Inf, _sum/_count), collectors, and concurrent updates. */
#include "test.h"

#include "cleanup.h"
#include "metrics.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

static char *render(struct sl_metrics *m)
{
    struct sl_buf b;
    sl_buf_init(&b, SIZE_MAX);
    assert_int_equal(sl_metrics_render(m, &b), 0);
    char *s = sl_buf_steal(&b, NULL);
    return s ? s : sl_xstrdup("");
}

static void test_exposition(void **state)
{
    (void)state;
    _cleanup_(sl_metrics_freep) struct sl_metrics *m = sl_metrics_new();
    struct sl_metric *c = sl_metrics_counter(m, "x_pulls_total", "Pulls by result");
    assert_ptr_equal(sl_metrics_counter(m, "x_pulls_total", "again"), c);
    sl_metric_add(c, "result=\"ok\"", 2);
    sl_metric_add(c, "result=\"error\"", 1);
    sl_metric_add(c, "result=\"ok\"", 1);
    sl_metric_set(sl_metrics_gauge(m, "x_bytes", "Size"), NULL, 1.5);
    static const double b[] = {0.5, 1, 5};
    struct sl_metric *h = sl_metrics_histogram(m, "x_seconds", "Latency", b, 3);
    sl_metric_observe(h, NULL, 0.2);
    sl_metric_observe(h, NULL, 0.7);
    sl_metric_observe(h, NULL, 9);
    sl_metric_observe(h, "kind=\"a\"", 1);
    sl_metric_add(NULL, NULL, 1); /* optional wiring */
    _cleanup_free_ char *s = render(m);
    assert_string_equal(s, "# HELP x_pulls_total Pulls by result\n"
                           "# TYPE x_pulls_total counter\n"
                           "x_pulls_total{result=\"ok\"} 3\n"
                           "x_pulls_total{result=\"error\"} 1\n"
                           "# HELP x_bytes Size\n"
                           "# TYPE x_bytes gauge\n"
                           "x_bytes 1.5\n"
                           "# HELP x_seconds Latency\n"
                           "# TYPE x_seconds histogram\n"
                           "x_seconds_bucket{le=\"0.5\"} 1\n"
                           "x_seconds_bucket{le=\"1\"} 2\n"
                           "x_seconds_bucket{le=\"5\"} 2\n"
                           "x_seconds_bucket{le=\"+Inf\"} 3\n"
                           "x_seconds_sum 9.9\n"
                           "x_seconds_count 3\n"
                           "x_seconds_bucket{kind=\"a\",le=\"0.5\"} 0\n"
                           "x_seconds_bucket{kind=\"a\",le=\"1\"} 1\n"
                           "x_seconds_bucket{kind=\"a\",le=\"5\"} 1\n"
                           "x_seconds_bucket{kind=\"a\",le=\"+Inf\"} 1\n"
                           "x_seconds_sum{kind=\"a\"} 1\n"
                           "x_seconds_count{kind=\"a\"} 1\n");
}

static int calls;
static void collect(void *ud, struct sl_metrics *m)
{
    (void)ud;
    sl_metric_set(sl_metrics_gauge(m, "x_collected", "From a collector"), NULL, ++calls);
}

static void test_collector(void **state)
{
    (void)state;
    _cleanup_(sl_metrics_freep) struct sl_metrics *m = sl_metrics_new();
    sl_metrics_on_collect(m, collect, NULL);
    _cleanup_free_ char *a = render(m);
    _cleanup_free_ char *b = render(m);
    assert_non_null(strstr(a, "x_collected 1\n"));
    assert_non_null(strstr(b, "x_collected 2\n"));
}

static void *adder(void *arg)
{
    for (int i = 0; i < 10000; i++)
        sl_metric_add(arg, "t=\"1\"", 1);
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    _cleanup_(sl_metrics_freep) struct sl_metrics *m = sl_metrics_new();
    struct sl_metric *c = sl_metrics_counter(m, "x_total", "n");
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, adder, c);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    _cleanup_free_ char *s = render(m);
    assert_non_null(strstr(s, "x_total{t=\"1\"} 40000\n"));
}

static void test_cap(void **state)
{
    (void)state;
    _cleanup_(sl_metrics_freep) struct sl_metrics *m = sl_metrics_new();
    sl_metric_add(sl_metrics_counter(m, "x_total", "n"), NULL, 1);
    struct sl_buf b;
    sl_buf_init(&b, 10);
    assert_int_equal(sl_metrics_render(m, &b), -EFBIG);
    sl_buf_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exposition),
        cmocka_unit_test(test_collector),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_cap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
