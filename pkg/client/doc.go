// Package client is the Go client of Herald's HTTP APIs: producers publish events
// through it, and tools (the herald CLI, consoles, scripts) use the endpoint API with it
// (dead letters, replays, the attempt log, an event's history, re-enabling, receiver
// documentation).
//
// A producer in a pod publishes with the ServiceAccount token Kubernetes projects into
// it for Herald's audience (wire.Audience, hooks.herald.dev), read from its file before
// every request because the kubelet renews it, and trusts the dispatcher's CA when the
// dispatcher serves TLS:
//
//	c, err := client.New("https://herald-dispatcher.herald-system:8080", client.Options{
//		TokenFile: "/var/run/secrets/herald/token",
//		CAFile:    "/etc/herald-ca/ca.crt", // the ConfigMap herald-dispatcher-ca, mounted
//	})
//	res, err := c.Publish(ctx, "shop", wire.Event{ID: "inv_123-paid", Type: "invoice.paid", Data: data})
//
// Publishing retries what may succeed later (connection failures, 408, 429, 5xx), after
// a growing pause and never sooner than the dispatcher's Retry-After. That is safe
// because every attempt carries the same event id: the dispatcher accepts an id once
// within its dedupe window and answers a repeat as the first time (Duplicate), and
// receivers deduplicate on it too. An event without an id gets one here (wire.NewEventID)
// before its first attempt, for the same reason. The endpoint API's calls are not
// retried: their callers decide.
//
// Every answer other than a success is an *APIError carrying the HTTP status, the
// dispatcher's error envelope (wire.Error: a code clients may branch on, a message
// naming the problem) and its Retry-After. The shapes on the wire are package wire's,
// which the dispatcher answers with too.
//
// Map of the package:
//
//   - client.go: Client, Options (credentials, TLS, retries) and the request every
//     method makes.
//   - publish.go: Publish, PublishBatch and PublishRaw, with retries.
//   - endpoints.go: Endpoint, the endpoint API of one WebhookEndpoint, EventHistory and
//     the namespace's AttemptSummary.
//   - errors.go: APIError.
package client
