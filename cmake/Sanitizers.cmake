# ASan + UBSan for the whole build when SL_SANITIZE=ON (make test builds a second tree with it).
if(SL_SANITIZE)
  set(SL_SAN_FLAGS -fsanitize=address,undefined -fno-sanitize-recover=undefined
      -fno-omit-frame-pointer)
  add_compile_options(${SL_SAN_FLAGS})
  add_link_options(${SL_SAN_FLAGS})
endif()
if(SL_FUZZ)
  add_compile_options(-fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer)
  add_link_options(-fsanitize=address,undefined)
endif()
