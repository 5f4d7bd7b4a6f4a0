//go:build !race

package signer_test

import (
	"net/http"
	"testing"

	"github.com/herald-dev/herald/dispatcher/signer"
)

// TestSign_AllocationBudget holds the hot path to its design: one string for all header
// values and one slice backing the header entries, independent of body size and
// rotation. A regression (a fresh hmac per call, fmt on the path, a per-header slice)
// shows up here before it shows up in a profile. Excluded under -race, which allocates.
func TestSign_AllocationBudget(t *testing.T) {
	const budget = 2
	for _, style := range allStyles {
		for _, prev := range [][]byte{nil, []byte(swPrev)} {
			s := mustNew(t, style, "X-Acme", []byte(swSecret), prev)
			h := http.Header{}
			msg := signer.Message{ID: "evt_abc123def456", Timestamp: benchTime, Body: benchBody, EventType: "policy.violation"}
			s.Sign(h, msg) // fill the pool and the map's buckets
			if got := testing.AllocsPerRun(200, func() { s.Sign(h, msg) }); got > budget {
				t.Errorf("%s (rotating=%v): %v allocations per Sign, budget %d", style, s.Rotating(), got, budget)
			}
		}
	}
}
