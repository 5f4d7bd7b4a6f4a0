#!/usr/bin/env bash
# Installs one pinned npm tool into bin/npm/<name>-<version> (once) and prints the path of
# its executable, as hack/tool.sh does for Go tools: the tests call it, so `go test` on a
# fresh clone installs what it needs by itself. Needs node and npm (CI's machines have
# them; Debian: apt-get install nodejs npm).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
name="${1:?usage: hack/npm-tool.sh redocly}"
case "${name}" in
  # 1.34.20 runs on Node 18 (Debian 12's) and later; 2.x needs Node 20.19 or 22.12.
  redocly) pkg=@redocly/cli; version="${REDOCLY_CLI_VERSION:-1.34.20}"; exe=redocly ;;
  *) echo "hack/npm-tool.sh: unknown tool ${name}" >&2; exit 2 ;;
esac
if ! command -v npm >/dev/null || ! command -v node >/dev/null; then
  echo "hack/npm-tool.sh: ${name} needs node and npm, which are not installed (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
dir="${ROOT}/bin/npm/${name}-${version}"
if [[ ! -x "${dir}/node_modules/.bin/${exe}" ]]; then
  mkdir -p "${ROOT}/bin/npm"
  # One install at a time: test packages run in parallel.
  exec 9>"${ROOT}/bin/npm/.${name}.lock"
  flock 9
  if [[ ! -x "${dir}/node_modules/.bin/${exe}" ]]; then
    echo "hack/npm-tool.sh: installing ${pkg}@${version} with npm (first run only)" >&2
    rm -rf "${dir}.tmp"
    mkdir -p "${dir}.tmp"
    npm install --prefix "${dir}.tmp" --no-audit --no-fund --loglevel=error --save-exact "${pkg}@${version}" >&2
    rm -rf "${dir}"
    mv "${dir}.tmp" "${dir}"
  fi
fi
echo "${dir}/node_modules/.bin/${exe}"
