#!/usr/bin/env bash
# The Prometheus Operator's CRDs for ServiceMonitor, PodMonitor and PrometheusRule,
# so a test can apply manifests/prometheus/ as the README tells users (kubectl
# apply against a cluster that has them). Taken from the operator's own Go module
# (example/prometheus-operator-crd/, the files its releases ship) through the Go
# module proxy into the cache. Prints the folder.
# `--installed`: fetch nothing, fail unless they are there (what the tests call).
# Env: EDGESHIFT_CACHE (default ~/.cache/edgeshift).
set -euo pipefail
version=v0.89.0
cache="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
dir="$cache/prometheus-operator-crds-$version"
files=(servicemonitors podmonitors prometheusrules)
complete() { for f in "${files[@]}"; do [ -s "$dir/monitoring.coreos.com_$f.yaml" ] || return 1; done; }

if complete; then echo "$dir"; exit 0; fi
if [ "${1:-}" = --installed ]; then
  echo "fetch-monitoring-crds: the Prometheus Operator $version CRDs are not in $dir: run test/cluster/fetch-monitoring-crds.sh" >&2
  exit 1
fi
export PATH="/usr/local/go/bin:$PATH"
src="$(cd /tmp && go mod download -json "github.com/prometheus-operator/prometheus-operator@$version" |
  sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$src/example/prometheus-operator-crd" ] || { echo "fetch-monitoring-crds: no CRDs in '$src'" >&2; exit 1; }
mkdir -p "$dir"
for f in "${files[@]}"; do
  cp "$src/example/prometheus-operator-crd/monitoring.coreos.com_$f.yaml" "$dir/"
done
echo "$dir"
