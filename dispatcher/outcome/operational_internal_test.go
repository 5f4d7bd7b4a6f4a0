package outcome

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/internal/eventschema"
)

type recorded struct {
	namespace, about string
	ev               OperationalEvent
}

type recordingPublisher struct {
	mu  sync.Mutex
	got []recorded
	ch  chan struct{}
}

func (p *recordingPublisher) PublishOperational(_ context.Context, ns, about string, e OperationalEvent) error {
	p.mu.Lock()
	p.got = append(p.got, recorded{ns, about, e})
	p.mu.Unlock()
	p.ch <- struct{}{}
	return nil
}

func (p *recordingPublisher) wait(t *testing.T, n int) []recorded {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		p.mu.Lock()
		if len(p.got) >= n {
			out := append([]recorded(nil), p.got...)
			p.mu.Unlock()
			return out
		}
		p.mu.Unlock()
		select {
		case <-p.ch:
		case <-deadline:
			t.Fatalf("%d events published, want %d", len(p.got), n)
		}
	}
}

func newTestOperational(t *testing.T) (*Operational, *recordingPublisher, *time.Time) {
	pub := &recordingPublisher{ch: make(chan struct{}, 100)}
	o := NewOperational(pub, time.Minute, nil, logr.Discard())
	now := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	o.now = func() time.Time { return now }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = o.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return o, pub, &now
}

// A flood of dead letters is one event at once and one per interval with the count,
// naming the first ten; each validates against the documented schema.
func TestOperational_DeadLettersAreAggregatedPerEndpointPerInterval(t *testing.T) {
	o, pub, now := newTestOperational(t)
	k := delivery.Key{Namespace: "shop", Name: "billing"}
	for i := range 25 {
		o.deadLettered(k, &queue.DeadLetter{Delivery: queue.Delivery{EventID: fmt.Sprintf("evt_%d", i), EventType: "invoice.paid", Attempt: 6},
			Reason: heraldv1.DeadLetterRetriesExhausted, StatusCode: 503})
	}
	first := pub.wait(t, 1)[0]
	o.flush(false) // within the interval: nothing more
	*now = now.Add(time.Minute)
	o.flush(false)
	got := pub.wait(t, 2)
	if len(got) != 2 {
		t.Fatalf("%d events, want 2", len(got))
	}
	def, _ := eventschema.Builtin(heraldv1.EventTypeDeliveryDeadLettered)
	var counts []int
	for _, r := range append([]recorded{first}, got[1]) {
		if r.about != "billing" || r.namespace != "shop" || r.ev.Type != heraldv1.EventTypeDeliveryDeadLettered {
			t.Errorf("published %+v", r)
		}
		if v := def.Schema.Validate(r.ev.Data); v != nil {
			t.Errorf("data %s breaks the documented schema: %v", r.ev.Data, v)
		}
		var d struct {
			Count  int `json:"count"`
			Events []struct {
				EventID string `json:"eventId"`
			} `json:"events"`
		}
		_ = json.Unmarshal(r.ev.Data, &d)
		counts = append(counts, d.Count)
		if len(d.Events) != min(d.Count, maxListed) {
			t.Errorf("an event of count %d names %d dead letters", d.Count, len(d.Events))
		}
	}
	if counts[0] != 1 || counts[1] != 24 {
		t.Errorf("counts = %v, want [1 24]", counts)
	}
}

// Recoveries of one endpoint are reported at most once per interval.
func TestOperational_RecoveredAtMostOncePerInterval(t *testing.T) {
	o, pub, now := newTestOperational(t)
	k := delivery.Key{Namespace: "shop", Name: "billing"}
	o.endpointRecovered(k, 3)
	o.endpointRecovered(k, 1)
	*now = now.Add(time.Minute)
	o.endpointRecovered(k, 2)
	got := pub.wait(t, 2)
	time.Sleep(100 * time.Millisecond)
	pub.mu.Lock()
	n := len(pub.got)
	pub.mu.Unlock()
	if n != 2 || string(got[0].ev.Data) == string(got[1].ev.Data) {
		t.Errorf("%d recoveries published, want 2 (the second within the interval dropped)", n)
	}
}
