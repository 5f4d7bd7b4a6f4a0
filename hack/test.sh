#!/usr/bin/env bash
# `make test`: its steps, each timed by hack/step.sh ("ci: STEP took Ns (CPU Ns; load
# ...)"), with the cluster suite beside the others where it runs (root on Linux):
#
#   gofmt, test-assets (the one-time builds, side by side)
#   then at once:  test-race, test-unit
#                  node-binaries (at low priority: the CPU the others leave idle), then
#                  test-cluster (its log in bin/test-cluster.log, shown at the end)
#
# The suites spend most of their time waiting on what they drive (pods, NATS nodes,
# dispatchers, API servers), so the cluster suite's 7 minutes cost little beside the
# others, and its node binaries are built while the tests wait. Every step runs even when
# an earlier test step failed (all failures in one run); the exit status says whether
# any did.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
mk=("${MAKE:-make}" --no-print-directory)

hack/step.sh gofmt "${mk[@]}" fmt-check || exit 1
hack/step.sh test-assets "${mk[@]}" test-assets || exit 1

status=0
beside=""
if [[ "$(id -u)" == 0 && "$(uname)" == Linux ]]; then
  beside=1
  mkdir -p bin
  log=bin/test-cluster.log
  rm -f bin/.test-cluster.rc
  : > "${log}"
  echo "test: the cluster suite runs beside the other tests once the node's binaries are built (log: ${log}, shown at the end)"
  # The lock is held until the background job ends: waiting for it is taking it. (Its
  # commands do not inherit it: a process the suite left behind must not hold it.)
  exec 8>bin/.test-cluster.lock
  flock 8
  (
    nice -n 10 hack/step.sh node-binaries hack/cluster/node-binaries.sh >/dev/null 8>&- \
      && hack/step.sh test-cluster "${mk[@]}" test-cluster 8>&-
    echo $? > bin/.test-cluster.rc
  ) >>"${log}" 2>&1 &
  exec 8>&-
fi

# test-race and test-unit at once: each leaves most of the 2 cores idle (measured in CI:
# 257 CPU-s over 514 s, and 309 over 401 s, one after the other), their suites waiting on
# the processes they drive. The -race pass's output is shown when both are done.
racelog=bin/test-race.log
mkdir -p bin
hack/step.sh test-race "${mk[@]}" test-race >"${racelog}" 2>&1 &
race=$!
hack/step.sh test-unit "${mk[@]}" test-unit || status=1
wait "${race}" || status=1
echo "test: the -race pass's log (${racelog}):"
cat "${racelog}"

if [[ -n "${beside}" ]]; then
  hack/step.sh test-cluster-wait flock bin/.test-cluster.lock true
  echo "test: the cluster suite's log (${log}):"
  cat "${log}"
  [[ "$(cat bin/.test-cluster.rc 2>/dev/null)" == 0 ]] || status=1
else
  # Not root: the suite says why it cannot run (a loud skip, or a failure under CI=true).
  hack/step.sh test-cluster "${mk[@]}" test-cluster || status=1
fi
exit "${status}"
