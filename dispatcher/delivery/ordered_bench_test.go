package delivery_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/ingest"
)

// BenchmarkOrderedVsUnordered measures what spec.ordering: Ordered costs: deliveries per
// second and CPU per delivery through the whole engine (accept, durable publish to the
// embedded JetStream store, consume, sign, POST to a receiver on 127.0.0.1, acknowledge)
// for one endpoint delivering one at a time in order against one with 8 in flight, with
// a receiver that answers at once and one that takes 10ms, as receivers across a
// network do. An ordered endpoint pays a full round trip (request, then acknowledgement
// to the store, then the next delivery handed out) per delivery.
func BenchmarkOrderedVsUnordered(b *testing.B) {
	for _, latency := range []time.Duration{0, 10 * time.Millisecond} {
		for _, ordered := range []bool{false, true} {
			name := fmt.Sprintf("receiver=%s/unordered-8-in-flight", latency)
			if ordered {
				name = fmt.Sprintf("receiver=%s/ordered", latency)
			}
			b.Run(name, func(b *testing.B) { benchOrdering(b, ordered, latency) })
		}
	}
}

func benchOrdering(b *testing.B, ordered bool, latency time.Duration) {
	h := newHarness(b, b.TempDir())
	var got atomic.Int64
	done := make(chan struct{})
	var once sync.Once
	target := int64(b.N)
	var outOfOrder atomic.Int64
	var mu sync.Mutex
	last := -1
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		if ordered {
			var i int
			_, _ = fmt.Sscanf(r.Header.Get("webhook-id"), "evt_%d", &i)
			mu.Lock()
			if i < last {
				outOfOrder.Add(1)
			}
			last = max(last, i)
			mu.Unlock()
		}
		time.Sleep(latency)
		if got.Add(1) == target {
			once.Do(func() { close(done) })
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	h.endpoint("bench", srv.URL, endpointOpts{inFlight: 8, ordered: ordered})
	b.SetBytes(int64(len(benchBody)))
	cpu0 := cpuTime()
	b.ResetTimer()
	start := time.Now()
	const batch = 100
	events := make([]ingest.Event, 0, batch)
	for i := 0; i < b.N; i++ {
		events = append(events, ingest.Event{ID: fmt.Sprintf("evt_%d", i), Type: "invoice.paid", Data: benchBody, CreatedAt: start})
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
	elapsed := time.Since(start)
	b.StopTimer()
	if n := outOfOrder.Load(); n > 0 {
		b.Fatalf("an ordered endpoint delivered %d events after a later one", n)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "deliveries/s")
	// The process's CPU (engine, embedded JetStream server and receiver together), per
	// delivery: what the machine pays, not only the engine.
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/delivery")
}
