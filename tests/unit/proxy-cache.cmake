# proxy/cache: the blob-range cache against a real docker-registry behind a counting,
# fault-injecting proxy (both started by tests/unit/proxy/cache/run-live.sh).
if(TARGET sl_proxy_cache)
  sl_add_unit_test(test-blobcache SOURCES proxy/cache/test-blobcache.c
    LIBS sl_proxy_cache Threads::Threads)
  set_tests_properties(test-blobcache PROPERTIES TIMEOUT 180 LABELS "unit;live")
endif()
