//go:build !race

package signer_test

import (
	"net/http"
	"testing"

	"github.com/herald-dev/herald/api/v1alpha1"
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

// TestSignEd25519_AllocationBudget: the same two as the HMAC styles. The signed message
// (which holds the body) is pooled and crypto/ed25519.Sign's signature stays on the
// stack, so the count is independent of body size and rotation here too.
func TestSignEd25519_AllocationBudget(t *testing.T) {
	const budget = 2
	for _, prev := range [][]byte{nil, []byte(edPrevSeed)} {
		s := mustNew(t, v1alpha1.SignatureStandardWebhooksEd25519, "", []byte(edSeed), prev)
		h := http.Header{}
		msg := signer.Message{ID: "evt_abc123def456", Timestamp: benchTime, Body: benchBody}
		s.Sign(h, msg)
		if got := testing.AllocsPerRun(200, func() { s.Sign(h, msg) }); got > budget {
			t.Errorf("rotating=%v: %v allocations per Sign, budget %d", s.Rotating(), got, budget)
		}
	}
}
