# daemonset/control: the control API on a temp unix socket through common/http (endpoints,
# request parsing, JSON error answers, proxy profiles).
if(TARGET sl_daemon_control)
  sl_add_unit_test(test-daemon-control SOURCES daemonset/control/test-control.c
    LIBS sl_daemon_control sl_http sl_json Threads::Threads)
  set_tests_properties(test-daemon-control PROPERTIES TIMEOUT 60)
endif()
# daemonset/control/request.c: the control API's parsers without a socket (heads, queries,
# bodies, proxies.json).
if(TARGET sl_daemon_control_request)
  sl_add_unit_test(test-daemon-control-request SOURCES daemonset/control/test-control-request.c
    LIBS sl_daemon_control_request)
endif()
