// Package outcome is the last step of an event's route: what the result of each
// attempt means for the endpoint, and how it reaches Kubernetes. Each file owns one
// part and its data:
//
//	state.go    the shared state of an endpoint object (consecutive failures, disabled
//	            flag, counters, handled annotations, replay progress) in a JetStream
//	            key-value bucket, keyed by its UID, changed by compare-and-set so that
//	            every dispatcher replica agrees
//	tracker.go  the engine's Observer: counts attempts, trips the auto-disable circuit
//	            (exactly one replica makes the transition), gates held endpoints
//	requests.go a person's requests through the resource: Annotation judges whether an
//	            annotation value is new; Requests re-enables (annotation, spec edit)
//	            and hands replays to the replayer it is built with, each once per value
//	reenable.go the shared-state side of those requests: re-enable (also for the API),
//	            claiming a replay value, a replay's progress
//	events.go   Kubernetes Events (DeliveryFailed rate-limited and aggregated)
//	status.go   the dispatcher's part of WebhookEndpoint status (Disabled and
//	            Delivering conditions, counters), coalesced per endpoint
//	filters.go  subscription filter failures: status, metric hook and Events
//	operational.go  Herald's own events (herald.endpoint.disabled, ...) published into
//	            the namespace's route: aggregated, never to the endpoint they are about,
//	            never caused by deliveries of operational events
package outcome
