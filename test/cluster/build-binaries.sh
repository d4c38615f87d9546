#!/usr/bin/env bash
# Builds the control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) from the Go module proxy into a cache outside the repo,
# keyed by version. No package ships kube-apiserver, so we build it from
# k8s.io/kubernetes through a wrapper module that pins every staging module.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"
CACHE="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
OUT="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
export PATH="/usr/local/go/bin:$PATH"
export CGO_ENABLED=0
export GOFLAGS="-mod=mod"

want=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
missing=0
for b in "${want[@]}"; do [ -x "$OUT/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then echo "$OUT"; exit 0; fi

work="$CACHE/build-$K8S_VERSION"
mkdir -p "$work/k8s" "$work/etcd" "$OUT"

# --- Kubernetes -------------------------------------------------------------
# shellcheck source=k8s-module.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-module.sh"
k8s_wrapper_module "$work/k8s" edgeshift.dev/k8s-build kube-apiserver kube-controller-manager kube-scheduler kubectl
cd "$work/k8s"
ldflags="$(k8s_ldflags)"
for b in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
  [ -x "$OUT/$b" ] && continue
  echo "building $b $K8S_VERSION" >&2
  go build -trimpath -ldflags "$ldflags" -o "$OUT/$b.tmp" "k8s.io/kubernetes/cmd/$b"
  mv "$OUT/$b.tmp" "$OUT/$b"
done

# --- etcd -------------------------------------------------------------------
if [ ! -x "$OUT/etcd" ]; then
  echo "building etcd $ETCD_VERSION" >&2
  cd "$work/etcd"
  cat > go.mod <<MOD
module edgeshift.dev/etcd-build

go 1.25

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
MOD
  cat > main.go <<'GO'
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  go mod tidy >/dev/null
  go build -trimpath -ldflags "-s -w" -o "$OUT/etcd.tmp" .
  mv "$OUT/etcd.tmp" "$OUT/etcd"
fi
echo "$OUT"
