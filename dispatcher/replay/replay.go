// Package replay re-sends an endpoint's stored deliveries by selection — dead letters
// and the delivered deliveries still retained — in the background, with its progress
// (selected / re-sent / remaining) on the endpoint's status and an Event when done. It
// also records the history it replays from: every attempt in the attempt log, every
// delivered delivery in the retention stream (Recorder, an engine Observer).
package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"golang.org/x/time/rate"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// Selection says what a replay re-sends.
type Selection struct {
	// Since and Until select the events accepted in [Since, Until); zero is open.
	Since, Until time.Time
	EventType    string
	EventIDs     []string
	// DeadLetters and Delivered choose the sources; at least one is set.
	DeadLetters, Delivered bool
}

// ParseTime reads a bound of a time range: RFC 3339, or a duration before now ("2h").
func ParseTime(v string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, v); err == nil {
		return t, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time (2026-11-30T10:00:00Z) nor a duration before now (2h)", v)
	}
	return now.Add(-d), nil
}

// ParseSources reads a comma-separated list of sources (dead-letters, delivered, all).
func ParseSources(v string) (deadLetters, delivered bool, err error) {
	for s := range strings.SplitSeq(v, ",") {
		switch strings.TrimSpace(s) {
		case queue.FromDeadLetters:
			deadLetters = true
		case queue.FromDelivered:
			delivered = true
		case "all":
			deadLetters, delivered = true, true
		default:
			return false, false, fmt.Errorf("source %q is not one of %s, %s, all", s, queue.FromDeadLetters, queue.FromDelivered)
		}
	}
	return deadLetters, delivered, nil
}

// ParseAnnotation reads the selection written in the replay annotation's value:
// space-separated key=value pairs (since, until, type, ids, from). A value without any
// pair is the annotation's first form: every dead letter.
func ParseAnnotation(v string, now time.Time) (Selection, error) {
	sel := Selection{DeadLetters: true}
	if !strings.Contains(v, "=") {
		return sel, nil
	}
	var err error
	for field := range strings.FieldsSeq(v) {
		key, val, ok := strings.Cut(field, "=")
		if !ok {
			return sel, fmt.Errorf("%q is not key=value", field)
		}
		switch key {
		case "since":
			sel.Since, err = ParseTime(val, now)
		case "until":
			sel.Until, err = ParseTime(val, now)
		case "type":
			sel.EventType = val
		case "ids":
			sel.EventIDs = strings.Split(val, ",")
		case "from":
			sel.DeadLetters, sel.Delivered, err = ParseSources(val)
		default:
			err = fmt.Errorf("unknown key %q (since, until, type, ids, from)", key)
		}
		if err != nil {
			return sel, err
		}
	}
	return sel, sel.Validate()
}

// Validate says what is wrong with a selection, in the words of its fields.
func (s Selection) Validate() error {
	switch {
	case !s.DeadLetters && !s.Delivered:
		return errors.New("choose what to replay from: dead-letters, delivered, or both")
	case !s.Since.IsZero() && !s.Until.IsZero() && !s.Until.After(s.Since):
		return fmt.Errorf("until (%s) must be after since (%s)", s.Until.Format(time.RFC3339), s.Since.Format(time.RFC3339))
	}
	return nil
}

// String writes the selection as status.replay.selection shows it.
func (s Selection) String() string {
	var parts []string
	if !s.Since.IsZero() {
		parts = append(parts, "since="+s.Since.UTC().Format(time.RFC3339))
	}
	if !s.Until.IsZero() {
		parts = append(parts, "until="+s.Until.UTC().Format(time.RFC3339))
	}
	if s.EventType != "" {
		parts = append(parts, "type="+s.EventType)
	}
	if len(s.EventIDs) > 0 {
		parts = append(parts, "ids="+strings.Join(s.EventIDs, ","))
	}
	var from []string
	if s.DeadLetters {
		from = append(from, queue.FromDeadLetters)
	}
	if s.Delivered {
		from = append(from, queue.FromDelivered)
	}
	return strings.Join(append(parts, "from="+strings.Join(from, ",")), " ")
}

func (s Selection) filter() queue.DeadLetterFilter {
	return queue.DeadLetterFilter{Since: s.Since, Until: s.Until, EventType: s.EventType, EventIDs: slices.Clone(s.EventIDs)}
}

// Store is what a replay needs of the queue.
type Store interface {
	Select(ctx context.Context, namespace, endpoint string, f queue.DeadLetterFilter, deadLetters, delivered bool) ([]queue.ReplayItem, error)
	Resend(ctx context.Context, it queue.ReplayItem, replayID string) error
}

// Progress is told how a replay goes; package outcome puts it on the endpoint's status
// (shared by the replicas) and sends the Event when it ends.
type Progress interface {
	ReplayProgress(ctx context.Context, k delivery.Key, st heraldv1.ReplayStatus) error
}

