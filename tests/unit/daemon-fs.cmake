# daemonset/fs: the restart handoff of the FUSE connection (unix socket, SCM_RIGHTS).
if(TARGET sl_daemon_fs)
  sl_add_unit_test(test-daemon-handoff SOURCES daemonset/fs/test-handoff.c
    LIBS sl_daemon_fs Threads::Threads)
  set_tests_properties(test-daemon-handoff PROPERTIES TIMEOUT 60)
endif()
# daemonset/fs: removing a layer from the mounted tree (real FUSE mount: root and /dev/fuse).
if(TARGET sl_daemon_fs AND TARGET sl_daemon_store)
  sl_add_unit_test(test-fs-remove
    SOURCES daemonset/fs/test-fs-remove.c common/format/fmt-test.c
    LIBS sl_daemon_fs sl_daemon_store sl_format PkgConfig::ARCHIVE PkgConfig::ZLIB
      Threads::Threads)
  set_tests_properties(test-fs-remove PROPERTIES TIMEOUT 120)
endif()
