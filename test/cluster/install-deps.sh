#!/usr/bin/env bash
# Debian packages the harness needs: nats-server, the Distribution registry,
# htpasswd (bcrypt users for it), skopeo (reads images back), openssl and
# setpriv (test PKI, processes that die with the harness). The real nodes
# (kubelet + containerd) also need iptables and conntrack (kube-proxy's iptables
# mode), the CNI plugins, a static busybox and buildah (their images), socat
# (port forwarding) and iproute2 (their network). Go comes with this kind of
# machine; build-binaries.sh and build-node-binaries.sh use it with the Go
# module proxy. Prometheus and promtool (the alert rules' tests, the live
# Prometheus on the real nodes) come from Debian's package too, unpacked into
# the cache rather than installed: install-prometheus.sh, which .ci/run calls
# (the demo does not need them).
set -euo pipefail
pkgs=(nats-server docker-registry apache2-utils skopeo openssl util-linux ca-certificates curl
  iptables conntrack containernetworking-plugins busybox-static buildah socat iproute2)
# `--bench` is still accepted and adds nothing now: buildah and curl (what `npm run bench`
# compares against) are always installed.
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "Debian packages present: ${pkgs[*]}"
