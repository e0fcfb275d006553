# tree.sh — sourced by e2e scenarios (pull, snapshotter): the full tree hash of a container's
# rootfs, computed inside the container with busybox tools: one line per path (not crossing into
# /proc, /dev...) with mode, owner, and size + hardlink count + content sha256 for files, link
# target for symlinks, device numbers otherwise; prints the line count and the sha256 of the
# lines.
# shellcheck shell=bash disable=SC2016 # expanded inside the container
SL_TREE='cd / && find . -xdev ! -path ./tmp/tree.txt | LC_ALL=C sort | while IFS= read -r p; do
  if [ -L "$p" ]; then x="l $(readlink "$p")";
  elif [ -f "$p" ]; then x="f $(stat -c "%s %h" "$p") $(sha256sum < "$p" | cut -d" " -f1)";
  elif [ -d "$p" ]; then x=d;
  else x="o $(stat -c "%t:%T %h" "$p")"; fi
  echo "$p $(stat -c "%f %u:%g" "$p") $x"; done > /tmp/tree.txt; wc -l < /tmp/tree.txt; sha256sum < /tmp/tree.txt'
ctr_tree_hash() { # ctr_tree_hash NS IMAGE [SNAPSHOTTER-ARGS...]
    local ns=$1 img=$2
    shift 2
    e2e_ctr_timeout 120 -n "$ns" run --rm "$@" "$img" "sl-tree-$RANDOM" sh -c "$SL_TREE" 2>&1
}
