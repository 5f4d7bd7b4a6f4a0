package replay_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/go-logr/logr"

	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/queue/queuetest"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/dispatcher/sender"
)

// BenchmarkRecorder is what the history costs per delivery, on its own: the Recorder's
// call on the delivery worker (ns/op, B/op, allocs/op: what the hot path pays), the
// process's CPU time per delivery including the embedded NATS server storing the
// records (cpu-ns/delivery), and the bytes stored per delivery. A delivery here is one
// successful attempt of a 1 KiB event; the receiver answered 204 with a few headers.
//
//	retention:          the delivered delivery kept for replay (attempt log off)
//	retention+attempts: that and the attempt record (the default)
//	attempt-failed:     one failed attempt's record (503 with a 200-byte body)
func BenchmarkRecorder(b *testing.B) {
	ok := sender.Outcome{StatusCode: 204, Latency: 3 * time.Millisecond, Header: http.Header{
		"Content-Type": {"application/json"}, "Date": {"Mon, 30 Nov 2026 21:00:00 GMT"}, "X-Request-Id": {"req_8f3a2c"}, "Set-Cookie": {"s=1"}}}
	failed := sender.Outcome{StatusCode: 503, Latency: 3 * time.Millisecond, Err: errors.New("receiver answered 503"),
		Header: ok.Header, Body: bytes.Repeat([]byte("x"), 200)}
	for _, c := range []struct {
		name       string
		attemptLog bool
		out        sender.Outcome
		final      bool
	}{
		{"retention", false, ok, true},
		{"retention+attempts", true, ok, true},
		{"attempt-failed", true, failed, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			store, err := queue.Open(context.Background(), queue.Options{Store: config.Store{DataDir: b.TempDir()}, Log: logr.Discard(), History: config.History{AttemptLog: c.attemptLog}})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			history := store.History()
			rec := &replay.Recorder{History: history}
			d := &queue.Delivery{Namespace: "shop", Endpoint: "billing", EndpointUID: "uid-billing", EventType: "invoice.paid", CreatedAt: time.Now(),
				Data: bytes.Repeat([]byte("x"), 1024), Attempt: 1, AcceptedAt: time.Now()}
			a := delivery.Attempt{Endpoint: delivery.Key{Namespace: "shop", Name: "billing", UID: "uid-billing"}, Delivery: d, Outcome: c.out, Final: c.final}
			b.ReportAllocs()
			before := cpuTime()
			n := 0
			for b.Loop() {
				d.EventID = "evt_" + strconv.Itoa(n)
				d.DeliveryID = queue.DeliveryID("shop", d.EventID, "billing")
				rec.Attempted(a)
				n++
			}
			history.Close()
			cpu := cpuTime() - before
			if f, err := history.Failed(); f > 0 {
				b.Fatalf("%d records failed: %v", f, err)
			}
			b.ReportMetric(float64(cpu.Nanoseconds())/float64(n), "cpu-ns/delivery")
			var stored uint64
			for _, s := range []string{queue.DeliveredStream, queue.AttemptsStream} {
				v, err := queuetest.StreamBytes(context.Background(), store, s)
				if err != nil {
					b.Fatal(err)
				}
				stored += v
			}
			b.ReportMetric(float64(stored)/float64(n), "stored-B/delivery")
		})
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
