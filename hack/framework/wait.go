package framework

import (
	"errors"
	"testing"
	"time"
)

// Condition says whether what a test waits for holds: nil when it does, otherwise an
// error describing where things stand, which a timed-out wait reports.
type Condition func() error

// ErrNotYet is a Condition's answer when it has nothing better to say.
var ErrNotYet = errors.New("not yet")

// Bool turns a yes/no check into a Condition.
func Bool(cond func() bool) Condition {
	return func() error {
		if cond() {
			return nil
		}
		return ErrNotYet
	}
}

// Watchdog is consulted between polls; a non-nil answer ends the wait at once (a
// Supervisor reporting a child that died).
type Watchdog interface{ Failure() error }

// Wait polls conditions every Interval (default 200ms) for up to Within.
type Wait struct {
	Within   time.Duration
	Interval time.Duration
	// Watch, when set, fails the wait as soon as it reports a failure.
	Watch Watchdog
}

// Eventually polls cond until it holds and fails the test after w.Within with what was
// waited for and cond's last answer.
func (w Wait) Eventually(t testing.TB, what string, cond Condition) {
	t.Helper()
	if err := w.Poll(what, cond); err != nil {
		t.Fatal(err)
	}
}

// Poll is Eventually returning the failure instead of ending the test, for a test that
// records it and goes on.
func (w Wait) Poll(what string, cond Condition) error {
	interval := w.Interval
	if interval == 0 {
		interval = 200 * time.Millisecond
	}
	deadline := time.Now().Add(w.Within)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if w.Watch != nil {
			if f := w.Watch.Failure(); f != nil {
				return f
			}
		}
		if time.Now().After(deadline) {
			return &TimeoutError{What: what, Within: w.Within, Last: err}
		}
		time.Sleep(interval)
	}
}

// Eventually is a Wait without a watchdog.
func Eventually(t testing.TB, within time.Duration, what string, cond Condition) {
	t.Helper()
	Wait{Within: within}.Eventually(t, what, cond)
}

// TimeoutError is a wait that ran out of time.
type TimeoutError struct {
	What   string
	Within time.Duration
	Last   error
}

func (e *TimeoutError) Error() string {
	if errors.Is(e.Last, ErrNotYet) {
		return "timed out after " + e.Within.String() + " waiting for " + e.What
	}
	return "timed out after " + e.Within.String() + " waiting for " + e.What + " (last seen: " + e.Last.Error() + ")"
}

func (e *TimeoutError) Unwrap() error { return e.Last }
