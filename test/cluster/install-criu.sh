#!/usr/bin/env bash
# Installs what the real nodes need to checkpoint and restore containers:
# bookworm's runc (system package) and Debian sid's CRIU 4.2 (see below).
#
# Why Debian sid's CRIU: bookworm's criu 3.17.1 fails on this kernel ("Unexpected
# rt vDSO area bounds"); trixie's 4.1.1 dumps processes without sockets but, on
# Linux >= 6.16, no process holding an inet socket ("sockets: Can't get 1:16 opt:
# Operation not supported": 6.16 restricted SO_PASSCRED/SO_PASSSEC to unix and
# netlink sockets, CRIU 4.2 stopped asking for them elsewhere). So criu >= 4.2
# and its libraries (the whole Depends closure, newer than bookworm's libc) are
# fetched from sid with `apt-get download` through a private sources list and
# lists directory (the system stays bookworm), extracted with `dpkg -x` into one
# folder of the cache, and run through their own dynamic loader by a wrapper
# named `criu`. runc finds that wrapper first on PATH.
#
# Idempotent: a second run only re-checks. Prints the folder holding `criu`.
# Env: EDGESHIFT_CACHE (default ~/.cache/edgeshift).
set -euo pipefail

version=4.2
suite=sid
cache="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
dir="$cache/criu-$version"
root="$dir/root"
bin="$dir/bin"
lib="$root/usr/lib/x86_64-linux-gnu"
log() { echo "install-criu: $*" >&2; }

if [ "$(uname -m)" != x86_64 ]; then
  log "only x86_64 is supported (the wrapper uses the x86_64 loader)"
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
if ! command -v runc >/dev/null 2>&1; then
  log "installing runc"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends runc >/dev/null
fi
# nsenter joins a container's PID namespace (the monitor as an ephemeral container).
if ! command -v nsenter >/dev/null 2>&1; then
  apt-get install -y -qq --no-install-recommends util-linux >/dev/null
fi

if [ ! -f "$dir/.complete" ]; then
  log "fetching Debian $suite criu $version.x and its libraries into $dir"
  rm -rf "$dir"
  apt_dir="$dir/apt"
  mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs" "$root" "$bin"
  cat >"$apt_dir/sources.list" <<'EOF'
deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main
EOF
  # Every path apt reads or writes for this download points into the cache, so
  # the system's own sources, lists and pins are neither read nor touched.
  apt_opts=(
    -o "Dir::Etc::SourceList=$apt_dir/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::Etc::PreferencesParts=/dev/null"
    -o "Dir::Etc::Preferences=/dev/null"
    -o "Dir::State::Lists=$apt_dir/lists"
    -o "Dir::Cache=$apt_dir/cache"
    -o "Dir::Cache::pkgcache="
    -o "Dir::Cache::srcpkgcache="
    -o "APT::Architecture=amd64"
    -o "APT::Architectures=amd64"
    -o "Acquire::Languages=none"
    # The cache is under root's home, which the _apt sandbox user cannot enter.
    -o "APT::Sandbox::User=root"
  )
  apt-get "${apt_opts[@]}" update -qq
  got="$(apt-cache "${apt_opts[@]}" show --no-all-versions criu | sed -n 's/^Version: //p')"
  case "$got" in
  "$version".*) ;;
  *)
    log "$suite offers criu '$got', expected $version.x"
    exit 1
    ;;
  esac
  # criu and everything it Depends on (or PreDepends), recursively: the libraries
  # the loader needs, at sid's versions.
  mapfile -t pkgs < <(apt-cache "${apt_opts[@]}" depends --recurse --no-recommends \
    --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances criu |
    grep -v '^ ' | grep -v '^<' | sort -u)
  (cd "$apt_dir/debs" && apt-get "${apt_opts[@]}" download "${pkgs[@]}" >/dev/null)
  echo "$got" >"$dir/version"
  for deb in "$apt_dir/debs"/*.deb; do dpkg -x "$deb" "$root"; done
  rm -rf "$apt_dir/lists" "$apt_dir/cache"
  touch "$dir/.complete"
fi

# The wrapper is rewritten every time: cheap, and it follows a moved cache.
cat >"$bin/criu.tmp" <<EOF
#!/bin/sh
# Debian $suite's criu $(cat "$dir/version" 2>/dev/null) with its libraries, through their loader.
# A test holds the node's next dump here (test/nodes/node-control.ts holdCriu):
# while the file its containerd names exists, the runtime's CRIU call waits.
if [ "\${1:-}" = swrk ] && [ -n "\${EDGESHIFT_TEST_CRIU_HOLD:-}" ]; then
  while [ -e "\$EDGESHIFT_TEST_CRIU_HOLD" ]; do sleep 0.05; done
fi
exec "$lib/ld-linux-x86-64.so.2" --library-path "$lib" "$root/usr/sbin/criu" "\$@"
EOF
chmod 755 "$bin/criu.tmp"
mv -f "$bin/criu.tmp" "$bin/criu"

if ! out="$("$bin/criu" check 2>&1)" || ! grep -q "Looks good" <<<"$out"; then
  log "criu check failed:"
  echo "$out" >&2
  exit 1
fi
log "$("$bin/criu" --version | head -1); $(runc --version | head -1); criu check: Looks good"
echo "$bin"
