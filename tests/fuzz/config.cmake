# Config files (YAML, --config) with the real option tables of the daemon, the proxy and the
# controller: their config.c files are wiring, compiled into the target (with the libraries
# whose validators they call).
if(TARGET sl_controller_core)
  sl_add_fuzzer(fuzz-config config/fuzz-config.c LIBS sl_controller_core sl_base)
  target_sources(fuzz-config PRIVATE ${CMAKE_SOURCE_DIR}/daemonset/config.c
    ${CMAKE_SOURCE_DIR}/proxy/server/config.c)
  target_include_directories(fuzz-config PRIVATE ${CMAKE_SOURCE_DIR}/daemonset
    ${CMAKE_SOURCE_DIR}/proxy/server)
  if(TARGET sl_daemon_gc)
    target_link_libraries(fuzz-config PRIVATE sl_daemon_gc)
  endif()
endif()
