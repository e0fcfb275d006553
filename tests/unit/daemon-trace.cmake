# daemonset/trace: the startup-trace recorder (cgroup parsing, first access per container,
# group documents, persistence, no deletion before a successful upload).
if(TARGET sl_daemon_trace)
  sl_add_unit_test(test-daemon-trace SOURCES daemonset/trace/test-trace.c
    LIBS sl_daemon_trace sl_json Threads::Threads)
  set_tests_properties(test-daemon-trace PROPERTIES TIMEOUT 60)
endif()
