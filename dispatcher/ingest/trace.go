package ingest

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-dev/herald/internal/tracing"
)

// eventSpans are the spans of one request's events: per event an ingest span (from the
// request's arrival, child of the producer's traceparent) and a store span under it,
// covering the acceptance (dedupe, routing, durable write) of the request's events.
type eventSpans struct {
	ingest, store []trace.Span
}

// startSpans starts the spans and replaces each event's trace context with its ingest
// span's, which is what the queue stores and the attempts continue from.
func startSpans(ctx context.Context, t *tracing.Tracer, namespace string, events []Event, received time.Time) *eventSpans {
	s := &eventSpans{ingest: make([]trace.Span, len(events)), store: make([]trace.Span, len(events))}
	for i := range events {
		e := &events[i]
		// The request's own context is not the parent: the event's trace is the
		// producer's, whatever carried the request.
		parent := tracing.Remote(context.WithoutCancel(ctx), e.TraceParent, e.TraceState)
		ictx, ingest := t.Start(parent, "herald.ingest", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(received),
			trace.WithAttributes(
				attribute.String("herald.namespace", namespace),
				attribute.String("herald.event.id", e.ID),
				attribute.String("herald.event.type", e.Type),
				attribute.Int("herald.batch.size", len(events)),
			))
		_, store := t.Start(ictx, "herald.store")
		s.ingest[i], s.store[i] = ingest, store
		e.TraceParent, e.TraceState = tracing.Inject(ictx)
	}
	return s
}

// end ends the spans with the acceptance's outcome.
func (s *eventSpans) end(results []Result, err error) {
	for i := range s.ingest {
		if err != nil {
			s.store[i].RecordError(err)
			s.store[i].SetStatus(codes.Error, "events not stored")
			s.ingest[i].SetStatus(codes.Error, "events not stored")
		} else if i < len(results) {
			s.ingest[i].SetAttributes(
				attribute.Int("herald.event.matched", results[i].Matched),
				attribute.Bool("herald.event.duplicate", results[i].Duplicate),
			)
		}
		s.store[i].End()
		s.ingest[i].End()
	}
}
