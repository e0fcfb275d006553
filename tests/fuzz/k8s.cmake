# Parsers of Kubernetes input: kubeconfig YAML and watch streams (newline-delimited events fed
# through the reflector state machine).
sl_add_fuzzer(fuzz-kubeconfig k8s/fuzz-kubeconfig.c LIBS sl_k8s)
sl_add_fuzzer(fuzz-watch-events k8s/fuzz-watch-events.c LIBS sl_k8s)
