#!/usr/bin/env bash
# Records the release the cluster suite upgrades from: the sources of `herald` (the
# non-test Go files of the packages the binary is built from, go.mod, go.sum) and the
# chart (charts/herald) at commit REF, as hack/cluster/testdata/previous-release.tar.gz,
# and REF's hash in previous-release.commit next to it.
#
# Why a file in the tree and not `git archive HEAD~1` or a tag: CI runs on a fresh clone
# that may be shallow (no HEAD~1, no tags) on a machine that reaches only the Go module
# proxy, Debian and npm, not the Git remote; Herald is not on the module proxy. About
# 240 KB, rewritten once per release (`make previous-release REF=<the release's commit>`).
# hack/verify checks that the archive holds exactly REF's files whenever REF is in the
# local history.
#
# Usage: hack/cluster/previous-release.sh REF
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ref="${1:?usage: hack/cluster/previous-release.sh REF (a commit of this repository)}"
OUT="${ROOT}/hack/cluster/testdata"
commit="$(git -C "${ROOT}" rev-parse --verify "${ref}^{commit}")"

tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
git -C "${ROOT}" archive "${commit}" | tar -x -C "${tmp}/"
# The files `go build .` reads in REF's tree: every package of the module the binary
# imports, without its tests (build-constrained files included: the image is linux,
# this machine may not be). The Go build cache and module cache are the caller's.
(
  cd "${tmp}"
  go list -deps -f '{{if .Module}}{{if .Module.Main}}{{$d := .Dir}}{{range .GoFiles}}{{$d}}/{{.}}
{{end}}{{range .IgnoredGoFiles}}{{$d}}/{{.}}
{{end}}{{range .EmbedFiles}}{{$d}}/{{.}}
{{end}}{{end}}{{end}}' . | sed "s|^${tmp}/||" | grep -v '_test\.go$' > "${tmp}.files"
  echo go.mod >> "${tmp}.files"
  echo go.sum >> "${tmp}.files"
  git -C "${ROOT}" ls-tree -r --name-only "${commit}" -- charts/herald >> "${tmp}.files"
)
sort -u -o "${tmp}.files" "${tmp}.files"
mkdir -p "${OUT}"
# Reproducible: sorted names, fixed owner and time, gzip without a name or timestamp.
tar -C "${tmp}" --sort=name --owner=0 --group=0 --numeric-owner --mtime='2000-01-01 00:00Z' \
    --format=ustar -c -T "${tmp}.files" | gzip -9n > "${OUT}/previous-release.tar.gz"
echo "${commit} $(git -C "${ROOT}" log -1 --format=%s "${commit}" | cut -c1-100)" > "${OUT}/previous-release.commit"
rm -f "${tmp}.files"
echo "hack/cluster/testdata/previous-release.tar.gz: $(wc -l < <(tar -tzf "${OUT}/previous-release.tar.gz")) files of ${commit:0:12}, $(( $(stat -c %s "${OUT}/previous-release.tar.gz") / 1024 )) KiB" >&2
