# common/delta: the delta wire format (round trips, determinism, hostile headers).
sl_add_unit_test(test-delta SOURCES common/delta/test-delta.c LIBS sl_delta sl_format)
# the hostile-* seeds of the delta-header fuzz corpus must each be refused with a message
target_compile_definitions(test-delta PRIVATE
  SL_DELTA_CORPUS="${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/fuzz-delta-header")
