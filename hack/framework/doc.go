// Package framework is the test framework of the suites under hack/ that drive Herald
// from the outside: the herald binary, kubectl and helm as processes, a real
// kube-apiserver and etcd (envtest), webhook receivers on 127.0.0.1. It holds what every
// such suite needs once, so that a suite reads as its scenario and nothing else. The
// model is Cluster API's test/framework (a cluster proxy, commands with their output
// collected, bounded waits, logs gathered on failure), cut down to plain `testing`.
//
// Map of the package:
//
//   - build.go: Herald builds the herald binary once per content (the Go files of the
//     packages it is made of, go.mod, go.sum, the toolchain) and shares it between the
//     suites of one `make test`, which run as parallel processes.
//   - process.go: Process is a child in a process group of its own (stop with grace,
//     kill, exited, its log file); a Supervisor owns a run's children, fails a wait when
//     one dies unasked, and tails every child's log into the test log when the test
//     fails.
//   - wait.go: Eventually polls a condition that says why it does not hold yet, and
//     fails with that last reason.
//   - ports.go: free addresses on 127.0.0.1 for children to bind.
//   - command.go: Command runs kubectl, helm, herald or any tool with the run's
//     environment (isolated HOME and helm folders), stdin and extra variables, and
//     returns exit code, stdout and stderr.
//   - cluster.go: ControlPlane starts etcd and kube-apiserver with an admin kubeconfig
//     and client; kubeconfigs for a bearer token, ServiceAccount tokens for audiences,
//     and ClusterRole aggregation (envtest runs no controller-manager).
//   - herald.go: the CRDs and the chart applied as a user would, `herald manager` and
//     `herald dispatcher` run as processes under the chart's ServiceAccounts, and the
//     dispatcher's Go client (pkg/client) for a token.
//   - receiver.go: Receiver, a webhook receiver that verifies every request with
//     pkg/verify and with the receiver transcribed from the style's reference document
//     (internal/refreceiver); Recorder, one that keeps whatever arrives (an attacker's).
//   - memory.go: a process's resident memory and a search of its memory, on Linux.
//
// hack/e2e, hack/firsthour and hack/tenancy run on it. For hack/chaos and hack/cluster,
// still on harnesses of their own: startProc/proc (stop, kill, expected) is
// Supervisor.Start and Process; childFailure is Supervisor.Failure; eventually and
// eventuallyf are Run.Eventually or Wait{Watch: ...}.Poll with a Condition saying what
// it saw; tail, freeAddr, freePort, ready are Tail, FreeAddr, FreePort, Ready; must and
// run are Tools.Command(...).Must or .Run (WithStdin, WithTimeout); installChart with
// --set values is InstallCRDsAndChart with ChartInput.Set; serviceAccountKubeconfig is
// Run.ServiceAccountKubeconfig; a dispatcher replica restarted on its own addresses is
// StartDispatcher with DispatcherInput's Ingest, Health and Metrics (and --nats-url in
// Args); the logs kept on failure are Supervisor.KeepLogsAs; a receiver behind a
// listener of one's own (a network namespace's) is NewReceiver mounted on one's server.
//
// Suites keep their scenario and their assertions; nothing here asserts on Herald's
// behaviour beyond "the tool ran" and "the process is ready".
package framework
