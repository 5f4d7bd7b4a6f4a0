// Package chaos is Herald's fault-injection suite for the scale-out mode. It runs what a
// user of `dispatcher.mode=external` runs, as real processes: a three-node NATS
// JetStream cluster (nats-server built from the Go module proxy at the version in
// go.mod, its own configuration, routes and file stores), a real etcd and kube-apiserver
// (envtest) with the CRDs and the chart's RBAC, `herald manager`, and three `herald
// dispatcher --nats-url=...` replicas under the chart's ServiceAccount, each with its own
// ingest port. A receiver on 127.0.0.1 verifies every delivery (pkg/verify and the
// Standard Webhooks reference receiver) and records every event id it accepted.
//
// Producers publish their own event ids at a steady rate, spread over the three
// replicas, and retry every refused publish (429, 503, another 5xx, a connection error)
// with the same id until a replica answers 202; the accepted set is the ids that got a
// 202. Each scenario reports accepted, delivered, lost (accepted, never delivered),
// duplicated (deliveries beyond an id's first), the refused publishes by code, the p99
// from 202 to delivery for events accepted during and after the fault, the failed
// attempts the endpoint's status counted (the receiver never fails in these scenarios,
// so any is a store fault charged to the receiver) and where HERALD_DELIVERIES lives:
//
//   - SameIDThroughEveryReplica: each id published to the three replicas at the same
//     moment is delivered exactly once.
//   - AutoDisableAcrossReplicas: a receiver answering 500 to events arriving through all
//     three replicas: exactly one EndpointDisabled Event, and the failed attempts in the
//     three replicas' /metrics add up to the 500s the receiver sent (and to the status).
//   - DispatcherKills: SIGKILL of a random replica at random moments, each restarted and
//     waited for as the kubelet would (5 kills bounded, 16 full).
//   - RollingRestart: SIGTERM of each replica in turn, each ready before the next.
//   - StreamLeaderNodeKilled: SIGKILL of the NATS node leading HERALD_DELIVERIES (asked
//     of JetStream), restarted on its store after a while.
//   - NodePartitioned: the node leading HERALD_DELIVERIES cut off from the other nodes
//     and every dispatcher, then healed.
//   - HistoryFlagsAfterRestart: the replicas restarted with --attempt-log=false and with
//     short limits (--attempt-log-max-age, --retain-delivered-max-bytes, then
//     --retain-delivered-max-age, --attempt-log-max-bytes): each reaches the history
//     streams' limits, and what the store keeps follows (records expire, the oldest go
//     first, no attempt record while the log is off).
//
// Before the scenarios, every stream and bucket the dispatchers made (the queues, the two
// history streams HERALD_DELIVERED and HERALD_ATTEMPTS, the buckets) must have 3 replicas:
// the default on a 3-node cluster.
//
// `make test` sets HERALD_TEST_RACE=1: herald is then built with the race detector and
// its processes run with GORACE=halt_on_error=1, so a data race in the manager or a
// dispatcher under these faults stops it and fails the suite, with the report.
//
// Lost must be 0 in every scenario, every refusal must be a 429 or 503 with Retry-After,
// and no 202 may route an event nowhere; duplicates are reported, not failed on (the
// contract is at least once). The dispatchers run with --ack-wait=15s (the default is
// 2m) so that the deliveries a killed replica held are handed on within the run; their
// --nats-replicas is left at its default, so the report shows what the defaults give.
//
// The partition needs network namespaces, hence root: each NATS node then runs in a
// namespace heraldchaos<slot>-n<i> with a veth onto a bridge in heraldchaos<slot>-hub,
// which the root namespace (the dispatchers) reaches through the link heraldchaos<slot>,
// on 10.249.<100+slot>.0/24 (hack/cluster uses 10.250 and 10.251). A partition sets the
// node's only link down, so packets vanish without a reset. The slot is claimed under
// /run/heraldchaos; everything is removed when the test ends, also on failure, and the
// removal is checked; a run that was killed outright is swept by the next. Without root
// the nodes listen on 127.0.0.1 and NodePartitioned fails with the reason, unless
// HERALD_CHAOS_NO_NETNS=1 turns that into a loud skip.
//
// `make test` runs the bounded form (60 events a second, a few thousand events per
// scenario, a few minutes on 2 cores); `make chaos` runs the full form (CHAOS_FULL=1:
// 150 events a second, 16 kills, 30 s node outages) verbosely. Both end by logging the
// table of every scenario.
package chaos
