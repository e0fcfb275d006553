# proxy/cache: the blob-range cache against a real docker-registry behind a counting,
# fault-injecting proxy (both started by tests/unit/proxy/cache/run-live.sh).
if(TARGET sl_proxy_cache)
  sl_add_unit_test(test-blobcache SOURCES proxy/cache/test-blobcache.c
    LIBS sl_proxy_cache Threads::Threads)
  set_tests_properties(test-blobcache PROPERTIES TIMEOUT 180 LABELS "unit;live")
endif()

# bench/blobcache.sh's driver (not a test).
if(TARGET sl_proxy_cache)
  add_executable(sl-blobcache-bench ${CMAKE_SOURCE_DIR}/bench/blobcache-bench.c)
  target_link_libraries(sl-blobcache-bench PRIVATE sl_proxy_cache Threads::Threads)
  sl_target_warnings(sl-blobcache-bench)
  set_target_properties(sl-blobcache-bench PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/bench)
endif()
