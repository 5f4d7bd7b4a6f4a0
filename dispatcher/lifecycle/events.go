package lifecycle

import (
	"encoding/json"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/events"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
)

// Lookup returns the current WebhookEndpoint of a key from the informer cache, for
// Events (which need the object's UID) and thresholds.
type Lookup func(k delivery.Key) (*heraldv1.WebhookEndpoint, bool)

// eventSink emits Kubernetes Events on WebhookEndpoints. DeliveryFailed Events are
// rate-limited per endpoint (a burst, then a steady trickle); what the limit holds back
// is summed up in one aggregate Event per flush, so a flood of dead letters is visible
// without flooding the API server. The exact number is always on status.counters.
type eventSink struct {
	rec    events.EventRecorder
	lookup Lookup

	mu         sync.Mutex
	buckets    map[delivery.Key]*bucket
	burst      float64
	refillRate float64 // tokens per second
	now        func() time.Time
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// NewEventSink returns a sink allowing burst DeliveryFailed Events per endpoint, then
// one per interval.
func NewEventSink(rec events.EventRecorder, lookup Lookup, burst int, interval time.Duration) *eventSink {
	return &eventSink{
		rec: rec, lookup: lookup, buckets: map[delivery.Key]*bucket{},
		burst: float64(burst), refillRate: 1 / interval.Seconds(), now: time.Now,
	}
}

func (s *eventSink) emit(k delivery.Key, eventType, reason, action, note string) {
	if s == nil || s.rec == nil {
		return
	}
	ep, ok := s.lookup(k)
	if !ok {
		return
	}
	s.rec.Eventf(ep, nil, eventType, reason, action, "%s", note)
}

func (s *eventSink) warning(k delivery.Key, reason, action, note string) {
	s.emit(k, corev1.EventTypeWarning, reason, action, note)
}

func (s *eventSink) normal(k delivery.Key, reason, action, note string) {
	s.emit(k, corev1.EventTypeNormal, reason, action, note)
}

// deadLetter emits a DeliveryFailed Event unless the endpoint's budget is spent.
func (s *eventSink) deadLetter(k delivery.Key, note string) {
	if s == nil {
		return
	}
	s.mu.Lock()
	b := s.buckets[k]
	now := s.now()
	if b == nil {
		b = &bucket{tokens: s.burst, last: now}
		s.buckets[k] = b
	}
	b.tokens = min(s.burst, b.tokens+now.Sub(b.last).Seconds()*s.refillRate)
	b.last = now
	allowed := b.tokens >= 1
	if allowed {
		b.tokens--
	} else {
		b.suppressed++
	}
	s.mu.Unlock()
	if allowed {
		s.warning(k, EventDeliveryFailed, "DeadLetter", note)
	}
}

// flush emits one aggregate Event per endpoint for the dead letters held back.
func (s *eventSink) flush() {
	if s == nil {
		return
	}
	s.mu.Lock()
	pending := map[delivery.Key]int{}
	for k, b := range s.buckets {
		if b.suppressed > 0 {
			pending[k] = b.suppressed
			b.suppressed = 0
		}
	}
	s.mu.Unlock()
	for k, n := range pending {
		s.warning(k, EventDeliveryFailed, "DeadLetter", fmt.Sprintf(
			"%d more deliveries dead-lettered (Events for them were aggregated); status.counters.deadLettered has the exact total, and the dead-letter API lists them", n))
	}
}

func (s *eventSink) forget(k delivery.Key) {
	if s == nil {
		return
	}
	s.mu.Lock()
	delete(s.buckets, k)
	s.mu.Unlock()
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
