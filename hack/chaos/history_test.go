package chaos

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/herald-dev/herald/hack/framework"

	"github.com/nats-io/nats.go/jetstream"

	heraldv1 "github.com/herald-dev/herald/api/v1alpha1"
	"github.com/herald-dev/herald/dispatcher/queue"
)

// historyFlagsAfterRestart restarts the three replicas with other history settings, as
// `helm upgrade` with new values restarts them, and checks that each setting reaches the
// store and takes effect: flags → the dispatcher's options → the history streams' limits
// → what is kept. In two rounds:
//
//  1. --attempt-log=false --attempt-log-max-age=3s --retain-delivered-max-bytes=64KiB:
//     the earlier scenarios' attempt records expire; events of 2 KiB to a new endpoint
//     are retained for replay, the oldest going once the retained deliveries pass
//     64 KiB, and leave no attempt record.
//  2. --retain-delivered-max-age=3s --attempt-log-max-bytes=8KiB (the attempt log on
//     again): the retained deliveries expire; new events leave attempt records, the
//     oldest going once the log passes 8 KiB (40 records of about 350 B).
//
// What a round wrote is counted after its replicas stopped: each waits, as it stops, for
// the store to acknowledge every record it handed over, so a record that was going to be
// written has been.
func (s *suite) historyFlagsAfterRestart(t *testing.T) {
	const endpoint = "history"
	const events = 40
	start := time.Now()
	attempts := s.stream(t, queue.AttemptsStream)
	if attempts.State.Msgs == 0 {
		t.Fatalf("%s is empty after the earlier scenarios' deliveries", queue.AttemptsStream)
	}

	// Round 1.
	s.restartAllWith(t, "--attempt-log=false", "--attempt-log-max-age=3s", fmt.Sprintf("--retain-delivered-max-bytes=%d", 64<<10))
	attempts = s.stream(t, queue.AttemptsStream)
	delivered := s.stream(t, queue.DeliveredStream)
	if attempts.Config.MaxAge != 3*time.Second || delivered.Config.MaxBytes != 64<<10 {
		t.Fatalf("after the restart %s keeps records for %s (want 3s) and %s holds %d bytes (want %d)",
			queue.AttemptsStream, attempts.Config.MaxAge, queue.DeliveredStream, delivered.Config.MaxBytes, 64<<10)
	}
	s.h.eventuallyf(t, time.Minute, "the earlier attempt records expired (--attempt-log-max-age=3s)", func() (bool, string) {
		st := s.stream(t, queue.AttemptsStream).State
		return st.Msgs == 0, fmt.Sprintf("%d records", st.Msgs)
	})
	s.addEndpoint(t, endpoint, heraldv1.WebhookEndpointSpec{})
	attLast, delLast := s.stream(t, queue.AttemptsStream).State.LastSeq, s.stream(t, queue.DeliveredStream).State.LastSeq
	ids := s.publishN(t, endpoint, "r1", events, strings.Repeat("x", 2<<10))
	s.stopAll(t)
	receipts := s.receipts(endpoint, ids)
	attempts, delivered = s.stream(t, queue.AttemptsStream), s.stream(t, queue.DeliveredStream)
	if n := attempts.State.LastSeq - attLast; n != 0 {
		t.Errorf("--attempt-log=false: the replicas wrote %d attempt records for %d deliveries", n, receipts)
	}
	// Retained deliveries are written in batches (one message per endpoint and bucket of
	// event ids a flush), so some messages and never more than one per receipt.
	if n := delivered.State.LastSeq - delLast; n == 0 || n > uint64(receipts) {
		t.Errorf("%d messages of retained deliveries written for %d receipts, want between 1 and %d", n, receipts, receipts)
	}
	if delivered.State.Bytes > 64<<10 || delivered.State.FirstSeq <= delLast+1 {
		t.Errorf("--retain-delivered-max-bytes=64KiB: %s holds %d bytes from sequence %d, want at most %d bytes and the oldest of %d..%d gone",
			queue.DeliveredStream, delivered.State.Bytes, delivered.State.FirstSeq, 64<<10, delLast+1, delivered.State.LastSeq)
	}
	t.Logf("round 1: %d deliveries, 0 attempt records; %s keeps %d messages (%d bytes) from sequence %d of %d",
		receipts, queue.DeliveredStream, delivered.State.Msgs, delivered.State.Bytes, delivered.State.FirstSeq, delivered.State.LastSeq)

	// Round 2.
	s.startAllWith(t, "--retain-delivered-max-age=3s", fmt.Sprintf("--attempt-log-max-bytes=%d", 8<<10))
	attempts, delivered = s.stream(t, queue.AttemptsStream), s.stream(t, queue.DeliveredStream)
	if delivered.Config.MaxAge != 3*time.Second || attempts.Config.MaxBytes != 8<<10 {
		t.Fatalf("after the restart %s keeps deliveries for %s (want 3s) and %s holds %d bytes (want %d)",
			queue.DeliveredStream, delivered.Config.MaxAge, queue.AttemptsStream, attempts.Config.MaxBytes, 8<<10)
	}
	s.h.eventuallyf(t, time.Minute, "the retained deliveries expired (--retain-delivered-max-age=3s)", func() (bool, string) {
		st := s.stream(t, queue.DeliveredStream).State
		return st.Msgs == 0, fmt.Sprintf("%d deliveries", st.Msgs)
	})
	attLast = s.stream(t, queue.AttemptsStream).State.LastSeq
	ids = s.publishN(t, endpoint, "r2", events, "")
	s.stopAll(t)
	receipts = s.receipts(endpoint, ids)
	attempts = s.stream(t, queue.AttemptsStream)
	if n := attempts.State.LastSeq - attLast; n == 0 || n > uint64(receipts) {
		t.Errorf("the attempt log, on again, wrote %d messages (batches of records) for %d deliveries, want between 1 and %d", n, receipts, receipts)
	}
	if attempts.State.Bytes > 8<<10 || attempts.State.FirstSeq <= attLast+1 {
		t.Errorf("--attempt-log-max-bytes=8KiB: %s holds %d bytes from sequence %d, want at most %d bytes and the oldest of %d..%d gone",
			queue.AttemptsStream, attempts.State.Bytes, attempts.State.FirstSeq, 8<<10, attLast+1, attempts.State.LastSeq)
	}
	t.Logf("round 2: %d deliveries; %s keeps %d messages (%d bytes) from sequence %d of %d",
		receipts, queue.AttemptsStream, attempts.State.Msgs, attempts.State.Bytes, attempts.State.FirstSeq, attempts.State.LastSeq)

	// The suite's own flags again, for whatever runs next.
	s.startAllWith(t)
	s.mu.Lock()
	s.rows = append(s.rows, row{scenario: "HistoryFlagsAfterRestart", fault: "restarts with other history flags",
		accepted: 2 * events, delivered: 2 * events, took: time.Since(start), placement: "-", refused: "-"})
	s.mu.Unlock()
}

