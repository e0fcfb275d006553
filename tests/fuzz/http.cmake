# HTTP header values parsed by common/http (Content-Range, Range, Retry-After).
if(TARGET sl_http)
  sl_add_fuzzer(fuzz-http-headers http/fuzz-http-headers.c LIBS sl_http)
endif()
