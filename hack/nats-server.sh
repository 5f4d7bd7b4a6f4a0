#!/usr/bin/env bash
# Builds nats-server at the version go.mod requires (the one the embedded store runs),
# from the module cache or the Go module proxy, into bin/nats-server-<version>/, where
# the chaos suite looks for it too. Prints the binary's path on stdout.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
VERSION="$(go list -m -f '{{.Version}}' github.com/nats-io/nats-server/v2)"
BIN="${ROOT}/bin/nats-server-${VERSION}/nats-server"
if [[ ! -x "${BIN}" ]]; then
  echo "nats-server.sh: building nats-server ${VERSION}" >&2
  mkdir -p "$(dirname "${BIN}")"
  # Built to a temporary name and renamed: an interrupted build leaves nothing cached.
  CGO_ENABLED=0 go build -trimpath -o "${BIN}.tmp" github.com/nats-io/nats-server/v2
  mv "${BIN}.tmp" "${BIN}"
fi
echo "${BIN}"
