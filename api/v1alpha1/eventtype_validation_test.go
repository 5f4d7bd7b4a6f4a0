package v1alpha1_test

import (
	"strings"
	"testing"
)

func validEventTypeSpec() map[string]any {
	return map[string]any{"type": "invoice.paid", "schema": `{"type": "object"}`}
}

func TestValidation_RefusesBadWebhookEventTypes(t *testing.T) {
	tests := []struct {
		why    string
		mutate func(spec map[string]any)
		want   string
	}{
		{"Herald's own types cannot be declared: producers cannot send them",
			func(s map[string]any) { s["type"] = "herald.endpoint.disabled" }, "reserved for Herald's own operational events"},
		{"a type a producer could not send", func(s map[string]any) { s["type"] = "invoice paid" }, "type may contain only letters"},
		{"a schema is required", func(s map[string]any) { delete(s, "schema") }, "spec.schema: Required value"},
		{"a schema beyond the bound the dispatcher compiles",
			func(s map[string]any) { s["schema"] = `{"description":"` + strings.Repeat("x", 65536) + `"}` }, "spec.schema: Too long"},
		{"too many examples", func(s map[string]any) {
			s["examples"] = []any{"{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}", "{}"}
		}, "spec.examples: Too many"},
	}
	for _, tt := range tests {
		t.Run(tt.why, func(t *testing.T) {
			spec := validEventTypeSpec()
			tt.mutate(spec)
			_, err := create("WebhookEventType", spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("create = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := create("WebhookEventType", validEventTypeSpec()); err != nil {
		t.Fatalf("a valid WebhookEventType was refused: %v", err)
	}
}
