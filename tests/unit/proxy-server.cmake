# proxy/server against a test double of proxy/core/core.h (tests/unit/proxy/server/fake-core.c):
# the server's sources (all but main.c) are compiled into the test together with the fake, so
# the server is tested before and independently of the real core. libcurl drives it.
file(GLOB SL_PROXY_SERVER_LIB_SRC ${CMAKE_SOURCE_DIR}/proxy/server/*.c)
list(REMOVE_ITEM SL_PROXY_SERVER_LIB_SRC ${CMAKE_SOURCE_DIR}/proxy/server/main.c)
if(SL_PROXY_SERVER_LIB_SRC)
  sl_add_unit_test(test-proxy-server
    SOURCES proxy/server/test-proxy-server.c proxy/server/fake-core.c ${SL_PROXY_SERVER_LIB_SRC}
    LIBS sl_json sl_http sl_lws sl_base PkgConfig::LIBCRYPT PkgConfig::CURL
      Threads::Threads)
  target_include_directories(test-proxy-server PRIVATE ${CMAKE_SOURCE_DIR}/proxy/server
    ${CMAKE_SOURCE_DIR}/proxy/core ${CMAKE_SOURCE_DIR}/common/delta)
  set_tests_properties(test-proxy-server PROPERTIES TIMEOUT 300)
endif()
