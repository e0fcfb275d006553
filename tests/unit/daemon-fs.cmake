# daemonset/fs: the restart handoff of the FUSE connection (unix socket, SCM_RIGHTS).
if(TARGET sl_daemon_fs)
  sl_add_unit_test(test-daemon-handoff SOURCES daemonset/fs/test-handoff.c
    LIBS sl_daemon_fs Threads::Threads)
  set_tests_properties(test-daemon-handoff PROPERTIES TIMEOUT 60)
endif()
