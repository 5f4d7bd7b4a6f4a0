package tracing_test

import (
	"strings"
	"testing"

	"github.com/herald-dev/herald/internal/tracing"
)

func TestParse(t *testing.T) {
	const valid = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" // the specification's example
	tests := []struct {
		why    string
		tp, ts string
		wantTP string
		wantTS string
	}{
		{"the specification's example", valid, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE", valid, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		{"not sampled is still propagated", strings.Replace(valid, "-01", "-00", 1), "", strings.Replace(valid, "-01", "-00", 1), ""},
		{"absent", "", "rojo=1", "", ""},
		{"upper case hex is invalid in version 00", strings.ToUpper(valid), "", "", ""},
		{"an all-zero trace id is invalid", "00-00000000000000000000000000000000-00f067aa0ba902b7-01", "", "", ""},
		{"an all-zero parent id is invalid", "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "", "", ""},
		{"version ff is forbidden", "ff" + valid[2:], "", "", ""},
		{"version 00 has exactly 55 characters", valid + "-00", "", "", ""},
		{"a later version may append fields and is read as 00", "01" + valid[2:] + "-what-comes-next", "", valid, ""},
		{"wrong separators", strings.ReplaceAll(valid, "-", "_"), "", "", ""},
		{"a tracestate with control characters is dropped, the traceparent kept", valid, "ro\x01jo=1", valid, ""},
		{"an oversized tracestate is dropped", valid, strings.Repeat("a=1,", 200), valid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			tp, ts := tracing.Parse(tt.tp, tt.ts)
			if tp != tt.wantTP || ts != tt.wantTS {
				t.Fatalf("Parse(%q, %q) = %q, %q; want %q, %q", tt.tp, tt.ts, tp, ts, tt.wantTP, tt.wantTS)
			}
		})
	}
	if got := tracing.TraceID(valid); got != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("TraceID = %q", got)
	}
}
