#!/usr/bin/env bash
# Builds the node's binaries (kubelet, kube-controller-manager, kube-scheduler, kube-proxy)
# from the Go module proxy, in the same throwaway wrapper module hack/envtest-assets.sh uses
# for kube-apiserver and kubectl: same module graph, same build flags, so the Go build cache
# already holds most of their packages. Cached under bin/k8s/<version>-node-<os>-<arch>; a
# second run is a no-op. Prints that directory on stdout.
set -euo pipefail

KUBE_VERSION="${KUBE_VERSION:-1.37.2}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
OUT="${ROOT}/bin/k8s/${KUBE_VERSION}-node-$(go env GOOS)-$(go env GOARCH)"
BUILD="${ROOT}/bin/.build/kubernetes-${KUBE_VERSION}"
BINARIES=(kubelet kube-controller-manager kube-scheduler kube-proxy)

log() { echo "node-binaries: $*" >&2; }

missing() {
  local b
  for b in "${BINARIES[@]}"; do [[ -x "${OUT}/${b}" ]] || return 0; done
  return 1
}

if ! missing; then echo "${OUT}"; exit 0; fi

# The wrapper module is made by envtest-assets.sh (it reads the staging replaces from the
# release's go.mod); it also holds the build lock this script shares with it.
"${ROOT}/hack/envtest-assets.sh" >/dev/null
mkdir -p "${OUT}"
exec 9>"${ROOT}/bin/.envtest-assets.lock"
flock 9
if ! missing; then echo "${OUT}"; exit 0; fi

cat > "${BUILD}/tools.go" <<'SRC'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
	_ "k8s.io/kubernetes/cmd/kubelet"
)
SRC
minor="${KUBE_VERSION#1.}"; minor="${minor%%.*}"
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v${KUBE_VERSION} -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${minor}"
(cd "${BUILD}" && GOFLAGS=-mod=mod go mod tidy >"${BUILD}/node-resolve.log" 2>&1) || { cat "${BUILD}/node-resolve.log" >&2; exit 1; }
# One go build for all of them: the packages they share compile once, and one binary
# links while the others' packages compile, which keeps both cores busy.
todo=()
for b in "${BINARIES[@]}"; do
  [[ -x "${OUT}/${b}" ]] || todo+=("${b}")
done
log "building ${todo[*]} v${KUBE_VERSION} in one go build (with a warm Go cache from kube-apiserver: about 6 minutes on 2 busy cores; cold, about 15)"
start=$(date +%s)
tmp="${OUT}/.build"
rm -rf "${tmp}" && mkdir -p "${tmp}"
(cd "${BUILD}" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${tmp}/" \
    $(printf 'k8s.io/kubernetes/cmd/%s ' "${todo[@]}") >&2)
for b in "${todo[@]}"; do mv "${tmp}/${b}" "${OUT}/${b}"; done
rm -rf "${tmp}"
log "built ${todo[*]} in $(( $(date +%s) - start ))s"
echo "${OUT}"
