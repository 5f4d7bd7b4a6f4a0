// Package dispatcher is Herald's delivery engine. The route of one event reads top-down
// in its sub-packages:
//
//	ingest  -> HTTP API that validates, authenticates and accepts events
//	queue   -> durable JetStream storage of deliveries, retries and dead letters
//	router  -> which endpoints an event goes to (type globs and CEL filters)
//	sender  -> signs (signer) and POSTs one attempt, under the outbound policy
//	outcome -> what an attempt's result means: done, retry later, dead letter
//
// The `herald dispatcher` command wires them together.
package dispatcher
