# common/base/metrics.c: Prometheus text exposition, collectors, thread safety.
sl_add_unit_test(test-metrics SOURCES common/base/test-metrics.c LIBS sl_base Threads::Threads)
