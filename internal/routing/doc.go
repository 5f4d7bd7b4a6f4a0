// Package routing decides whether an event goes to a subscription: MatchType matches the
// event type against a subscription's eventTypes patterns and Filter evaluates its
// optional CEL filter. The manager uses it to validate WebhookSubscriptions (so a pattern
// or filter it accepts is one the dispatcher can run) and the dispatcher's router uses it
// to route every event, so both sides agree by construction.
package routing
