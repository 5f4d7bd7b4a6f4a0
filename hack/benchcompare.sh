#!/usr/bin/env bash
# Compares the dispatcher of an older commit with this tree's on this machine, in one
# run: heraldbench built at REF (cached in bin/heraldbench-<commit>, built from
# `git archive REF`, so no worktree is touched) and heraldbench built from this tree run
# each scenario interleaved, baseline then current, -rounds times (default 2), and the
# comparison (medians, current ÷ baseline, issue 25's targets) lands in
# bench/results/<date>-<tag>.md and .json (bench/README.md, "Comparing two designs").
#
#   hack/benchcompare.sh REF [heraldbench flags...]
#   hack/benchcompare.sh 71b95596fb8c -quick            # ~4 minutes
#   hack/benchcompare.sh 71b95596fb8c -tag issue25      # full: a–e, 2 rounds, ~15 minutes
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
if [[ $# -lt 1 || "$1" == -* ]]; then
  echo "usage: hack/benchcompare.sh REF [heraldbench flags...]" >&2
  exit 2
fi
REF="$1"
shift
BASE="$(git rev-parse --verify "${REF}^{commit}")"
BASEBIN="${ROOT}/bin/heraldbench-${BASE:0:12}"
mkdir -p bin
if [[ ! -x "${BASEBIN}" ]]; then
  echo "benchcompare.sh: building heraldbench at ${BASE:0:12}" >&2
  SRC="$(mktemp -d "${TMPDIR:-/tmp}/heraldbench-${BASE:0:12}.XXXXXX")"
  trap 'rm -rf "${SRC}"' EXIT
  git archive "${BASE}" | tar -x -C "${SRC}"
  # Built to a temporary name and renamed: an interrupted build leaves nothing cached.
  (cd "${SRC}" && go build -trimpath -o "${BASEBIN}.tmp" ./bench/cmd/heraldbench)
  mv "${BASEBIN}.tmp" "${BASEBIN}"
fi
go build -trimpath -o bin/heraldbench ./bench/cmd/heraldbench
exec bin/heraldbench -baseline "${BASEBIN}" -baseline-label "${BASE:0:12}" "$@"
