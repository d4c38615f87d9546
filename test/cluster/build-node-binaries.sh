#!/usr/bin/env bash
# Builds the binaries of the real-node test cluster's nodes from the Go module
# proxy into a cache outside the repo, keyed by version: kubelet and kube-proxy
# (next to the control plane that build-binaries.sh builds), containerd with its
# runc shim and ctr, CoreDNS, and our own pause (test/cluster/pause, keyed by
# the hash of its source). It checks Debian's CNI plugins and gets runc and CRIU
# from test/cluster/install-criu.sh.
#
# Prints one key=absolute-path line per binary on stdout and nothing else there
# (progress goes to stderr). Idempotent: a second run only checks and prints.
# Every binary is written to a temporary name and then moved, so an
# interrupted build never leaves a half binary behind.
#
# Usage: build-node-binaries.sh [--with-containerd-1.7]
#   --with-containerd-1.7  also builds containerd 1.7 (newest patch), a runtime
#                          that cannot restore checkpoints (keys containerd-1.7,
#                          containerd-shim-runc-v2-1.7).
# Env: EDGESHIFT_CACHE (default ~/.cache/edgeshift), K8S_VERSION, ETCD_VERSION
# (only names the binaries' directory), CONTAINERD_VERSION, COREDNS_VERSION,
# CONTAINERD_17_VERSION.
set -euo pipefail

K8S_VERSION="${K8S_VERSION:-v1.37.2}"
ETCD_VERSION="${ETCD_VERSION:-v3.7.0}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-v2.3.7}"
CONTAINERD_17_VERSION="${CONTAINERD_17_VERSION:-v1.7.35}"
COREDNS_VERSION="${COREDNS_VERSION:-v1.15.0}"
CACHE="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
# shellcheck source=k8s-module.sh
source "$(dirname "${BASH_SOURCE[0]}")/k8s-module.sh"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
export PATH="/usr/local/go/bin:$PATH"
export CGO_ENABLED=0

with_containerd_17=0
for arg in "$@"; do
  case "$arg" in
  --with-containerd-1.7) with_containerd_17=1 ;;
  *)
    echo "usage: $0 [--with-containerd-1.7]" >&2
    exit 2
    ;;
  esac
done

log() { echo "build-node-binaries: $*" >&2; }

# Runs one go build or install at low priority (other builds share the two
# cores) and says how long it took.
timed() {
  local what=$1 t0=$SECONDS
  shift
  log "building $what"
  nice -n 10 "$@" >&2 || return 1
  log "built $what in $((SECONDS - t0)) s"
}

# Installs main packages from the proxy as `go install pkg@version` does, which
# uses that module's own go.mod. GOBIN is a temporary directory: the binary only
# reaches $out once complete. Args: out-dir ldflags tags pkg@version. Returns
# non-zero on failure (explicitly: callers may test it, which turns off set -e).
install_from_proxy() {
  local out=$1 ldflags=$2 tags=$3 pkg=$4
  local name="${pkg%@*}"
  name="${name##*/}"
  [ -x "$out/$name" ] && return 0
  local tmp="$out/.tmp-$name"
  rm -rf "$tmp" && mkdir -p "$tmp" || return 1
  timed "$name ${pkg#*@}" env GOBIN="$tmp" go install -trimpath -tags "$tags" -ldflags "$ldflags" "$pkg" ||
    return 1
  mv -f "$tmp/$name" "$out/$name" && rmdir "$tmp"
}

# --- What the nodes take from Debian and install-criu.sh (checked first: fast) ---
cni=/usr/lib/cni
for p in bridge host-local loopback portmap; do
  if [ ! -x "$cni/$p" ]; then
    log "CNI plugin $cni/$p is missing: run test/cluster/install-deps.sh (containernetworking-plugins)"
    exit 1
  fi
done
criu_dir="$(bash "$repo/test/cluster/install-criu.sh" | tail -n 1)"
runc="$(command -v runc || true)"
if [ ! -x "$criu_dir/criu" ] || [ -z "$runc" ]; then
  log "install-criu.sh gave no criu in '$criu_dir' or no runc on PATH"
  exit 1
fi

# runc hands /etc/criu/runc.conf to CRIU. Without skip-in-flight, a connection
# still in a server's accept queue when CRIU freezes it fails the dump
# ("In-flight connection (l)"): a readiness probe or a scrape can be one.
# README, Node requirements. The nodes share the host's /etc.
mkdir -p /etc/criu
if ! grep -qx 'skip-in-flight' /etc/criu/runc.conf 2>/dev/null; then
  echo 'skip-in-flight' >> /etc/criu/runc.conf
  log "added skip-in-flight to /etc/criu/runc.conf"
fi

# --- kubelet, kube-proxy ------------------------------------------------------
# Same technique and flags as build-binaries.sh, in a wrapper module of our own
# (that script's wrapper may be in use by a build of its own).
k8s_out="$CACHE/k8s-$K8S_VERSION-etcd-$ETCD_VERSION/bin"
if [ ! -x "$k8s_out/kubelet" ] || [ ! -x "$k8s_out/kube-proxy" ]; then
  work="$CACHE/build-$K8S_VERSION/node"
  mkdir -p "$work" "$k8s_out"
  (
    cd "$work"
    export GOFLAGS="-mod=mod"
    t0=$SECONDS
    k8s_wrapper_module "$work" edgeshift.dev/k8s-node-build kube-proxy kubelet
    log "resolved the kubelet's modules in $((SECONDS - t0)) s"
    ldflags="$(k8s_ldflags)"
    for b in kubelet kube-proxy; do
      [ -x "$k8s_out/$b" ] && continue
      timed "$b $K8S_VERSION" go build -trimpath -ldflags "$ldflags" -o "$k8s_out/$b.tmp" "k8s.io/kubernetes/cmd/$b"
      mv -f "$k8s_out/$b.tmp" "$k8s_out/$b"
    done
  )
