#!/usr/bin/env bash
# Builds, without Docker, every image the install bundle (manifests/) and the
# test cluster name, under their upstream names, so a cluster whose containerd
# pulls through a registry mirror runs the manifests unchanged:
#
#   registry.k8s.io/pause:3.10               the --pause binary
#   registry.k8s.io/coredns/coredns:v1.15.0  the --coredns binary
#   docker.io/library/busybox:1.37           Debian's busybox-static, applets in /bin
#   docker.io/library/nats:2.11-alpine       Debian's nats-server (+ its glibc), on busybox
#   docker.io/library/node:24-alpine         the project's Node 24 binary (+ its glibc), on busybox
#   docker.io/library/node:24-bookworm-slim  that + npm + CA certificates: the Dockerfile's base
#   ghcr.io/edgeshift/edgeshift:<version>    the project's own Dockerfile, built by buildah
#
# Each image is an OCI layout in ${EDGESHIFT_CACHE:-~/.cache/edgeshift}/images/oci/<image>/,
# in a directory named after a hash of everything that goes into it (files by
# content, image config, base image, this script, buildah's version), so an
# unchanged image is not rebuilt and any change to its inputs rebuilds it. The
# edgeshift image's inputs are its build context: Dockerfile, .dockerignore,
# package.json, package-lock.json, tsconfig*.json, operator/, sidecar/,
# migration/, plugin/, docker/ (test files excluded, as .dockerignore does).
# Builds are reproducible: fixed timestamps (SOURCE_DATE_EPOCH, default 0), no
# buildah identity label, no history; the same inputs give the same digests, so
# images share their common layers and a registry receives each layer once.
#
# buildah keeps its storage (vfs driver) under the cache as well, never in the
# system default. Root is needed (buildah, and chroot isolation for RUN).
#
# Usage: build-images.sh --pause PATH --coredns PATH [--repo DIR]
# stdout: one line per image, "<upstream name> <mirror path> <oci layout ref>",
# where the mirror path is the upstream name without its registry host (what a
# registry mirror serves it as). Progress goes to stderr.
set -euo pipefail
umask 022
export LC_ALL=C

script="$(readlink -f "${BASH_SOURCE[0]}")"
repo="$(cd "$(dirname "$script")/../../.." && pwd)"
pause="" coredns=""
while [ $# -gt 0 ]; do
  case "$1" in
    --pause) pause="$2"; shift 2 ;;
    --coredns) coredns="$2"; shift 2 ;;
    --repo) repo="$2"; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/{/^set/d;s/^# \{0,1\}//;p}' "$script"; exit 0 ;;
    *) echo "build-images.sh: unknown argument $1" >&2; exit 64 ;;
  esac
done
[ -n "$pause" ] && [ -n "$coredns" ] || { echo "usage: build-images.sh --pause PATH --coredns PATH [--repo DIR]" >&2; exit 64; }
pause="$(readlink -f "$pause")"
coredns="$(readlink -f "$coredns")"

# Inputs taken from this machine (Debian bookworm packages and the project's Node 24).
busybox_bin="${BUSYBOX_BIN:-/bin/busybox}"
nats_bin="${NATS_BIN:-$(command -v nats-server || echo /usr/sbin/nats-server)}"
node_bin="${NODE_BIN:-$(readlink -f "$repo/node_modules/node/bin/node")}"
npm_dir="${NPM_DIR:-$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")}"
# This machine's CA bundle may hold local CAs (a TLS-inspecting egress proxy's):
# the images get Debian's own set instead, and the host's is lent to the
# Dockerfile's RUN steps only (see the edgeshift build).
host_ca_bundle=/etc/ssl/certs/ca-certificates.crt
for f in "$pause" "$coredns" "$busybox_bin" "$nats_bin" "$node_bin" "$npm_dir/bin/npm-cli.js" "$host_ca_bundle" /etc/ca-certificates.conf; do
  [ -e "$f" ] || { echo "build-images.sh: missing input $f" >&2; exit 1; }
