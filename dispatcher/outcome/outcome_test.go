package outcome_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/controller-runtime/pkg/client"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/outcome"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/queue/queuetest"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/dispatcher/sender"
	"github.com/herald-dev/herald/internal/testenv"
)

var k client.Client

func TestMain(m *testing.M) {
	os.Exit(testenv.RunSuite(m, func(s *testenv.Suite) error {
		k = s.Client
		return nil
	}))
}

// countingClient counts the status applies that reach the API server.
type countingClient struct {
	client.Client
	applies atomic.Int32
}

func (c *countingClient) Status() client.SubResourceWriter {
	return countingStatus{c.Client.Status(), &c.applies}
}

type countingStatus struct {
	client.SubResourceWriter
	n *atomic.Int32
}

func (s countingStatus) Apply(ctx context.Context, obj runtime.ApplyConfiguration, opts ...client.SubResourceApplyOption) error {
	s.n.Add(1)
	return s.SubResourceWriter.Apply(ctx, obj, opts...)
}

// threshold disables after 3 failures.
type threshold struct{}

func (threshold) FailureThreshold(delivery.Key) (int32, int64, bool) { return 3, 1, true }

func openStore(t *testing.T, dir string) queue.Store {
	t.Helper()
	st, err := queue.Open(context.Background(), queue.Options{Store: config.Store{DataDir: dir}, Log: testr.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func attempt(ep delivery.Key, n int, ok bool) delivery.Attempt {
	out := sender.Outcome{StatusCode: 204, Latency: time.Millisecond}
	if !ok {
		out = sender.Outcome{StatusCode: 500, Latency: time.Millisecond, Err: errors.New("receiver answered 500")}
	}
	return delivery.Attempt{Endpoint: ep, Outcome: out,
		Delivery: &queue.Delivery{EventID: fmt.Sprintf("evt_%d", n), DeliveryID: fmt.Sprintf("dlv_%d", n), Attempt: 1}}
}

// settle stores n deliveries of events first.. for ep, takes them from the store and
// settles each as the engine does: the history's record and the tracker hear of the
// attempt, and the delivery is settled (delivered, or failed with its retry stored),
// which counts it on the endpoint's tally. It returns once everything is counted.
func settle(t *testing.T, st queue.Store, tracker *outcome.Tracker, ep delivery.Key, first, n int, ok bool) {
	t.Helper()
	ctx := context.Background()
	var ds []queue.Delivery
	for i := first; i < first+n; i++ {
		id := fmt.Sprintf("evt_%d", i)
		ds = append(ds, queue.Delivery{Namespace: ep.Namespace, Endpoint: ep.Name, EndpointUID: ep.UID, EventID: id, EventType: "invoice.paid",
			DeliveryID: queue.DeliveryID(ep.Namespace, id, ep.Name), Attempt: 1, CreatedAt: time.Now(), Data: []byte(`{}`)})
	}
	if _, err := st.Publish(ctx, ds); err != nil {
		t.Fatal(err)
	}
	history := &replay.Recorder{History: st.History()}
	held, err := st.FetchHeld(ctx, ep, n, queue.ConsumerOptions{})
	if err != nil || len(held) != n {
		t.Fatalf("took %d of %d deliveries from the store: %v", len(held), n, err)
	}
	for i, p := range held {
		a := attempt(ep, first+i, ok)
		a.Delivery, a.Final = &p.Delivery, ok
		history.Attempted(a)
		tracker.Attempted(a)
		if ok {
			err = p.Delivered()
		} else {
			next := p.Delivery
			next.Attempt, next.NotBefore = 2, time.Now().Add(time.Hour)
			err = p.Retry(ctx, next)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	st.History().Close() // everything handed over is counted now
}

// TestStatusWriter_CoalescesAndWritesOnlyChanges: however many attempts happen between
// two flushes, one status write carries them all, and a flush with nothing new writes
// nothing, so a busy endpoint cannot flood the API server.
func TestStatusWriter_CoalescesAndWritesOnlyChanges(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NewNamespace(t, k, "outcome-")
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "busy"},
		Spec: heraldv1.WebhookEndpointSpec{URL: "https://busy.example/hooks"}}
	if err := k.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	key := delivery.Key{Namespace: ns, Name: "busy", UID: string(ep.UID)}
	st := openStore(t, t.TempDir())
	defer st.Close()
	tracker := outcome.NewTracker(st, threshold{}, nil, func(delivery.Key) {}, testr.New(t))
	cc := &countingClient{Client: k}
	w := &outcome.StatusWriter{
		Client: cc, Tracker: tracker, Store: st, Log: testr.New(t),
		Lookup: func(delivery.Key) (*heraldv1.WebhookEndpoint, bool) {
			var cur heraldv1.WebhookEndpoint
			return &cur, k.Get(ctx, client.ObjectKeyFromObject(ep), &cur) == nil
		},
		Holds: func(delivery.Key) (string, string) { return "", "" },
	}

	if _, err := tracker.Load(ctx, key); err != nil { // what the watch does first
		t.Fatal(err)
	}
	w.Flush(ctx)
	if n := cc.applies.Swap(0); n != 1 {
		t.Fatalf("first flush wrote %d times, want 1 (the initial status)", n)
	}
	w.Flush(ctx)
	if n := cc.applies.Swap(0); n != 0 {
		t.Fatalf("a flush with nothing new wrote %d times, want 0", n)
	}

	settle(t, st, tracker, key, 0, 50, true)
	w.Flush(ctx)
	if n := cc.applies.Swap(0); n != 1 {
		t.Fatalf("50 attempts were written in %d applies, want 1", n)
	}
	var got heraldv1.WebhookEndpoint
	if err := k.Get(ctx, client.ObjectKeyFromObject(ep), &got); err != nil {
		t.Fatal(err)
	}
	if got.Status.Counters == nil || got.Status.Counters.Delivered != 50 || got.Status.LastAttempt.EventID != "evt_49" {
		t.Fatalf("status after 50 deliveries: counters %+v, last attempt %+v", got.Status.Counters, got.Status.LastAttempt)
	}
	if c := meta.FindStatusCondition(got.Status.Conditions, heraldv1.ConditionDelivering); c == nil || c.Status != metav1.ConditionTrue {
		t.Errorf("Delivering = %+v, want True", c)
	}

	// Three failures in a row trip the circuit; the Disabled condition goes out in
	// the same single write.
	settle(t, st, tracker, key, 100, 3, false)
	w.Flush(ctx)
	if n := cc.applies.Swap(0); n != 1 {
		t.Fatalf("3 failures were written in %d applies, want 1", n)
	}
	if err := k.Get(ctx, client.ObjectKeyFromObject(ep), &got); err != nil {
		t.Fatal(err)
	}
	if !meta.IsStatusConditionTrue(got.Status.Conditions, heraldv1.ConditionDisabled) || got.Status.ConsecutiveFailures != 3 ||
		got.Status.Counters.FailedAttempts != 3 {
		t.Fatalf("status after 3 failures: %+v", got.Status)
	}

	// Run writes at most once per interval, however busy the endpoint is.
	w.Interval = 300 * time.Millisecond
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	start := time.Now()
	history := &replay.Recorder{History: st.History()}
	for i := 0; time.Since(start) < 1500*time.Millisecond; i++ {
		a := attempt(key, 1000+i, true)
		history.Attempted(a)
		tracker.Attempted(a)
		time.Sleep(2 * time.Millisecond)
	}
	stop()
	<-done
	elapsed := time.Since(start)
	// One write per interval, plus the final flush on shutdown.
	if n, most := cc.applies.Load(), int32(elapsed/w.Interval)+2; n > most || n == 0 {
		t.Fatalf("Run wrote %d times in %s at an interval of %s, want 1..%d", n, elapsed.Round(time.Millisecond), w.Interval, most)
	}
}

// TestRequests_ReplayAnnotationIsActedOnOncePerValueAcrossReplicasAndRestarts: the
// replay annotation's value is claimed in the shared state, so a resync, a second
// replica or a restarted dispatcher never replays the same value twice; a new value
// replays again. Each is started through the one replayer (which puts it on the
// endpoint's replay status), the first form of the value as a dead-letter selection.
func TestRequests_ReplayAnnotationIsActedOnOncePerValueAcrossReplicasAndRestarts(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	key := delivery.Key{Namespace: "shop", Name: "billing", UID: "0d6c3a52-71b4-4f6e-9c2a-8e5f1d3b7a90"}
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "billing", UID: types.UID(key.UID), Generation: 1}}
	requests := func(st queue.Store) (*outcome.Tracker, *outcome.Requests) {
		tracker := outcome.NewTracker(st, threshold{}, nil, func(delivery.Key) {}, testr.New(t))
		rp := replay.New(replay.Options{Store: st, Progress: tracker, Log: testr.New(t)})
		t.Cleanup(rp.Stop)
		return tracker, outcome.NewRequests(tracker, rp, nil, nil)
	}
	st := openStore(t, dir)
	firstTracker, first := requests(st)
	otherTracker, other := requests(st) // a second replica
	for _, c := range []struct {
		who     *outcome.Requests
		seen    *outcome.Tracker
		token   string
		started bool
	}{
		{first, firstTracker, "2026-11-30", true},
		{first, firstTracker, "2026-11-30", false}, // a resync sees the same annotation
		{other, otherTracker, "2026-11-30", false}, // another replica
		{other, otherTracker, "2026-12-01", true},  // a new value
	} {
		before, _ := c.seen.Load(ctx, key)
		metav1.SetMetaDataAnnotation(&ep.ObjectMeta, heraldv1.AnnotationReplayDeadLetters, c.token)
		if _, err := c.who.Handle(ctx, key, ep); err != nil {
			t.Fatal(err)
		}
		after, err := c.seen.Load(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		started := after.Replay != nil && after.Replay.ID == c.token && (before.Replay == nil || before.Replay.ID != c.token)
		if started != c.started || after.LastReplay != c.token {
			t.Fatalf("annotation %q: replay started %v (status %+v, last handled %q); want started %v", c.token, started, after.Replay, after.LastReplay, c.started)
		}
		if started && (after.Replay.Selection != "from=dead-letters" || after.Replay.State != heraldv1.ReplayComplete) {
			t.Errorf("replay of %q = %+v, want every dead letter (none here), complete", c.token, after.Replay)
		}
	}
	st.Close()

	restarted := openStore(t, dir)
	defer restarted.Close()
	tracker, again := requests(restarted)
	if _, err := again.Handle(ctx, key, ep); err != nil {
		t.Fatal(err)
	}
	if got, err := tracker.Load(ctx, key); err != nil || got.LastReplay != "2026-12-01" || got.Replay.ID != "2026-12-01" {
		t.Fatalf("after a restart: last handled %q, replay %+v, %v; want the handled value untouched", got.LastReplay, got.Replay, err)
	}
}

// TestAnnotation_NamesWhetherAValueIsNew: the one judge of "is this annotation value
// new?", each row the case it exists for.
func TestAnnotation_NamesWhetherAValueIsNew(t *testing.T) {
	for _, c := range []struct {
		why, value, handled string
		want                outcome.AnnotationState
	}{
		{"no annotation asks nothing", "", "", outcome.AnnotationAbsent},
		{"an emptied annotation asks nothing, whatever was handled", "", "r1", outcome.AnnotationAbsent},
		{"a first value is new", "r1", "", outcome.AnnotationNew},
		{"the value handled last is handled", "r1", "r1", outcome.AnnotationHandled},
		{"another value is new, even an older one set again", "r0", "r1", outcome.AnnotationNew},
	} {
		if got := outcome.Annotation(c.value, c.handled); got != c.want {
			t.Errorf("%s: Annotation(%q, %q) = %s, want %s", c.why, c.value, c.handled, got, c.want)
		}
	}
}

// TestAnnotationManager_NamesTheClientThatSetTheAnnotation: who asked for an annotation
// replay, as far as Kubernetes knows it: the field manager owning the annotation in the
// object's managedFields, read from the API server.
func TestAnnotationManager_NamesTheClientThatSetTheAnnotation(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NewNamespace(t, k, "who-")
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
		Spec: heraldv1.WebhookEndpointSpec{URL: "https://billing.example/hooks"}}
	if err := k.Create(ctx, ep, client.FieldOwner("gitops")); err != nil {
		t.Fatal(err)
	}
	patch := client.MergeFrom(ep.DeepCopy())
	metav1.SetMetaDataAnnotation(&ep.ObjectMeta, heraldv1.AnnotationReplayDeadLetters, "r1")
	if err := k.Patch(ctx, ep, patch, client.FieldOwner("kubectl-annotate")); err != nil {
		t.Fatal(err)
	}
	who := outcome.AnnotationManager(k)
	key := delivery.Key{Namespace: ns, Name: "billing", UID: string(ep.UID)}
	if got := who(ctx, key, heraldv1.AnnotationReplayDeadLetters); !strings.HasPrefix(got, `field manager "kubectl-annotate" (Update at `) {
		t.Errorf("who set the replay annotation = %q, want the kubectl-annotate field manager", got)
	}
	if got := who(ctx, key, heraldv1.AnnotationReenable); got != "" {
		t.Errorf("who set an annotation nobody set = %q, want nothing", got)
	}
	// Another object of the same name is not the one asked about.
	if got := who(ctx, delivery.Key{Namespace: ns, Name: "billing", UID: "another"}, heraldv1.AnnotationReplayDeadLetters); got != "" {
		t.Errorf("who set it on a deleted object = %q, want nothing", got)
	}
}

// TestTracker_GoneDisablesAtOnce: 410 Gone is the receiver's "stop sending" (Standard
// Webhooks), so one is enough, far below the failure threshold.
func TestTracker_GoneDisablesAtOnce(t *testing.T) {
	st := openStore(t, t.TempDir())
	defer st.Close()
	tracker := outcome.NewTracker(st, threshold{}, nil, func(delivery.Key) {}, testr.New(t))
	key := delivery.Key{Namespace: "shop", Name: "retired", UID: "7e2a9c41-5b3d-4f08-a6e1-2c9d8b7f0a13"}
	a := attempt(key, 1, false)
	a.Outcome = sender.Outcome{StatusCode: 410, Latency: time.Millisecond, Err: errors.New("receiver answered 410")}
	tracker.Attempted(a)
	state, disabled := tracker.Disabled(key)
	if !disabled || state.DisabledReason != heraldv1.ReasonGone || state.ConsecutiveFailures != 1 {
		t.Fatalf("after one 410: %+v, want disabled with reason Gone", state)
	}
	if want := "the receiver answered 410 Gone to event evt_1"; state.DisabledMessage != want {
		t.Errorf("message = %q, want %q", state.DisabledMessage, want)
	}
}

// TestTracker_ReplayOrphanedByACrashEndsFailed: a replay whose dispatcher crashed stops
// reporting; once it has been silent for two minutes the next status write says it
// failed and where it stopped, instead of Running for ever. One that reports stays
// Running.
func TestTracker_ReplayOrphanedByACrashEndsFailed(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NewNamespace(t, k, "orphan-")
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "billing"},
		Spec: heraldv1.WebhookEndpointSpec{URL: "https://billing.example/hooks"}}
	if err := k.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	key := delivery.Key{Namespace: ns, Name: "billing", UID: string(ep.UID)}
	dir := t.TempDir()
	st := openStore(t, dir)
	crashed := outcome.NewTracker(st, threshold{}, nil, func(delivery.Key) {}, testr.New(t))
	start := time.Now()
	if err := crashed.ReplayProgress(ctx, key, heraldv1.ReplayStatus{ID: "rpl-1", State: heraldv1.ReplayRunning,
		Selected: 10, Resent: 4, Remaining: 6, StartTime: metav1.NewTime(start)}); err != nil {
		t.Fatal(err)
	}
	queuetest.Crash(st)

	st = openStore(t, dir)
	defer st.Close()
	restarted := outcome.NewTracker(st, threshold{}, nil, func(delivery.Key) {}, testr.New(t))
	clock := start
	outcome.SetClock(restarted, func() time.Time { return clock })
	w := &outcome.StatusWriter{
		Client: k, Tracker: restarted, Store: st, Log: testr.New(t),
		Lookup: func(delivery.Key) (*heraldv1.WebhookEndpoint, bool) {
			var cur heraldv1.WebhookEndpoint
			return &cur, k.Get(ctx, client.ObjectKeyFromObject(ep), &cur) == nil
		},
		Holds: func(delivery.Key) (string, string) { return "", "" },
	}
	replayStatus := func() *heraldv1.ReplayStatus {
		t.Helper()
		if _, err := restarted.Load(ctx, key); err != nil {
			t.Fatal(err)
		}
		w.Flush(ctx)
		var cur heraldv1.WebhookEndpoint
		if err := k.Get(ctx, client.ObjectKeyFromObject(ep), &cur); err != nil {
			t.Fatal(err)
		}
		return cur.Status.Replay
	}
	clock = start.Add(time.Minute)
	if r := replayStatus(); r == nil || r.State != heraldv1.ReplayRunning {
		t.Fatalf("a minute later status.replay = %+v, want still Running", r)
	}
	clock = start.Add(3 * time.Minute)
	r := replayStatus()
	if r == nil || r.State != heraldv1.ReplayFailed || r.Resent != 4 || r.Remaining != 6 || r.CompletionTime == nil ||
		!strings.Contains(r.Message, "stopped after 4 re-sent") {
		t.Fatalf("three silent minutes later status.replay = %+v, want Failed saying where it stopped", r)
	}
}

