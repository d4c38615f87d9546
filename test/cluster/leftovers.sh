#!/usr/bin/env bash
# What a test run must not leave behind, for CI:
#   leftovers.sh snapshot FILE            before the run: the namespaces that exist already
#   leftovers.sh check FILE RUN_TMP REPO  after: processes, cgroups, mounts, namespaces of ours
# Every process the suite starts names a path under its TMPDIR or the checkout on
# its command line; real nodes' cgroups are named edgeshift-<run>-<node>; their
# network and mount namespaces die with their last process.
set -uo pipefail
mode=$1 file=$2
namespaces() { lsns -n -t net -t mnt -o NS 2>/dev/null | sort -u; }
if [ "$mode" = snapshot ]; then namespaces >"$file"; exit 0; fi
run_tmp=$3 repo=$4
bad=0
left=$( (pgrep -a -f "$run_tmp"; pgrep -a -f "$repo/") | grep -v "leftovers.sh" || true)
if [ -n "$left" ]; then echo "Processes left behind:"; echo "$left"; bad=1; fi
# A node's cgroup root is named edgeshift-<harness pid>-...: once the run is over,
# a root whose harness is gone is a leftover (one of a live harness belongs to
# another run on this machine).
cg=$(for d in /sys/fs/cgroup/*/edgeshift-*; do
  [ -d "$d" ] || continue
  pid=$(basename "$d" | cut -d- -f2)
  [ -e "/proc/$pid" ] || echo "$d"
done)
if [ -n "$cg" ]; then echo "Cgroups left behind:"; echo "$cg"; bad=1; fi
mnt=$(grep -F "$run_tmp" /proc/self/mountinfo || true)
if [ -n "$mnt" ]; then echo "Mounts left behind:"; echo "$mnt"; bad=1; fi
# New namespaces whose process belongs to this run (its TMPDIR or its command line).
ours() {
  local pid=$1
  tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qxF "TMPDIR=$run_tmp" && return 0
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$run_tmp"
}
new=$(comm -13 "$file" <(namespaces) | while read -r ns; do
  for pid in $(lsns -n -o NS,PID | awk -v n="$ns" '$1 == n {print $2}'); do
    if ours "$pid"; then echo "$ns"; break; fi
  done
done)
if [ -n "$new" ]; then
  echo "Namespaces left behind:"
  for ns in $new; do lsns -n -o NS,TYPE,PID,COMMAND | awk -v n="$ns" '$1 == n'; done
  bad=1
fi
[ "$bad" = 0 ] && echo "none"
exit "$bad"
