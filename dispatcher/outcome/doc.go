// Package outcome is the last step of an event's route: what the result of each
// attempt means for the endpoint, and how it reaches Kubernetes. Each file owns one
// part and its data:
//
//	state.go    the shared state of an endpoint (consecutive failures, disabled flag,
//	            counters, handled annotations) in a JetStream key-value bucket, changed
//	            by compare-and-set so that every dispatcher replica agrees
//	tracker.go  the engine's Observer: counts attempts, trips the auto-disable circuit
//	            (exactly one replica makes the transition), gates held endpoints
//	reenable.go a person's requests: re-enable (annotation, spec edit, API) and replay
//	            of dead letters, each handled once per value
//	events.go   Kubernetes Events (DeliveryFailed rate-limited and aggregated)
//	status.go   the dispatcher's part of WebhookEndpoint status (Disabled and
//	            Delivering conditions, counters), coalesced per endpoint
//	filters.go  subscription filter failures: status, metric hook and Events
//	operational.go  Herald's own events (herald.endpoint.disabled, ...) published into
//	            the namespace's route: aggregated, never to the endpoint they are about,
//	            never caused by deliveries of operational events
package outcome