done
for t in buildah skopeo; do
  command -v "$t" >/dev/null || { echo "build-images.sh: $t is missing (bash test/cluster/install-deps.sh)" >&2; exit 1; }
done

cache="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}/images"
oci="$cache/oci"
epoch="${SOURCE_DATE_EPOCH:-0}"
mkdir -p "$oci" "$cache/tmp" "$cache/buildah"
# buildah and containers/image put large temporary files in TMPDIR (default /var/tmp).
export TMPDIR="$cache/tmp"
# stdout is for the result lines only; everything else (buildah's own output) goes to stderr.
exec 3>&1 1>&2
# One build at a time per cache: the buildah store and the layouts are shared.
exec 9>"$cache/lock"
flock 9

bah() { buildah --root "$cache/buildah/root" --runroot "$cache/buildah/run" --storage-driver vfs "$@"; }
log() { echo "[images] $*" >&2; }
sha() { sha256sum "$1" | cut -d' ' -f1; }
started=$SECONDS

work="$(mktemp -d "$cache/tmp/work.XXXXXX")"
ctr=""
cleanup() {
  [ -z "$ctr" ] || bah rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
# Working containers left by an interrupted run (the store is ours alone, under the lock).
bah rm --all >/dev/null 2>&1 || true

# Debian's CA bundle as update-ca-certificates writes it from ca-certificates.conf,
# without the machine's local additions.
ca_bundle="$work/ca-certificates.crt"
grep -v -E '^(#|!|$)' /etc/ca-certificates.conf | while read -r c; do
  sed -e '$a\' "/usr/share/ca-certificates/$c"
done >"$ca_bundle"

# Everything that changes how images are made: this script, buildah, the timestamp.
recipe="$(sha "$script") $(buildah --version) epoch=$epoch"

# --- layer specs ---------------------------------------------------------------
# A layer is a list of entries, hashed by content before anything is copied:
#   F <dest> <mode> <src>   a file (symlinks followed)
#   D <dest> <mode>         a directory
#   L <dest> <target>       a symbolic link
#   T <dest> <srcdir>       a directory tree, copied as it is
spec=()
add_file() { spec+=("F $1 $2 $3"); }
add_dir() { spec+=("D $1 $2"); }
add_link() { spec+=("L $1 $2"); }
add_tree() { spec+=("T $1 $2"); }
add_text() { # dest mode text
  local f
  f="$(mktemp -p "$work")"
  printf '%s' "$3" >"$f"
  add_file "$1" "$2" "$f"
}
# The shared libraries ldd names for a binary, and its ELF loader, at their own paths.
add_libs() {
  local lib
  while read -r lib; do
    add_file "$lib" 0755 "$lib"
  done < <(ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' | sort -u)
}

tree_digest() {
  (
    cd "$1"
    find . -printf '%y %m %p %l\n' | sort
    find . -type f -print0 | sort -z | xargs -0 sha256sum
  ) | sha256sum | cut -d' ' -f1
}

spec_digest() {
  local e kind dest rest
  for e in "${spec[@]}"; do
    read -r kind dest rest <<<"$e"
    case "$kind" in
      F) echo "F $dest ${rest%% *} $(sha "${rest#* }")" ;;
      T) echo "T $dest $(tree_digest "$rest")" ;;
      *) echo "$e" ;;
    esac
  done | sha256sum | cut -d' ' -f1
}

materialize() { # rootfs dir
  local root="$1" e kind dest a b
  mkdir -p "$root"
  for e in "${spec[@]}"; do
    read -r kind dest a b <<<"$e"
    case "$kind" in
      F) install -D -m "$a" "$b" "$root$dest" ;;
      D) mkdir -p "$root$dest" && chmod "$a" "$root$dest" ;;
      L) mkdir -p "$(dirname "$root$dest")" && ln -sfn "$a" "$root$dest" ;;
      T) mkdir -p "$root$dest" && cp -a "$a/." "$root$dest/" ;;
    esac
  done
}

