# What starlight-controller's webhook parses from the API server: AdmissionReview v1 bodies,
# decided and, when patched, the JSONPatch applied back onto the Pod.
if(TARGET sl_controller_core)
  sl_add_fuzzer(fuzz-admission-review controller/fuzz-admission-review.c LIBS sl_controller_core)
endif()
# What the controllers read from the API server: Node prewarm annotations, workloads, Pods,
# Jobs and Events.
if(TARGET sl_controller_core)
  sl_add_fuzzer(fuzz-controller-objects controller/fuzz-controller-objects.c
    LIBS sl_controller_core)
endif()
