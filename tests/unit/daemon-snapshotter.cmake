# daemonset/snapshotter: the snapshot state machine against a temporary root (no mounts), and
# daemonset/grpc: the C-core server and client over a unix socket (concurrency, status codes).
if(TARGET sl_daemon_snap)
  sl_add_unit_test(test-snapshotter SOURCES daemonset/snapshotter/test-snapshotter.c
    LIBS sl_daemon_snap)
endif()
if(TARGET sl_daemon_grpc)
  sl_add_unit_test(test-daemon-grpc SOURCES daemonset/snapshotter/test-grpc.c
    LIBS sl_daemon_grpc)
  set_tests_properties(test-daemon-grpc PROPERTIES TIMEOUT 60)
endif()
