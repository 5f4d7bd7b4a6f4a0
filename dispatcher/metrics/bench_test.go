package metrics

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// BenchmarkAttempted is the cost metrics add to every delivery attempt, on a dispatcher
// serving many endpoints.
func BenchmarkAttempted(b *testing.B) {
	m, err := New(prometheus.NewRegistry(), nil)
	if err != nil {
		b.Fatal(err)
	}
	keys := make([]delivery.Key, 1000)
	for i := range keys {
		keys[i] = delivery.Key{Namespace: "team-" + fmt.Sprint(i%20), Name: "endpoint-" + fmt.Sprint(i), UID: "uid-" + fmt.Sprint(i)}
		m.Attempted(attempt(keys[i], 204, time.Millisecond, nil))
	}
	ok := attempt(billing, 204, 35*time.Millisecond, nil)
	ok.Delivery.AcceptedAt = time.Now().Add(-time.Second)
	failed := attempt(billing, 503, 35*time.Millisecond, errors.New("receiver answered 503"))

	b.Run("delivered", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			ok.Endpoint = keys[i%len(keys)]
			m.Attempted(ok)
			i++
		}
	})
	b.Run("failed", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			failed.Endpoint = keys[i%len(keys)]
			m.Attempted(failed)
			i++
		}
	})
	b.Run("delivered-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			a := ok
			i := 0
			for pb.Next() {
				a.Endpoint = keys[i%len(keys)]
				m.Attempted(a)
				i++
			}
		})
	})
}

// BenchmarkScrapeRealStore is one uncached reading of the queue gauges for 200
// endpoints from the embedded store: what a scrape costs at most once per stateTTL.
func BenchmarkScrapeRealStore(b *testing.B) {
	store, err := queue.Open(context.Background(), queue.Options{Store: config.Store{DataDir: b.TempDir()}, Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	engine := delivery.New(delivery.Options{Store: store, Log: logr.Discard()})
	defer engine.Stop()
	for i := range 200 {
		engine.Upsert(delivery.Key{Namespace: "shop", Name: fmt.Sprint("endpoint-", i), UID: fmt.Sprint("uid-", i)}, delivery.EndpointConfig{Hold: heraldv1.ReasonSuspended})
	}
	reg := prometheus.NewRegistry()
	m, err := New(reg, storeSource{engine: engine, store: store})
	if err != nil {
		b.Fatal(err)
	}
	m.c.state.ttl = 0
	b.ReportAllocs()
	for b.Loop() {
		if _, err := reg.Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

// storeSource answers the gauges from the engine and the store, as the dispatcher's
// source does, without the shared failure state.
type storeSource struct {
	engine *delivery.Engine
	store  queue.Store
}

func (s storeSource) Endpoints() map[delivery.Key]string { return s.engine.Endpoints() }
func (s storeSource) Disabled(delivery.Key) bool         { return false }
func (s storeSource) Pending(keys []delivery.Key) ([]int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.store.PendingOf(ctx, len(keys), func(i int) queue.Endpoint { return keys[i] })
}
