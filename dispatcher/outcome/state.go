package outcome

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

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
	// Counters, as releases before layout 2 kept them here (summed over the replicas at
	// every status interval). Since then they are the queue's (queue.Tally, exact across
	// crashes); these are never written again and are added to the tally's on status.
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

// SharedState is what outcome needs of the queue: its per-endpoint records shared by
// the replicas, changed by compare-and-set (queue.Store).
type SharedState interface {
	ReadState(ctx context.Context, key string) ([]byte, bool, error)
	UpdateState(ctx context.Context, key string, mutate func(cur []byte) ([]byte, bool, error)) ([]byte, bool, error)
	WatchState(ctx context.Context, kinds []string, fn func(kind string, ep queue.Endpoint, value []byte)) error
	TallyOf(ctx context.Context, ep queue.Endpoint) (queue.Tally, error)
}

var _ SharedState = queue.Store(nil)

// states reads and changes State records in the shared state.
type states struct{ store SharedState }

// update applies mutate to the current state until the compare-and-set succeeds. mutate
// returns false when nothing needs writing.
func (s states) update(ctx context.Context, key string, mutate func(*State) bool) (State, bool, error) {
	var st State
	raw, changed, err := s.store.UpdateState(ctx, key, func(cur []byte) ([]byte, bool, error) {
		st = State{}
		if cur != nil {
			if err := json.Unmarshal(cur, &st); err != nil {
				return nil, false, fmt.Errorf("decoding endpoint state: %w", err)
			}
		}
		if !mutate(&st) {
			return nil, false, nil
		}
		next, err := json.Marshal(st)
		return next, true, err
	})
	if err != nil {
		return State{}, false, fmt.Errorf("endpoint state: %w", err)
	}
	if !changed && raw != nil {
		st = State{}
		_ = json.Unmarshal(raw, &st)
	}
	return st, changed, nil
}

func (s states) get(ctx context.Context, key string) (State, error) {
	var st State
	raw, ok, err := s.store.ReadState(ctx, key)
	if err != nil || !ok {
		return st, err
	}
	return st, json.Unmarshal(raw, &st)
}
