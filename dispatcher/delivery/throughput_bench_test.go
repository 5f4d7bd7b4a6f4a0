package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/internal/tracing"
)

// body is a typical 1 KiB event payload.
var benchBody = func() json.RawMessage {
	b, _ := json.Marshal(map[string]any{"invoice": "in_1234567890", "amount": 125000, "currency": "EUR",
		"lines": bytes.Repeat([]byte("x"), 900)})
	return b
}()

// BenchmarkDeliveryThroughput measures deliveries per second through the whole engine:
// accept (route, durable publish to the embedded JetStream store), consume, sign, POST
// to a receiver on 127.0.0.1, acknowledge. Compare with BenchmarkPlainLoopbackHTTP,
// the same POSTs with the same concurrency and no Herald in between.
func BenchmarkDeliveryThroughput(b *testing.B) { benchThroughput(b, "") }

// BenchmarkDeliveryThroughput_Tracing is BenchmarkDeliveryThroughput with every event
// carrying a producer's traceparent and the engine exporting a span per attempt to an
// OTLP/HTTP receiver on 127.0.0.1: what turning tracing on costs. (Tracing off is
// BenchmarkDeliveryThroughput itself: the engine's only extra work then is a nil check
// and forwarding a traceparent when the event has one.)
func BenchmarkDeliveryThroughput_Tracing(b *testing.B) {
	otlp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-protobuf")
	}))
	defer otlp.Close()
	tracer, err := tracing.Start(b.Context(), tracing.Options{Endpoint: otlp.URL})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = tracer.Shutdown(context.Background()) }()
	benchThroughput(b, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", func(o *delivery.Options) { o.Tracer = tracer })
}

func benchThroughput(b *testing.B, traceparent string, tune ...func(*delivery.Options)) {
	h := newHarness(b, b.TempDir(), tune...)
	var got atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	target := int64(b.N)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if got.Add(1) == target {
			once.Do(func() { close(done) })
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	h.endpoint("bench", srv.URL, endpointOpts{inFlight: 8})
	b.SetBytes(int64(len(benchBody)))
	b.ResetTimer()
	start := time.Now()
	const batch = 100
	events := make([]ingest.Event, 0, batch)
	for i := 0; i < b.N; i++ {
		events = append(events, ingest.Event{ID: fmt.Sprintf("evt_%d_%d", b.N, i), Type: "invoice.paid", Data: benchBody, CreatedAt: start, TraceParent: traceparent})
		if len(events) == batch || i == b.N-1 {
			if _, err := h.acc.Accept(b.Context(), ns, events); err != nil {
				b.Fatal(err)
			}
			events = events[:0]
		}
	}
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		b.Fatalf("%d of %d delivered", got.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}

// BenchmarkPlainLoopbackHTTP is the ceiling for BenchmarkDeliveryThroughput: the same
// body POSTed to the same kind of receiver by 8 concurrent clients.
func BenchmarkPlainLoopbackHTTP(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	b.SetBytes(int64(len(benchBody)))
	b.ResetTimer()
	start := time.Now()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for next.Add(1) <= int64(b.N) {
				resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(benchBody))
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "deliveries/s")
}
