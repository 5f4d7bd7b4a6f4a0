package routing

import (
	"strings"
	"testing"
	"time"
)

func TestMatchType(t *testing.T) {
	tests := []struct {
		why       string
		pattern   string
		eventType string
		want      bool
	}{
		{"exact name matches itself", "invoice.paid", "invoice.paid", true},
		{"exact name does not match a sibling", "invoice.paid", "invoice.failed", false},
		{"exact name does not match a longer type (no implicit prefix match)", "invoice.paid", "invoice.paid.v2", false},
		{"exact name does not match a prefix of itself", "invoice.paid", "invoice", false},
		{"matching is case-sensitive: types are identifiers", "Invoice.paid", "invoice.paid", false},
		{"trailing glob matches one segment", "approval.*", "approval.granted", true},
		{"trailing glob spans dots, as documented on the CRD", "approval.*", "approval.x.y", true},
		{"the dot before a glob is literal, so the bare prefix does not match", "approval.*", "approval", false},
		{"the glob may match an empty run", "approval.*", "approval.", true},
		{"a glob does not match another prefix", "approval.*", "approvals.granted", false},
		{"lone star matches every type", "*", "anything.at.all", true},
		{"lone star matches the empty type too", "*", "", true},
		{"leading glob matches suffixes", "*.failed", "payment.card.failed", true},
		{"leading glob needs the suffix", "*.failed", "payment.card.paid", false},
		{"inner glob", "order.*.shipped", "order.eu.shipped", true},
		{"inner glob spans several segments", "order.*.shipped", "order.eu.north.shipped", true},
		{"inner glob still needs both ends", "order.*.shipped", "order.eu.delivered", false},
		{"several globs need backtracking past a false early match", "a*b*c", "axxbyybzzc", true},
		{"several globs fail when the last literal is missing", "a*b*c", "axxbyybzz", false},
		{"backtracking on a repeated prefix", "*ab", "aaab", true},
		{"empty pattern matches only the empty type", "", "", true},
		{"empty pattern matches nothing else", "", "x", false},
		{"a pattern longer than the type cannot match", "invoice.paid.x", "invoice.paid", false},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			if got := MatchType(tt.pattern, tt.eventType); got != tt.want {
				t.Errorf("MatchType(%q, %q) = %v, want %v", tt.pattern, tt.eventType, got, tt.want)
			}
		})
	}
}

func TestValidPattern(t *testing.T) {
	tests := []struct {
		why     string
		pattern string
		wantErr string // substring; "" means valid
	}{
		{"exact dotted name", "invoice.paid", ""},
		{"names may use '_' and '-'", "user_account.sign-up", ""},
		{"trailing glob", "approval.*", ""},
		{"match everything", "*", ""},
		{"glob inside a segment", "invoice.pa*", ""},
		{"empty pattern", "", "is empty"},
		{"leading dot leaves an empty first segment", ".paid", "empty segment at position 1"},
		{"trailing dot leaves an empty last segment", "approval.", "empty segment at position 2"},
		{"double dot is a typo that can never match the intended type", "order..paid", "empty segment at position 2"},
		{"double star suggests a recursive glob that does not exist", "approval.**", `contains "**"`},
		{"space (the CRD refuses it too; kept for callers outside the API server)", "order created", `contains ' '`},
		{"slash", "a/b", `contains '/'`},
		{"too long", strings.Repeat("a", MaxPatternLength+1), "at most 253"},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			err := ValidPattern(tt.pattern)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("ValidPattern(%q) = %v, want nil", tt.pattern, err)
			case tt.wantErr != "" && err == nil:
				t.Fatalf("ValidPattern(%q) = nil, want an error containing %q", tt.pattern, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Fatalf("ValidPattern(%q) = %q, want it to contain %q", tt.pattern, err, tt.wantErr)
			}
		})
	}
}

func TestCompileFilter_Refusals(t *testing.T) {
	tests := []struct {
		why     string
		expr    string
		wantErr string
	}{
		{"syntax error reports the compiler's message", "event.data.amount >", "Syntax error"},
		{"unknown variable: only event is declared", "payload.amount > 1", "undeclared reference to 'payload'"},
		{"a non-bool result would fail on every event", "event.data.amount", "must evaluate to a bool"},
		{"a string result is refused statically", "event.type + 'x'", "must evaluate to a bool"},
		{"unknown function", "event.type.shout()", "undeclared reference to 'shout'"},
		{"over the CRD length limit", "true || " + strings.Repeat("true || ", MaxFilterLength/8) + "true", "at most 4096"},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			_, err := CompileFilter(tt.expr)
			if err == nil {
				t.Fatalf("CompileFilter(%q) = nil error, want one containing %q", tt.expr, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("CompileFilter(%q) = %q, want it to contain %q", tt.expr, err, tt.wantErr)
			}
		})
	}
}

func TestFilter_Match(t *testing.T) {
	created := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	// data as encoding/json decodes it: numbers are float64.
	event := EventInput("evt_1", "invoice.paid", "billing", created, map[string]any{
		"amount":   float64(1500),
		"currency": "EUR",
		"customer": map[string]any{"email": "Ana@Example.com", "tier": "gold"},
		"tags":     []any{"vip", "eu"},
		"urgent":   true,
	})
	tests := []struct {
		why     string
		expr    string
		want    bool
		wantErr string
	}{
		{"the example from the design: JSON double against an int literal", "event.data.amount > 1000", true, ""},
		{"the same comparison false", "event.data.amount > 2000", false, ""},
		{"event type", "event.type == 'invoice.paid'", true, ""},
		{"source and id are available", "event.source == 'billing' && event.id.startsWith('evt_')", true, ""},
		{"created_at converts to a timestamp", "timestamp(event.created_at) > timestamp('2026-01-01T00:00:00Z')", true, ""},
		{"nested fields", "event.data.customer.tier in ['gold', 'platinum']", true, ""},
		{"strings extension is available", "event.data.customer.email.lowerAscii().endsWith('@example.com')", true, ""},
		{"lowerAscii and upperAscii change ASCII letters only, as the extension's do", "'ÀÉ Straße'.lowerAscii() == 'ÀÉ straße' && 'àé straße'.upperAscii() == 'àé STRAßE'", true, ""},
		{"lists", "'vip' in event.data.tags", true, ""},
		{"explicit bool comparison", "event.data.urgent == true", true, ""},
		{"has() guards a missing key", "has(event.data.refund) && event.data.refund > 0", false, ""},
		{"a missing key is an error, reported, not a match", "event.data.refund > 0", false, "no such key"},
		{"a type mismatch is an error, not a match", "event.data.currency > 5", false, "no such overload"},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			f, err := CompileFilter(tt.expr)
			if err != nil {
				t.Fatalf("CompileFilter(%q): %v", tt.expr, err)
			}
			got, err := f.Match(event)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Match = (%v, %v), want an error containing %q", got, err, tt.wantErr)
				}
				if got {
					t.Fatalf("Match returned true together with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("Match: %v", err)
			}
			if got != tt.want {
				t.Fatalf("Match(%q) = %v, want %v", tt.expr, got, tt.want)
			}
		})
	}
}

func BenchmarkMatchType(b *testing.B) {
	cases := []struct{ name, pattern, eventType string }{
		{"exact", "invoice.paid", "invoice.paid"},
		{"trailing-glob", "approval.*", "approval.granted.by.manager"},
		{"backtracking", "a*b*c*d", "axxxxbxxxxcxxxxbxxxxcxxxxe"},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				MatchType(c.pattern, c.eventType)
			}
		})
	}
}
