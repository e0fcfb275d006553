# What starlight-proxy parses from clients (query strings, Range/If-Range, delta POST bodies,
# conversion hook payloads). The server's parsers are not a library: compile its two
# socket-free files into the target; the delta body parser comes from the core.
if(TARGET sl_proxy_core)
  sl_add_fuzzer(fuzz-proxy-request proxy/fuzz-proxy-request.c LIBS sl_proxy_core sl_json sl_base)
  target_sources(fuzz-proxy-request PRIVATE ${CMAKE_SOURCE_DIR}/proxy/server/request.c
    ${CMAKE_SOURCE_DIR}/proxy/server/hook.c)
  target_include_directories(fuzz-proxy-request PRIVATE ${CMAKE_SOURCE_DIR}/proxy/server)
endif()
# The trace document of POST /starlight/report (parse, validate, rank).
if(TARGET sl_proxy_core)
  sl_add_fuzzer(fuzz-trace-report proxy/fuzz-trace-report.c LIBS sl_proxy_core)
endif()
# starlight-proxy's client authentication: the htpasswd-style auth file and the Authorization
# header of every request (proxy/server/auth.c, compiled in: the server is not a library).
if(TARGET sl_proxy_core AND TARGET PkgConfig::LIBCRYPT)
  sl_add_fuzzer(fuzz-proxy-auth proxy/fuzz-proxy-auth.c LIBS sl_base PkgConfig::LIBCRYPT
    Threads::Threads)
  target_sources(fuzz-proxy-auth PRIVATE ${CMAKE_SOURCE_DIR}/proxy/server/auth.c)
  target_include_directories(fuzz-proxy-auth PRIVATE ${CMAKE_SOURCE_DIR}/proxy/server)
endif()
# The image config notify reads from the registry (diff_ids, platform).
if(TARGET sl_proxy_core)
  sl_add_fuzzer(fuzz-image-config proxy/fuzz-image-config.c LIBS sl_proxy_core)
endif()
