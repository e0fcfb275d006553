# Every project target gets the same picky warning set through sl_target_warnings().
# -Werror only with -DSL_WERROR=ON (CI), so a newer compiler never breaks a user's build.
set(SL_WARNING_FLAGS
  -Wall -Wextra -Wshadow -Wformat=2 -Wmissing-prototypes -Wstrict-prototypes -Wvla
  -Wimplicit-fallthrough -Wpointer-arith -Wundef -Wcast-align -Wwrite-strings
  -Wno-unused-parameter -Wno-missing-field-initializers
  -Werror=implicit-function-declaration -Werror=incompatible-pointer-types)
if(SL_WERROR)
  list(APPEND SL_WARNING_FLAGS -Werror)
endif()

function(sl_target_warnings target)
  target_compile_options(${target} PRIVATE ${SL_WARNING_FLAGS})
endfunction()
