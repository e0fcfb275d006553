# daemonset/pull: the delta receiver against a fake proxy (a valid delta stored and registered
# through the registration hook's image builder; hostile headers and short bodies refused).
if(TARGET sl_daemon_pull AND TARGET sl_daemon_ctrd)
  sl_add_unit_test(test-daemon-pull
    SOURCES daemonset/pull/test-pull.c common/format/fmt-test.c
    LIBS sl_daemon_pull sl_daemon_ctrd sl_format sl_delta sl_registry PkgConfig::ARCHIVE
      PkgConfig::ZLIB Threads::Threads)
  set_tests_properties(test-daemon-pull PROPERTIES TIMEOUT 60)
endif()
