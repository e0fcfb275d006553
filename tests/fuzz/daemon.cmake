# What starlight-daemon parses from its control API clients (request heads, query arguments,
# the JSON bodies of /v1/pull, /v1/proxies, /v1/optimizer, /v1/report, /v1/gc) and its proxy
# profile file ROOT/proxies.json (daemonset/control/request.h).
if(TARGET sl_daemon_control_request)
  sl_add_fuzzer(fuzz-control-request daemon/fuzz-control-request.c LIBS sl_daemon_control_request)
  sl_add_fuzzer(fuzz-proxies-file daemon/fuzz-proxies-file.c LIBS sl_daemon_control_request)
endif()
