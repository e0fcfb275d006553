# daemonset/control: the control API on a temp unix socket through common/http (endpoints,
# request parsing, JSON error answers, proxy profiles).
if(TARGET sl_daemon_control)
  sl_add_unit_test(test-daemon-control SOURCES daemonset/control/test-control.c
    LIBS sl_daemon_control sl_http sl_json Threads::Threads)
  set_tests_properties(test-daemon-control PROPERTIES TIMEOUT 60)
endif()
