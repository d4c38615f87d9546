# Sourced by build-binaries.sh and build-node-binaries.sh: the wrapper module
# that builds Kubernetes commands from the Go module proxy. No package ships
# them, and k8s.io/kubernetes replaces its staging modules with ./staging/src
# paths that the proxy does not serve, so the wrapper replaces each one with its
# published v0.X.Y instead, as the release's own go.mod lists them.

# k8s_wrapper_module DIR MODULE_NAME CMD...: writes DIR/go.mod and DIR/tools.go
# (importing k8s.io/kubernetes/cmd/CMD for each CMD) and resolves the modules.
k8s_wrapper_module() {
  local dir=$1 name=$2
  shift 2
  local staging_version="v0.${K8S_VERSION#v1.}"
  (
    cd "$dir"
    export GOFLAGS="-mod=mod"
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    local moddir
    moddir="$(go env GOMODCACHE)/k8s.io/kubernetes@$K8S_VERSION"
    {
      echo "module $name"
      echo
      echo "go $(awk '/^go /{print $2; exit}' "$moddir/go.mod")"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\1#p' "$moddir/go.mod" |
        while read -r m; do echo "replace $m => $m $staging_version"; done
    } >go.mod
    {
      printf '//go:build tools\n\npackage tools\n\nimport (\n'
      for c in "$@"; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$c"; done
      printf ')\n'
    } >tools.go
    # -e: packages only tests import may not resolve; a build that needs one
    # fails loudly. The log stays for that case.
    go mod tidy -e >tidy.log 2>&1 || true
  )
}

# k8s_ldflags: the version variables `kubectl version` and the nodes report.
k8s_ldflags() {
  local minor="${K8S_VERSION#v1.}"
  minor="${minor%%.*}"
  local v="-X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor -X k8s.io/component-base/version.gitTreeState=clean"
  echo "-s -w $v -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
}
