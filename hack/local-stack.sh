#!/usr/bin/env bash
# Runs Herald locally end to end (`make run`, which builds bin/herald first): a local etcd
# and kube-apiserver, the CRDs, `herald manager` and `herald dispatcher`, a demo receiver,
# the samples pointed at it and a few events. See hack/localstack for what happens and
# .local/ for the state kept between runs. Extra arguments go to hack/localstack
# (e.g. --quiet, --demo=false, --ingest-port 18080, --state /tmp/other); `make run
# RUN_FLAGS="..."` passes them too.
set -euo pipefail

export LOCAL_STACK_STARTED_NS="$(date +%s%N)"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
log() { echo "[stack] $*" >&2; }

if [[ ! -x bin/herald ]]; then
  log "building bin/herald (make build)"
  make --no-print-directory build >&2
fi

# The control-plane binaries are built from the Go module proxy once (about 10 minutes
# on 2 cores) and cached under bin/k8s; the build is silent for minutes at a time, so
# say that it is still going.
start=${SECONDS}
heartbeat() {
  # sleep in the background and wait for it, so that the TERM below also ends the sleep.
  trap 'kill "${nap:-}" 2>/dev/null; exit 0' TERM
  while true; do
    sleep 30 & nap=$!
    wait "${nap}"
    log "still building kube-apiserver, etcd and kubectl ($(( SECONDS - start ))s so far; about 10 minutes the first time, cached afterwards)"
  done
}
heartbeat &
hb=$!
trap 'kill "${hb}" 2>/dev/null || true' EXIT
if ! ASSETS="$(hack/envtest-assets.sh)"; then
  log "building the control-plane binaries failed (output above); re-run make run to retry"
  exit 1
fi
kill "${hb}" 2>/dev/null || true
wait "${hb}" 2>/dev/null || true
trap - EXIT
if (( SECONDS - start > 5 )); then
  log "control-plane binaries ready in ${ASSETS#"${ROOT}"/} after $(( SECONDS - start ))s"
fi

# helm renders the chart's RBAC (the herald-publisher and herald-operator ClusterRoles),
# so the local stack has the roles a cluster installed with the chart has. The pinned
# helm is installed once, like the tools of `make test`.
if ! HELM_BIN="$(hack/tool.sh helm)"; then
  log "installing helm failed (output above); re-run make run to retry"
  exit 1
fi

# Built rather than `go run`, so that Ctrl-C reaches the stack itself and it can stop
# what it started in order.
go build -o bin/localstack ./hack/localstack
exec bin/localstack --root "${ROOT}" --assets "${ASSETS}" --herald bin/herald --helm "${HELM_BIN}" "$@"
