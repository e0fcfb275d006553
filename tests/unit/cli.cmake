# ctr-starlight's command line: help, version, and usage errors (exit 2) without a registry.
set(SL_CS $<TARGET_FILE:ctr-starlight>)
add_test(NAME cli-help COMMAND ${SL_CS} --help)
set_tests_properties(cli-help PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "convert.*inspect")
add_test(NAME cli-convert-help COMMAND ${SL_CS} convert --help)
set_tests_properties(cli-convert-help PROPERTIES LABELS cli
  PASS_REGULAR_EXPRESSION "--chunk-size SIZE.*default: 4MiB.*--insecure-destination")
add_test(NAME cli-inspect-help COMMAND ${SL_CS} inspect --help)
set_tests_properties(cli-inspect-help PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "Usage: ctr-starlight inspect")
add_test(NAME cli-version COMMAND ${SL_CS} --version)
set_tests_properties(cli-version PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "ctr-starlight [0-9]")
# Usage errors must exit non-zero with a message naming the problem.
foreach(case "unknown-verb;nope" "missing-args;convert;a"
             "bad-flag;convert;--bogus;a;b" "bad-size;convert;--chunk-size;lots;a;b"
             "bad-ref;convert;UPPER/Case:x;b" "digest-dst;convert;a;b@sha256:0000000000000000000000000000000000000000000000000000000000000000"
             "bad-log-format;convert;--log-format;xml;a;b")
  list(POP_FRONT case name)
  add_test(NAME cli-usage-${name} COMMAND ${SL_CS} ${case})
  set_tests_properties(cli-usage-${name} PROPERTIES LABELS cli WILL_FAIL TRUE)
endforeach()
add_test(NAME cli-usage-message COMMAND sh -c "${SL_CS} convert --chunk-size lots a b 2>&1 | grep -q 'flag --chunk-size'")
set_tests_properties(cli-usage-message PROPERTIES LABELS cli)
add_test(NAME cli-notify-help COMMAND ${SL_CS} notify --help)
set_tests_properties(cli-notify-help PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "--proxy URL.*STARLIGHT_PROXY")
add_test(NAME cli-notify-no-proxy COMMAND sh -c "env -u STARLIGHT_PROXY ${SL_CS} notify a 2>&1 | grep -q 'no proxy given'")
set_tests_properties(cli-notify-no-proxy PROPERTIES LABELS cli)
add_test(NAME cli-convert-notify-no-proxy COMMAND sh -c "env -u STARLIGHT_PROXY ${SL_CS} convert --notify a b 2>&1 | grep -q -- '--notify needs --proxy'")
set_tests_properties(cli-convert-notify-no-proxy PROPERTIES LABELS cli)
# Daemon verbs: help names the control-socket options; no daemon → a clear error, exit 1.
add_test(NAME cli-pull-help COMMAND ${SL_CS} pull --help)
set_tests_properties(cli-pull-help PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "--daemon SOCKET.*--namespace NS")
foreach(verb status list-proxy ping version)
  add_test(NAME cli-${verb}-help COMMAND ${SL_CS} ${verb} --help)
  set_tests_properties(cli-${verb}-help PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "--daemon SOCKET")
endforeach()
add_test(NAME cli-pull-no-daemon COMMAND sh -c "${SL_CS} pull --daemon /nonexistent/sl.sock a 2>&1 | grep -q 'is it running'")
set_tests_properties(cli-pull-no-daemon PROPERTIES LABELS cli)
# a missing socket is named as such (curl alone would report a failed connect to localhost:80)
add_test(NAME cli-status-no-socket COMMAND sh -c "${SL_CS} status --daemon /nonexistent/sl.sock 2>&1")
set_tests_properties(cli-status-no-socket PROPERTIES LABELS cli
  PASS_REGULAR_EXPRESSION "socket /nonexistent/sl.sock: No such file or directory" FAIL_REGULAR_EXPRESSION "port 80")
add_test(NAME cli-add-proxy-usage COMMAND ${SL_CS} add-proxy onlyname)
set_tests_properties(cli-add-proxy-usage PROPERTIES LABELS cli WILL_FAIL TRUE)
# Node setup: install/uninstall help, and a refused file exits 1 without touching it.
add_test(NAME cli-install-help COMMAND ${SL_CS} install --help)
set_tests_properties(cli-install-help PROPERTIES LABELS cli PASS_REGULAR_EXPRESSION "--containerd-config PATH.*--snapshotter-socket PATH.*--k3s.*--dry-run")
add_test(NAME cli-install-refuses-v1 COMMAND sh -c "f=$(mktemp) && printf '[plugins.cri]\\n' >$f && ${SL_CS} install --containerd-config $f >$f.out 2>&1; r=$?; grep -q 'version 1' $f.out && [ $r = 1 ] && [ ! -e $f.starlight-backup ]; r=$?; rm -f $f $f.out; exit $r")
set_tests_properties(cli-install-refuses-v1 PROPERTIES LABELS cli)
