# common/k8s unit tests: kubeconfig/in-cluster parsing (incl. hostile YAML), the watch-stream
# splitter and the reflector state machine.
sl_add_unit_test(test-k8s-kubeconfig SOURCES common/k8s/test-kubeconfig.c LIBS sl_k8s)
sl_add_unit_test(test-k8s-reflector SOURCES common/k8s/test-reflector.c LIBS sl_k8s)
