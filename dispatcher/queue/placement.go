package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// placement is how many copies of each stream and bucket Herald asks NATS for, and why.
type placement struct {
	replicas int
	// auto is set when Herald chose the count, which it may then lower to what the
	// cluster can hold; a count the operator set is kept or refused, never changed.
	auto bool
	why  string
}

// Herald's default on a cluster: one node can be lost, with its disk, without losing a
// stored delivery or stopping ingest (a three-copy stream keeps a quorum of two).
const clusteredReplicas = 3

// placementPatience is how long a count Herald chose is retried before it is lowered: a
// cluster that has just formed may not yet know all its servers.
const placementPatience = 15 * time.Second

// choosePlacement decides the replica count before anything is created.
func (s *jsStore) choosePlacement(ctx context.Context) (placement, error) {
	switch {
	case s.opts.Replicas > 0:
		return placement{replicas: s.opts.Replicas, why: "set by --nats-replicas"}, nil
	case s.embedded != nil:
		return placement{replicas: 1, auto: true, why: "the embedded server is one node"}, nil
	case s.nc.ConnectedClusterName() == "":
		s.opts.Log.Info("WARNING: the NATS server is not clustered, so Herald's streams have one copy: losing that server's disk loses the deliveries waiting in it; run a 3-node cluster to scale out safely",
			"server", s.nc.ConnectedUrlRedacted())
		return placement{replicas: 1, auto: true, why: "the NATS server is not clustered"}, nil
	}
	n := clusteredReplicas
	// Never fewer copies than an existing stream has: an operator who scaled the
	// streams up by hand keeps them; one placed with fewer (an older default) is
	// updated in place to the new count.
	st, err := s.js.Stream(ctx, DeliveriesStream)
	switch {
	case err == nil:
		n = max(n, st.CachedInfo().Config.Replicas)
	case !errors.Is(err, jetstream.ErrStreamNotFound) && !transient(err):
		return placement{}, fmt.Errorf("reading stream %s: %w", DeliveriesStream, err)
	}
	return placement{replicas: n, auto: true, why: fmt.Sprintf("%d copies on a NATS cluster", n)}, nil
}

// JetStream's error codes for a stream it cannot place.
const (
	codeNoSuitablePeers       = 10005 // "no suitable peers for placement[, peer offline][, insufficient storage]"
	codeReplicasNotSupported  = 10074 // "replicas > 1 not supported in non-clustered mode"
	codeStorageExceeded       = 10047 // "insufficient storage resources available"
	codeInsufficientResources = 10023 // "insufficient resources"
)

func placementFailed(err error) bool {
	var apiErr *jetstream.APIError
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.ErrorCode {
	case codeNoSuitablePeers, codeReplicasNotSupported, codeStorageExceeded, codeInsufficientResources:
		return true
	}
	return false
}

func storageShort(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == codeStorageExceeded || apiErr.ErrorCode == codeInsufficientResources ||
		strings.Contains(apiErr.Description, "insufficient storage"))
}

// patient reports whether a placement failure may go away by itself: a server offline
// may come back, a cluster still forming may complete. Missing storage or a server that
// is not clustered will not.
func (p placement) patient(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == codeNoSuitablePeers && !storageShort(err)
}

// stepDown lowers a count Herald chose once the cluster has had time to show all its
// servers: a two-node cluster gets two copies. Never when a server is merely offline,
// which would make the loss of one more server lose data.
func (p placement) stepDown(elapsed time.Duration, err error) (placement, bool) {
	var apiErr *jetstream.APIError
	if !p.auto || p.replicas <= 1 || elapsed < placementPatience || !errors.As(err, &apiErr) ||
		apiErr.ErrorCode != codeNoSuitablePeers || strings.Contains(apiErr.Description, "offline") || storageShort(err) {
		return p, false
	}
	return placement{replicas: p.replicas - 1, auto: true, why: fmt.Sprintf("the NATS cluster holds only %d copies", p.replicas-1)}, true
}

// explain turns a placement failure into a startup error that says what to change.
func (p placement) explain(err error) error {
	if !placementFailed(err) {
		return err
	}
	var apiErr *jetstream.APIError
	errors.As(err, &apiErr)
	var hint string
	switch {
	case apiErr.ErrorCode == codeReplicasNotSupported:
		hint = "the NATS server is not clustered; point --nats-url at a cluster, or set --nats-replicas=1 (chart: dispatcher.nats.streamReplicas)"
	case storageShort(err):
		hint = "the NATS servers cannot reserve the stream's byte limit; lower --max-pending-bytes or --dead-letter-max-bytes (chart: dispatcher.nats.maxPendingBytes, deadLetterMaxBytes), or give the servers more max_file_store"
	default:
		hint = fmt.Sprintf("the cluster needs %d JetStream servers online with room; start them, or set --nats-replicas (chart: dispatcher.nats.streamReplicas) to fewer", p.replicas)
	}
	return fmt.Errorf("NATS cannot place Herald's streams with %d replicas (%s): %w; %s", p.replicas, p.why, err, hint)
}
