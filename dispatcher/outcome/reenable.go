package outcome

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
)

// Reenable clears the disabled flag and the failure count. token is the re-enable
// annotation's value (empty for a spec change or an API call). It reports whether this
// call made the transition.
func (t *Tracker) Reenable(ctx context.Context, k delivery.Key, token, why string) (bool, error) {
	var transitioned bool
	st, _, err := t.states.update(ctx, stateKey(k), func(s *State) bool {
		transitioned = s.Disabled
		changed := s.Disabled || s.ConsecutiveFailures != 0 || (token != "" && s.LastReenable != token)
		s.Disabled, s.DisabledAt, s.DisabledReason, s.DisabledMessage, s.DisabledGeneration = false, time.Time{}, "", "", 0
		s.ConsecutiveFailures = 0
		if token != "" {
			s.LastReenable = token
		}
		return changed
	})
	if err != nil {
		return false, err
	}
	t.remember(k, st, nil)
	if transitioned {
		t.log.Info("endpoint re-enabled", "endpoint", k.String(), "why", why)
		t.events.normal(k, heraldv1.EventEndpointEnabled, "Enable", "re-enabled ("+why+"); held deliveries flow again, oldest first")
		t.ops.endpointEnabled(k, why)
		// The shared-state watch would notice too, but this replica already remembers
		// the new state, so it would see no change: rebuild the configuration now.
		t.notify(k)
	}
	return transitioned, nil
}

// claimReplay records the replay annotation value as handled; it reports false when it
// was already handled (by this or another replica): exactly one replica acts on it.
func (t *Tracker) claimReplay(ctx context.Context, k delivery.Key, token string) (bool, error) {
	st, changed, err := t.states.update(ctx, stateKey(k), func(s *State) bool {
		if s.LastReplay == token {
			return false
		}
		s.LastReplay = token
		return true
	})
	if err != nil {
		return false, err
	}
	t.remember(k, st, nil)
	return changed, nil
}

// ReplayProgress puts a replay's progress into the endpoint's shared state, from which
// every replica writes status.replay; a replay that ended gets its Event.
func (t *Tracker) ReplayProgress(ctx context.Context, k delivery.Key, p heraldv1.ReplayStatus) error {
	st, _, err := t.states.update(ctx, stateKey(k), func(s *State) bool {
		s.Replay, s.ReplayBeat = p.DeepCopy(), t.now()
		return true
	})
	if err != nil {
		return err
	}
	t.remember(k, st, nil)
	switch p.State {
	case heraldv1.ReplayComplete:
		note := fmt.Sprintf("replay %s re-sent %d of %d selected (%s)", p.ID, p.Resent, p.Selected, p.Selection)
		if p.Message != "" {
			note += "; " + p.Message
		}
		t.events.normal(k, heraldv1.EventReplayCompleted, "Replay", note)
		t.ops.replayEnded(k, p)
	case heraldv1.ReplayFailed:
		t.events.warning(k, heraldv1.EventReplayFailed, "Replay", fmt.Sprintf("replay %s: %s", p.ID, p.Message))
		t.ops.replayEnded(k, p)
	}
	return nil
}

// staleReplay is how long a running replay may go without reporting before it is taken
// for lost: it reports at least every second while it re-sends, and a store that does
// not answer makes it give up well within this.
const staleReplay = 2 * time.Minute

// orphaned marks a replay whose dispatcher stopped without saying so (a crash) as
// Failed, so that status does not say Running for ever; it reports whether it did.
func (t *Tracker) orphaned(s *State) bool {
	r := s.Replay
	if r == nil || r.State != heraldv1.ReplayRunning || s.ReplayBeat.IsZero() || t.now().Sub(s.ReplayBeat) < staleReplay {
		return false
	}
	r.State = heraldv1.ReplayFailed
	r.Message = fmt.Sprintf("the dispatcher running it stopped after %d re-sent (no progress since %s); start the replay again for the rest",
		r.Resent, s.ReplayBeat.UTC().Format(time.RFC3339))
	now := metav1.NewTime(t.now().UTC().Truncate(time.Second))
	r.CompletionTime = &now
	return true
}
