#!/bin/sh
# The image's entrypoint: one image, three programs. The first argument picks
# the program; the rest is passed on. exec keeps node as PID 1's direct
# replacement so SIGTERM reaches it.
set -eu

app="${EDGESHIFT_HOME:-/app}"

usage() {
  echo "usage: edgeshift operator|sidecar|agent|image-cleanup [args...]" >&2
}

if [ "$#" -eq 0 ]; then
  usage
  exit 64
fi
program="$1"
shift

case "$program" in
  operator)
    exec node --enable-source-maps "$app/dist/operator/main.js" "$@"
    ;;
  sidecar)
    # The monitor runs once per workload on small edge nodes: a 1 MiB young
    # generation and one V8 helper thread (0 would mean one per CPU).
    exec node --max-semi-space-size=1 --v8-pool-size=1 "$app/dist/sidecar/main.js" "$@"
    ;;
  agent)
    # Compression allocates a fresh buffer per chunk; with --expose-gc the
    # agent runs a minor GC every few MiB (migration/oci/layer.ts), which keeps
    # its peak memory flat during a push.
    exec node --enable-source-maps --expose-gc "$app/dist/migration/agent/main.js" "$@"
    ;;
  image-cleanup)
    # One-off: the operator runs it when an edge agent cannot remove a
    # migration's checkpoint images (migration/agent/image-cleanup.ts).
    exec node --enable-source-maps "$app/dist/migration/agent/image-cleanup-main.js" "$@"
    ;;
  -h | --help | help)
    usage
    exit 0
    ;;
  *)
    echo "edgeshift: unknown program \"$program\"" >&2
    usage
    exit 64
    ;;
esac
