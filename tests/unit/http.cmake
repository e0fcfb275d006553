# common/http unit tests (parsers, URL helpers, transport errors on loopback).
sl_add_unit_test(test-http-parse SOURCES common/http/test-http-parse.c LIBS sl_http)
