package tracing

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/herald-dev/herald/internal/version"
)

// Options configure Start. The zero value exports nothing.
type Options struct {
	// Endpoint is the OTLP/HTTP collector's base URL (http://collector:4318), as in
	// OTEL_EXPORTER_OTLP_ENDPOINT: spans go to <Endpoint>/v1/traces. When empty, the
	// standard OTEL_EXPORTER_OTLP_ENDPOINT or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// environment variables configure the exporter; when those are empty too, tracing
	// is off.
	Endpoint string
	// BatchTimeout is the longest a finished span waits before it is exported
	// (default 5s).
	BatchTimeout time.Duration
	// ServiceName names the process in the exported resource (default
	// herald-dispatcher).
	ServiceName string
}

// Enabled reports whether Options export spans.
func (o Options) Enabled() bool {
	return o.Endpoint != "" || os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT") != "" || os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") != ""
}

// Tracer starts the dispatcher's spans and exports them. A nil *Tracer is tracing
// switched off; callers check for nil before doing any tracing work.
type Tracer struct {
	trace.Tracer
	provider *sdktrace.TracerProvider
}

// Start builds the exporter, or returns nil when Options export nothing.
func Start(ctx context.Context, o Options) (*Tracer, error) {
	if !o.Enabled() {
		return nil, nil
	}
	var opts []otlptracehttp.Option
	if o.Endpoint != "" {
		u, err := url.Parse(o.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("OTLP endpoint %q is not an http(s) URL such as http://otel-collector.observability:4318", o.Endpoint)
		}
		u.Path = strings.TrimSuffix(u.Path, "/") + "/v1/traces"
		opts = append(opts, otlptracehttp.WithEndpointURL(u.String()))
	}
	exp, err := otlptracehttp.New(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("creating the OTLP exporter: %w", err)
	}
	if o.BatchTimeout <= 0 {
		o.BatchTimeout = 5 * time.Second
	}
	if o.ServiceName == "" {
		o.ServiceName = "herald-dispatcher"
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", o.ServiceName),
		attribute.String("service.version", version.Version),
	)
	tp := sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(o.BatchTimeout)),
		sdktrace.WithResource(res),
		// The producer's sampling decision (the traceparent's flags) is followed, so a
		// trace is either whole or absent; an event without a traceparent starts a
		// sampled trace of its own.
		sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())),
	)
	return &Tracer{Tracer: tp.Tracer("github.com/herald-dev/herald/dispatcher"), provider: tp}, nil
}

// Shutdown exports what is left and stops the exporter.
func (t *Tracer) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	if err := t.provider.Shutdown(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("flushing spans: %w", err)
	}
	return nil
}

var traceContext = propagation.TraceContext{}

// Remote returns ctx with the span context of a traceparent (as Parse returns it) as
// the remote parent of the spans started from it; ctx itself when there is none.
func Remote(ctx context.Context, traceparent, tracestate string) context.Context {
	if traceparent == "" {
		return ctx
	}
	c := propagation.MapCarrier{"traceparent": traceparent}
	if tracestate != "" {
		c["tracestate"] = tracestate
	}
	return traceContext.Extract(ctx, c)
}

// Inject returns the traceparent and tracestate of the span in ctx.
func Inject(ctx context.Context) (traceparent, tracestate string) {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.IsValid() {
		return "", ""
	}
	c := propagation.MapCarrier{}
	traceContext.Inject(ctx, c)
	return c["traceparent"], c["tracestate"]
}
