package app_test

import (
	"bytes"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	coltracepb "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	commonpb "go.opentelemetry.io/proto/otlp/common/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/app"
	"github.com/herald-dev/herald/internal/tracing"
)

// otlpReceiver is an OTLP/HTTP trace receiver, as a collector serves it: it decodes
// every protobuf ExportTraceServiceRequest POSTed to /v1/traces and keeps the spans.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []*tracepb.Span
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	o := &otlpReceiver{}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var req coltracepb.ExportTraceServiceRequest
		if r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || proto.Unmarshal(body, &req) != nil {
			http.Error(w, "not an OTLP/HTTP protobuf trace export", http.StatusBadRequest)
			return
		}
		o.mu.Lock()
		for _, rs := range req.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				o.spans = append(o.spans, ss.Spans...)
			}
		}
		o.mu.Unlock()
		out, _ := proto.Marshal(&coltracepb.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(o.Close)
	return o
}

// find returns the spans of a trace named name, waiting up to 15s for want of them.
func (o *otlpReceiver) find(t *testing.T, traceID, name string, want int) []*tracepb.Span {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var out []*tracepb.Span
		o.mu.Lock()
		for _, s := range o.spans {
			if hex.EncodeToString(s.TraceId) == traceID && s.Name == name {
				out = append(out, s)
			}
		}
		o.mu.Unlock()
		if len(out) >= want || time.Now().After(deadline) {
			if len(out) < want {
				t.Fatalf("%d %s spans of trace %s exported within 15s, want %d", len(out), name, traceID, want)
			}
			return out
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.Attributes {
		if kv.Key == key {
			if _, ok := kv.Value.Value.(*commonpb.AnyValue_IntValue); ok {
				return strconv.FormatInt(kv.Value.GetIntValue(), 10)
			}
			return kv.Value.GetStringValue()
		}
	}
	return ""
}

// postEvent publishes one event with the given Content-Type and headers.
func postEvent(t *testing.T, d *dispatcher, ns, contentType, body string, headers map[string]string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.url+"/v1/namespaces/"+ns+"/events", bytes.NewReader([]byte(body)))
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Authorization", "Bearer "+apiKey(t, ns))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	for range 50 {
		req.Body = io.NopCloser(strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			return
		case http.StatusUnauthorized: // the key Secret has not reached the watch yet
			time.Sleep(100 * time.Millisecond)
		default:
			t.Fatalf("publish: %d %s", resp.StatusCode, raw)
		}
	}
	t.Fatal("publish: the API key was not accepted within 5s")
}

const (
	producerTrace = "4bf92f3577b34da6a3ce929d0e0e4736"
	producerSpan  = "00f067aa0ba902b7"
)

