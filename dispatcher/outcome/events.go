package outcome

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
)

// Lookup returns the WebhookEndpoint of a key from the informer cache, for Events (which
// name the object by its UID) and status; false when no object of that name has the
// key's UID (deleted, even if another of its name exists now: nothing of the deleted
// one may reach the new one's Events or status).
type Lookup func(k delivery.Key) (*heraldv1.WebhookEndpoint, bool)

// EventSink emits Kubernetes Events (events.k8s.io/v1) on WebhookEndpoints. Events are
// created directly rather than through client-go's recorder, whose series folding keeps
// only the first note of events with the same reason, and DeliveryFailed Events must
// each name their event. DeliveryFailed Events are rate-limited per endpoint (a burst,
// then a steady trickle); what the limit holds back is summed up in one aggregate Event
// per flush, so a flood of dead letters is visible without flooding the API server. The
// exact number is always on status.counters. Creation is asynchronous and bounded: a
// slow API server never blocks a delivery worker.
type EventSink struct {
	client   client.Client
	instance string
	lookup   Lookup
	queue    chan *eventsv1.Event
	log      logr.Logger

	mu         sync.Mutex
	buckets    map[delivery.Key]*bucket
	burst      float64
	refillRate float64 // tokens per second
	now        func() time.Time
	dropped    int
}

type bucket struct {
	tokens     float64
	last       time.Time
	suppressed int
}

// NewEventSink returns a sink allowing burst DeliveryFailed Events per endpoint, then
// one per interval. instance names this dispatcher replica on the Events.
func NewEventSink(c client.Client, instance string, lookup Lookup, burst int, interval time.Duration, log logr.Logger) *EventSink {
	return &EventSink{
		client: c, instance: instance, lookup: lookup, queue: make(chan *eventsv1.Event, 1024), log: log,
		buckets: map[delivery.Key]*bucket{}, burst: float64(burst), refillRate: 1 / interval.Seconds(), now: time.Now,
	}
}

// aggregateEvery is how often the DeliveryFailed Events held back by the rate limit are
// summed up in one Event per endpoint.
const aggregateEvery = 5 * time.Second

// Run creates queued Events until ctx ends.
func (s *EventSink) Run(ctx context.Context) error {
	tick := time.NewTicker(aggregateEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			s.flush()
		case e := <-s.queue:
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			if err := s.client.Create(cctx, e); err != nil && ctx.Err() == nil {
				s.log.Error(err, "creating Event", "reason", e.Reason, "regarding", e.Regarding.Name)
			}
			cancel()
		}
	}
}

func (s *EventSink) emit(k delivery.Key, eventType, reason, action, note string) {
	if s == nil || s.client == nil {
		return
	}
	ep, ok := s.lookup(k)
	if !ok {
		return
	}
	s.emitRegarding(corev1.ObjectReference{
		APIVersion: heraldv1.GroupVersion.String(), Kind: "WebhookEndpoint",
		Namespace: ep.Namespace, Name: ep.Name, UID: ep.UID, ResourceVersion: ep.ResourceVersion,
	}, eventType, reason, action, note)
}

// emitRegarding queues an Event about any object of the dispatcher's.
func (s *EventSink) emitRegarding(ref corev1.ObjectReference, eventType, reason, action, note string) {
	if s == nil || s.client == nil {
		return
	}
	if len(note) > 1024 {
		note = note[:1021] + "..."
	}
	now := s.now()
	e := &eventsv1.Event{
		ObjectMeta: metav1.ObjectMeta{
			Name:      fmt.Sprintf("%s.%x", ref.Name, now.UnixNano()),
			Namespace: ref.Namespace,
		},
		EventTime:           metav1.NewMicroTime(now),
		ReportingController: "herald-dispatcher",
		ReportingInstance:   s.instance,
		Action:              action,
		Reason:              reason,
		Type:                eventType,
		Note:                note,
		Regarding:           ref,
	}
	select {
	case s.queue <- e:
	default:
		// The API server is not keeping up; the status counters stay exact.
		s.mu.Lock()
		s.dropped++
		s.mu.Unlock()
	}
}

func (s *EventSink) warning(k delivery.Key, reason, action, note string) {
	s.emit(k, corev1.EventTypeWarning, reason, action, note)
}

func (s *EventSink) normal(k delivery.Key, reason, action, note string) {
	s.emit(k, corev1.EventTypeNormal, reason, action, note)
}

// deadLetter emits a DeliveryFailed Event (reason: or TransformFailed) unless the
// endpoint's budget is spent.
func (s *EventSink) deadLetter(k delivery.Key, reason, note string) {
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
		s.warning(k, reason, "DeadLetter", note)
	}
}

// flush emits one aggregate Event per endpoint for the dead letters held back.
func (s *EventSink) flush() {
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
		s.warning(k, heraldv1.EventDeliveryFailed, "DeadLetter", fmt.Sprintf(
			"%d more deliveries dead-lettered (Events for them were aggregated); status.counters.deadLettered has the exact total, and the dead-letter API lists them", n))
	}
}

func (s *EventSink) forget(k delivery.Key) {
	if s == nil {
		return
	}
	s.mu.Lock()
	delete(s.buckets, k)
	s.mu.Unlock()
}
