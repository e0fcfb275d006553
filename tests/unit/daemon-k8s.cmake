# daemonset/k8s/annotations.c: the node watcher's Node annotation parsers (no API server).
if(TARGET sl_daemon_k8s)
  sl_add_unit_test(test-daemon-k8s-annotations SOURCES daemonset/k8s/test-annotations.c
    ${CMAKE_SOURCE_DIR}/daemonset/k8s/annotations.c LIBS sl_json sl_base)
  target_include_directories(test-daemon-k8s-annotations PRIVATE ${CMAKE_SOURCE_DIR}/daemonset/k8s)
endif()
