# sl_add_unit_test(NAME SOURCES... LIBS ...): one cmocka executable per test file, one ctest each.
# Exit code 77 means "skipped" (crun/automake convention).
function(sl_add_unit_test name)
  cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
  add_executable(${name} ${T_SOURCES})
  sl_target_warnings(${name})
  # argv arrays built from literals are the norm in tests
  target_compile_options(${name} PRIVATE -Wno-write-strings -Wno-discarded-qualifiers)
  target_include_directories(${name} PRIVATE ${CMAKE_SOURCE_DIR}/tests/lib)
  target_link_libraries(${name} PRIVATE ${T_LIBS} PkgConfig::CMOCKA)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME ${name} COMMAND ${name})
  set_tests_properties(${name} PROPERTIES SKIP_RETURN_CODE 77 LABELS unit
    ENVIRONMENT "SL_TEST_DATA=${CMAKE_SOURCE_DIR}/tests")
endfunction()

# sl_add_fuzzer(NAME SOURCE LIBS ...): a libFuzzer target. With SL_FUZZ it links libFuzzer;
# otherwise it links tests/lib/fuzz-main.c and ctest replays tests/fuzz/corpus/NAME/*.
function(sl_add_fuzzer name source)
  cmake_parse_arguments(T "" "" "LIBS" ${ARGN})
  if(SL_FUZZ)
    add_executable(${name} ${source})
    target_link_options(${name} PRIVATE -fsanitize=fuzzer)
  else()
    add_executable(${name} ${source} ${CMAKE_SOURCE_DIR}/tests/lib/fuzz-main.c)
  endif()
  sl_target_warnings(${name})
  target_link_libraries(${name} PRIVATE ${T_LIBS})
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
  if(NOT SL_FUZZ)
    add_test(NAME ${name} COMMAND ${name} ${CMAKE_SOURCE_DIR}/tests/fuzz/corpus/${name})
    set_tests_properties(${name} PROPERTIES LABELS fuzz)
  endif()
endfunction()
