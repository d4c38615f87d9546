#!/usr/bin/env bash
# Fetches Debian bookworm's prometheus package (the server and promtool) into the
# cache, for the rule unit tests (`promtool check rules`, `promtool test rules`)
# and the live Prometheus on the cluster of real nodes.
#
# Not `apt-get install`: the package's maintainer scripts add a system user and
# start a daemon on :9090 (through systemd or its init script), which a test
# machine does not want. So the .deb is fetched with `apt-get download` and
# unpacked with `dpkg-deb -x`; its two binaries need only libc. The version is
# pinned: a different one fails here, since the README names this one.
#
# Debian builds prometheus without Kubernetes service discovery (its changelog:
# "Kubernetes support has been completely removed"; kubernetes_sd_configs is an
# unknown field). So kubernetes-sd, Prometheus' own discovery/kubernetes of the
# same release (Go module github.com/prometheus/prometheus v0.42.0 = 2.42.0,
# from the Go module proxy), is built beside it and serves what it discovers as
# HTTP service discovery (test/prometheus/kubernetes-sd/main.go).
#
# Idempotent: a second run only re-checks. Prints the folder holding
# `prometheus`, `promtool` and `kubernetes-sd`. `--installed`: fetch and build
# nothing, fail unless all is there (what the tests call, so nothing is
# installed lazily).
# Env: EDGESHIFT_CACHE (default ~/.cache/edgeshift).
set -euo pipefail

version=2.42.0+ds-5+deb12u1
cache="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
dir="$cache/prometheus-$version"
bin="$dir/bin"
# Prometheus 2.42.0 as a Go module (its tags v2.x are published as v0.x).
module_version=v0.42.0
sd_src="$(cd "$(dirname "${BASH_SOURCE[0]}")/../prometheus/kubernetes-sd" && pwd)/main.go"
log() { echo "install-prometheus: $*" >&2; }
sd_current() {
  [ -x "$bin/kubernetes-sd" ] &&
    [ "$(cat "$bin/kubernetes-sd.source" 2>/dev/null)" = "$module_version $(sha256sum <"$sd_src")" ]
}

check() {
  local p t
  p="$("$bin/prometheus" --version 2>&1 | head -1)" || return 1
  t="$("$bin/promtool" --version 2>&1 | head -1)" || return 1
  # Debian's build names its package version as the revision.
  grep -qF "revision: $version)" <<<"$p" && grep -qF "revision: $version)" <<<"$t" || {
    log "unexpected versions in $bin: '$p' / '$t' (want revision $version)"
    return 1
  }
}

if [ "${1:-}" = --installed ]; then
  if [ ! -f "$dir/.complete" ] || ! check || ! sd_current; then
    log "Debian prometheus $version (and kubernetes-sd) is not in $dir: run test/cluster/install-prometheus.sh"
    exit 1
  fi
  echo "$bin"
  exit 0
fi

if [ ! -f "$dir/.complete" ]; then
  log "fetching Debian prometheus $version into $dir"
  rm -rf "$dir"
  mkdir -p "$dir/deb" "$dir/root"
  got="$(apt-cache show --no-all-versions prometheus 2>/dev/null | sed -n 's/^Version: //p')"
  if [ -z "$got" ]; then
    apt-get update -qq
    got="$(apt-cache show --no-all-versions prometheus | sed -n 's/^Version: //p')"
  fi
  if [ "$got" != "$version" ]; then
    log "apt offers prometheus '$got', expected $version"
    exit 1
  fi
  # The cache is under root's home, which the _apt sandbox user cannot enter.
  (cd "$dir/deb" && apt-get -o APT::Sandbox::User=root download -qq "prometheus=$version" >/dev/null)
  deb="$(ls "$dir/deb"/prometheus_*.deb)"
  if [ "$(dpkg-deb -f "$deb" Version)" != "$version" ]; then
    log "downloaded $(dpkg-deb -f "$deb" Version), expected $version"
    exit 1
  fi
  dpkg-deb -x "$deb" "$dir/root"
  rm -rf "$dir/deb"
  touch "$dir/.complete"
fi
mkdir -p "$bin"
ln -sfn ../root/usr/bin/prometheus "$bin/prometheus"
ln -sfn ../root/usr/bin/promtool "$bin/promtool"

if ! sd_current; then
  log "building kubernetes-sd (Prometheus $module_version discovery/kubernetes) from the Go module proxy"
  work="$dir/kubernetes-sd-build"
  rm -rf "$work"
  mkdir -p "$work"
  cp "$sd_src" "$work/main.go"
  cat >"$work/go.mod" <<MOD
module edgeshift.dev/kubernetes-sd

go 1.25

require github.com/prometheus/prometheus $module_version

// As Prometheus' own go.mod has them (replace directives apply to the main module only).
replace (
	k8s.io/klog => github.com/simonpasquier/klog-gokit v0.3.0
	k8s.io/klog/v2 => github.com/simonpasquier/klog-gokit/v3 v3.0.0
)
MOD
  (
    cd "$work"
    export PATH="/usr/local/go/bin:$PATH" CGO_ENABLED=0 GOFLAGS=-mod=mod
    go mod tidy >/dev/null 2>&1 || go mod tidy
    go build -trimpath -ldflags "-s -w" -o "$bin/kubernetes-sd.tmp" .
  )
  mv -f "$bin/kubernetes-sd.tmp" "$bin/kubernetes-sd"
  echo "$module_version $(sha256sum <"$sd_src")" >"$bin/kubernetes-sd.source"
  rm -rf "$work"
fi

check
log "$("$bin/prometheus" --version 2>&1 | head -1); $("$bin/promtool" --version 2>&1 | head -1); kubernetes-sd of $module_version"
echo "$bin"
