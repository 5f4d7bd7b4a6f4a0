package outcome

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// State is the shared state of one endpoint. Every replica reads and writes it through
// compare-and-set, so two replicas never disagree on whether an endpoint is disabled.
type State struct {
	ConsecutiveFailures int32     `json:"failures"`
	Disabled            bool      `json:"disabled,omitempty"`
	DisabledAt          time.Time `json:"disabledAt,omitzero"`
	DisabledReason      string    `json:"disabledReason,omitempty"`
	DisabledMessage     string    `json:"disabledMessage,omitempty"`
	// DisabledGeneration is the endpoint's generation when it was disabled; a newer
	// generation (a spec edit) re-enables it.
	DisabledGeneration int64 `json:"disabledGeneration,omitempty"`
	// LastReenable is the last value of the re-enable annotation acted on.
	LastReenable string `json:"lastReenable,omitempty"`
	// LastReplay is the last value of the replay annotation acted on.
	LastReplay string `json:"lastReplay,omitempty"`
	// Replay is the progress of the endpoint's latest replay by selection.
	Replay *heraldv1.ReplayStatus `json:"replay,omitempty"`
	// ReplayBeat is when the running replay last reported; one silent for longer than
	// staleReplay lost its dispatcher (a crash) and is marked Failed.
	ReplayBeat time.Time `json:"replayBeat,omitzero"`
	// LastAttempt and LastSuccess, the newest any replica saw.
	LastAttempt *heraldv1.DeliveryAttempt `json:"lastAttempt,omitempty"`
	LastSuccess time.Time                 `json:"lastSuccess,omitzero"`
	// Counters, summed over all replicas.
	Delivered      int64 `json:"delivered"`
	FailedAttempts int64 `json:"failedAttempts"`
	DeadLettered   int64 `json:"deadLettered"`
	// TransformErrors counts the events the endpoint's transform failed on while the
	// endpoint was at TransformGeneration (a spec change starts the count afresh);
	// LastTransformError says which event and why.
	TransformErrors     int64  `json:"transformErrors,omitempty"`
	TransformGeneration int64  `json:"transformGeneration,omitempty"`
	LastTransformError  string `json:"lastTransformError,omitempty"`
}

// stateKind is the kind of an endpoint's state key in the bucket; the key ends in the
// endpoint's namespace, name and UID (queue.EndpointKey), so that an endpoint created
// again under a deleted one's name starts afresh and the purge of the deleted one's data
// takes its state too.
const stateKind = "ep"

func stateKey(k delivery.Key) string { return queue.EndpointKey(stateKind, k) }

func parseStateKey(key string) (delivery.Key, bool) {
	kind, k, ok := queue.ParseEndpointKey(key)
	return k, ok && kind == stateKind
}

// states wraps the bucket with a compare-and-set update loop.
type states struct{ kv jetstream.KeyValue }

// update applies mutate to the current state until the compare-and-set succeeds. mutate
// returns false when nothing needs writing.
func (s states) update(ctx context.Context, key string, mutate func(*State) bool) (State, bool, error) {
	for attempt := 0; attempt < 50; attempt++ {
		var st State
		var rev uint64
		e, err := s.kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return st, false, fmt.Errorf("reading endpoint state: %w", err)
		default:
			rev = e.Revision()
			if err := json.Unmarshal(e.Value(), &st); err != nil {
				return st, false, fmt.Errorf("decoding endpoint state: %w", err)
			}
		}
		if !mutate(&st) {
			return st, false, nil
		}
		raw, _ := json.Marshal(st)
		if rev == 0 {
			_, err = s.kv.Create(ctx, key, raw)
		} else {
			_, err = s.kv.Update(ctx, key, raw, rev)
		}
		if err == nil {
			return st, true, nil
		}
		if !isConflict(err) {
			return st, false, fmt.Errorf("writing endpoint state: %w", err)
		}
	}
	return State{}, false, errors.New("writing endpoint state: too much contention")
}

func isConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) {
		return true
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
		return true
	}
	return strings.Contains(err.Error(), "wrong last sequence")
}

func (s states) get(ctx context.Context, key string) (State, error) {
	var st State
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("reading endpoint state: %w", err)
	}
	return st, json.Unmarshal(e.Value(), &st)
}
