// Package wire holds what travels over Herald's HTTP APIs: the events a producer
// publishes and the dispatcher's answers (the ingest API), the requests and answers of
// the endpoint API (dead letters, replays, the attempt log, an event's history,
// re-enabling, receiver documentation), the one JSON error envelope both answer with,
// and the routes.
//
// The dispatcher writes these shapes (dispatcher/ingest, dispatcher/admin) and
// pkg/client reads them: both import this package, so the server and its clients cannot
// drift apart. It imports nothing of Herald's and nothing outside the standard library,
// so a producer importing pkg/client pulls in no server code.
//
// Map of the package:
//
//   - errors.go: ErrorResponse and Error, the body of every non-2xx answer, and the
//     error codes clients may branch on (they are only ever added to).
//   - ingest.go: Event (what a producer publishes), PublishResult and BatchResult (the
//     202 answers), NewEventID (the ids Herald and its client generate).
//   - endpoints.go: the endpoint API's shapes, and the RBAC verbs each of its actions
//     asks for.
//   - routes.go: the paths of both APIs, as patterns the server registers and functions
//     the client fills in; Audience, what a ServiceAccount token for Herald is minted for.
package wire
