package config

import (
	"time"

	"github.com/herald-dev/herald/internal/routing"
	"github.com/herald-dev/herald/pkg/wire"
)

// Default returns the configuration with every default: what `herald dispatcher` runs
// with when no flag and no file says otherwise, and what the manager starts from. It is
// the one place a default is written; testdata/defaults.yaml is what it renders to, and
// the chart's values are checked against it.
func Default() Dispatcher {
	c := Dispatcher{
		APIVersion: APIVersion,
		Kind:       Kind,
		Serving: Serving{
			IngestBindAddress:      ":8080",
			MetricsBindAddress:     ":9090",
			HealthProbeBindAddress: ":8081",
		},
		Store:   Store{DataDir: "/var/lib/herald"},
		History: History{AttemptLog: true, ReplayRate: DefaultReplayRate},
		Auth:    Auth{TokenAudiences: []string{wire.Audience}, APIKeys: true},
	}
	c.SetDefaults()
	return c
}

// DefaultReplayRate is the default bound on the re-sends per second of one replay: a
// replay queues in front of the endpoint's live events, and 50 a second is a third to
// two thirds of what one endpoint delivers with its default 8 requests in flight to a
// receiver answering in 50-100 ms, so live events keep flowing beside it, while 10,000
// events still replay in under three and a half minutes.
const DefaultReplayRate = 50

// SetDefaults gives every unset field its default where the zero value means "unset"
// (its comment says "0: ..."). Fields whose zero is a setting of its own (a bound of 0
// meaning none, false) are Default's alone.
func (c *Dispatcher) SetDefaults() {
	c.Store.SetDefaults()
	c.History.SetDefaults()
	c.Ingest.SetDefaults()
	c.Delivery.SetDefaults()
	c.Status.SetDefaults()
}

// SetDefaults fills the unset limits of the store; the package queue calls it for its
// callers' zero values.
func (s *Store) SetDefaults() {
	setDuration(&s.DedupeWindow, 24*time.Hour)
	setInt(&s.MaxDedupeRecords, 250_000)
	setInt(&s.MaxPendingDeliveries, 1_000_000)
	setDuration(&s.DeadLetterMaxAge, 14*24*time.Hour)
}

// SetDefaults fills the unset bounds of the history.
func (h *History) SetDefaults() {
	setDuration(&h.RetainDeliveredMaxAge, 72*time.Hour)
	setInt(&h.RetainDeliveredMaxBytes, 256<<20)
	setDuration(&h.AttemptLogMaxAge, 7*24*time.Hour)
	setInt(&h.AttemptLogMaxBytes, 128<<20)
}

// SetDefaults fills the unset limits of the ingest API.
func (i *Ingest) SetDefaults() {
	setInt(&i.MaxBodyBytes, routing.MaxEventBytes)
	setInt(&i.MaxBatchEvents, 100)
	setInt(&i.MaxConcurrent, 128)
	setDuration(&i.BodyTimeout, 10*time.Second)
}

// SetDefaults fills the unset bounds of the engine.
func (d *Delivery) SetDefaults() {
	setDuration(&d.AckWait, 2*time.Minute)
	setInt(&d.MaxHeld, 100_000)
	setDuration(&d.MaxHeldAge, 72*time.Hour)
}

// SetDefaults fills the unset intervals.
func (s *Status) SetDefaults() {
	setDuration(&s.Interval, 5*time.Second)
	setDuration(&s.OperationalEventsInterval, time.Minute)
}

func setDuration(d *time.Duration, def time.Duration) {
	if *d <= 0 {
		*d = def
	}
}

func setInt[T int | int64](n *T, def T) {
	if *n <= 0 {
		*n = def
	}
}
