# The delta head a worker receives from the proxy (hostile network bytes).
sl_add_fuzzer(fuzz-delta-header delta/fuzz-delta-header.c LIBS sl_delta)
