#!/usr/bin/env bash
# Runs every end-to-end scenario: each folder tests/e2e/<scenario>/ holds one run.sh that
# starts the real components it needs and stops them by PID. Usage: run.sh BUILD_DIR [NAME...]
# Under CI=true a scenario whose real components are missing fails (exit 1) instead of
# skipping (exit 77).
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$(cd "${1:-build}" && pwd); shift || true
export SL_BUILD="$build" SL_BIN="$build/bin"
pass=0 fail=0 skip=0 failed=()
scenarios=("$@")
if [ "${#scenarios[@]}" -eq 0 ]; then
  for d in "$here"/*/; do [ -x "$d/run.sh" ] && scenarios+=("$(basename "$d")"); done
fi
for s in "${scenarios[@]}"; do
  echo "=== e2e: $s"
  start=$(date +%s)
  bash "$here/$s/run.sh"
  rc=$?
  dur=$(( $(date +%s) - start ))
  if [ $rc -eq 0 ]; then pass=$((pass+1)); echo "=== e2e: $s passed (${dur}s)"
  elif [ $rc -eq 77 ] && [ "${CI:-}" != true ]; then skip=$((skip+1)); echo "=== e2e: $s skipped"
  else fail=$((fail+1)); failed+=("$s"); echo "=== e2e: $s FAILED (rc=$rc, ${dur}s)"; fi
done
echo "e2e: $pass passed, $fail failed, $skip skipped"
[ "$fail" -eq 0 ] || { echo "failed: ${failed[*]}"; exit 1; }
