// Package tenancy is Herald's hostile-tenant suite (issue 21): one real API server, the
// chart's roles (helm template | kubectl apply), one `herald manager` and one `herald
// dispatcher` as processes under the chart's ServiceAccounts, receivers on 127.0.0.1.
// Tenants of team-a, each bound to exactly one role (the chart's herald-operator or
// herald-publisher, the built-in edit, a namespace owner, or a narrower Role the row
// names), try every way issue 21 found to take Herald down for the other namespaces or
// to reach what they may not read, with kubectl, the herald CLI and plain HTTP, as they
// would. Each row must end "refused or contained, nothing leaked", and team-b, which
// publishes once a second throughout, must have every event delivered and verified.
//
// `go test ./hack/tenancy -v` prints the table that the README's Security section
// holds. A row records everything it saw and goes on after a failure, so the table
// says all that was wrong. Names chosen by the fixes (the replay verb, Herald's token
// audience, the response-sample opt-in) are constants at the top of tenancy_test.go.
//
// Row 9 reads the dispatcher's memory through /proc/<pid>/mem, which Linux allows the
// parent of a process (the test) unless ptrace is restricted further (yama
// ptrace_scope 2 or 3); there the row fails saying so. Before the fix of issue 21's
// filter finding, row 1 makes the dispatcher take about 1.6 GB for some seconds.
package tenancy
