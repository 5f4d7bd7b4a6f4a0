package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// How often the store checks that it can take writes, while it can and while it cannot.
// A write normally commits within milliseconds (p99 113 ms in the chaos suite under full
// load on 2 cores); a probe unanswered for 1.5s means the stream cannot take writes, and
// readiness follows within about 2.5s of a fault (it took 6-7s with a 2s interval and a
// 3s timeout, which the chaos suite's partition scenario refused).
const (
	probeInterval     = time.Second
	probeIntervalDown = 500 * time.Millisecond
	probeTimeout      = 1500 * time.Millisecond
)

// health is the one answer to "can the store take writes now?", kept by a probe: the
// dispatcher's readiness, ingest's fast 503 and the pause of deliveries all read it.
type health struct {
	mu   sync.Mutex
	err  error         // why the store cannot take writes; nil when it can
	up   chan struct{} // closed while err is nil
	kick chan struct{}
	// lost counts the connection's drops: a probe that began before the last drop
	// proves nothing about the connection after it.
	lost uint64
	stop chan struct{}
	done chan struct{}
}

// Writable reports why the store cannot take writes right now, or nil when it can. It
// follows the probe, which asks the delivery stream's leader; a store whose connection
// is down is unwritable at once.
func (s *jsStore) Writable() error {
	if s.nc == nil || !s.nc.IsConnected() {
		return fmt.Errorf("%w: not connected to NATS", ErrUnavailable)
	}
	s.health.mu.Lock()
	defer s.health.mu.Unlock()
	return s.health.err
}

// WaitWritable blocks until the store can take writes or ctx ends.
func (s *jsStore) WaitWritable(ctx context.Context) error {
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
func (s *jsStore) suspect() {
	s.health.mu.Lock()
	kick := s.health.kick
	s.health.mu.Unlock()
	select {
	case kick <- struct{}{}:
	default:
	}
}

func (s *jsStore) startProbe() {
	h := &s.health
	h.mu.Lock()
	h.up, h.kick, h.stop, h.done = make(chan struct{}), make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	close(h.up)
	h.mu.Unlock()
	go s.probeLoop()
}

// connectionLost marks the store unwritable when the connection to NATS drops. The
// connection may be back on another server within milliseconds, where the stream may
// have no quorum: only the probe's next success over the new connection clears this.
func (s *jsStore) connectionLost(err error) {
	if err == nil {
		err = errors.New("disconnected")
	}
	h := &s.health
	h.mu.Lock()
	if h.stop == nil {
		h.mu.Unlock()
		return
	}
	select {
	case <-h.stop:
		// The store is closing and dropped the connection itself: not an outage.
		h.mu.Unlock()
		return
	default:
	}
	h.lost++
	h.mu.Unlock()
	s.setWritable(fmt.Errorf("%w: connection to NATS lost: %v", ErrUnavailable, err))
	s.suspect()
}

func (s *jsStore) stopProbe() {
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

func (s *jsStore) probeLoop() {
	h := &s.health
	defer close(h.done)
	for {
		h.mu.Lock()
		lost := h.lost
		h.mu.Unlock()
		err := s.probe()
		h.mu.Lock()
		stale := err == nil && h.lost != lost
		h.mu.Unlock()
		if !stale {
			s.setWritable(err)
		}
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

// probeSubject is in the delivery stream but no endpoint's: "-" is not a namespace.
const probeSubject = deliverySubjectPrefix + "-.probe"

// probe writes to the delivery stream, as ingest does, and removes what it wrote (two
// small writes a second per dispatcher). Only a
// write proves the stream can take writes: a leader cut off from its quorum still
// answers reads (stream info) for as long as it believes it leads (over 45s in
// TestStore_QuorumLostAndBack), but what it is asked to store is never acknowledged.
func (s *jsStore) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
	defer cancel()
	_, err := s.js.Publish(ctx, probeSubject, nil)
	switch {
	case err == nil:
		// Best effort: a probe left behind is removed by the next one.
		_ = s.deliveries.Purge(ctx, jetstream.WithPurgeSubject(probeSubject))
		return nil
	case full(err):
		// Full is not down: ingest answers 429 and deliveries drain it.
		return nil
	case errors.Is(err, ErrUnavailable):
		return err
	}
	return fmt.Errorf("%w: the delivery stream takes no writes: %v", ErrUnavailable, err)
}

func (s *jsStore) setWritable(err error) {
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
