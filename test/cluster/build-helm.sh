#!/usr/bin/env bash
# Builds Helm from the Go module proxy into a cache outside the repo, keyed by
# version, and prints the binary's path. The chart tests (test/integration/chart.test.ts,
# test/nodes/helm.test.ts) run this binary; no package ships Helm.
# `--installed`: build nothing, fail unless it is there (what the tests call, so
# nothing is built inside a test run).
set -euo pipefail

HELM_VERSION="${HELM_VERSION:-v4.3.1}"
CACHE="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
OUT="$CACHE/helm-$HELM_VERSION/bin"
export PATH="/usr/local/go/bin:$PATH"
export CGO_ENABLED=0

if [ -x "$OUT/helm" ]; then echo "$OUT/helm"; exit 0; fi
if [ "${1:-}" = --installed ]; then
  echo "build-helm: helm $HELM_VERSION is not in $OUT: run test/cluster/build-helm.sh" >&2
  exit 1
fi
mkdir -p "$OUT"
echo "building helm $HELM_VERSION" >&2
# helm.sh/helm/v4 has no replace directives, so `go install module@version`
# builds it exactly as released; the -X flag is what Helm's Makefile sets, so
# `helm version` names the release rather than "v4.3".
major="${HELM_VERSION%%.*}"
tmp="$(mktemp -d "$CACHE/helm-build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install -trimpath \
  -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION" \
  "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
mv "$tmp/helm" "$OUT/helm"
echo "$OUT/helm"
