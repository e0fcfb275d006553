# Parsers of registry bytes: image references, manifests, WWW-Authenticate (+ token answers
# and docker config.json).
sl_add_fuzzer(fuzz-reference registry/fuzz-reference.c LIBS sl_registry)
sl_add_fuzzer(fuzz-manifest registry/fuzz-manifest.c LIBS sl_registry)
sl_add_fuzzer(fuzz-www-authenticate registry/fuzz-www-authenticate.c LIBS sl_registry)
