# proxy/core: planner logic, trace documents, delta request bodies (no database needed).
if(TARGET sl_proxy_core)
  sl_add_unit_test(test-proxy-core-plan SOURCES proxy/core/test-plan.c LIBS sl_proxy_core)
  target_include_directories(test-proxy-core-plan PRIVATE ${CMAKE_SOURCE_DIR}/proxy/core)
endif()
# proxy/core store: prune safety against a real PostgreSQL (started by
# tests/unit/proxy/core/run-live.sh).
if(TARGET sl_proxy_core)
  sl_add_unit_test(test-proxy-store SOURCES proxy/core/test-store.c LIBS sl_proxy_core)
  target_include_directories(test-proxy-store PRIVATE ${CMAKE_SOURCE_DIR}/proxy/core)
  set_tests_properties(test-proxy-store PROPERTIES TIMEOUT 120 LABELS "unit;live")
endif()
