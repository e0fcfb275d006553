# What starlight-daemon parses from its control API clients (request heads, query arguments,
# the JSON bodies of /v1/pull, /v1/proxies, /v1/optimizer, /v1/report, /v1/gc) and its proxy
# profile file ROOT/proxies.json (daemonset/control/request.h).
if(TARGET sl_daemon_control_request)
  sl_add_fuzzer(fuzz-control-request daemon/fuzz-control-request.c LIBS sl_daemon_control_request)
  sl_add_fuzzer(fuzz-proxies-file daemon/fuzz-proxies-file.c LIBS sl_daemon_control_request)
endif()
# The Node annotations the daemon's node watcher reads (prewarm, prewarmed): Kubernetes input.
# annotations.c is compiled in (the watcher's library links the daemon's whole stack).
sl_add_fuzzer(fuzz-node-prewarm daemon/fuzz-node-prewarm.c LIBS sl_json sl_base)
target_sources(fuzz-node-prewarm PRIVATE ${CMAKE_SOURCE_DIR}/daemonset/k8s/annotations.c)
target_include_directories(fuzz-node-prewarm PRIVATE ${CMAKE_SOURCE_DIR}/daemonset/k8s)
# The Pod annotations the node watcher parses (trace-duration).
sl_add_fuzzer(fuzz-pod-annotations daemon/fuzz-pod-annotations.c LIBS sl_json sl_base)
target_sources(fuzz-pod-annotations PRIVATE ${CMAKE_SOURCE_DIR}/daemonset/k8s/annotations.c)
target_include_directories(fuzz-pod-annotations PRIVATE ${CMAKE_SOURCE_DIR}/daemonset/k8s)
