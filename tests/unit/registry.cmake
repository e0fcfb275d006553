# common/registry unit tests; test-registry-live runs against real servers on 127.0.0.1
# started by its wrapper script (docker-registry, a token server, a fault-injecting server).
sl_add_unit_test(test-reference SOURCES common/registry/test-reference.c LIBS sl_registry)
sl_add_unit_test(test-manifest SOURCES common/registry/test-manifest.c LIBS sl_registry)
sl_add_unit_test(test-auth SOURCES common/registry/test-auth.c LIBS sl_registry)
sl_add_unit_test(test-registry-live SOURCES common/registry/test-registry-live.c
  LIBS sl_registry Threads::Threads)
set_tests_properties(test-registry-live PROPERTIES TIMEOUT 120 LABELS "unit;live")
