# controller/: the admission decision and JSONPatch as pure functions on JSON (mutate.c), the
# option table (config.c).
if(TARGET sl_controller_core)
  sl_add_unit_test(test-mutate SOURCES controller/test-mutate.c LIBS sl_controller_core)
endif()
if(TARGET sl_controller_core)
  sl_add_unit_test(test-controllers SOURCES controller/test-controllers.c LIBS sl_controller_core)
endif()
