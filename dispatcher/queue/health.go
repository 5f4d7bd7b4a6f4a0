package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// How often the store checks that it can take writes, while it can and while it cannot.
const (
	probeInterval     = 2 * time.Second
	probeIntervalDown = 500 * time.Millisecond
	probeTimeout      = 3 * time.Second
)

// health is the one answer to "can the store take writes now?", kept by a probe: the
// dispatcher's readiness, ingest's fast 503 and the pause of deliveries all read it.
type health struct {
	mu   sync.Mutex
	err  error         // why the store cannot take writes; nil when it can
	up   chan struct{} // closed while err is nil
	kick chan struct{}
	stop chan struct{}
	done chan struct{}
}

// Writable reports why the store cannot take writes right now, or nil when it can. It
// follows the probe, which asks the delivery stream's leader; a store whose connection
// is down is unwritable at once.
func (s *Store) Writable() error {
	if s.nc == nil || !s.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS", ErrUnavailable)
	}
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return s.health.err
}

// WaitWritable blocks until the store can take writes or ctx ends.
func (s *Store) WaitWritable(ctx context.Context) error {
	for {
		if s.Writable() == nil {
			return nil
		}
		s.health.mu.Lock()
		up := s.health.up
		s.health.mu.Unlock()
		select {
		case <-up:
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(probeIntervalDown):
			// The connection may come back without the probe's verdict changing.
		}
	}
}

// suspect asks the probe to look now: a request just failed in a way that says the
// store may be unavailable. The probe, not the failed request, decides.
func (s *Store) suspect() {
	select {
	case s.health.kick <- struct{}{}:
	default:
	}
}

func (s *Store) startProbe() {
	h := &s.health
	h.up, h.kick, h.stop, h.done = make(chan struct{}), make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	close(h.up)
	go s.probeLoop()
}

func (s *Store) stopProbe() {
	if s.health.stop == nil {
		return
	}
	select {
	case <-s.health.stop:
	default:
		close(s.health.stop)
	}
	<-s.health.done
}

func (s *Store) probeLoop() {
	h := &s.health
	defer close(h.done)
	for {
		err := s.probe()
		s.setWritable(err)
		interval := probeInterval
		if err != nil {
			interval = probeIntervalDown
		}
		select {
		case <-h.stop:
			return
		case <-h.kick:
		case <-time.After(interval):
		}
	}
}

// probe asks the leader of the delivery stream for the stream's state: answered only
// while the stream has a leader, which is what every write needs.
func (s *Store) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	if _, err := s.deliveries.Info(ctx); err != nil {
		if errors.Is(err, ErrUnavailable) {
			return err
		}
		return fmt.Errorf("%w: the delivery stream does not answer: %v", ErrUnavailable, err)
	}
	return nil
}

func (s *Store) setWritable(err error) {
	h := &s.health
	h.mu.Lock()
	defer h.mu.Unlock()
	switch {
	case err == nil && h.err != nil:
		s.opts.Log.Info("the store takes writes again")
		h.err = nil
		close(h.up)
	case err != nil && h.err == nil:
		s.opts.Log.Error(err, "the store cannot take writes; ingest answers 503 and deliveries wait until it can")
		h.err = err
		h.up = make(chan struct{})
	case err != nil:
		h.err = err
	}
}