# --- images ----------------------------------------------------------------------
declare -A key_of dir_of tag_of

mirror_path() { # docker.io/library/busybox:1.37 -> library/busybox:1.37
  local n="$1" first="${1%%/*}"
  if [ "$n" != "$first" ] && { [[ "$first" == *.* ]] || [[ "$first" == *:* ]] || [ "$first" = localhost ]; }; then
    n="${n#*/}"
  fi
  echo "$n"
}

emit() { # upstream name
  echo "$1 $(mirror_path "$1") oci:${dir_of[$1]}:${tag_of[$1]}" >&3
}

# Puts `name` (built earlier, kept in its OCI layout) into buildah's store if the
# store does not hold exactly that image under that name.
ensure_in_store() {
  local name="$1" want have
  want="$(<"${dir_of[$name]}/.image-id")"
  have="$(bah inspect --type image --format '{{.FromImageID}}' "$name" 2>/dev/null || true)"
  [ "$have" = "$want" ] && return 0
  log "loading $name into buildah's store from its layout"
  # skopeo, not `buildah pull oci:...`: buildah names a pulled layout after its
  # path, which is no valid image name here (".cache").
  skopeo copy --quiet "oci:${dir_of[$name]}:${tag_of[$name]}" \
    "containers-storage:[vfs@$cache/buildah/root+$cache/buildah/run]$name" >/dev/null
}

# Finds the image's layout by key, or records where it goes; returns 0 if it exists.
locate() { # name key
  local name="$1" key="$2" slug
  slug="$(mirror_path "$name" | tr '/:' '__')"
  key_of[$name]="$key"
  tag_of[$name]="${name##*:}"
  dir_of[$name]="$oci/$slug/${key:0:16}"
  [ -f "${dir_of[$name]}/.image-id" ]
}

# Writes the image from buildah's store to its layout (atomically) and drops
# older layouts of the same image.
export_layout() { # name id
  local name="$1" id="$2" dir="${dir_of[$1]}"
  mkdir -p "$(dirname "$dir")"
  rm -rf "$dir.tmp"
  bah push --quiet --compression-format gzip "$name" "oci:$dir.tmp:${tag_of[$name]}" >/dev/null
  echo "$id" >"$dir.tmp/.image-id"
  mv "$dir.tmp" "$dir"
  find "$(dirname "$dir")" -mindepth 1 -maxdepth 1 ! -path "$dir" -exec rm -rf {} +
}

# An image from a layer spec (in `spec`) on top of `base` ("scratch" or an image
# built before), with buildah config arguments.
build_image() { # name base config-args...
  local name="$1" base="$2" key t0 id root
  shift 2
  key="$(printf '%s\n' "$recipe" "base=$base ${key_of[$base]:-}" "$(spec_digest)" "$@" | sha256sum | cut -d' ' -f1)"
  if locate "$name" "$key"; then
    log "$name: up to date (${dir_of[$name]#"$oci/"})"
    return 0
  fi
  t0=$SECONDS
  log "$name: building"
  root="$work/rootfs-${key:0:16}"
  materialize "$root"
  [ "$base" = scratch ] || ensure_in_store "$base"
  ctr="$(bah from --pull=never --quiet "$base")"
  bah copy --quiet --chown 0:0 "$ctr" "$root/." / >/dev/null
  # A base's labels describe the base: drop them, then set this image's own.
  [ "$base" = scratch ] || bah config --label - "$ctr"
  bah config "$@" "$ctr"
  id="$(bah commit --quiet --rm --timestamp "$epoch" --identity-label=false --omit-history "$ctr" "$name")"
  ctr=""
  rm -rf "$root"
  export_layout "$name" "$id"
  log "$name: built in $((SECONDS - t0)) s"
}

