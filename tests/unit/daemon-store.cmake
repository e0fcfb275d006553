# daemonset/store: chunk verification, ordering, waiters, concurrency, restart, layer records.
if(TARGET sl_daemon_store)
  sl_add_unit_test(test-daemon-store
    SOURCES daemonset/store/test-store.c common/format/fmt-test.c
    LIBS sl_daemon_store sl_format PkgConfig::ARCHIVE PkgConfig::ZLIB Threads::Threads)
endif()
