#!/usr/bin/env bash
# Runs one step of `make test` (or .ci/run) and says what it cost:
#   ci: STEP took 123s (CPU 201s; load 1.9 -> 2.3)
# CPU is user+system of every process the step waited for (go build and go test's
# compilers and test binaries included); on 2 cores, a CPU-bound step takes about CPU/2.
# The load averages say how busy the machine was (other work inflates wall time, not CPU).
# With HERALD_STEP_LOG set, a tab-separated line is appended there for .ci/run's table.
#
# Usage: hack/step.sh STEP command [args...]
set -uo pipefail
step="${1:?usage: hack/step.sh STEP command [args...]}"
shift
load() { cut -d' ' -f1 /proc/loadavg 2>/dev/null || echo "?"; }
load_start="$(load)"
start=$(date +%s)
# Steps nest (test-assets holds the builds it runs side by side): each names its parent.
parent="${HERALD_STEP_PARENT:-}"
id="$$.${start}"
HERALD_STEP_PARENT="${id}" "$@"
rc=$?
took=$(( $(date +%s) - start ))
# The children's user and system time, in clock ticks, from the kernel's account of this
# shell (fields 16 and 17 of /proc/<pid>/stat; the command's name in field 2 has no space).
read -r -a st < "/proc/$$/stat"
cpu=$(( (st[15] + st[16]) / $(getconf CLK_TCK) ))
status=""
((rc == 0)) || status=", FAILED with exit status ${rc}"
echo "ci: ${step} took ${took}s (CPU ${cpu}s; load ${load_start} -> $(load))${status}" >&2
if [[ -n "${HERALD_STEP_LOG:-}" ]]; then
  # step, wall s, CPU s, load at the start, exit status, id, parent's id
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "${step}" "${took}" "${cpu}" "${load_start}" "${rc}" "${id}" "${parent}" >> "${HERALD_STEP_LOG}"
fi
exit "${rc}"
