# daemonset/gc: materialised trees (link/copy, overlay conventions, no escape) and the collector
# over a real store (grace, busy contents, shared contents, crash leftovers).
if(TARGET sl_daemon_gc)
  sl_add_unit_test(test-daemon-gc
    SOURCES daemonset/gc/test-gc.c common/format/fmt-test.c
    LIBS sl_daemon_gc sl_daemon_store sl_format PkgConfig::ARCHIVE PkgConfig::ZLIB
      PkgConfig::SQLITE Threads::Threads)
endif()
