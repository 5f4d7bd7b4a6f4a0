// Package console tests `herald console` in a real browser: Chromium (Debian's
// package) driven through chromedp against the herald binary, a real kube-apiserver and
// a real dispatcher (hack/framework). TestConsole_InABrowser is the scenario of issue
// 24: the pages load, a failed event is found by its id and replayed until it is
// delivered, live updates arrive without a reload, the keyboard reaches every action,
// the pages work at a phone's width, and a user bound only to herald-publisher sees no
// endpoint data. BenchmarkConsole_NamespacePage times a page of 1,000 endpoints in the
// browser against one of 10 measured in the same run.
//
// Without Chromium the tests skip, loudly; under CI=true they fail instead (.ci/run
// installs it, .ci/debian-packages). Screenshots go to $HERALD_TEST_ARTIFACTS/console, else to
// herald-test-artifacts/console under the temporary folder; the test log names it.
package console
