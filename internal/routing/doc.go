// Package routing decides whether an event goes to a subscription: MatchType matches the
// event type against a subscription's eventTypes patterns and Filter evaluates its
// optional CEL filter. The manager uses it to validate WebhookSubscriptions (so a pattern
// or filter it accepts is one the dispatcher can run) and the dispatcher's router uses it
// to route every event, so both sides agree by construction.
//
// CompileFilter is the one judge of a filter: it compiles it and refuses one whose
// worst-case cost on the largest event the ingest API accepts is over FilterBudget, as
// the API server refuses a CRD validation rule over its cost limit, so that no tenant's
// filter can stall or exhaust the dispatcher every namespace shares.
//
//	pattern.go  event type patterns: MatchType, ValidPattern
//	filter.go   the CEL environment, CompileFilter, Filter.Match and its run-time
//	            deadline, EventInput (the event as CEL values)
//	cost.go     the static judge: event sizes, Herald's cost model on top of cel-go's
//	            estimator, the functions refused, FilterBudget
package routing