// stream reads a stream's configuration and state.
func (s *suite) stream(t *testing.T, name string) *jetstream.StreamInfo {
	t.Helper()
	info, err := s.nats.streamInfo(name)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// stopAll stops every replica with SIGTERM; each must exit 0, having flushed its writes.
func (s *suite) stopAll(t *testing.T) {
	t.Helper()
	for _, d := range s.dispatchers {
		d.proc.stop(30 * time.Second)
		if d.proc.err != nil {
			t.Fatalf("dispatcher %d did not stop cleanly on SIGTERM: %v\n%s", d.index, d.proc.err, framework.Tail(d.proc.log, 20))
		}
	}
}

// restartAllWith stops every replica and starts them again with the suite's flags and
// extra.
func (s *suite) restartAllWith(t *testing.T, extra ...string) {
	t.Helper()
	s.stopAll(t)
	s.startAllWith(t, extra...)
}

// startAllWith starts every (stopped) replica with the suite's flags and extra, all at
// once, and waits until each is ready.
func (s *suite) startAllWith(t *testing.T, extra ...string) {
	t.Helper()
	s.extraFlags = extra
	for _, d := range s.dispatchers {
		s.startDispatcher(d)
	}
	for _, d := range s.dispatchers {
		s.waitDispatcherReady(t, d, 2*time.Minute)
	}
	t.Logf("dispatchers started with %s", strings.Join(append([]string{"the suite's flags"}, extra...), " "))
}

// publishN publishes n events with data pad to endpoint, spread over the replicas, and
// waits until the receiver has every one.
func (s *suite) publishN(t *testing.T, endpoint, prefix string, n int, pad string) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%s-%03d", endpoint, prefix, i)
		d := s.dispatchers[i%len(s.dispatchers)]
		s.h.eventually(t, 30*time.Second, "publishing "+ids[i], func() bool {
			code, res, _, _, err := s.prod.publishData(context.Background(), d, ids[i], endpoint+".happened", pad)
			return err == nil && code == http.StatusAccepted && res.Matched == 1
		})
	}
	s.h.eventually(t, s.sc.drainLimit, fmt.Sprintf("%d events of %s delivered", n, endpoint), func() bool { return s.recv.has(endpoint, ids) == n })
	return ids
}

// receipts counts the requests that delivered ids (duplicates included).
func (s *suite) receipts(endpoint string, ids []string) int {
	received, _, _, _ := s.recv.snapshot(endpoint)
	n := 0
	for _, id := range ids {
		n += len(received[id])
	}
	return n
}
