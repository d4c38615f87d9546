#!/usr/bin/env bash
# Builds the root filesystem the simulated nodes run test workloads in, from
# Debian packages and the repo's own Node.js binary only (no image pull):
#   /bin/*            busybox-static (bookworm) and its applet links
#   /usr/local/bin/node  the real ELF behind node_modules/.bin/node
#   its shared libraries (from ldd) at their host paths, plus the loader
#   /app/*            test/sim/workloads/ (the test workloads)
# The result is cached outside the repo under a key of everything that went in
# ($EDGESHIFT_CACHE/rootfs/<key>, default cache ~/.cache/edgeshift), so a
# rebuild happens only when an input changed. Prints the rootfs path.
set -euo pipefail

recipe=1 # bump when the layout below changes
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
cache="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
log() { echo "rootfs: $*" >&2; }

node_bin="$(readlink -f "$repo/node_modules/.bin/node")"
if ! head -c 4 "$node_bin" | grep -q ELF; then
  log "$node_bin is not an ELF binary; run npm ci first"
  exit 1
fi

bb_version="$(apt-cache policy busybox-static 2>/dev/null | sed -n 's/^ *Candidate: //p')"
if [ -z "$bb_version" ] || [ "$bb_version" = "(none)" ]; then
  apt-get update -qq
  bb_version="$(apt-cache policy busybox-static | sed -n 's/^ *Candidate: //p')"
fi

key="$(
  {
    echo "recipe $recipe"
    echo "busybox-static $bb_version"
    sha256sum "$node_bin" | cut -d' ' -f1
    (cd "$here/workloads" && find . -type f -print0 | sort -z | xargs -0 sha256sum)
  } | sha256sum | cut -c1-16
)"
out="$cache/rootfs/$key"
if [ -f "$out.complete" ]; then
  echo "$out"
  exit 0
fi

log "building $out"
mkdir -p "$cache/rootfs"
tmp="$(mktemp -d "$cache/rootfs/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
r="$tmp/rootfs"
mkdir -p "$r"/{bin,sbin,etc,proc,sys,dev,tmp,run,app,progress,usr/local/bin,root}
chmod 1777 "$r/tmp"

(cd "$tmp" && apt-get download "busybox-static=$bb_version" >/dev/null 2>&1 ||
  apt-get -o APT::Sandbox::User=root download "busybox-static=$bb_version" >/dev/null)
dpkg -x "$tmp"/busybox-static_*.deb "$tmp/bb"
cp "$tmp/bb/bin/busybox" "$r/bin/busybox"
for applet in $("$r/bin/busybox" --list); do
  [ "$applet" = busybox ] || ln -sf busybox "$r/bin/$applet"
done

cp "$node_bin" "$r/usr/local/bin/node"
# Every library node links against, at the path the loader looks for it.
for lib in $(ldd "$node_bin" | grep -o '/[^ ]*'); do
  mkdir -p "$r$(dirname "$lib")"
  cp -L "$lib" "$r$lib"
done

cp -r "$here/workloads/." "$r/app/"
cat >"$r/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >"$r/etc/group" <<'EOF'
root:x:0:
nogroup:x:65534:
EOF
echo "127.0.0.1 localhost" >"$r/etc/hosts"

rm -rf "$out"
mv "$r" "$out"
touch "$out.complete"
log "built ($(du -sm "$out" | cut -f1) MB)"
echo "$out"
