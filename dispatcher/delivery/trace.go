package delivery

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/internal/tracing"
)

// sendTraced performs the attempt inside a client span, child of the event's trace
// context, and sends the span's own traceparent: the receiver's spans then hang under
// the attempt that reached them.
func (r *runner) sendTraced(ctx context.Context, t *tracing.Tracer, target *sender.Target, m *sender.Message) sender.Outcome {
	parent := tracing.Remote(ctx, m.TraceParent, m.TraceState)
	sctx, span := t.Start(parent, "herald.deliver", trace.WithSpanKind(trace.SpanKindClient), trace.WithAttributes(
		attribute.String("herald.namespace", r.key.Namespace),
		attribute.String("herald.endpoint", r.key.Name),
		attribute.String("herald.event.id", m.EventID),
		attribute.String("herald.event.type", m.EventType),
		attribute.String("herald.delivery.id", m.DeliveryID),
		attribute.Int("herald.attempt", m.Attempt),
		attribute.String("http.request.method", "POST"),
	))
	defer span.End()
	m.TraceParent, m.TraceState = tracing.Inject(sctx)
	out := target.Send(sctx, m)
	if out.StatusCode != 0 {
		span.SetAttributes(attribute.Int("http.response.status_code", out.StatusCode))
	}
	if !out.OK() {
		// The outcome's error is the one the status shows: it carries no secret.
		span.SetStatus(codes.Error, out.Err.Error())
	}
	return out
}
