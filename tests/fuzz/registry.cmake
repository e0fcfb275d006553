# Parsers of registry bytes: image references, manifests, WWW-Authenticate (+ token answers
# and docker config.json).
sl_add_fuzzer(fuzz-reference registry/fuzz-reference.c LIBS sl_registry)
sl_add_fuzzer(fuzz-manifest registry/fuzz-manifest.c LIBS sl_registry)
sl_add_fuzzer(fuzz-www-authenticate registry/fuzz-www-authenticate.c LIBS sl_registry)
# Error answers turned into messages: a registry's `errors` body and an API server's Status.
if(TARGET sl_k8s)
  sl_add_fuzzer(fuzz-error-bodies registry/fuzz-error-bodies.c LIBS sl_registry sl_k8s)
  target_include_directories(fuzz-error-bodies PRIVATE ${CMAKE_SOURCE_DIR}/common/k8s)
endif()