fi

# --- containerd ---------------------------------------------------------------
# No btrfs, devmapper or ZFS snapshotters: they need cgo, and the nodes use
# overlayfs or native.
containerd_tags="no_btrfs no_devmapper no_zfs"
containerd_out="$CACHE/containerd-$CONTAINERD_VERSION/bin"
mkdir -p "$containerd_out"
pkg=github.com/containerd/containerd/v2
ld="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=$pkg"
for c in containerd containerd-shim-runc-v2 ctr; do
  install_from_proxy "$containerd_out" "$ld" "$containerd_tags" "$pkg/cmd/$c@$CONTAINERD_VERSION"
done

# containerd 1.7: its CRI plugin has no CheckpointContainer. Only on request.
# Its go.mod has an exclude directive, which `go install pkg@version` refuses,
# so it goes through a wrapper module that requires it and repeats its excludes
# (a dependency's excludes do not apply otherwise). Run it in a subshell: it
# changes directory and GOFLAGS.
build_containerd_17() {
  local out="$CACHE/containerd-$CONTAINERD_17_VERSION/bin"
  local work="$CACHE/build-containerd-$CONTAINERD_17_VERSION"
  local pkg=github.com/containerd/containerd
  local ld="-s -w -X $pkg/version.Version=$CONTAINERD_17_VERSION -X $pkg/version.Package=$pkg"
  [ -x "$out/containerd" ] && [ -x "$out/containerd-shim-runc-v2" ] && return 0
  mkdir -p "$out" "$work"
  cd "$work"
  export GOFLAGS="-mod=mod"
  local gomod
  go mod download -json "$pkg@$CONTAINERD_17_VERSION" >download.json
  gomod="$(sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",$/\1/p' download.json)"
  {
    echo "module edgeshift.dev/containerd-build"
    echo
    echo "go $(awk '/^go /{print $2; exit}' "$gomod")"
    echo
    echo "require $pkg $CONTAINERD_17_VERSION"
    echo
    awk '/^exclude \(/{block=1} block||/^exclude /{print} block&&/^\)/{block=0}' "$gomod"
  } >go.mod
  cat >tools.go <<GO
//go:build tools

package tools

import (
	_ "$pkg/cmd/containerd"
	_ "$pkg/cmd/containerd-shim-runc-v2"
)
GO
  go mod tidy -e >tidy.log 2>&1 || true
  local c
  for c in containerd containerd-shim-runc-v2; do
    [ -x "$out/$c" ] && continue
    timed "$c $CONTAINERD_17_VERSION" go build -trimpath -tags "$containerd_tags" -ldflags "$ld" -o "$out/$c.tmp" "$pkg/cmd/$c"
    mv -f "$out/$c.tmp" "$out/$c"
  done
}
containerd_17_out="$CACHE/containerd-$CONTAINERD_17_VERSION/bin"
if [ "$with_containerd_17" = 1 ]; then
  # A trap on the subshell, not `if !`: that would turn off set -e inside it.
  trap 'log "containerd $CONTAINERD_17_VERSION did not build from the Go module proxy (see download.json and tidy.log in $CACHE/build-containerd-$CONTAINERD_17_VERSION); --with-containerd-1.7 cannot be used as is"' ERR
  (build_containerd_17)
  trap - ERR
fi

# --- CoreDNS ------------------------------------------------------------------
# A main package at the module's root, with its default plugin set.
coredns_out="$CACHE/coredns-$COREDNS_VERSION/bin"
mkdir -p "$coredns_out"
install_from_proxy "$coredns_out" "-s -w" "" "github.com/coredns/coredns@$COREDNS_VERSION"

# --- pause --------------------------------------------------------------------
pause_src="$repo/test/cluster/pause"
pause_hash="$(sha256sum "$pause_src/main.go" | cut -c1-12)"
pause_out="$CACHE/pause-$pause_hash"
if [ ! -x "$pause_out/pause" ]; then
  mkdir -p "$pause_out"
  (
    cd "$pause_src"
    timed "pause $pause_hash" go build -trimpath -buildvcs=false -ldflags "-s -w" -o "$pause_out/pause.tmp" .
  )
  mv -f "$pause_out/pause.tmp" "$pause_out/pause"
fi

echo "kubelet=$k8s_out/kubelet"
echo "kube-proxy=$k8s_out/kube-proxy"
echo "containerd=$containerd_out/containerd"
echo "containerd-shim-runc-v2=$containerd_out/containerd-shim-runc-v2"
echo "ctr=$containerd_out/ctr"
echo "coredns=$coredns_out/coredns"
echo "pause=$pause_out/pause"
echo "cni=$cni"
echo "runc=$runc"
echo "criu-dir=$criu_dir"
if [ "$with_containerd_17" = 1 ]; then
  echo "containerd-1.7=$containerd_17_out/containerd"
  echo "containerd-shim-runc-v2-1.7=$containerd_17_out/containerd-shim-runc-v2"
fi
