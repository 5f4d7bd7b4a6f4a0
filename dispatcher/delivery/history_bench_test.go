package delivery_test

import (
	"context"
	"syscall"
	"testing"
	"time"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/queue/queuetest"
	"github.com/herald-dev/herald/dispatcher/replay"
)

// The price of the delivery history, measured through the whole engine as
// BenchmarkDeliveryThroughput is (same receiver, same 1 KiB events), each variant
// reporting the process's CPU time per delivery (the embedded NATS server included)
// and the bytes the history streams hold per delivery:
//
//	_NoHistory:  neither (the engine as before the history existed)
//	_Retention:  delivered deliveries retained for replay, attempt log off
//	_AttemptLog: both, the dispatcher's default
func BenchmarkDeliveryHistory_NoHistory(b *testing.B)  { benchHistory(b, false, false) }
func BenchmarkDeliveryHistory_Retention(b *testing.B)  { benchHistory(b, true, false) }
func BenchmarkDeliveryHistory_AttemptLog(b *testing.B) { benchHistory(b, true, true) }

func benchHistory(b *testing.B, retain, attemptLog bool) {
	var store queue.Store
	var history *queue.HistoryWriter
	tune := func(o *delivery.Options) {
		store = o.Store.(queue.Store)
		if retain {
			history = store.History()
			var h replay.History = history
			if !attemptLog {
				h = retainOnly{history}
			}
			o.Observer = delivery.Observers{&replay.Recorder{History: h}, o.Observer}
		}
	}
	before := cpuTime()
	benchThroughput(b, "", tune)
	cpu := cpuTime() - before
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/delivery")
	if history == nil {
		return
	}
	history.Close() // every record handed over is stored (or failed) now
	if n, err := history.Failed(); n > 0 {
		b.Fatalf("%d history records failed: %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, unit := range map[string]string{queue.DeliveredStream: "retained-B/delivery", queue.AttemptsStream: "attempt-log-B/delivery"} {
		st, err := queuetest.StreamBytes(ctx, store, name)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(st)/float64(b.N), unit)
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// retainOnly is the history without the attempt log, as --attempt-log=false keeps it.
type retainOnly struct{ *queue.HistoryWriter }

func (retainOnly) Attempt(*queue.AttemptRecord) {}