// TestDispatcher_TracesContinueTheProducersTrace publishes events carrying a producer's
// traceparent (a Herald event with the W3C header, a binary CloudEvent with the
// distributed-tracing extension) to a dispatcher exporting to a real OTLP/HTTP
// receiver. The spans it exports (ingest, store, each attempt) belong to the
// producer's trace, ingest under the producer's span; each attempt, the failed one
// too, reaches the receiver with a traceparent of that trace naming the attempt's span.
func TestDispatcher_TracesContinueTheProducersTrace(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "tracing-otlp"
	s := newSink(t)
	// The CloudEvent's first attempt is answered 503, so it is attempted twice.
	var failOnce sync.Once
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("webhook-id") == "evt_ce_traced" {
			failed := false
			failOnce.Do(func() { failed = true })
			if failed {
				s.Config.Handler.ServeHTTP(httptest.NewRecorder(), r)
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
		}
		s.Config.Handler.ServeHTTP(w, r)
	}))
	defer rcv.Close()
	fixture(t, c, ns, "traced", heraldv1.WebhookEndpointSpec{URL: rcv.URL, Timeout: "2s", Retry: heraldv1.RetrySpec{Schedule: []string{"1s"}}})
	otlp := newOTLPReceiver(t)
	d := startDispatcherWith(t, func(o *app.Options) {
		o.Config.Tracing.OTLPEndpoint, o.TraceBatchTimeout = otlp.URL, 100*time.Millisecond
	})

	producer := "00-" + producerTrace + "-" + producerSpan + "-01"
	postEvent(t, d, ns, "application/json", `{"id":"evt_traced","type":"invoice.paid","data":{"n":1}}`,
		map[string]string{"traceparent": producer, "tracestate": "vendor=opaque"})
	r, _ := s.waitEvent(t, "evt_traced", 10*time.Second)
	deliver := otlp.find(t, producerTrace, "herald.deliver", 1)[0]
	if got, want := r.Header.Get("traceparent"), "00-"+producerTrace+"-"+hex.EncodeToString(deliver.SpanId)+"-01"; got != want {
		t.Fatalf("receiver got traceparent %q, want %q: the producer's trace, the attempt's span", got, want)
	}
	if got := r.Header.Get("tracestate"); got != "vendor=opaque" {
		t.Errorf("receiver got tracestate %q, want the producer's", got)
	}
	ingest := otlp.find(t, producerTrace, "herald.ingest", 1)[0]
	store := otlp.find(t, producerTrace, "herald.store", 1)[0]
	switch {
	case hex.EncodeToString(ingest.ParentSpanId) != producerSpan:
		t.Errorf("ingest span's parent %x, want the producer's span %s", ingest.ParentSpanId, producerSpan)
	case !bytes.Equal(store.ParentSpanId, ingest.SpanId) || !bytes.Equal(deliver.ParentSpanId, ingest.SpanId):
		t.Errorf("store (parent %x) and attempt (parent %x) spans should hang under ingest %x", store.ParentSpanId, deliver.ParentSpanId, ingest.SpanId)
	case attr(ingest, "herald.event.id") != "evt_traced" || attr(ingest, "herald.event.matched") != "1":
		t.Errorf("ingest span attributes %v", ingest.Attributes)
	case attr(deliver, "herald.endpoint") != "traced" || attr(deliver, "http.response.status_code") != "200" || attr(deliver, "herald.attempt") != "1":
		t.Errorf("attempt span attributes %v", deliver.Attributes)
	}

	// A binary-mode CloudEvent carries its trace in ce-traceparent, which wins over the
	// transport's traceparent header (the request's, not the event's).
	const ceTrace = "0af7651916cd43dd8448eb211c80319c"
	postEvent(t, d, ns, "application/json", `{"n":2}`, map[string]string{
		"ce-specversion": "1.0", "ce-id": "evt_ce_traced", "ce-source": "/billing", "ce-type": "invoice.paid",
		"ce-traceparent": "00-" + ceTrace + "-b7ad6b7169203331-01",
		"traceparent":    "00-11111111111111111111111111111111-2222222222222222-01",
	})
	attempts := otlp.find(t, ceTrace, "herald.deliver", 2)
	byAttempt := map[string]*tracepb.Span{}
	for _, a := range attempts {
		byAttempt[attr(a, "herald.attempt")] = a
	}
	if a := byAttempt["1"]; a == nil || attr(a, "http.response.status_code") != "503" || a.Status.GetCode() != tracepb.Status_STATUS_CODE_ERROR {
		t.Errorf("first attempt span %v: want status 503 and an error", a)
	}
	if a := byAttempt["2"]; a == nil || attr(a, "http.response.status_code") != "200" {
		t.Errorf("second attempt span %v: want status 200", a)
	}
	s.mu.Lock()
	var seen []string
	for _, r := range s.reqs {
		if r.Header.Get("webhook-id") == "evt_ce_traced" {
			seen = append(seen, r.Header.Get("traceparent"))
		}
	}
	s.mu.Unlock()
	if len(seen) != 2 || tracing.TraceID(seen[0]) != ceTrace || tracing.TraceID(seen[1]) != ceTrace || seen[0] == seen[1] {
		t.Fatalf("traceparents at the receiver %q: want both attempts in the CloudEvent's trace, each with its own span", seen)
	}
}

// TestDispatcher_ForwardsTheProducersTraceparentWithoutExporting: with no OTLP
// endpoint configured nothing is recorded, and the producer's trace context (here the
// CloudEvents distributed-tracing extension of a structured event) reaches the
// receiver as the producer sent it, through the queue.
func TestDispatcher_ForwardsTheProducersTraceparentWithoutExporting(t *testing.T) {
	c, err := client.New(env.Config, client.Options{Scheme: env.Scheme})
	if err != nil {
		t.Fatal(err)
	}
	const ns = "tracing-forward"
	s := newSink(t)
	fixture(t, c, ns, "plain", heraldv1.WebhookEndpointSpec{URL: s.URL, Timeout: "2s"})
	d := startDispatcher(t)
	producer := "00-" + producerTrace + "-" + producerSpan + "-01"
	postEvent(t, d, ns, "application/cloudevents+json",
		`{"specversion":"1.0","id":"evt_forwarded","source":"/billing","type":"invoice.paid","traceparent":"`+producer+`","tracestate":"congo=t61rcWkgMzE","data":{"n":1}}`, nil)
	r, _ := s.waitEvent(t, "evt_forwarded", 10*time.Second)
	if got := r.Header.Get("traceparent"); got != producer {
		t.Errorf("traceparent %q, want the producer's %q", got, producer)
	}
	if got := r.Header.Get("tracestate"); got != "congo=t61rcWkgMzE" {
		t.Errorf("tracestate %q, want the producer's", got)
	}
	d.publish(ns, "evt_untraced", "invoice.paid")
	r, _ = s.waitEvent(t, "evt_untraced", 10*time.Second)
	if got := r.Header.Get("traceparent"); got != "" {
		t.Errorf("an event without trace context was sent traceparent %q", got)
	}
}
