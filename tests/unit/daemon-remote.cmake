# daemonset/remote: label mapping, the snapshotter's remote_prepare hook (ALREADY_EXISTS, no
# snapshot created) and the fallback on an unreachable proxy (counted once per image).
if(TARGET sl_daemon_remote)
  sl_add_unit_test(test-daemon-remote SOURCES daemonset/remote/test-remote.c
    LIBS sl_daemon_remote)
  set_tests_properties(test-daemon-remote PROPERTIES TIMEOUT 60)
endif()
