// Package dispatcher is Herald's delivery engine. The route of one event reads top-down
// in its sub-packages, each entered once:
//
//	ingest   -> the HTTP API: authenticates the producer (auth), validates the event,
//	            checks it against its namespace's catalog of event types (catalog)
//	accept   -> deduplicates by id, routes by subscription (router), stores one delivery
//	            per endpoint, and answers 202 once the store has them all
//	queue    -> durable JetStream storage of deliveries, retries and dead letters
//	delivery -> the engine: a runner per endpoint takes its deliveries from the queue
//	            with its own workers, attempts them, schedules retries, dead-letters
//	sender   -> one HTTP attempt, signed (signer), under the outbound policy
//	outcome  -> what the attempt means: shared failure state and auto-disable, Events,
//	            the dispatcher's part of the resource's status
//
// Beside the route: watch turns WebhookEndpoints (judged by resolve, the one judge, which
// the manager asks too), WebhookSubscriptions and WebhookEventTypes into the engine's and
// the router's configuration and the catalog's compiled schemas; admin is the endpoint
// API (dead letters, replay, re-enable, receivers' documents written by receiverdocs);
// replay re-sends stored
// deliveries by selection, one replay per endpoint; reclaim purges what deleted
// endpoints left in the store (every record there is keyed by the WebhookEndpoint's UID,
// so none reaches an endpoint created later under the name); metrics observes the
// route. app assembles them: NewPipeline is the route itself, shared by
// `herald dispatcher` and the benchmark, and Run adds the Kubernetes side.
package dispatcher
