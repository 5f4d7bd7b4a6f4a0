package replay_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/config"
	"github.com/herald-dev/herald/dispatcher/delivery"
	"github.com/herald-dev/herald/dispatcher/queue"
	"github.com/herald-dev/herald/dispatcher/queue/queuetest"
	"github.com/herald-dev/herald/dispatcher/replay"
	"github.com/herald-dev/herald/internal/testenv"
)

func TestParseAnnotation(t *testing.T) {
	now := time.Date(2026, 11, 30, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		why, value, want, err string
	}{
		{"the annotation's first form (any value) replays every dead letter", "2026-11-30T10:00:00Z", "from=dead-letters", ""},
		{"a duration is before the time the annotation is handled", "since=2h", "since=2026-11-30T10:00:00Z from=dead-letters", ""},
		{"a window from both sources", "since=2026-11-30T08:00:00Z until=2026-11-30T10:00:00Z from=all",
			"since=2026-11-30T08:00:00Z until=2026-11-30T10:00:00Z from=dead-letters,delivered", ""},
		{"type and ids select further", "type=invoice.paid ids=evt_1,evt_2 from=delivered", "type=invoice.paid ids=evt_1,evt_2 from=delivered", ""},
		{"an unknown key is refused, naming the known ones", "sinse=2h", "", "unknown key \"sinse\" (since, until, type, ids, from)"},
		{"a time that is neither form says which forms there are", "since=yesterday", "", "neither an RFC 3339 time"},
		{"an empty window is refused", "since=1h until=2h", "", "until (2026-11-30T10:00:00Z) must be after since (2026-11-30T11:00:00Z)"},
		{"an unknown source is refused", "since=1h from=pending", "", "source \"pending\" is not one of dead-letters, delivered, all"},
	} {
		sel, err := replay.ParseAnnotation(c.value, now)
		switch {
		case c.err != "" && (err == nil || !strings.Contains(err.Error(), c.err)):
			t.Errorf("%s: %q: error %v, want %q", c.why, c.value, err, c.err)
		case c.err == "" && err != nil:
			t.Errorf("%s: %q: %v", c.why, c.value, err)
		case c.err == "" && sel.String() != c.want:
			t.Errorf("%s: %q = %q, want %q", c.why, c.value, sel.String(), c.want)
		}
	}
}

// progress records what a replay reports, as package outcome would put it on status.
type progress struct {
	mu   sync.Mutex
	last map[string]heraldv1.ReplayStatus
}

func (p *progress) ReplayProgress(_ context.Context, _ delivery.Key, st heraldv1.ReplayStatus) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.last[st.ID] = st
	return nil
}

func (p *progress) of(id string) heraldv1.ReplayStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last[id]
}

// TestReplayer_OneReplayPerEndpointAcrossReplicasUntilItsReplicaDies: two dispatcher
// replicas share one NATS server. While a replay of an endpoint runs on one, the other
// refuses to start another of the same endpoint (it may start one of another endpoint);
// when the first replica dies without a word (its connection cut, its lease not
// renewed), the endpoint is free again once the lease has expired.
func TestReplayer_OneReplayPerEndpointAcrossReplicasUntilItsReplicaDies(t *testing.T) {
	ctx := context.Background()
	url := testenv.NATS(t)
	open := func() queue.Store {
		st, err := queue.Open(ctx, queue.Options{Store: config.Store{URL: url}, Log: testr.New(t)})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	first, second := open(), open()
	defer second.Close()
	billing := delivery.Key{Namespace: "shop", Name: "billing", UID: "3c2b1a09-0000-4000-8000-000000000001"}
	audit := delivery.Key{Namespace: "shop", Name: "audit", UID: "3c2b1a09-0000-4000-8000-000000000002"}
	w := first.History()
	for _, ep := range []delivery.Key{billing, audit} {
		for i := range 20 {
			d := queue.Delivery{Namespace: ep.Namespace, Endpoint: ep.Name, EndpointUID: ep.UID, EventID: fmt.Sprint("evt_", i),
				DeliveryID: fmt.Sprint("dlv_", i), Attempt: 1, CreatedAt: time.Now(), Data: []byte(`{}`)}
			w.Delivered(&d, time.Now())
		}
	}
	w.Close()
	p := &progress{last: map[string]heraldv1.ReplayStatus{}}
	replayer := func(st queue.Store, instance string) *replay.Replayer {
		// Two a second: the first replay runs for ten seconds.
		return replay.New(replay.Options{Store: st, Progress: p, Rate: 2, Instance: instance, LeaseTTL: 2 * time.Second, Log: testr.New(t)})
	}
	a, b := replayer(first, "a"), replayer(second, "b")
	defer b.Stop()
	everything := replay.Selection{Delivered: true}
	if n, err := a.Start(ctx, billing, replay.Request{ID: "r1", Selection: everything, By: "user alice"}); err != nil || n != 20 {
		t.Fatalf("first replay: %d, %v", n, err)
	}
	if _, err := b.Start(ctx, billing, replay.Request{ID: "r2", Selection: everything, By: "user bob"}); !errors.Is(err, replay.ErrBusy) {
		t.Fatalf("a second replay of the endpoint on the other replica: %v, want ErrBusy", err)
	}
	if _, err := a.Start(ctx, billing, replay.Request{ID: "r3", Selection: everything, By: "user carol"}); !errors.Is(err, replay.ErrBusy) {
		t.Fatalf("a second replay of the endpoint on the same replica: %v, want ErrBusy", err)
	}
	if _, err := b.Start(ctx, audit, replay.Request{ID: "r4", Selection: replay.Selection{Delivered: true, EventIDs: []string{"evt_1"}}, By: "user bob"}); err != nil {
		t.Fatalf("a replay of another endpoint: %v", err)
	}

	// The first replica dies mid-replay: no renewal, no release.
	queuetest.Crash(first)
	a.Stop()
	if got := p.of("r1"); got.Resent == 20 {
		t.Fatalf("the first replay finished before its replica died (%+v): the test proves nothing", got)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := b.Start(ctx, billing, replay.Request{ID: "r5", Selection: replay.Selection{Delivered: true, EventIDs: []string{"evt_2"}}, By: "user bob"})
		if err == nil {
			break
		}
		if !errors.Is(err, replay.ErrBusy) || time.Now().After(deadline) {
			t.Fatalf("after the first replica died: %v, want the endpoint free within the lease's 2s", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
