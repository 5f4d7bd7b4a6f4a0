package testenv

import (
	"fmt"
	"os"
	"strconv"
	"testing"
)

// InCI reports whether the tests run in CI: CI=true, as .ci/run, GitHub Actions and
// GitLab set it.
func InCI() bool {
	ci, _ := strconv.ParseBool(os.Getenv("CI"))
	return ci
}

// Unavailable stops a test that cannot run on this machine, for the reason given (what
// is missing and how to get it). On a developer's machine it skips, loudly: the banner
// goes to stderr too, so `go test` without -v shows it. Under CI=true it fails instead:
// a suite that did not run must never read as a pass there, and CI installs everything
// every suite needs (.ci/run).
func Unavailable(t testing.TB, suite, reason string) {
	t.Helper()
	if InCI() {
		t.Fatalf("%s cannot run, and CI=true forbids skipping it: %s", suite, reason)
	}
	banner := fmt.Sprintf("##########  %s SKIPPED: %s  ##########", suite, reason)
	fmt.Fprintln(os.Stderr, banner)
	t.Skip(banner)
}
