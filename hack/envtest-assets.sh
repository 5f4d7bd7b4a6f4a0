#!/usr/bin/env bash
# Builds the control-plane binaries envtest needs (kube-apiserver, etcd) from the Go
# module proxy, because release downloads are not reachable from our build machines.
# Each binary builds in a throwaway module under bin/.build so k8s.io/kubernetes never
# enters Herald's go.mod. Results are cached under bin/k8s/<version>; a second run is a
# no-op. Prints the asset directory (for KUBEBUILDER_ASSETS) on stdout.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.2}"   # keep the minor equal to k8s.io/api in go.mod
ETCD_VERSION="${ETCD_VERSION:-3.6.16}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="${ROOT}/bin/k8s/${KUBE_VERSION}-etcd${ETCD_VERSION}-$(go env GOOS)-$(go env GOARCH)"
BUILD="${ROOT}/bin/.build"

log() { echo "envtest-assets: $*" >&2; }

if [[ -x "${OUT}/kube-apiserver" && -x "${OUT}/etcd" && -x "${OUT}/kubectl" && ! -L "${OUT}/kubectl" ]]; then
  echo "${OUT}"
  exit 0
fi
mkdir -p "${OUT}" "${BUILD}"
# Parallel test packages (and people) may call this at once; one builds, the rest wait.
exec 9>"${ROOT}/bin/.envtest-assets.lock"
flock 9

build_etcd() {
  local dir="${BUILD}/etcd-${ETCD_VERSION}"
  [[ -x "${OUT}/etcd" ]] && return 0
  log "building etcd v${ETCD_VERSION} (about 30s on first run)"
  rm -rf "${dir}" && mkdir -p "${dir}"
  cat > "${dir}/go.mod" <<MOD
module herald.dev/hack/etcd

go 1.24
MOD
  cat > "${dir}/tools.go" <<'SRC'
//go:build tools

package tools

import _ "go.etcd.io/etcd/server/v3"
SRC
  # Module resolution is chatty (a line per dependency); keep it in a log shown on failure.
  (cd "${dir}" && go get "go.etcd.io/etcd/server/v3@v${ETCD_VERSION}" >"${dir}/resolve.log" 2>&1 \
    && go mod tidy -e >>"${dir}/resolve.log" 2>&1 || { cat "${dir}/resolve.log" >&2; true; }
   cd "${dir}" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -o "${OUT}/etcd.tmp" go.etcd.io/etcd/server/v3 >&2)
  mv "${OUT}/etcd.tmp" "${OUT}/etcd"
}

# kube-apiserver and kubectl, of the same minor (the machines may have a kubectl, but an
# older one, and the tests drive `kubectl apply --server-side` and `kubectl diff` for
# real), in one go build: the packages they share compile once, and one links while the
# other's packages compile.
build_kubernetes() {
  local dir="${BUILD}/kubernetes-${KUBE_VERSION}" todo=()
  [[ -x "${OUT}/kube-apiserver" ]] || todo+=(kube-apiserver)
  [[ -x "${OUT}/kubectl" && ! -L "${OUT}/kubectl" ]] || todo+=(kubectl)
  ((${#todo[@]})) || return 0
  rm -f "${OUT}/kubectl"
  log "building ${todo[*]} v${KUBE_VERSION} (about 6 minutes on 2 cores on first run)"
  if [[ ! -f "${dir}/go.sum" ]]; then
    rm -rf "${dir}" && mkdir -p "${dir}"
    # The staging modules (k8s.io/api, k8s.io/apiserver, ...) are replaced by ./staging in
    # kubernetes' own go.mod; read that list from the release so it tracks the version.
    local gomod
    gomod="$(cd "${dir}" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v${KUBE_VERSION}" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    local staging_version="v0.${KUBE_VERSION#1.}"
    {
      echo "module herald.dev/hack/kubernetes"
      echo
      echo "go 1.24"
      echo
      echo "require k8s.io/kubernetes v${KUBE_VERSION}"
      echo
      echo "replace ("
      grep -E '^\s*k8s.io/[a-z0-9-]+ => \./staging/' "${gomod}" | awk -v v="${staging_version}" '{print "\t" $1 " => " $1 " " v}'
      echo ")"
    } > "${dir}/go.mod"
  fi
  # hack/cluster/node-binaries.sh adds the node's commands to this list.
  if ! grep -q kube-apiserver "${dir}/tools.go" 2>/dev/null; then
    cat > "${dir}/tools.go" <<'SRC'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
SRC
  fi
  local minor="${KUBE_VERSION#1.}"; minor="${minor%%.*}"
  local tmp="${OUT}/.build"
  rm -rf "${tmp}" && mkdir -p "${tmp}"
  (cd "${dir}" && GOFLAGS=-mod=mod go mod tidy >&2 \
    && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=v${KUBE_VERSION} -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=${minor} -X k8s.io/component-base/version.gitVersion=v${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}" \
        -o "${tmp}/" $(printf 'k8s.io/kubernetes/cmd/%s ' "${todo[@]}") >&2)
  local b
  for b in "${todo[@]}"; do mv "${tmp}/${b}" "${OUT}/${b}"; done
  rm -rf "${tmp}"
}

# etcd is a module of its own: it resolves and builds beside kubernetes.
build_etcd &
etcd=$!
build_kubernetes
wait "${etcd}"
echo "${OUT}"