// TestStatus_CountersOfTheReleaseBeforeAreKept: the counters the release before layout
// 2 kept in the endpoint's shared state go on from where they were, this release's
// tally added to them, after the upgrade.
func TestStatus_CountersOfTheReleaseBeforeAreKept(t *testing.T) {
	ctx := context.Background()
	ns := testenv.NewNamespace(t, k, "outcome-")
	ep := &heraldv1.WebhookEndpoint{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "upgraded"},
		Spec: heraldv1.WebhookEndpointSpec{URL: "https://upgraded.example/hooks"}}
	if err := k.Create(ctx, ep); err != nil {
		t.Fatal(err)
	}
	key := delivery.Key{Namespace: ns, Name: "upgraded", UID: string(ep.UID)}
	dir := t.TempDir()
	openStore(t, dir).Close()
	if err := queuetest.WriteLayout1In(ctx, dir, queuetest.Layout1{Namespace: ns, Name: "upgraded", UID: string(ep.UID),
		State: `{"delivered":7,"failedAttempts":5,"deadLettered":2}`}); err != nil {
		t.Fatal(err)
	}
	st := openStore(t, dir)
	defer st.Close()
	tracker := outcome.NewTracker(st, threshold{}, nil, func(delivery.Key) {}, testr.New(t))
	w := &outcome.StatusWriter{
		Client: k, Tracker: tracker, Store: st, Log: testr.New(t),
		Lookup: func(delivery.Key) (*heraldv1.WebhookEndpoint, bool) {
			var cur heraldv1.WebhookEndpoint
			return &cur, k.Get(ctx, client.ObjectKeyFromObject(ep), &cur) == nil
		},
		Holds: func(delivery.Key) (string, string) { return "", "" },
	}
	if _, err := tracker.Load(ctx, key); err != nil {
		t.Fatal(err)
	}
	settle(t, st, tracker, key, 0, 10, true)
	w.Flush(ctx)
	var got heraldv1.WebhookEndpoint
	if err := k.Get(ctx, client.ObjectKeyFromObject(ep), &got); err != nil {
		t.Fatal(err)
	}
	if c := got.Status.Counters; c == nil || c.Delivered != 17 || c.FailedAttempts != 5 || c.DeadLettered != 2 {
		t.Errorf("counters after the upgrade and 10 deliveries: %+v, want 17 delivered, 5 failed attempts, 2 dead-lettered", c)
	}
}