pkg_version() { "$node_bin" -p 'require(process.argv[1]).version' "$1"; }
deb_version() { dpkg-query -W -f='${Version}' "$1"; }
deb_source() { dpkg-query -W -f='https://sources.debian.org/src/${source:Package}/${source:Version}/' "$1"; }
desc_prefix="Local build under an upstream name for the edgeshift test cluster (as an air-gapped cluster mirrors images):"
path_env="PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# A one-line version string from a binary's own version flag, or nothing;
# remembered by the binary's hash (a binary that ignores the flag, like a pause
# that just sleeps, costs the 5 s timeout once, not on every run).
probe_version() { # binary flag pattern
  local memo
  memo="$cache/probes/$(sha "$1")-$(printf '%s' "$2 $3" | sha256sum | cut -c1-8)"
  if [ ! -f "$memo" ]; then
    mkdir -p "$cache/probes"
    { timeout 5 "$1" "$2" 2>&1 </dev/null || true; } | { grep -m1 -E "$3" || true; } >"$memo.tmp"
    mv "$memo.tmp" "$memo"
  fi
  cat "$memo"
}

# --- registry.k8s.io/pause:3.10 -------------------------------------------------
spec=()
add_file /pause 0755 "$pause"
pause_sha="$(sha "$pause")"
pause_v="$(probe_version "$pause" -v '^pause')"
pause_labels=()
[ -z "$pause_v" ] || pause_labels=(--label "org.opencontainers.image.version=${pause_v##* v}")
build_image registry.k8s.io/pause:3.10 scratch \
  --entrypoint '["/pause"]' --user 65535:65535 \
  --label "org.opencontainers.image.description=$desc_prefix ${pause_v:-a static binary} /pause (sha256:${pause_sha:0:12})" \
  "${pause_labels[@]}"
emit registry.k8s.io/pause:3.10

# --- registry.k8s.io/coredns/coredns:v1.15.0 -------------------------------------
# No USER: root, like CoreDNS's images before 1.11. Its later images run as
# 65532 with a file capability (cap_net_bind_service) on /coredns for port 53;
# without that capability a non-root CoreDNS cannot bind 53, while the usual
# Deployment (capabilities add NET_BIND_SERVICE, no runAsUser) works as root.
spec=()
add_file /coredns 0755 "$coredns"
add_file /etc/ssl/certs/ca-certificates.crt 0644 "$ca_bundle"
coredns_sha="$(sha "$coredns")"
coredns_v="$(probe_version "$coredns" -version '^CoreDNS-')"
coredns_labels=()
if [ -n "$coredns_v" ]; then
  coredns_labels=(--label "org.opencontainers.image.version=${coredns_v#CoreDNS-}"
    --label "org.opencontainers.image.source=https://github.com/coredns/coredns/tree/v${coredns_v#CoreDNS-}")
fi
build_image registry.k8s.io/coredns/coredns:v1.15.0 scratch \
  --entrypoint '["/coredns"]' --port 53/tcp --port 53/udp \
  --label "org.opencontainers.image.description=$desc_prefix ${coredns_v:-a static binary} /coredns (sha256:${coredns_sha:0:12}), CA certificates from Debian bookworm ca-certificates $(deb_version ca-certificates)" \
  "${coredns_labels[@]}"
emit registry.k8s.io/coredns/coredns:v1.15.0

# --- docker.io/library/busybox:1.37 ------------------------------------------------
# Every applet as a link in /bin (as the upstream image has them), env also in
# /usr/bin for `#!/usr/bin/env` scripts; root and nobody (65532, the UID the
# manifests run as); glibc's name service order for the images built on this one.
bb_pkg="$(dpkg -S "$busybox_bin" 2>/dev/null | cut -d: -f1 || true)"
bb_pkg="${bb_pkg:-busybox-static}"
bb_version="$(deb_version "$bb_pkg")"
bb_upstream="${bb_version#*:}"
bb_upstream="${bb_upstream%%-*}"
spec=()
add_file /bin/busybox 0755 "$busybox_bin"
while read -r applet; do
  case "$applet" in busybox | linuxrc | "") continue ;; esac
  add_link "/bin/$applet" busybox
