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

// RaceBuild reports whether the suites that drive herald binaries (hack/chaos, hack/e2e,
// ...) should build them with the race detector: HERALD_TEST_RACE=1, which `make test`
// sets. Such a build needs cgo (CGO_ENABLED=1, whatever the test's own setting), and its
// processes should run with GORACE=RaceOptions, so that a data race kills the process
// and the suite, which watches its processes, fails with the report in the log.
func RaceBuild() bool {
	race, _ := strconv.ParseBool(os.Getenv("HERALD_TEST_RACE"))
	return race
}

// RaceOptions is the GORACE of race-built children: exit at the first report.
const RaceOptions = "halt_on_error=1"

// RaceReport is what the race detector writes before a report: a log holding it shows a
// data race.
const RaceReport = "WARNING: DATA RACE"
