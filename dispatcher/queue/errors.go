package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

var (
	// ErrQueueFull is returned when the delivery stream, or the NATS servers' storage
	// under it, is at its limit: a producer should slow down (ingest answers 429).
	ErrQueueFull = errors.New("delivery queue is full")
	// ErrUnavailable is returned when the store cannot take the request right now but a
	// later try can succeed: no connection, no stream leader, a leader being elected
	// (ingest answers 503 with Retry-After, and the dispatcher reports itself not ready).
	ErrUnavailable = errors.New("delivery store is unavailable")
)

// storeError sorts a failed store request into ErrQueueFull, ErrUnavailable or
// neither, keeping the cause. An unavailable store is also reported to the probe, which
// then looks at once instead of at its next tick.
func (s *jsStore) storeError(err error) error {
	switch {
	case err == nil:
		return nil
	case full(err):
		return fmt.Errorf("%w: %v", ErrQueueFull, err)
	case transient(err):
		s.suspect()
		return fmt.Errorf("%w: %v", ErrUnavailable, err)
	}
	return err // the caller says what it was doing
}

func full(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "maximum messages exceeded") || strings.Contains(msg, "maximum bytes exceeded") ||
		strings.Contains(msg, "insufficient resources") || strings.Contains(msg, "insufficient storage resources")
}

// transient reports whether a store request failed in a way a later try may not: the
// one judge of "try again" for stream setup, ingest and settling deliveries alike.
//
// What a JetStream cluster answers while it cannot take writes (seen against a 3-node
// nats-server cluster with the stream leader's node killed): "no response from stream"
// while no leader is elected, "timeout waiting for ack" for pipelined publishes, the
// client's own timeout or context deadline, no responders while the connection moves
// to another server, and API errors with code 503 ("JetStream system temporarily
// unavailable") while the meta leader is elected.
func transient(err error) bool {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders), errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionReconnecting), errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, jetstream.ErrAsyncPublishTimeout),
		errors.Is(err, jetstream.ErrTooManyStalledMsgs), errors.Is(err, jetstream.ErrJetStreamNotEnabled):
		return true
	case errors.As(err, &apiErr):
		return apiErr.Code == 503
	}
	return false
}
