# common/delta: the delta wire format (round trips, determinism, hostile headers).
sl_add_unit_test(test-delta SOURCES common/delta/test-delta.c LIBS sl_delta)