done < <("$busybox_bin" --list | sort)
add_link /usr/bin/env /bin/busybox
add_text /etc/passwd 0644 $'root:x:0:0:root:/root:/bin/sh\nnobody:x:65532:65532:nobody:/nonexistent:/bin/false\n'
add_text /etc/group 0644 $'root:x:0:\nnobody:x:65532:\n'
add_text /etc/nsswitch.conf 0644 $'passwd: files\ngroup: files\nhosts: files dns\n'
add_text /etc/hosts 0644 $'127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n'
# Files and directories that runtimes mount over: present here, a Dockerfile's
# RUN steps do not leave empty mount points of their own in its layers.
add_text /etc/hostname 0644 ""
add_text /etc/resolv.conf 0644 ""
for d in /dev /proc /sys /run /var /home; do add_dir "$d" 0755; done
add_dir /root 0700
add_dir /tmp 1777
build_image docker.io/library/busybox:1.37 scratch \
  --env "$path_env" --cmd '["sh"]' \
  --label "org.opencontainers.image.description=$desc_prefix BusyBox $bb_upstream from Debian bookworm $bb_pkg $bb_version, applets linked in /bin" \
  --label "org.opencontainers.image.version=$bb_upstream" \
  --label "org.opencontainers.image.source=$(deb_source "$bb_pkg")"
emit docker.io/library/busybox:1.37

# --- docker.io/library/nats:2.11-alpine ----------------------------------------------
nats_pkg="$(dpkg -S "$(readlink -f "$nats_bin")" 2>/dev/null | cut -d: -f1 || true)"
nats_pkg="${nats_pkg:-nats-server}"
nats_version="$(deb_version "$nats_pkg")"
nats_upstream="${nats_version%%-*}"
spec=()
add_file /usr/local/bin/nats-server 0755 "$nats_bin"
add_libs "$nats_bin"
build_image docker.io/library/nats:2.11-alpine docker.io/library/busybox:1.37 \
  --cmd '["nats-server"]' --port 4222/tcp --port 6222/tcp --port 8222/tcp \
  --label "org.opencontainers.image.description=$desc_prefix NATS Server $nats_upstream from Debian bookworm $nats_pkg $nats_version with its glibc $(deb_version libc6), on BusyBox $bb_upstream" \
  --label "org.opencontainers.image.version=$nats_upstream" \
  --label "org.opencontainers.image.source=$(deb_source "$nats_pkg")"
emit docker.io/library/nats:2.11-alpine

# --- docker.io/library/node:24-alpine ------------------------------------------------
node_v="$("$node_bin" --version)"
spec=()
add_file /usr/local/bin/node 0755 "$node_bin"
add_libs "$node_bin"
build_image docker.io/library/node:24-alpine docker.io/library/busybox:1.37 \
  --env "NODE_VERSION=${node_v#v}" --cmd '["node"]' \
  --label "org.opencontainers.image.description=$desc_prefix Node.js $node_v (the official linux-x64 build, glibc-linked, not musl) with its shared libraries from Debian bookworm (glibc $(deb_version libc6), libstdc++ $(deb_version libstdc++6)), on BusyBox $bb_upstream" \
  --label "org.opencontainers.image.version=${node_v#v}" \
  --label "org.opencontainers.image.source=https://github.com/nodejs/node/tree/$node_v"
emit docker.io/library/node:24-alpine

