# The hostile input corpus (tests/e2e/hostile/gen.py, written at test time) through the layer
# writer and the TOC reader, via sl-format-tool; under ASan in the sanitizer build.
if(NOT SL_FUZZ)
  add_test(NAME hostile-format COMMAND bash ${CMAKE_SOURCE_DIR}/tests/e2e/hostile/format.sh
    $<TARGET_FILE:sl-format-tool>)
  set_tests_properties(hostile-format PROPERTIES LABELS hostile TIMEOUT 600)
endif()