// Options configure a Replayer.
type Options struct {
	Store    Store
	Progress Progress
	// Rate bounds the re-sends per second (0: as fast as the store takes them).
	Rate float64
	// Interval is how often progress is written while a replay runs (default 1s).
	Interval time.Duration
	Log      logr.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Replayer runs replays, one at a time per endpoint.
type Replayer struct {
	opts Options
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	running map[delivery.Key]string
}

// New returns a Replayer; Stop ends its replays.
func New(o Options) *Replayer {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Replayer{opts: o, ctx: ctx, stop: cancel, running: map[delivery.Key]string{}}
}

// ErrBusy is returned by Start while another replay of the endpoint runs here.
var ErrBusy = errors.New("a replay of this endpoint is running")

// Start selects what sel names and re-sends it in the background. It returns once the
// selection is made (and on status), with the number selected.
func (r *Replayer) Start(ctx context.Context, k delivery.Key, id string, sel Selection) (int64, error) {
	if err := sel.Validate(); err != nil {
		return 0, err
	}
	r.mu.Lock()
	if cur, ok := r.running[k]; ok {
		r.mu.Unlock()
		return 0, fmt.Errorf("%w (%s)", ErrBusy, cur)
	}
	r.running[k] = id
	r.mu.Unlock()
	release := func() {
		r.mu.Lock()
		delete(r.running, k)
		r.mu.Unlock()
	}
	items, err := r.opts.Store.Select(ctx, k.Namespace, k.Name, sel.filter(), sel.DeadLetters, sel.Delivered)
	if err != nil {
		release()
		return 0, fmt.Errorf("selecting: %w", err)
	}
	st := heraldv1.ReplayStatus{
		ID: id, Selection: sel.String(), State: heraldv1.ReplayRunning,
		Selected: int64(len(items)), Remaining: int64(len(items)),
		StartTime: metaNow(r.opts.Now()),
	}
	if len(items) == 0 {
		// Nothing to run in the background: done now, and the endpoint is free for the
		// next replay at once.
		defer release()
		st.State, st.CompletionTime = heraldv1.ReplayComplete, ptr(metaNow(r.opts.Now()))
	}
	if err := r.opts.Progress.ReplayProgress(ctx, k, st); err != nil {
		release()
		return 0, fmt.Errorf("writing replay progress: %w", err)
	}
	if len(items) == 0 {
		return 0, nil
	}
	r.opts.Log.Info("replay started", "endpoint", k.String(), "replay", id, "selection", st.Selection, "selected", len(items))
	r.wg.Go(func() {
		defer release()
		r.run(k, st, items)
	})
	return st.Selected, nil
}

func (r *Replayer) run(k delivery.Key, st heraldv1.ReplayStatus, items []queue.ReplayItem) {
	ctx := r.ctx
	// Progress is paced by the wall clock: Now may be a test's, standing still.
	last := time.Now()
	var gone int64
	var failure error
	var limit *rate.Limiter
	if r.opts.Rate > 0 {
		limit = rate.NewLimiter(rate.Limit(r.opts.Rate), 1)
	}
	for _, it := range items {
		if limit != nil {
			if failure = limit.Wait(ctx); failure != nil {
				break
			}
		}
		err := r.opts.Store.Resend(ctx, it, st.ID)
		for attempt := 1; err != nil && !errors.Is(err, queue.ErrGone) && attempt < 5 && ctx.Err() == nil; attempt++ {
			// The store may be moving to another server; a replay is not worth failing
			// for a moment's unavailability.
			select {
			case <-time.After(time.Duration(attempt) * time.Second):
			case <-ctx.Done():
			}
			err = r.opts.Store.Resend(ctx, it, st.ID)
		}
		switch {
		case errors.Is(err, queue.ErrGone):
			gone++
		case err != nil:
			failure = err
		default:
			st.Resent++
		}
		if failure != nil {
			break
		}
		st.Remaining--
		if now := time.Now(); now.Sub(last) >= r.opts.Interval {
			last = now
			if err := r.opts.Progress.ReplayProgress(ctx, k, st); err != nil {
				r.opts.Log.Error(err, "writing replay progress", "endpoint", k.String(), "replay", st.ID)
			}
		}
	}
	st.State, st.CompletionTime = heraldv1.ReplayComplete, ptr(metaNow(r.opts.Now()))
	switch {
	case ctx.Err() != nil:
		st.State, st.Message = heraldv1.ReplayFailed, fmt.Sprintf("the dispatcher stopped after %d re-sent; start the replay again for the rest", st.Resent)
	case failure != nil:
		st.State, st.Message = heraldv1.ReplayFailed, fmt.Sprintf("stopped after %d re-sent: %v", st.Resent, failure)
	case gone > 0:
		st.Message = fmt.Sprintf("%d selected were no longer stored (retention ended, or another replay took them)", gone)
	}
	// The last word must reach status even while the dispatcher shuts down.
	wctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := r.opts.Progress.ReplayProgress(wctx, k, st); err != nil {
		r.opts.Log.Error(err, "writing replay progress", "endpoint", k.String(), "replay", st.ID)
	}
	r.opts.Log.Info("replay ended", "endpoint", k.String(), "replay", st.ID, "state", st.State,
		"selected", st.Selected, "resent", st.Resent, "remaining", st.Remaining)
}

// Stop ends the running replays (their status says where they stopped) and waits.
func (r *Replayer) Stop() {
	r.stop()
	r.wg.Wait()
}

func metaNow(t time.Time) metav1.Time { return metav1.NewTime(t.UTC().Truncate(time.Second)) }

func ptr[T any](v T) *T { return &v }
