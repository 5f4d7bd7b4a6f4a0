package accept_test

// Benchmarks of Acceptor.Accept, the store side of ingest: dedupe lookup, routing,
// durable publish of one delivery per endpoint, dedupe record. The endpoints are held,
// so nothing is consumed and the figures are ingest's alone. ns/op and cpu-ns/op
// (process CPU, the embedded server included) are per event.
//
//	go test ./dispatcher/accept -run '^$' -bench Accept -benchtime 20000x

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/accept"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/ingest"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/router"
)

func acceptBenchCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var acceptBenchData = json.RawMessage(`{"order_id":4242,"customer":"c-42","items":[` +
	`{"sku":"SKU-000001","qty":1},{"sku":"SKU-000002","qty":2},{"sku":"SKU-000003","qty":3}]}`)

func benchAccept(b *testing.B, batch, fanout int) {
	st, err := queue.Open(context.Background(), queue.Options{Store: config.Store{DataDir: b.TempDir()}, Log: logr.Discard()})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	engine := delivery.New(delivery.Options{Store: st, Log: logr.Discard()})
	defer engine.Stop()
	table := router.NewTable()
	for i := range fanout {
		name := fmt.Sprintf("ep-%d", i)
		engine.Upsert(delivery.Key{Namespace: "bench", Name: name, UID: "uid-" + name}, delivery.EndpointConfig{Hold: heraldv1.ReasonSuspended})
		table.Set("bench", router.Subscription{Name: "to-" + name, Endpoint: name, Patterns: []string{"order.*"}})
	}
	acc := &accept.Acceptor{Store: st, Router: table, Lookup: engine.Lookup, Log: logr.Discard()}
	ctx := context.Background()
	events := make([]ingest.Event, 0, batch)
	flush := func() {
		if len(events) == 0 {
			return
		}
		res, err := acc.Accept(ctx, "bench", events)
		if err != nil {
			b.Fatal(err)
		}
		if res[0].Matched != fanout || res[0].Duplicate {
			b.Fatalf("result %+v, want %d endpoints matched", res[0], fanout)
		}
		events = events[:0]
	}
	b.ReportAllocs()
	n := 0
	cpu := acceptBenchCPU()
	for b.Loop() {
		events = append(events, ingest.Event{ID: "e" + strconv.Itoa(n), Type: "order.created", Source: "bench",
			CreatedAt: time.Now(), Data: acceptBenchData, DataContentType: "application/json"})
		n++
		if len(events) == batch {
			flush()
		}
	}
	flush()
	b.ReportMetric(float64(acceptBenchCPU()-cpu)/float64(n), "cpu-ns/op")
}

func BenchmarkAccept_Single_Fanout1(b *testing.B)    { benchAccept(b, 1, 1) }
func BenchmarkAccept_Batch100_Fanout1(b *testing.B)  { benchAccept(b, 100, 1) }
func BenchmarkAccept_Batch100_Fanout10(b *testing.B) { benchAccept(b, 100, 10) }