# --- docker.io/library/node:24-bookworm-slim -------------------------------------------
# The Dockerfile's base. No source label: images built FROM it would inherit it
# and claim to be Node.js (the edgeshift build sets its own version label).
npm_v="$(pkg_version "$npm_dir/package.json")"
spec=()
add_tree /usr/local/lib/node_modules/npm "$npm_dir"
add_link /usr/local/bin/npm ../lib/node_modules/npm/bin/npm-cli.js
add_link /usr/local/bin/npx ../lib/node_modules/npm/bin/npx-cli.js
add_file /etc/ssl/certs/ca-certificates.crt 0644 "$ca_bundle"
# npm trusts the system bundle (as Debian's own nodejs does), so a build can lend
# it the host's bundle by a bind mount over that file; and it writes no
# timestamped log files nor update checks into the layers it runs in.
add_text /usr/local/etc/npmrc 0644 $'cafile=/etc/ssl/certs/ca-certificates.crt\nlogs-max=0\nupdate-notifier=false\n'
build_image docker.io/library/node:24-bookworm-slim docker.io/library/node:24-alpine \
  --label "org.opencontainers.image.description=$desc_prefix Node.js $node_v (official linux-x64 build) and npm $npm_v with glibc $(deb_version libc6) and CA certificates $(deb_version ca-certificates) from Debian bookworm, on BusyBox $bb_upstream (a stand-in base, not Debian)" \
  --label "org.opencontainers.image.version=${node_v#v}"
emit docker.io/library/node:24-bookworm-slim

# --- ghcr.io/edgeshift/edgeshift:<version> -------------------------------------------------
# The project's Dockerfile as it is, with its own labels; the version label is
# the project's (the base's would otherwise show through).
version="$(pkg_version "$repo/package.json")"
name="ghcr.io/edgeshift/edgeshift:$version"
context_digest="$(
  cd "$repo"
  {
    for f in Dockerfile .dockerignore package.json package-lock.json tsconfig*.json; do
      [ -f "$f" ] && echo "$f $(stat -c %a "$f") $(sha "$f")"
    done
    find operator sidecar migration plugin docker -type f ! -name '*.test.ts' -printf '%p %m\n' 2>/dev/null | sort |
      while read -r f m; do echo "$f $m $(sha "$f")"; done
  } | sha256sum | cut -d' ' -f1
)"
base=docker.io/library/node:24-bookworm-slim
key="$(printf '%s\n' "$recipe" "base=$base ${key_of[$base]}" "context=$context_digest" | sha256sum | cut -d' ' -f1)"
if locate "$name" "$key"; then
  log "$name: up to date (${dir_of[$name]#"$oci/"})"
else
  t0=$SECONDS
  log "$name: building from $repo/Dockerfile (npm install needs https://registry.npmjs.org/)"
  ensure_in_store "$base"
  # RUN steps see the host's CA bundle (a bind mount: not part of any layer),
  # so npm also works behind a TLS-inspecting proxy, and a scratch /tmp: npm
  # leaves Node's compile cache there, different bytes on every build.
  mkdir -m 1777 "$work/build-tmp"
  bah build --quiet --isolation chroot --pull=never --timestamp "$epoch" --identity-label=false \
    --omit-history --iidfile "$work/iid" \
    --volume "$host_ca_bundle:/etc/ssl/certs/ca-certificates.crt:ro" --volume "$work/build-tmp:/tmp" \
    --label "org.opencontainers.image.version=$version" \
    --label "org.opencontainers.image.base.name=$base" \
    -f "$repo/Dockerfile" -t "$name" "$repo" >/dev/null
  id="$(<"$work/iid")"
  export_layout "$name" "${id#sha256:}"
  # Nothing builds on it: keep it in its layout only (vfs layers are full copies).
  bah rmi "$name" >/dev/null
  log "$name: built in $((SECONDS - t0)) s"
fi
emit "$name"

bah rmi --prune >/dev/null 2>&1 || true
log "all images ready in $((SECONDS - started)) s"
