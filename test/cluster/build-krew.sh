#!/usr/bin/env bash
# Builds krew (the kubectl plugin manager) from the Go module proxy into a cache
# outside the repo, keyed by version, and prints the binary's path. The plugin
# package test installs the krew release archive with it (plugin/krew/). With
# --check it builds nothing and fails when the binary is missing (the tests call
# it that way).
set -euo pipefail

KREW_VERSION="${KREW_VERSION:-v0.4.3}"
CACHE="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
OUT="$CACHE/krew-$KREW_VERSION/bin"
export PATH="/usr/local/go/bin:$PATH"
export CGO_ENABLED=0

if [ -x "$OUT/krew" ]; then echo "$OUT/krew"; exit 0; fi
if [ "${1:-}" = "--check" ]; then
  echo "krew $KREW_VERSION is not built: run bash test/cluster/build-krew.sh" >&2
  exit 1
fi
mkdir -p "$OUT"
echo "building krew $KREW_VERSION" >&2
# sigs.k8s.io/krew has no replace directives, so `go install module@version`
# builds it as released; -X sets what `krew version` prints, as krew's own build does.
tmp="$(mktemp -d "$CACHE/krew-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install -trimpath \
  -ldflags "-s -w -X sigs.k8s.io/krew/internal/version.gitTag=$KREW_VERSION" \
  "sigs.k8s.io/krew/cmd/krew@$KREW_VERSION"
mv "$tmp/krew" "$OUT/krew"
echo "$OUT/krew"
