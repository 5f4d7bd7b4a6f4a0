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
for b in "${BINARIES[@]}"; do
  [[ -x "${OUT}/${b}" ]] && continue
  log "building ${b} v${KUBE_VERSION} (with a warm Go cache from kube-apiserver: about 3 minutes each on 2 busy cores; cold, kubelet alone can take 30)"
  start=$(date +%s)
  (cd "${BUILD}" && GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "${ldflags}" -o "${OUT}/${b}.tmp" "k8s.io/kubernetes/cmd/${b}" >&2)
  mv "${OUT}/${b}.tmp" "${OUT}/${b}"
  log "built ${b} in $(( $(date +%s) - start ))s"
done
echo "${OUT}"
