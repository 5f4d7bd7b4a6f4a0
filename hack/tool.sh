#!/usr/bin/env bash
# Installs one pinned Go tool into bin/tools/<name>-<version> (once) and prints its path.
# Used by the Makefile and by tests, so `go test ./...` and `make test` use the same tools.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${1:?usage: hack/tool.sh controller-gen|helm|promtool|benchstat|govulncheck}"
case "${name}" in
  controller-gen) pkg=sigs.k8s.io/controller-tools/cmd/controller-gen; version="${CONTROLLER_TOOLS_VERSION:-v0.23.0}" ;;
  helm)           pkg=helm.sh/helm/v3/cmd/helm; version="${HELM_VERSION:-v3.22.0}" ;;
  # Prometheus 3.x publishes its Go module as v0.3xx.y: v0.316.0 is Prometheus 3.16.0.
  promtool)       pkg=github.com/prometheus/prometheus/cmd/promtool; version="${PROMTOOL_VERSION:-v0.316.0}" ;;
  benchstat)      pkg=golang.org/x/perf/cmd/benchstat; version="${BENCHSTAT_VERSION:-v0.0.0-20260908200009-22c9c6c9d4da}" ;;
  govulncheck)    pkg=golang.org/x/vuln/cmd/govulncheck; version="${GOVULNCHECK_VERSION:-v1.10.0}" ;;
  *) echo "hack/tool.sh: unknown tool ${name}" >&2; exit 2 ;;
esac
dir="${ROOT}/bin/tools/${name}-${version}"
if [[ ! -x "${dir}/${name}" ]]; then
  echo "hack/tool.sh: installing ${name} ${version} (first run only)" >&2
  GOBIN="${dir}" GOFLAGS=-mod=mod go install "${pkg}@${version}" >&2
fi
echo "${dir}/${name}"
