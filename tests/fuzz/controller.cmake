# What starlight-controller's webhook parses from the API server: AdmissionReview v1 bodies,
# decided and, when patched, the JSONPatch applied back onto the Pod.
if(TARGET sl_controller_core)
  sl_add_fuzzer(fuzz-admission-review controller/fuzz-admission-review.c LIBS sl_controller_core)
endif()
