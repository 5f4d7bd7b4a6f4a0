// Package metrics exposes the dispatcher's Prometheus metrics. SKELETON: the wiring in
// dispatcher/app is final; the collectors are being written.
package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// Source answers the gauges' questions at scrape time.
type Source interface {
	// Endpoints lists the endpoints this dispatcher serves, with their hold reason
	// ("" when deliveries flow).
	Endpoints() map[delivery.Key]string
	// Disabled reports whether an endpoint is auto-disabled (shared state).
	Disabled(k delivery.Key) bool
	// Pending is how many deliveries of an endpoint are stored and not settled.
	Pending(k delivery.Key) (int64, error)
}

// Metrics holds the dispatcher's collectors.
type Metrics struct{}

// New registers the collectors with reg.
func New(reg prometheus.Registerer, src Source) (*Metrics, error) { return &Metrics{}, nil }

// Attempted implements delivery.Observer.
func (m *Metrics) Attempted(a delivery.Attempt) {}

// DeadLettered implements delivery.Observer.
func (m *Metrics) DeadLettered(k delivery.Key, dl *queue.DeadLetter) {}

// Ingest wraps the ingest API to count requests by status code.
func (m *Metrics) Ingest(h http.Handler) http.Handler { return h }
