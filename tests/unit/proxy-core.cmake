# proxy/core: planner logic, trace documents, delta request bodies (no database needed).
if(TARGET sl_proxy_core)
  sl_add_unit_test(test-proxy-core-plan SOURCES proxy/core/test-plan.c LIBS sl_proxy_core)
  target_include_directories(test-proxy-core-plan PRIVATE ${CMAKE_SOURCE_DIR}/proxy/core)
endif()
