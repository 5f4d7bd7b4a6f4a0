#!/usr/bin/env bash
# Writes the release files into ${DIST} (make dist):
#   herald-<os>-<arch>  the herald binary for each of ${PLATFORMS}; pure Go (CGO_ENABLED=0),
#                       so one machine cross-compiles them all
#   install.yaml        `kubectl apply --server-side -f install.yaml`: the Namespace, CRDs,
#                       RBAC and the manager running ${IMG}
#   checksums.txt       SHA-256 of the files above (`sha256sum -c checksums.txt`)
#
# install.yaml is the Helm chart rendered with its default values (helm template, the
# pinned helm from hack/tool.sh) after config/manager/namespace.yaml. The chart, not
# config/default, because it sets the manager's image and the --dispatcher-image it hands
# to the dispatcher from one value; a kustomize image override reaches only the former.
#
# Environment: VERSION, IMG (repository:tag), LDFLAGS, PLATFORMS (space-separated
# os/arch; empty for install.yaml and checksums.txt alone), DIST, HELM.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VERSION="${VERSION:-$(git -C "${ROOT}" describe --tags --always --dirty 2>/dev/null || echo dev)}"
IMG="${IMG:-ghcr.io/herald-dev/herald:${VERSION}}"
LDFLAGS="${LDFLAGS:--X github.com/herald-dev/herald/internal/version.Version=${VERSION}}"
PLATFORMS="${PLATFORMS-linux/amd64 linux/arm64 darwin/arm64}"
DIST="${DIST:-${ROOT}/dist}"
NAMESPACE=herald-system

die() { echo "dist.sh: $*" >&2; exit 2; }

# The chart takes a repository and a tag; a ':' after the last '/' starts the tag (one
# before it is a registry port).
[[ "${IMG}" != *@* ]] || die "IMG=${IMG}: digests are not supported; use repository:tag"
[[ "${IMG##*/}" == *:* ]] || die "IMG=${IMG} has no tag; use repository:tag"
repository="${IMG%:*}"
tag="${IMG##*:}"
[[ -n "${repository}" && -n "${tag}" ]] || die "IMG=${IMG}: use repository:tag"

HELM="${HELM:-$("${ROOT}/hack/tool.sh" helm)}"

mkdir -p "${DIST}"
# Only what this script writes, so DIST may be any folder; stale platforms go too.
rm -f "${DIST}"/herald-* "${DIST}/install.yaml" "${DIST}/checksums.txt"

files=()
for platform in ${PLATFORMS}; do
  os="${platform%/*}" arch="${platform#*/}"
  [[ -n "${os}" && -n "${arch}" && "${platform}" == */* ]] || die "platform ${platform}: want os/arch"
  out="herald-${os}-${arch}"
  echo "dist.sh: building ${out}" >&2
  (cd "${ROOT}" && CGO_ENABLED=0 GOOS="${os}" GOARCH="${arch}" \
    go build -trimpath -ldflags "${LDFLAGS}" -o "${DIST}/${out}" .)
  files+=("${out}")
done

echo "dist.sh: rendering install.yaml for ${IMG}" >&2
# Packaged with appVersion ${VERSION} first, so the app.kubernetes.io/version labels name
# the version that runs rather than the chart's default.
chart_dir="$(mktemp -d)"
trap 'rm -rf "${chart_dir}"' EXIT
"${HELM}" package "${ROOT}/charts/herald" --app-version "${VERSION}" --destination "${chart_dir}" >/dev/null
{
  cat <<HEADER
# Herald ${VERSION}: the CRDs, RBAC and the manager in namespace ${NAMESPACE}, running
# ${IMG}.
# The manager then creates the dispatcher with the same image.
#   kubectl apply --server-side -f install.yaml
# Rendered by hack/dist.sh from charts/herald with its default values; install the chart
# with helm to configure it.
---
HEADER
  cat "${ROOT}/config/manager/namespace.yaml"
  "${HELM}" template herald "${chart_dir}"/herald-*.tgz --namespace "${NAMESPACE}" \
    --set-string image.repository="${repository}" --set-string image.tag="${tag}"
} > "${DIST}/install.yaml.tmp"
mv "${DIST}/install.yaml.tmp" "${DIST}/install.yaml"
files+=(install.yaml)

if command -v sha256sum >/dev/null; then sha=(sha256sum); else sha=(shasum -a 256); fi
(cd "${DIST}" && "${sha[@]}" "${files[@]}" > checksums.txt)
echo "dist.sh: wrote ${files[*]} checksums.txt to ${DIST}" >&2
