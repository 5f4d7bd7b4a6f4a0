// Package replay re-sends an endpoint's stored deliveries by selection — dead letters
// and the delivered deliveries still retained — with its progress (selected / re-sent /
// remaining) on the endpoint's status and an Event when done. It is the one way to
// replay: the annotation, the endpoint API's replays and its dead-letter replay are all
// selections handed to the Replayer, which runs one replay per endpoint across every
// dispatcher replica (a lease in the store) at a bounded rate and logs who asked. It also
// records the history it replays from: every attempt in the attempt log, every delivered
// delivery in the retention stream (Recorder, an engine Observer).
package replay

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
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
	// Sequences selects dead letters by their sequence, as the dead-letter listing
	// shows it (with DeadLetters alone).
	Sequences []uint64
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
// pair is the annotation's first form (a timestamp, a counter): every dead letter.
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
	case len(s.Sequences) > 0 && s.Delivered:
		return errors.New("sequences name dead letters: replay them from dead-letters alone")
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
	if len(s.Sequences) > 0 {
		seqs := make([]string, len(s.Sequences))
		for i, n := range s.Sequences {
			seqs[i] = strconv.FormatUint(n, 10)
		}
		parts = append(parts, "sequences="+strings.Join(seqs, ","))
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

func (s Selection) filter() queue.Filter {
	return queue.Filter{Since: s.Since, Until: s.Until, EventType: s.EventType,
		EventIDs: slices.Clone(s.EventIDs), Sequences: slices.Clone(s.Sequences)}
}

// Store is what a replay needs of the queue: the selection, the re-sending, and the
// lease that makes a replay the endpoint's only one across replicas.
type Store interface {
	Select(ctx context.Context, ep queue.Endpoint, f queue.Filter, deadLetters, delivered bool) ([]queue.ReplayItem, error)
	Resend(ctx context.Context, it queue.ReplayItem, replayID string) error
	Lease(ctx context.Context, key, holder string, ttl time.Duration) (bool, error)
	ReleaseLease(ctx context.Context, key, holder string) error
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
	// Rate bounds the re-sends per second of one replay; 0 for no bound but the store's.
	// The dispatcher's configuration sets it (history.replayRate, whose default is
	// config.DefaultReplayRate: a fraction of what one endpoint delivers, so live
	// events keep flowing beside a replay).
	Rate float64
	// Interval is how often progress is written while a replay runs (default 1s).
	Interval time.Duration
	// Instance names this dispatcher replica in the replay lease.
	Instance string
	// LeaseTTL is how long the replay lease outlives its last renewal (default 30s): a
	// replica that crashed mid-replay frees the endpoint for another replay after it.
	LeaseTTL time.Duration
	Log      logr.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Replayer runs replays, one at a time per endpoint across every replica.
type Replayer struct {
	opts Options
	ctx  context.Context
	stop context.CancelFunc
	wg   sync.WaitGroup
}

// New returns a Replayer; Stop ends its replays.
func New(o Options) *Replayer {
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Replayer{opts: o, ctx: ctx, stop: cancel}
}

// ErrBusy is returned while another replay of the endpoint runs, on any replica.
var ErrBusy = errors.New("a replay of this endpoint is running")

// Request is one replay: its id (shown on status.replay), what it selects, and who asked
// ("user alice", "annotation by kubectl-annotate"), for the log.
type Request struct {
	ID        string
	Selection Selection
	By        string
}

// replayLease is the kind of the per-endpoint replay lease's key.
const replayLease = "replay"

// running is a replay that holds its endpoint's lease.
type running struct {
	k      delivery.Key
	req    Request
	holder string
	st     heraldv1.ReplayStatus
	items  []queue.ReplayItem
	// renewed ends the lease's renewals.
	renewed context.CancelFunc
	done    chan struct{}
}

// Start selects what req names and re-sends it in the background. It returns once the
// selection is made (and on status), with the number selected.
func (r *Replayer) Start(ctx context.Context, k delivery.Key, req Request) (int64, error) {
	run, err := r.begin(ctx, k, req)
	if err != nil || run == nil {
		return 0, err
	}
	r.wg.Go(func() { r.run(r.ctx, run) })
	return run.st.Selected, nil
}

// Run is Start waiting for the replay to end: the endpoint API's dead-letter replay
// answers with what was re-sent. Should ctx end first (the caller gave up), the replay
// goes on in the background, followed on status.replay, and Run returns ctx's error.
func (r *Replayer) Run(ctx context.Context, k delivery.Key, req Request) (heraldv1.ReplayStatus, error) {
	run, err := r.begin(ctx, k, req)
	if err != nil {
		return heraldv1.ReplayStatus{}, err
	}
	if run == nil {
		return heraldv1.ReplayStatus{ID: req.ID, Selection: req.Selection.String(), State: heraldv1.ReplayComplete}, nil
	}
	done := make(chan heraldv1.ReplayStatus, 1)
	r.wg.Go(func() { done <- r.run(r.ctx, run) })
	select {
	case st := <-done:
		return st, nil
	case <-ctx.Done():
		return run.st, fmt.Errorf("replay %s goes on in the background: %w", req.ID, ctx.Err())
	}
}

// begin validates, takes the endpoint's lease, selects and reports the start; it
// returns nil for a selection of nothing, which is complete at once.
func (r *Replayer) begin(ctx context.Context, k delivery.Key, req Request) (*running, error) {
	sel := req.Selection
	if err := sel.Validate(); err != nil {
		return nil, err
	}
	log := r.opts.Log.WithValues("endpoint", k.String(), "replay", req.ID, "by", req.By, "selection", sel.String())
	key := queue.EndpointKey(replayLease, k)
	holder := r.opts.Instance + "/" + req.ID
	ok, err := r.opts.Store.Lease(ctx, key, holder, r.opts.LeaseTTL)
	if err != nil {
		return nil, fmt.Errorf("taking the replay lease: %w", err)
	}
	if !ok {
		log.Info("replay refused: another replay of the endpoint is running")
		return nil, ErrBusy
	}
	run := &running{k: k, req: req, holder: holder, done: make(chan struct{})}
	release := func() {
		rctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := r.opts.Store.ReleaseLease(rctx, key, holder); err != nil {
			r.opts.Log.Error(err, "releasing the replay lease", "endpoint", k.String(), "replay", req.ID)
		}
	}
	var lctx context.Context
	lctx, run.renewed = context.WithCancel(context.Background())
	go func() {
		defer close(run.done)
		defer release()
		tick := time.NewTicker(r.opts.LeaseTTL / 3)
		defer tick.Stop()
		for {
			select {
			case <-lctx.Done():
				return
			case <-tick.C:
				if _, err := r.opts.Store.Lease(lctx, key, holder, r.opts.LeaseTTL); err != nil && lctx.Err() == nil {
					r.opts.Log.Error(err, "renewing the replay lease", "endpoint", k.String(), "replay", req.ID)
				}
			}
		}
	}()
	fail := func(err error) (*running, error) {
		run.renewed()
		<-run.done
		return nil, err
	}
	items, err := r.opts.Store.Select(ctx, k, sel.filter(), sel.DeadLetters, sel.Delivered)
	if err != nil {
		return fail(fmt.Errorf("selecting: %w", err))
	}
	run.items = items
	run.st = heraldv1.ReplayStatus{
		ID: req.ID, Selection: sel.String(), State: heraldv1.ReplayRunning,
		Selected: int64(len(items)), Remaining: int64(len(items)),
		StartTime: metaNow(r.opts.Now()),
	}
	if len(items) == 0 {
		// Nothing to run: done now, and the endpoint is free for the next replay at once.
		run.st.State, run.st.CompletionTime = heraldv1.ReplayComplete, ptr(metaNow(r.opts.Now()))
	}
	if err := r.opts.Progress.ReplayProgress(ctx, k, run.st); err != nil {
		return fail(fmt.Errorf("writing replay progress: %w", err))
	}
	// The audit line: who asked for what, every time a replay starts.
	log.Info("replay started", "selected", len(items))
	if len(items) == 0 {
		return fail(nil)
	}
	return run, nil
}

func (r *Replayer) run(ctx context.Context, run *running) heraldv1.ReplayStatus {
	defer func() {
		run.renewed()
		<-run.done
	}()
	k, st := run.k, run.st
	// Progress is paced by the wall clock: Now may be a test's, standing still.
	last := time.Now()
	var gone int64
	var failure error
	var limit *rate.Limiter
	if r.opts.Rate > 0 {
		limit = rate.NewLimiter(rate.Limit(r.opts.Rate), 1)
	}
	for _, it := range run.items {
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
	r.opts.Log.Info("replay ended", "endpoint", k.String(), "replay", st.ID, "by", run.req.By, "state", st.State,
		"selected", st.Selected, "resent", st.Resent, "remaining", st.Remaining)
	return st
}

// Stop ends the running replays (their status says where they stopped) and waits.
func (r *Replayer) Stop() {
	r.stop()
	r.wg.Wait()
}

func metaNow(t time.Time) metav1.Time { return metav1.NewTime(t.UTC().Truncate(time.Second)) }

func ptr[T any](v T) *T { return &v }
