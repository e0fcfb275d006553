# daemonset/containerd: image registration against a fake containerd served by the project's
# gRPC server (calls, labels, lease header, idempotency, refusals).
if(TARGET sl_daemon_ctrd)
  sl_add_unit_test(test-ctrd SOURCES daemonset/containerd/test-ctrd.c LIBS sl_daemon_ctrd)
  set_tests_properties(test-ctrd PROPERTIES TIMEOUT 60)
endif()
